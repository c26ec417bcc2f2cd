//! Join path: session -> **handler** -> join queue -> rooms. A session's
//! requests for a room this coordinator hosts, in a task of their own so that
//! the socket keeps being read while a join waits in the queue (a client that
//! goes away frees its place; anything else it sends meanwhile is refused).
//! Parses and validates each message (token, names, ids), then calls the join
//! queue and the room's verbs, and answers through the client's outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use throng_proto::names;
use throng_telemetry::trace;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info_span, Instrument};

use super::authorize::{authorize, authorize_resume, bad};
use super::SessionDeps;
use crate::join::queue::QueueError;
use crate::limits::IdentitySlot;
use crate::media::client::ConsumerCall;
use crate::protocol::{ClientMessage, Done, ErrorCode, Outbox, Reply, ServerMessage, MAX_REQ_ID};
use crate::room::ops::ProducerOp;
use crate::room::RoomError;

/// How long a closing session waits for its handler to leave the room.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);

/// How long a resume token is valid (each `resumed` carries a new one).
const RESUME_TOKEN_TTL_SECS: u64 = 24 * 3600;

#[derive(Default)]
struct Flags {
    /// A join is being handled (queued or placed).
    joining: AtomicBool,
    /// The session joined a room here.
    joined: AtomicBool,
    /// The socket ended without a close frame (set before the handler is
    /// told to stop): the participant is kept for a resume.
    abrupt: AtomicBool,
}

/// The session's side of its handler.
pub struct Handle {
    tx: mpsc::UnboundedSender<String>,
    flags: Arc<Flags>,
    cancel: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    outbox: Outbox,
}

/// Starts the handler of one session.
pub fn spawn(deps: SessionDeps, outbox: Outbox, ended: mpsc::Sender<()>) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let flags = Arc::new(Flags::default());
    let (cancel, cancelled) = watch::channel(false);
    let task = tokio::spawn(run(
        deps,
        outbox.clone(),
        rx,
        flags.clone(),
        cancelled,
        ended,
    ));
    Handle {
        tx,
        flags,
        cancel,
        task,
        outbox,
    }
}

impl Handle {
    /// Whether the session joined a room here (or is joining one).
    pub fn joined(&self) -> bool {
        self.flags.joining.load(Ordering::SeqCst) || self.flags.joined.load(Ordering::SeqCst)
    }

    /// Hands a client message on; refused while a join is being handled.
    pub fn deliver(&self, text: String) {
        if self.flags.joining.load(Ordering::SeqCst) {
            self.outbox.send(ServerMessage::error(
                None,
                ErrorCode::OutOfOrder,
                "wait for the join to finish",
            ));
            return;
        }
        let _ = self.tx.send(text);
    }

    /// The session ended: a queued join is cancelled, a joined participant
    /// leaves, or, when its socket ended `abrupt`ly (no close frame), is kept
    /// for a resume. Bounded: a stuck node call does not keep the session
    /// forever.
    pub async fn close(self, abrupt: bool) {
        self.flags.abrupt.store(abrupt, Ordering::SeqCst);
        let _ = self.cancel.send(true);
        drop(self.tx);
        if tokio::time::timeout(CLOSE_LIMIT, self.task).await.is_err() {
            tracing::warn!("session handler did not finish in time");
        }
    }
}

/// The `reqId` of a message that could not be parsed, if it has one.
pub fn req_id_of(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("reqId").and_then(Value::as_str).map(str::to_string))
}

