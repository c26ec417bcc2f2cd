//! Join path, first step: one browser's WebSocket. A send task writes what
//! the conference tells this client; the receive loop parses, checks order
//! and ownership, and calls the conference. Bad input gets an `error` to this
//! client only; when either half ends, the other is stopped and the
//! participant leaves.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use super::owners::{Owner, RoomOwners};
use super::protocol::{
    client_ws_config, ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use crate::auth::{TokenError, TokenKey};
use crate::conference::{Conference, ConferenceError, ConsumerOp, ProducerOp};
use crate::join::queue::JoinQueue;

/// Most messages written to a socket before it is flushed.
const SEND_BATCH: usize = 64;

/// How long events (not answers) may wait for more to share their write.
const EVENT_COALESCE: std::time::Duration = std::time::Duration::from_millis(20);

/// What a session needs.
#[derive(Clone)]
pub struct SessionDeps {
    /// The rooms.
    pub conference: Arc<Conference>,
    /// Verifies join tokens.
    pub tokens: TokenKey,
    /// Admission of joins.
    pub queue: Arc<JoinQueue>,
    /// Which coordinator hosts each room.
    pub owners: RoomOwners,
}

struct Joined {
    room: String,
    peer: String,
}

fn error(req_id: Option<String>, code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        req_id,
        code,
        message: message.into(),
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Serves one socket until it closes.
pub async fn serve(socket: WebSocket, deps: SessionDeps) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerMessage>();
    let _ = tx.send(ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
    });
    let mut send_task = tokio::spawn(async move {
        // Written in batches: whatever is queued goes out with one flush
        // (one write), and a batch of events only (no answer in it) waits up
        // to EVENT_COALESCE for more. A busy room announces every join to
        // everyone: one write per event was most of a surge's cost.
        'send: while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            let mut batch = 0;
            let mut answer = false;
            let hold_until = tokio::time::Instant::now() + EVENT_COALESCE;
            while let Some(msg) = next.take() {
                let text = serde_json::to_string(&msg).expect("server messages serialize");
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    break 'send;
                }
                if msg.ends_session() {
                    let _ = sink.flush().await;
                    break 'send;
                }
                answer |= !msg.is_event();
                batch += 1;
                if batch >= SEND_BATCH {
                    break;
                }
                next = match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(_) if answer => None,
                    Err(_) => tokio::time::timeout_at(hold_until, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut joined: Option<Joined> = None;
    // Whether the send task already ended (a JoinHandle must not be awaited twice).
    let mut send_done = false;
    // Set when the room is hosted by another coordinator: client messages go
    // there verbatim, and its messages come back through `tx`.
    let mut upstream: Option<Upstream> = None;
    let (upstream_closed_tx, mut upstream_closed) = mpsc::channel::<()>(1);
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = &mut send_task => {
                send_done = true;
                break;
            }
            _ = upstream_closed.recv() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                let _ = tx.send(error(
                    None,
                    ErrorCode::BadRequest,
                    "binary messages are not part of the protocol",
                ));
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
        };
        if text.len() > MAX_MESSAGE_BYTES {
            let _ = tx.send(error(
                None,
                ErrorCode::TooLarge,
                format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
            ));
            continue;
        }
        if let Some(up) = upstream.as_mut() {
            if up
                .send(tokio_tungstenite::tungstenite::Message::Text(
                    text.as_str().into(),
                ))
                .await
                .is_err()
            {
                break;
            }
            continue;
        }
        let parsed: ClientMessage = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                let req_id = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("reqId").and_then(Value::as_str).map(str::to_string));
                let _ = tx.send(error(
                    req_id,
                    ErrorCode::BadRequest,
                    format!("cannot understand message: {e}"),
                ));
                continue;
            }
        };
        let req_id = parsed.req_id().map(str::to_string);
        if req_id.as_ref().is_some_and(|r| r.len() > 64) {
            let _ = tx.send(error(
                None,
                ErrorCode::BadRequest,
                "reqId is limited to 64 characters",
            ));
            continue;
        }
        if let ClientMessage::Join { room, .. } = &parsed {
            if joined.is_none() {
                if let Owner::Remote(owner) = deps.owners.claim(room).await {
                    match proxy_to(
                        &owner,
                        text.as_str(),
                        tx.clone(),
                        upstream_closed_tx.clone(),
                    )
                    .await
                    {
                        Ok(up) => upstream = Some(up),
                        Err(e) => {
                            tracing::warn!(%owner, error = %e, "room owner unreachable");
                            let _ = tx.send(error(
                                req_id,
                                ErrorCode::Unavailable,
                                "the room's coordinator is unreachable; retry",
                            ));
                        }
                    }
                    continue;
                }
            }
        }
        let leave = matches!(parsed, ClientMessage::Leave { .. });
        let is_join = matches!(parsed, ClientMessage::Join { .. });
        let reply = {
            let work = handle(&deps, &tx, &mut joined, parsed);
            if is_join {
                // A join may wait in the queue: keep reading so that a client
                // who goes away frees its place, and refuse anything else meanwhile.
                tokio::pin!(work);
                let mut closed = false;
                let reply = loop {
                    tokio::select! {
                        r = &mut work => break Some(r),
                        m = stream.next() => match m {
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => { closed = true; break None; }
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                            Some(Ok(_)) => {
                                let _ = tx.send(error(None, ErrorCode::OutOfOrder, "wait for the join to finish"));
                            }
                        },
                    }
                };
                if closed {
                    break;
                }
                reply.expect("set when not closed")
            } else {
                work.await
            }
        };
        let _ = tx.send(match reply {
            Ok(Reply::Message(msg)) => msg,
            Ok(Reply::Data(data)) => ServerMessage::Response { req_id, data },
            Err(e) => error(req_id, e.code, e.message),
        });
        if leave {
            break;
        }
    }
    if let Some(j) = joined.take() {
        deps.conference.leave(&j.room, &j.peer, &tx).await;
    }
    // A proxied session: closing the owner's socket makes the participant leave there.
    if let Some(mut up) = upstream.take() {
        let _ = up.close().await;
    }
    drop(tx);
    if !send_done {
        // Let the last messages (the reply to `leave`) go out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send_task).await;
    }
}

