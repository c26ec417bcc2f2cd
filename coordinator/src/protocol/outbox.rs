//! What goes to one client's socket, and the queue every part of the
//! coordinator that talks to that client writes to.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use super::ServerMessage;

/// What goes to a client's socket.
#[derive(Debug)]
pub enum Outgoing {
    /// A message of this coordinator's (boxed: a session's queue allocates
    /// its slots in blocks of 32, and a message is 200 bytes inline).
    Message(Box<ServerMessage>),
    /// A message the room's owner (another coordinator) sent, passed on as it
    /// came, with what the writer needs to know of it.
    Relayed {
        /// The JSON text.
        text: String,
        /// An event (may wait a little to share a write).
        event: bool,
        /// The session ends after it.
        ends_session: bool,
    },
    /// An event serialized once for many clients (a room's presence lists
    /// and broadcasts): every queue holds the same bytes, and the socket
    /// writer hands them on without a copy.
    Shared(Utf8Bytes),
    /// A WebSocket control frame: not a protocol message.
    Control(Control),
}

/// A WebSocket control frame the session asks its writer for.
#[derive(Debug)]
pub enum Control {
    /// The answer to a ping (its payload).
    Pong(Box<[u8]>),
    /// Close the socket with this code (RFC 6455, 7.4); the session ends.
    Close(u16),
}

impl Outgoing {
    /// The text to write; a control frame is the writer's to make.
    pub fn into_text(self) -> Result<Utf8Bytes, Control> {
        match self {
            Self::Message(m) => Ok(serde_json::to_string(&*m)
                .expect("server messages serialize")
                .into()),
            Self::Relayed { text, .. } => Ok(text.into()),
            Self::Shared(text) => Ok(text),
            Self::Control(c) => Err(c),
        }
    }

    /// An event (rather than an answer).
    pub fn is_event(&self) -> bool {
        match self {
            Self::Message(m) => m.is_event(),
            Self::Relayed { event, .. } => *event,
            Self::Shared(_) => true,
            Self::Control(_) => false,
        }
    }

    /// The session ends after it.
    pub fn ends_session(&self) -> bool {
        match self {
            Self::Message(m) => m.ends_session(),
            Self::Relayed { ends_session, .. } => *ends_session,
            Self::Shared(_) => false,
            Self::Control(c) => matches!(c, Control::Close(_)),
        }
    }
}

/// One client's queue of outgoing messages: every part of the coordinator
/// that talks to a client (its session's answers, its room's events, node
/// events about its transports) sends here; the session's writer drains it.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::UnboundedSender<Outgoing>);

impl Outbox {
    /// An outbox and the receiving end its session's writer reads.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Queues a message (a client already gone is not an error).
    pub fn send(&self, msg: ServerMessage) {
        let _ = self.0.send(Outgoing::Message(Box::new(msg)));
    }

    /// Queues an event serialized once for many clients.
    pub fn send_shared(&self, text: Utf8Bytes) {
        let _ = self.0.send(Outgoing::Shared(text));
    }

    /// Queues a control frame (a pong, a close).
    pub fn control(&self, frame: Control) {
        let _ = self.0.send(Outgoing::Control(frame));
    }

    /// Queues a relayed message; false once the client is gone.
    pub fn relay(&self, text: String, event: bool, ends_session: bool) -> bool {
        self.0
            .send(Outgoing::Relayed {
                text,
                event,
                ends_session,
            })
            .is_ok()
    }

    /// Whether both are the same client's (a session replaced by a re-join
    /// has another outbox).
    pub fn same(&self, other: &Outbox) -> bool {
        self.0.same_channel(&other.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_queued_message_is_small() {
        // 32 slots per block of a session's queue, allocated with the
        // session: 200-byte slots were 6.6 KiB per idle browser.
        assert!(std::mem::size_of::<super::Outgoing>() <= 40);
    }
}
