//! Join path, first hop: one browser's WebSocket, and the only code that
//! touches it. A writer task drains the client's [`Outbox`] onto the socket in
//! batches; the read loop checks sizes and hands each message on, to this
//! coordinator's [`handler`](super::handler) or, once the first `join` turned
//! out to be for a room another coordinator hosts, to the
//! [`proxy`](super::proxy) towards it; a `join` is authorized first (token,
//! names) so that a refused one costs no Redis claim. Every message spends
//! from the session's budget (`crate::limits`): over it, the message is
//! refused unprocessed with a retry hint, and a session far over it for long
//! is closed. The session cannot tell which: both
//! receive the client's text and answer through the outbox. When either half
//! ends, the other is stopped and the participant leaves; when the socket
//! stopped without a close frame, the participant is kept for a `resume`
//! instead (`handler`), and a relay abandons the owner's socket the same way.

use tokio::io::WriteHalf;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::owners::Owner;
use super::ws::{self, Incoming, ReadError};
use super::{authorize, handler, proxy, SessionDeps};
use crate::limits::Budget;
use crate::protocol::{
    join_room, Control, ErrorCode, Outbox, Outgoing, ServerMessage, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};

/// Most messages written to a socket in one write.
const SEND_BATCH: usize = 64;

/// A batch is written once it holds this many bytes.
const SEND_BATCH_BYTES: usize = 16 * 1024;

/// The connection a browser's upgrade hands over.
pub type Io = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// How long events (not answers) may wait for more to share their write.
const EVENT_COALESCE: std::time::Duration = std::time::Duration::from_millis(20);