async fn run(
    deps: SessionDeps,
    outbox: Outbox,
    mut rx: mpsc::UnboundedReceiver<String>,
    flags: Arc<Flags>,
    mut cancelled: watch::Receiver<bool>,
    ended: mpsc::Sender<()>,
) {
    let mut joined: Option<(String, String)> = None;
    // The identity's place among its sessions here, until the leave is done.
    let mut identity: Option<IdentitySlot> = None;
    // The join's trace: every later request of the participant is a part of it.
    let mut join_trace: Option<trace::Context> = None;
    // The participant asked to leave (rather than its socket closing).
    let mut left = false;
    let metrics = deps.metrics.clone();
    while let Some(text) = rx.recv().await {
        let msg: ClientMessage = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                outbox.send(ServerMessage::error(
                    req_id_of(&text),
                    ErrorCode::BadRequest,
                    format!("cannot understand message: {e}"),
                ));
                continue;
            }
        };
        let req_id = msg.req_id().map(str::to_string);
        if req_id.as_ref().is_some_and(|r| r.len() > MAX_REQ_ID) {
            outbox.send(ServerMessage::error(
                None,
                ErrorCode::BadRequest,
                format!("reqId is limited to {MAX_REQ_ID} characters"),
            ));
            continue;
        }
        let joins = matches!(
            msg,
            ClientMessage::Join { .. } | ClientMessage::Resume { .. }
        );
        if joins && joined.is_some() {
            outbox.send(ServerMessage::error(
                req_id,
                ErrorCode::OutOfOrder,
                "already joined",
            ));
            continue;
        }
        if let ClientMessage::Resume {
            room, resume_token, ..
        } = msg
        {
            let span = info_span!("resume", room = %room, participant = tracing::field::Empty);
            // Boxed, like every large await here: the session's task stays
            // small while it waits for the next message (BENCHMARKS.md, 4).
            match Box::pin(resume(&deps, &outbox, &room, &resume_token, req_id.clone()))
                .instrument(span.clone())
                .await
            {
                Ok((peer, slot)) => {
                    identity = Some(slot);
                    metrics.resume_outcome("resumed");
                    metrics.participants.inc();
                    join_trace = Some(trace::context_of(&span));
                    joined = Some((room, peer));
                    flags.joined.store(true, Ordering::SeqCst);
                }
                Err(e) => {
                    if e.code == ErrorCode::NotFound {
                        metrics.resume_outcome("refused");
                    }
                    outbox.send(e.into_message(req_id));
                }
            }
            continue;
        }
        if let ClientMessage::Join {
            room,
            display_name,
            token,
            ..
        } = msg
        {
            flags.joining.store(true, Ordering::SeqCst);
            let started = Instant::now();
            let span = info_span!(
                "join",
                room = %room,
                participant = tracing::field::Empty,
                outcome = tracing::field::Empty,
            );
            let work = Box::pin(join(
                &deps,
                &outbox,
                room,
                display_name,
                token,
                req_id.clone(),
            ))
            .instrument(span.clone());
            let result = tokio::select! {
                r = work => Some(r),
                _ = cancelled.wait_for(|c| *c) => None,
            };
            match result {
                // The session ended while queued or being placed.
                None => {
                    span.record("outcome", "abandoned");
                    metrics.join_outcome("abandoned");
                    flags.joining.store(false, Ordering::SeqCst);
                    return;
                }
                Some(Ok((room, peer, msg, slot))) => {
                    identity = Some(slot);
                    span.record("outcome", "admitted");
                    metrics.join_outcome("admitted");
                    metrics
                        .join_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.participants.inc();
                    join_trace = Some(trace::context_of(&span));
                    joined = Some((room, peer));
                    flags.joined.store(true, Ordering::SeqCst);
                    outbox.send(msg);
                }
                Some(Err(e)) => {
                    let outcome = code_name(e.code);
                    span.record("outcome", outcome.as_str());
                    metrics.join_outcome(&outcome);
                    outbox.send(e.into_message(req_id))
                }
            }
            flags.joining.store(false, Ordering::SeqCst);
            continue;
        }
        let leave = matches!(msg, ClientMessage::Leave { .. });
        let span = info_span!("request", otel.name = msg.type_name());
        if let Some(cx) = &join_trace {
            trace::set_parent(&span, cx.clone());
        }
        let reply = match &joined {
            None => Err(RoomError::new(ErrorCode::OutOfOrder, "join first")),
            Some((room, peer)) => {
                Box::pin(request(&deps, &outbox, room, peer, msg))
                    .instrument(span)
                    .await
            }
        };
        outbox.send(match reply {
            Ok(data) => ServerMessage::Response { req_id, data },
            Err(e) => e.into_message(req_id),
        });
        if leave {
            left = true;
            let _ = ended.try_send(());
            break;
        }
    }
    if let Some((room, peer)) = joined {
        metrics.participants.dec();
        // A socket that stopped without a leave or a close: the participant
        // keeps its place and media for a resume, on this socket's successor.
        if !left
            && flags.abrupt.load(Ordering::SeqCst)
            && deps
                .rooms
                .detach(&room, &peer, &outbox, deps.limits.resume_grace)
                .await
        {
            metrics.resume_outcome("detached");
            return;
        }
        let span = info_span!("leave", room = %room);
        if let Some(cx) = join_trace {
            trace::set_parent(&span, cx);
        }
        Box::pin(deps.rooms.leave(&room, &peer, &outbox))
            .instrument(span)
            .await;
    }
    drop(identity);
}

