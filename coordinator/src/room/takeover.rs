//! Join path: session -> owners -> **room takeover** -> placement / nodes.
//! A room whose coordinator died is taken over by the coordinator its
//! participants resume through: the room is rebuilt from what the live
//! nodes hold of it (`DescribeRoom`: routers, each participant's transports,
//! producers and consumers, the copies piped between routers), every
//! participant found is adopted in the registry (its placement becomes this
//! coordinator's, so reaping the dead one leaves it alone) and kept detached
//! for the resume grace, exactly as if its socket had just dropped here. Each
//! then resumes ([`Rooms::resume`], taking its first resume token as it
//! comes: the nonce died with the old coordinator) or leaves after the grace.
//! Media is not touched: the nodes keep forwarding throughout.
//!
//! Not rebuilt: the cross-node pipe pairs (a later pipe between the same two
//! routers makes a new pair) and consumers' preferred layers (the clients set
//! them again).
//!
//! Takes the room's lock for the whole rebuild (it is new and empty: nobody
//! else waits on it but joins and resumes of the same room, which must see
//! the rebuilt room).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use throng_proto::media as pb;
use tracing::{info, warn};

use super::{Res, Rooms};
use crate::media::client::RouterRef;
use crate::protocol::{Direction, MediaKind, Outbox};

/// One participant as the nodes know it.
#[derive(Default)]
struct Found {
    display_name: String,
    router: Option<RouterRef>,
    send: Option<String>,
    recv: Option<String>,
}

fn kind(value: i32) -> MediaKind {
    if value == pb::MediaKind::Video as i32 {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

impl Rooms {
    /// Rebuilds `room_id` from the live nodes, unless it is hosted here
    /// already; returns the participants rebuilt. Each stays detached for
    /// `grace`, then leaves unless it resumed.
    pub async fn take_over(self: &Arc<Self>, room_id: &str, grace: Duration) -> Res<usize> {
        let mut room = self.lock_room(room_id).await;
        if !room.is_empty() {
            return Ok(0);
        }
        let described = self.placement.describe_room(room_id).await?;
        // The rebuilt sessions' outbox: nobody reads it (a resume replaces it).
        let (dead, _) = Outbox::channel();
        let mut found: BTreeMap<String, Found> = BTreeMap::new();
        for (router, d) in &described {
            room.add_router(router.clone());
            for t in &d.transports {
                let f = found.entry(t.participant_id.clone()).or_default();
                if f.display_name.is_empty() {
                    f.display_name = t.display_name.clone();
                }
                f.router = Some(router.clone());
                let slot = if t.producing {
                    &mut f.send
                } else {
                    &mut f.recv
                };
                *slot = Some(t.transport_id.clone());
            }
        }
        // Participants, in id order (their join order died with the owner).
        for (peer, f) in &found {
            let Some(router) = &f.router else { continue };
            let name = if f.display_name.is_empty() {
                peer.as_str()
            } else {
                f.display_name.as_str()
            };
            room.add_peer(
                peer,
                name,
                f.send.is_some(),
                dead.clone(),
                &router.router_id,
            );
            for (direction, t) in [(Direction::Send, &f.send), (Direction::Recv, &f.recv)] {
                if let Some(t) = t {
                    room.commit_transport(peer, &dead, direction, t);
                }
            }
        }
        // Whose each transport is (the commits below check the direction).
        let owners: HashMap<&str, &str> = found
            .iter()
            .flat_map(|(peer, f)| {
                [&f.send, &f.recv]
                    .into_iter()
                    .flatten()
                    .map(move |t| (t.as_str(), peer.as_str()))
            })
            .collect();
        // Producers: each participant's sources, then where copies are.
        for (_, d) in &described {
            for p in d.producers.iter().filter(|p| !p.transport_id.is_empty()) {
                let Some(&peer) = owners.get(p.transport_id.as_str()) else {
                    continue;
                };
                let source = if p.source.is_empty() {
                    kind(p.kind).name()
                } else {
                    p.source.as_str()
                };
                room.commit_producer(
                    peer,
                    &dead,
                    &p.transport_id,
                    &p.producer_id,
                    kind(p.kind),
                    source,
                );
                if p.paused {
                    room.commit_producer_paused(peer, &p.producer_id, true);
                }
            }
        }
        for (router, d) in &described {
            for p in d.producers.iter().filter(|p| p.transport_id.is_empty()) {
                if room.producer(&p.producer_id).is_some() {
                    room.pipes.add_copy(&p.producer_id, router);
                }
            }
        }
        // Consumers, on the participants' receive transports.
        let mut consumers = Vec::new();
        for (_, d) in &described {
            for c in &d.consumers {
                let Some(&peer) = owners.get(c.transport_id.as_str()) else {
                    continue;
                };
                if room.commit_consumer(
                    peer,
                    &dead,
                    &c.transport_id,
                    &c.consumer_id,
                    &c.producer_id,
                ) {
                    let paused = c.paused;
                    room.update_consumer(
                        peer,
                        &c.consumer_id,
                        Some(&|rec: &mut super::state::ConsumerRec| rec.paused = paused),
                    );
                    consumers.push((c.consumer_id.clone(), peer.to_string()));
                }
            }
        }
        // The owner index: node events about these objects reach the room.
        {
            let mut index = self.index();
            for (peer, f) in &found {
                for t in [&f.send, &f.recv].into_iter().flatten() {
                    index
                        .transports
                        .insert(t.clone(), (room_id.into(), peer.clone(), dead.clone()));
                }
            }
            for (c, peer) in consumers {
                index.consumers.insert(c, (room_id.into(), peer));
            }
        }
        // The registry: their placements are this coordinator's now.
        let placed: Vec<(String, RouterRef)> = found
            .iter()
            .filter_map(|(p, f)| Some((p.clone(), f.router.clone()?)))
            .collect();
        if let Err(e) = self.placement.adopt(room_id, &placed).await {
            warn!(room = room_id, error = %e, "placements not adopted; the dead coordinator's reaping may close them");
        }
        if placed.is_empty() {
            // Nothing of it left on the nodes: no room to host.
            self.forget_room_of(room_id, &room);
            return Ok(0);
        }
        let mark = self.next_mark();
        for (peer, _) in &placed {
            room.mark_adopted(peer, mark);
        }
        drop(room);
        for (peer, _) in &placed {
            self.leave_after(room_id, peer, mark, grace);
        }
        info!(
            room = room_id,
            participants = placed.len(),
            routers = described.len(),
            "room taken over from a coordinator that died"
        );
        Ok(placed.len())
    }
}
