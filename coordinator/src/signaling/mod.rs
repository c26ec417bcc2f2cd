//! Join path, first hop: browser signalling over WebSocket at `/ws`.
//! [`session`] serves one socket (the only code touching it), checks a first
//! `join` or `resume` with [`authorize`] and hands each message to [`handler`] (rooms hosted here) or [`proxy`] (rooms hosted by
//! another coordinator, as [`owners`] says). The wire types are
//! `crate::protocol`.

pub mod authorize;
pub mod handler;
pub mod owners;
pub mod proxy;
pub mod session;
pub mod ws;

use std::sync::Arc;

use crate::auth::TokenKey;
use crate::join::queue::JoinQueue;
use crate::room::Rooms;

/// What a session needs.
#[derive(Clone)]
pub struct SessionDeps {
    /// The rooms hosted here.
    pub rooms: Arc<Rooms>,
    /// Verifies join tokens.
    pub tokens: TokenKey,
    /// Admission of joins.
    pub queue: Arc<JoinQueue>,
    /// Which coordinator hosts each room.
    pub owners: owners::RoomOwners,
    /// Counts sessions, messages and joins.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-session and per-identity limits, the relay key.
    pub limits: Arc<SessionLimits>,
    /// TURN relays and their credentials, when configured.
    pub turn: Option<Arc<crate::turn::Turn>>,
}

/// The limits a session is held to (`crate::limits`).
pub struct SessionLimits {
    /// Messages per session.
    pub per_session: crate::limits::Rate,
    /// Sessions per identity.
    pub identities: crate::limits::Identities,
    /// What this coordinator sends as [`crate::limits::RELAY_HEADER`] when it
    /// relays a session to the room's owner.
    pub relay_key: String,
    /// How long a session that ended without a leave is kept for a resume.
    pub resume_grace: std::time::Duration,
}