/// How long the last messages (the reply to `leave`) may take to go out.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes what the outbox receives, in batches: whatever is queued goes out
/// with one write, and a batch of events only (no answer in it) waits up to
/// [`EVENT_COALESCE`] for more. A busy room announces every join to
/// everyone: one write per event was most of a surge's cost. The batch holds
/// the messages themselves, not copies (`ws::Writer`), and is freed once
/// written.
async fn write(
    mut ws: ws::Writer<WriteHalf<Io>>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    sent: prometheus_client::metrics::counter::Counter,
) {
    let mut close_code = ws::code::NORMAL;
    'send: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut batch = 0;
        let mut answer = false;
        let hold_until = tokio::time::Instant::now() + EVENT_COALESCE;
        while let Some(msg) = next.take() {
            let (event, ends) = (msg.is_event(), msg.ends_session());
            match msg.into_text() {
                Ok(text) => {
                    sent.inc();
                    ws.text(text);
                }
                Err(Control::Pong(payload)) => ws.pong(&payload),
                Err(Control::Close(code)) => close_code = code,
            }
            if ends {
                break 'send;
            }
            answer |= !event;
            batch += 1;
            if batch >= SEND_BATCH || ws.batched() >= SEND_BATCH_BYTES {
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
        if ws.flush().await.is_err() {
            return;
        }
    }
    // What is batched goes out before the close frame.
    let _ = ws.close(close_code).await;
}

/// Serves one socket until it closes.
pub async fn serve(io: Io, deps: SessionDeps) {
    let metrics = deps.metrics.clone();
    metrics.ws_sessions.inc();
    let direction = |direction| {
        metrics
            .ws_messages
            .get_or_create_owned(&crate::metrics::Direction { direction })
    };
    let (sent, received) = (direction("out"), direction("in"));
    let (read, write_half) = tokio::io::split(io);
    // A little above the protocol limit so that the session can answer
    // "too large" instead of the socket closing.
    let mut stream = ws::Reader::new(read, MAX_MESSAGE_BYTES * 2);
    let (outbox, rx) = Outbox::channel();
    outbox.send(ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
    });
    let mut writer = tokio::spawn(write(ws::Writer::new(write_half), rx, sent));
    let mut writer_done = false;
    // Either side of the session (the handler after `leave`, the proxy when
    // the owner's socket closes) ends it through this.
    let (ended_tx, mut ended) = mpsc::channel::<()>(1);
    let local = handler::spawn(deps.clone(), outbox.clone(), ended_tx.clone());
    let mut remote: Option<proxy::Upstream> = None;
    // Every message spends from the budget; refusals spend from the strikes,
    // and a session out of strikes is closed.
    let mut budget = Budget::new(deps.limits.per_session);
    let mut strikes = Budget::new(deps.limits.per_session);
    // How the session ends: a client that closed its socket (a close frame)
    // or was closed by us has left; one whose socket just stopped (no close
    // frame: a network change, a coordinator on the way that died) may
    // resume, and its participant is kept for that (`handler`).
    let mut abrupt = false;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = &mut writer => {
                writer_done = true;
                abrupt = true;
                break;
            }
            _ = ended.recv() => break,
        };
        let text = match msg {
            Ok(Incoming::Text(t)) => {
                received.inc();
                t
            }
            Ok(Incoming::Binary) => {
                outbox.send(ServerMessage::error(
                    None,
                    ErrorCode::BadRequest,
                    "binary messages are not part of the protocol",
                ));
                continue;
            }
            Ok(Incoming::Ping(payload)) => {
                outbox.control(Control::Pong(payload.into()));
                continue;
            }
            Ok(Incoming::Close) => break,
            Err(ReadError::Gone) => {
                abrupt = true;
                break;
            }
            Err(ReadError::Protocol(code, why)) => {
                // A client that breaks the WebSocket protocol is closed
                // with the reason's code; it has left.
                debug!(code, why, "WebSocket protocol error; closing");
                outbox.control(Control::Close(code));
                break;
            }
        };
        if let Err(after) = budget.spend() {
            metrics.refused("session_rate");
            if strikes.spend().is_err() {
                // Far over its budget for long: this is no browser.
                outbox.send(ServerMessage::error(
                    None,
                    ErrorCode::RateLimited,
                    "too many messages for too long; closing",
                ));
                break;
            }
            outbox.send(ServerMessage::retry_later(
                handler::req_id_of(&text),
                ErrorCode::RateLimited,
                "too many messages; this one was not processed",
                after,
            ));
            continue;
        }
        if text.len() > MAX_MESSAGE_BYTES {
            outbox.send(ServerMessage::error(
                None,
                ErrorCode::TooLarge,
                format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
            ));
            continue;
        }
        if let Some(up) = remote.as_mut() {
            if up.send(text.as_str()).await.is_err() {
                break;
            }
            continue;
        }
        // The first join decides where this session's room is served.
        if !local.joined() {
            if let Some(room) = join_room(&text) {
                // Refused before any work: no claim in Redis, no relay.
                if let Err(e) = authorize::authorize_text(&deps, &text) {
                    metrics.join_outcome(&handler::code_name(e.code));
                    outbox.send(e.into_message(handler::req_id_of(&text)));
                    continue;
                }
                // The first join's work, boxed: the session's task stays small
                // for the rest of its life (BENCHMARKS.md, 4).
                let mut owner = Box::pin(deps.owners.claim(&room)).await;
                // An owner that cannot be reached died (or is cut off): the
                // room is taken over here and rebuilt from the nodes, once;
                // another coordinator that took it over first is its owner.
                let mut took_over = false;
                while let Owner::Remote(addr) = &owner {
                    match Box::pin(proxy::open(
                        addr,
                        text.as_str(),
                        &deps.limits.relay_key,
                        outbox.clone(),
                        ended_tx.clone(),
                    ))
                    .await
                    {
                        Ok(up) => {
                            remote = Some(up);
                            break;
                        }
                        Err(e) if !took_over => {
                            warn!(owner = %addr, error = %e, "room owner unreachable; taking the room over");
                            took_over = true;
                            owner = Box::pin(deps.owners.take_over(&room, addr)).await;
                            if owner == Owner::Local {
                                if let Err(e) =
                                    Box::pin(deps.rooms.take_over(&room, deps.limits.resume_grace))
                                        .await
                                {
                                    warn!(room = %room, error = %e, "room not rebuilt");
                                }
                            }
                        }
                        Err(e) => {
                            warn!(owner = %addr, error = %e, "room owner unreachable");
                            outbox.send(ServerMessage::error(
                                handler::req_id_of(&text),
                                ErrorCode::Unavailable,
                                "the room's coordinator is unreachable; retry",
                            ));
                            break;
                        }
                    }
                }
                if owner != Owner::Local {
                    continue;
                }
            }
        }
        local.deliver(text);
    }
    // A join still queued is cancelled; a joined participant leaves, or is
    // kept for a resume when the socket just stopped.
    Box::pin(local.close(abrupt)).await;
    // A proxied session: closing the owner's socket makes the participant
    // leave there; abandoning it (no close frame) keeps it for a resume.
    if let Some(up) = remote.take() {
        if abrupt {
            up.abandon();
        } else {
            Box::pin(up.close()).await;
        }
    }
    drop(outbox);
    if !writer_done {
        let _ = tokio::time::timeout(FLUSH_LIMIT, writer).await;
    }
    metrics.ws_sessions.dec();
}