/// What a request is answered with.
enum Reply {
    /// A `response` carrying this data.
    Data(Value),
    /// A message of its own (`joined`).
    Message(ServerMessage),
}

async fn handle(
    deps: &SessionDeps,
    tx: &mpsc::UnboundedSender<ServerMessage>,
    joined: &mut Option<Joined>,
    msg: ClientMessage,
) -> Result<Reply, ConferenceError> {
    let c = &deps.conference;
    let bad = |code, m: &str| {
        Err(ConferenceError {
            code,
            message: m.to_string(),
        })
    };
    if let ClientMessage::Join {
        req_id,
        room,
        display_name,
        token,
    } = msg
    {
        if joined.is_some() {
            return bad(ErrorCode::OutOfOrder, "already joined");
        }
        if !valid_name(&room, 128) || !valid_name(&display_name, 64) {
            return bad(
                ErrorCode::BadRequest,
                "room and displayName must be 1 to 128 / 64 printable characters",
            );
        }
        let claims = match deps.tokens.verify(&token) {
            Ok(c) => c,
            Err(TokenError::Expired) => return bad(ErrorCode::Unauthorized, "token expired"),
            Err(_) => return bad(ErrorCode::Unauthorized, "invalid token"),
        };
        if claims.room != room {
            return bad(ErrorCode::Unauthorized, "the token is for another room");
        }
        let peer = claims.sub.clone();
        let queued_tx = tx.clone();
        let _admission = deps
            .queue
            .admit(move |position, estimated_wait_ms| {
                let _ = queued_tx.send(ServerMessage::Queued {
                    position,
                    estimated_wait_ms,
                });
            })
            .await
            .map_err(|e| ConferenceError {
                code: ErrorCode::Unavailable,
                message: e.to_string(),
            })?;
        let span = info_span!("join", room = %room, participant = %peer);
        let j = c
            .join(&room, &peer, &display_name, claims.publish, tx.clone())
            .instrument(span)
            .await?;
        *joined = Some(Joined {
            room,
            peer: peer.clone(),
        });
        return Ok(Reply::Message(ServerMessage::Joined {
            req_id,
            peer_id: peer,
            can_publish: claims.publish,
            router_rtp_capabilities: j.router_rtp_capabilities,
            peers: j.peers,
        }));
    }
    let Some(Joined { room, peer }) = joined.as_ref() else {
        return bad(ErrorCode::OutOfOrder, "join first");
    };
    let data = match msg {
        ClientMessage::Join { .. } => unreachable!("handled above"),
        ClientMessage::CreateTransport { direction, .. } => {
            c.create_transport(room, peer, &direction).await?
        }
        ClientMessage::ConnectTransport {
            transport_id,
            dtls_parameters,
            ..
        } => {
            c.connect_transport(room, peer, &transport_id, &dtls_parameters)
                .await?;
            json!({})
        }
        ClientMessage::Produce {
            transport_id,
            kind,
            rtp_parameters,
            source,
            ..
        } => {
            let source = if source.is_empty() {
                kind.clone()
            } else {
                source
            };
            if !valid_name(&source, 32) {
                return bad(
                    ErrorCode::BadRequest,
                    "source is limited to 32 printable characters",
                );
            }
            json!({ "id": c.produce(room, peer, &transport_id, &kind, &rtp_parameters, &source).await? })
        }
        ClientMessage::Consume {
            producer_id,
            rtp_capabilities,
            ..
        } => {
            c.consume(room, peer, &producer_id, &rtp_capabilities)
                .await?
        }
        ClientMessage::ResumeConsumer { consumer_id, .. } => {
            c.consumer_op(room, peer, &consumer_id, ConsumerOp::Resume)
                .await?;
            json!({})
        }
        ClientMessage::PauseConsumer { consumer_id, .. } => {
            c.consumer_op(room, peer, &consumer_id, ConsumerOp::Pause)
                .await?;
            json!({})
        }
        ClientMessage::CloseConsumer { consumer_id, .. } => {
            c.consumer_op(room, peer, &consumer_id, ConsumerOp::Close)
                .await?;
            json!({})
        }
        ClientMessage::SetPreferredLayers {
            consumer_id,
            spatial_layer,
            temporal_layer,
            ..
        } => {
            c.consumer_op(
                room,
                peer,
                &consumer_id,
                ConsumerOp::Layers {
                    spatial: spatial_layer,
                    temporal: temporal_layer,
                },
            )
            .await?;
            json!({})
        }
        ClientMessage::CloseProducer { producer_id, .. } => {
            c.producer_op(room, peer, &producer_id, ProducerOp::Close)
                .await?;
            json!({})
        }
        ClientMessage::PauseProducer { producer_id, .. } => {
            c.producer_op(room, peer, &producer_id, ProducerOp::Pause)
                .await?;
            json!({})
        }
        ClientMessage::ResumeProducer { producer_id, .. } => {
            c.producer_op(room, peer, &producer_id, ProducerOp::Resume)
                .await?;
            json!({})
        }
        ClientMessage::RestartIce { transport_id, .. } => {
            c.restart_ice(room, peer, &transport_id).await?
        }
        ClientMessage::Leave { .. } => {
            debug!(room = %room, peer = %peer, "leave requested");
            json!({})
        }
    };
    Ok(Reply::Data(data))
}

type Upstream = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Message,
>;

/// Opens a session on the room's owner, sends it the client's `join`, and
/// relays the owner's messages to this client until either side closes.
async fn proxy_to(
    owner: &str,
    join_text: &str,
    tx: mpsc::UnboundedSender<ServerMessage>,
    closed: mpsc::Sender<()>,
) -> Result<Upstream, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::Message as Up;
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{owner}/ws"),
        Some(client_ws_config()),
        false,
    )
    .await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Up::Text(join_text.into())).await?;
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Up::Text(text) = msg else { continue };
            match serde_json::from_str::<ServerMessage>(&text) {
                // The client had its own welcome from this coordinator.
                Ok(ServerMessage::Welcome { .. }) => {}
                Ok(m) => {
                    if tx.send(m).is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable message from the room's owner"),
            }
        }
        let _ = closed.send(()).await;
    });
    Ok(sink)
}
