//! Join path, first hop: browser signalling over WebSocket at `/ws`.
//! [`session`] serves one socket (the only code touching it) and hands each
//! message to [`handler`] (rooms hosted here) or [`proxy`] (rooms hosted by
//! another coordinator, as [`owners`] says). The wire types are
//! `crate::protocol`.

pub mod handler;
pub mod owners;
pub mod proxy;
pub mod session;

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
}
