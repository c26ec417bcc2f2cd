//! Join path, first step: browser signalling over WebSocket at `/ws`.
//! [`protocol`] is every message (documented in docs/signalling.md);
//! [`session`] serves one socket.

pub mod owners;
pub mod protocol;
pub mod session;
