//! Browser signalling, version 2 (presence as coalesced lists and a paged
//! roster; `docs/signalling.md` says what changed from 1): every message of `/ws`, both directions,
//! with typed fields (direction, kind) and typed reply payloads, and the
//! [`Outbox`] through which everything reaches one client's socket: the
//! client's messages in `client`, the server's in `server`, the queue in
//! `outbox`.
//! `docs/signalling.md` documents the same list for client authors; the web
//! client mirrors these types. Depends on nothing else in the crate.
//!
//! Messages are JSON objects tagged by `type`. Requests from the client may
//! carry a `reqId` (any string up to 64 characters); the reply to a request is
//! a `response` with the same `reqId`, holding either `data` or `error`.

mod client;
mod outbox;
mod server;

pub use client::{join_room, ClientMessage};
pub use outbox::{Control, Outbox, Outgoing};
pub use server::*;

use serde::{Deserialize, Serialize};

/// Protocol version, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest accepted client message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest `reqId`, in bytes.
pub const MAX_REQ_ID: usize = 64;

/// The WebSocket read buffer of a client of this protocol (tungstenite's;
/// browsers' sockets are served by `signaling::ws`, which keeps none).
/// tungstenite zero-fills its whole read buffer before every read: at its
/// default of 128 KiB that memset was 42 % of the coordinator's CPU in a
/// 1000-person surge (BENCHMARKS.md, 1). Signalling messages are small;
/// larger ones still arrive (the buffer grows).
pub const WS_READ_BUFFER_BYTES: usize = 1024;

/// WebSocket settings for a client of this protocol (a coordinator proxying
/// to a room's owner, the load generator): the small read buffer above.
pub fn client_ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
}

/// What a participant is in its room (the join token's `role`; none: an
/// ordinary meeting participant). In an event the audience receives the
/// stage (hosts and speakers) and does not appear in its roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A meeting participant (no role in the token).
    #[default]
    Member,
    /// On stage; sees raised hands, promotes and demotes.
    Host,
    /// On stage.
    Speaker,
    /// Watches the stage; may raise a hand.
    Audience,
}

impl Role {
    /// On the stage (or in a meeting): in the roster, may publish if the
    /// token allows.
    pub fn on_stage(self) -> bool {
        self != Role::Audience
    }
}

/// A transport's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The browser sends (produces) on it.
    Send,
    /// The browser receives (consumes) on it.
    Recv,
}

impl Direction {
    /// As the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Recv => "recv",
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl MediaKind {
    /// As the protocol spells it: the `source` of a producer that gave none.
    pub fn name(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}
