//! Join path: join queue -> **room join** -> placement / media nodes. A
//! participant admitted by the queue enters its room here: placed (registry
//! and node calls) without the room's lock, then added under it; and the
//! roster pages (`listPeers`) it reads afterwards. Owns nothing beyond the
//! join in flight ([`InFlight`]); calls `crate::placement`, the room's state
//! and `media::pipes` for a router new to the room.
//!
//! Lock order (room/mod.rs): the room's lock, then its `presence::Joining`
//! set (a leaf); the room's lock is held across node calls only to pipe the
//! room's producers to a router new to the room.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use tracing::info;

use super::state::RoomState;
use super::{Res, RoomError, Rooms};
use crate::protocol::{ErrorCode, Outbox, PeerPage, Role, ServerMessage, PEER_PAGE_MAX};

/// A page cursor (`nextCursor`) as the room numbers its peers.
fn cursor(c: Option<&str>) -> Res<Option<u64>> {
    c.map(|c| {
        c.parse::<u64>()
            .map_err(|_| RoomError::new(ErrorCode::BadRequest, "cursor: a nextCursor of this room"))
    })
    .transpose()
}

/// A page size asked for, within 1..=`max` (`max` when not asked).
pub(super) fn page_size(limit: Option<u32>, max: usize) -> usize {
    limit.map_or(max, |l| (l as usize).clamp(1, max))
}

/// What a successful join returns.
pub struct Joined {
    /// Router RTP capabilities (shared: copied into the `joined` message
    /// after the room's lock is released).
    pub router_rtp_capabilities: std::sync::Arc<Value>,
    /// The first page of the peers already there, in join order.
    pub roster: PeerPage,
    /// An event's audience count.
    pub audience_count: usize,
    /// What the peer's resume token must name.
    pub resume_nonce: String,
}

/// A join in flight in a room (`presence::Joining`): ended by
/// [`InFlight::done`] once the peer is added, or, when the join fails or is
/// abandoned (its future dropped), on drop, which then closes the room if
/// nobody else is in it.
struct InFlight {
    rooms: Arc<Rooms>,
    room_id: String,
    peer_id: String,
    joining: super::presence::Joining,
}

impl InFlight {
    /// The peer is in the room (called under the room's lock).
    fn done(mut self) {
        self.joining.leave(&self.peer_id);
        self.peer_id.clear();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.peer_id.is_empty() {
            return;
        }
        self.joining.leave(&self.peer_id);
        let (rooms, room_id) = (self.rooms.clone(), std::mem::take(&mut self.room_id));
        tokio::spawn(async move { rooms.close_if_empty(&room_id).await });
    }
}

impl Rooms {
    /// Places `peer_id` in `room_id` (creating or finding its router) and
    /// adds it to the room (its presence goes out with the next flush). The
    /// same identity joining again (a re-join after a network change whose
    /// old socket the server has not seen close yet, or a second tab)
    /// replaces the old session, which is told so.
    ///
    /// Placement (registry and node calls) runs without the room's lock, so
    /// joins into one room do not queue behind each other's Redis round
    /// trips: under the lock the join is noted in flight (the room does not
    /// close meanwhile) and the routers known are copied; placement follows;
    /// then the lock is taken again, a router new to the room gets the
    /// room's producers piped to it (under the lock, as before), and the
    /// peer is added. Per join, the room does O(log N) work and the joiner
    /// gets one page of the roster.
    pub async fn join(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        display_name: &str,
        can_publish: bool,
        role: Role,
        outbox: Outbox,
    ) -> Res<Joined> {
        let (state, known, in_flight) = loop {
            let mut room = self.lock_room(room_id).await;
            if let Ok(old) = room.peer(peer_id) {
                old.outbox.send(ServerMessage::error(
                    None,
                    ErrorCode::Replaced,
                    "this identity joined the room on another connection",
                ));
                let gone = room.remove_peer(peer_id).expect("there");
                drop(room);
                Box::pin(self.finish_peer(room_id, peer_id, gone)).await;
                continue;
            }
            if !room.joining.enter(peer_id) {
                return Err(RoomError::retry_later(
                    ErrorCode::Unavailable,
                    "this identity is joining this room on another connection",
                    std::time::Duration::from_millis(500),
                ));
            }
            let in_flight = InFlight {
                rooms: self.clone(),
                room_id: room_id.to_string(),
                peer_id: peer_id.to_string(),
                joining: room.joining.clone(),
            };
            break (
                OwnedMutexGuard::mutex(&room).clone(),
                room.routers().clone(),
                in_flight,
            );
        };
        let cost = self.placement.settings().cost_of(role);
        // Boxed, like the replaced peer's removal above: a join waiting for
        // the room's lock then holds 0.7 KB instead of 2.9 (BENCHMARKS.md, 1).
        let seat = Box::pin(self.placement.seat(room_id, peer_id, cost, &known)).await?;
        let mut room = state.lock_owned().await;
        if room.closed {
            // Cannot happen while the join is in flight; a seat on a closed
            // room's router would be a lost participant.
            return Err(RoomError::new(
                ErrorCode::Unavailable,
                "the room closed while joining; join again",
            ));
        }
        if !room.routers().contains_key(&seat.router.router_id) {
            room.add_router(seat.router.clone());
            // A new router receives every producer of the room (pipe set-up,
            // under the lock).
            for producer in room.producer_ids() {
                room.make_available(&self.clients, &producer, &seat.router)
                    .await?;
            }
        }
        let router = seat.keep();
        in_flight.done();
        room.add_peer_as(
            peer_id,
            display_name,
            can_publish,
            role,
            outbox,
            &router.router_id,
        );
        let roster = room.peer_page(peer_id, None, crate::protocol::JOINED_PEERS);
        info!(room = room_id, peer = peer_id, node = %router.node_id, worker = router.worker, ?role, "joined");
        Ok(Joined {
            router_rtp_capabilities: router.caps,
            roster,
            audience_count: room.audience_count(),
            resume_nonce: room.peer(peer_id).expect("added").resume_nonce.clone(),
        })
    }

    /// A page of the roster for a joined peer, after `cursor`.
    pub async fn list_peers(
        &self,
        room_id: &str,
        peer_id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Res<PeerPage> {
        let size = page_size(limit, PEER_PAGE_MAX);
        self.page(room_id, peer_id, cursor, size, RoomState::peer_page)
            .await
    }

    /// A page of `size` that `of(room, asker, after, size)` takes, for a
    /// joined peer (the roster, an event's audience).
    pub(super) async fn page(
        &self,
        room_id: &str,
        peer_id: &str,
        cursor: Option<&str>,
        size: usize,
        of: fn(&RoomState, &str, Option<u64>, usize) -> PeerPage,
    ) -> Res<PeerPage> {
        let after = self::cursor(cursor)?;
        let room = self.joined_room(room_id).await?;
        room.peer(peer_id)?;
        Ok(of(&room, peer_id, after, size))
    }
}
