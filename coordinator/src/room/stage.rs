//! An event's stage and audience (join tokens with a `role`): the audience
//! list (paged like the roster), raised hands, and a host's promote and
//! demote. The room's state decides (`state::RoomState::promote` ...); this
//! takes the room's lock for it and, for a demotion, closes the speaker's
//! producers on their nodes without the lock. Calls only the room's state
//! and `ops::Rooms::close_producers`; the audience is paged like the roster
//! (`join::Rooms::page`).

use super::{Res, Rooms};
use crate::protocol::PeerPage;

impl Rooms {
    /// A page of the room's audience, after `cursor`, for a joined peer.
    pub async fn list_audience(
        &self,
        room_id: &str,
        peer_id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Res<PeerPage> {
        let size = super::join::page_size(limit, crate::protocol::AUDIENCE_PAGE_MAX);
        self.page(room_id, peer_id, cursor, size, |room, _, after, n| {
            room.audience_page(after, n)
        })
        .await
    }

    /// An audience member's hand up or down.
    pub async fn raise_hand(&self, room_id: &str, peer_id: &str, raised: bool) -> Res<()> {
        self.joined_room(room_id).await?.raise_hand(peer_id, raised)
    }

    /// A host brings `target` on stage.
    pub async fn promote(&self, room_id: &str, host: &str, target: &str) -> Res<()> {
        self.joined_room(room_id).await?.promote(host, target)
    }

    /// A host sends `target` back to the audience; its producers close.
    pub async fn demote(&self, room_id: &str, host: &str, target: &str) -> Res<()> {
        let gone = self.joined_room(room_id).await?.demote(host, target)?;
        self.close_producers(gone).await;
        Ok(())
    }
}