/// An error code as the protocol spells it (`unavailable`), the outcome
/// label of a refused join.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "error".into())
}

/// A resume: token checked, the identity's session slot taken, the peer's
/// session taken up on `outbox` (which gets `resumed`). Returns the peer
/// and the slot.
async fn resume(
    deps: &SessionDeps,
    outbox: &Outbox,
    room: &str,
    resume_token: &str,
    req_id: Option<String>,
) -> Result<(String, IdentitySlot), RoomError> {
    let (peer, nonce, publish) = authorize_resume(deps, room, resume_token)?;
    tracing::Span::current().record("participant", peer.as_str());
    let Some(slot) = deps.limits.identities.enter(&peer) else {
        deps.metrics.refused("identity_cap");
        return Err(bad(
            ErrorCode::TooManySessions,
            &format!(
                "this identity already has {} sessions here; leave one first",
                deps.limits.identities.cap()
            ),
        ));
    };
    let token = deps
        .tokens
        .mint_resume(room, &peer, publish, &nonce, RESUME_TOKEN_TTL_SECS);
    deps.rooms
        .resume(room, &peer, &nonce, publish, outbox, req_id, token)
        .await?;
    Ok((peer, slot))
}

/// A join: token checked, queued, placed. Returns the room, the peer, the
/// `joined` message and the identity's session slot (held while joined).
async fn join(
    deps: &SessionDeps,
    outbox: &Outbox,
    room: String,
    display_name: String,
    token: String,
    req_id: Option<String>,
) -> Result<(String, String, ServerMessage, IdentitySlot), RoomError> {
    let claims = authorize(deps, &room, &display_name, &token)?;
    let Some(slot) = deps.limits.identities.enter(&claims.sub) else {
        deps.metrics.refused("identity_cap");
        return Err(bad(
            ErrorCode::TooManySessions,
            &format!(
                "this identity already has {} sessions here; leave one first",
                deps.limits.identities.cap()
            ),
        ));
    };
    let peer = claims.sub;
    tracing::Span::current().record("participant", peer.as_str());
    let queued = outbox.clone();
    let waited = Instant::now();
    let _admission = deps
        .queue
        .admit(move |position, estimated_wait_ms| {
            queued.send(ServerMessage::Queued {
                position,
                estimated_wait_ms,
            });
        })
        .instrument(info_span!("queue.wait"))
        .await
        .map_err(|e| match e {
            QueueError::Full { retry_after, .. } => {
                deps.metrics.refused("queue_full");
                RoomError::retry_later(ErrorCode::Unavailable, e.to_string(), retry_after)
            }
            QueueError::TimedOut(_) => RoomError::new(ErrorCode::Unavailable, e.to_string()),
        })?;
    deps.metrics
        .queue_wait_seconds
        .observe(waited.elapsed().as_secs_f64());
    let role = claims.role.unwrap_or_default();
    let span = info_span!("room.join");
    // Boxed: a join waiting in the queue holds 0.8 KB, not the 3.5 KB the
    // room's join needs while it runs (a surge queues a thousand).
    let j = Box::pin(deps.rooms.join(
        &room,
        &peer,
        &display_name,
        claims.publish,
        role,
        outbox.clone(),
    ))
    .instrument(span)
    .await?;
    let msg = ServerMessage::Joined {
        req_id,
        peer_id: peer.clone(),
        can_publish: claims.publish && role.on_stage(),
        role,
        audience_count: j.audience_count,
        router_rtp_capabilities: Value::clone(&j.router_rtp_capabilities),
        roster: j.roster,
        resume_token: deps.tokens.mint_resume(
            &room,
            &peer,
            claims.publish && role.on_stage(),
            &j.resume_nonce,
            RESUME_TOKEN_TTL_SECS,
        ),
    };
    Ok((room, peer, msg, slot))
}

