//! An event's stage and audience (join tokens with a `role`): the audience
//! list (paged like the roster), raised hands, and a host's promote and
//! demote. The room's state decides (`state::RoomState::promote` ...); this
//! takes the room's lock for it and, for a demotion, closes the speaker's
//! producers on their nodes without the lock. Calls only the room's state
//! and `ops::Rooms::close_producers`.

use super::{Res, RoomError, Rooms};
use crate::protocol::{ErrorCode, PeerPage, PEER_PAGE_MAX};

/// A page cursor (`nextCursor`) as the room numbers its peers.
pub(super) fn cursor(c: Option<&str>) -> Res<Option<u64>> {
    c.map(|c| {
        c.parse::<u64>()
            .map_err(|_| RoomError::new(ErrorCode::BadRequest, "cursor: a nextCursor of this room"))
    })
    .transpose()
}

/// A page size asked for, within 1..=100.
pub(super) fn page_size(limit: Option<u32>) -> usize {
    limit.map_or(PEER_PAGE_MAX, |l| (l as usize).clamp(1, PEER_PAGE_MAX))
}

impl Rooms {
    /// A page of the room's audience, after `cursor`, for a joined peer.
    pub async fn list_audience(
        &self,
        room_id: &str,
        peer_id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Res<PeerPage> {
        let after = self::cursor(cursor)?;
        let room = self.joined_room(room_id).await?;
        room.peer(peer_id)?;
        Ok(room.audience_page(after, page_size(limit)))
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