/// Any request but `join`, of a joined participant.
async fn request(
    deps: &SessionDeps,
    outbox: &Outbox,
    room: &str,
    peer: &str,
    msg: ClientMessage,
) -> Result<Reply, RoomError> {
    let rooms = &deps.rooms;
    let done = Reply::Done(Done {});
    Ok(match msg {
        ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
            unreachable!("handled by the caller")
        }
        ClientMessage::ListAudience { cursor, limit, .. } => Reply::Peers(
            rooms
                .list_audience(room, peer, cursor.as_deref(), limit)
                .await?,
        ),
        ClientMessage::RaiseHand { raised, .. } => {
            rooms.raise_hand(room, peer, raised).await?;
            done
        }
        ClientMessage::Promote { peer_id, .. } => {
            rooms.promote(room, peer, &peer_id).await?;
            done
        }
        ClientMessage::Demote { peer_id, .. } => {
            rooms.demote(room, peer, &peer_id).await?;
            done
        }
        ClientMessage::ListPeers { cursor, limit, .. } => Reply::Peers(
            rooms
                .list_peers(room, peer, cursor.as_deref(), limit)
                .await?,
        ),
        ClientMessage::CreateTransport { direction, .. } => {
            let mut t = rooms
                .create_transport(room, peer, outbox, direction)
                .await?;
            t.ice_servers = deps.turn.as_ref().map(|turn| turn.ice_servers(peer));
            Reply::Transport(t)
        }
        ClientMessage::ConnectTransport {
            transport_id,
            dtls_parameters,
            ..
        } => {
            rooms
                .connect_transport(room, peer, &transport_id, &dtls_parameters)
                .await?;
            done
        }
        ClientMessage::Produce {
            transport_id,
            kind,
            rtp_parameters,
            source,
            ..
        } => {
            let source = if source.is_empty() {
                kind.name().to_string()
            } else {
                source
            };
            if !names::valid(&source, names::MAX_SOURCE) {
                return Err(bad(
                    ErrorCode::BadRequest,
                    "source is limited to 32 printable characters",
                ));
            }
            Reply::Producer(
                rooms
                    .produce(
                        room,
                        peer,
                        outbox,
                        &transport_id,
                        kind,
                        &rtp_parameters,
                        &source,
                    )
                    .await?,
            )
        }
        ClientMessage::Consume {
            producer_id,
            rtp_capabilities,
            ..
        } => Reply::Consumer(
            rooms
                .consume(room, peer, outbox, &producer_id, &rtp_capabilities)
                .await?,
        ),
        ClientMessage::ResumeConsumer { consumer_id, .. } => {
            rooms
                .consumer_op(room, peer, &consumer_id, ConsumerCall::Resume)
                .await?;
            done
        }
        ClientMessage::PauseConsumer { consumer_id, .. } => {
            rooms
                .consumer_op(room, peer, &consumer_id, ConsumerCall::Pause)
                .await?;
            done
        }
        ClientMessage::CloseConsumer { consumer_id, .. } => {
            rooms
                .consumer_op(room, peer, &consumer_id, ConsumerCall::Close)
                .await?;
            done
        }
        ClientMessage::SetPreferredLayers {
            consumer_id,
            spatial_layer,
            temporal_layer,
            ..
        } => {
            rooms
                .consumer_op(
                    room,
                    peer,
                    &consumer_id,
                    ConsumerCall::Layers {
                        spatial: spatial_layer,
                        temporal: temporal_layer,
                    },
                )
                .await?;
            done
        }
        ClientMessage::CloseProducer { producer_id, .. } => {
            rooms
                .producer_op(room, peer, &producer_id, ProducerOp::Close)
                .await?;
            done
        }
        ClientMessage::PauseProducer { producer_id, .. } => {
            rooms
                .producer_op(room, peer, &producer_id, ProducerOp::Pause)
                .await?;
            done
        }
        ClientMessage::ResumeProducer { producer_id, .. } => {
            rooms
                .producer_op(room, peer, &producer_id, ProducerOp::Resume)
                .await?;
            done
        }
        ClientMessage::RestartIce { transport_id, .. } => {
            let mut ice = rooms.restart_ice(room, peer, &transport_id).await?;
            // The browser may allocate anew: credentials valid from now.
            ice.ice_servers = deps.turn.as_ref().map(|turn| turn.ice_servers(peer));
            Reply::Ice(ice)
        }
        ClientMessage::Leave { .. } => {
            debug!(room = %room, peer = %peer, "leave requested");
            done
        }
    })
}
