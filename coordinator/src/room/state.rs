//! One room as its coordinator knows it, as plain data: its peers (in join
//! order), their transports, producers and consumers, the room's routers and
//! where each producer can be consumed. No I/O and no locks: `room::ops`
//! holds it under the room's lock, decides here, and calls nodes outside.
//! Each method that changes the room also tells the affected clients (a send
//! on their outbox, which never blocks).
//!
//! About 930 lines, 220 of them its unit tests: one type, the room, whose
//! plans and commits belong together.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::media::client::{NodeCallError, NodeClients, RouterRef};
use crate::media::pipes::RoomPipes;
use crate::protocol::{
    Direction, ErrorCode, Hand, MediaKind, Outbox, PeerInfo, PeerPage, ProducerInfo,
    ResumedConsumer, Role, ServerMessage,
};

pub use super::peer::{ConsumerRec, Peer, PeerGone, ProducerGone, ProducerRec};
use super::presence::{Joining, Presence};
use super::RoomError;

/// What a resumed peer is told of the room and of itself.
#[derive(Debug)]
pub struct Reattached {
    /// May send media.
    pub can_publish: bool,
    /// The first page of the others, in join order.
    pub roster: PeerPage,
    /// Its producers.
    pub producers: Vec<ProducerInfo>,
    /// Its consumers.
    pub consumers: Vec<ResumedConsumer>,
    /// Its transports.
    pub transports: Vec<String>,
}

/// What a lost node takes from a room.
#[derive(Debug, Default, PartialEq)]
pub struct NodeLoss {
    /// Producers that lived on it (their copies elsewhere must close).
    pub producers: Vec<ProducerGone>,
    /// Peers that were placed on it, sent to reconnect, with what they had.
    pub sent_away: Vec<(String, PeerGone)>,
    /// (producer, node): copies fed through it, to close and feed again.
    pub orphans: crate::media::pipes::Orphans,
    /// Pipe transports of the room's other routers that led to it
    /// (router, transport): their pipe consumers feed nothing.
    pub dead_pipes: Vec<(RouterRef, String)>,
}

/// A room.
#[derive(Default)]
pub struct RoomState {
    /// Set once the room closed: nobody joins it any more (a join waiting at
    /// its lock starts over with a new room).
    pub closed: bool,
    peers: HashMap<String, Peer>,
    /// Join order of the roster (everyone but an event's audience):
    /// sequence -> peer (sorted as it grows, no sort per join).
    order: BTreeMap<u64, String>,
    /// Join order of an event's audience.
    audience: BTreeMap<u64, String>,
    /// Raised hands, oldest first.
    hands: indexmap::IndexSet<String>,
    next_seq: u64,
    routers: HashMap<String, RouterRef>,
    producers: HashMap<String, ProducerRec>,
    /// Where each producer can be consumed, and the pipe pairs.
    pub pipes: RoomPipes,
    /// Membership changes not told yet (`room::presence`).
    pub presence: Presence,
    /// Identities with a join in flight (`room::presence::Joining`).
    pub joining: Joining,
}

/// `newProducer` for a producer of the room.
fn offer(producer_id: &str, rec: &ProducerRec) -> ServerMessage {
    ServerMessage::NewProducer {
        peer_id: rec.peer_id.clone(),
        producer: ProducerInfo {
            producer_id: producer_id.into(),
            kind: rec.kind,
            source: rec.source.clone(),
            paused: rec.paused,
        },
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> RoomError {
    RoomError::new(code, message)
}

impl RoomState {
    /// Nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Participants.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// A peer, or "join first".
    pub fn peer(&self, peer_id: &str) -> Result<&Peer, RoomError> {
        self.peers
            .get(peer_id)
            .ok_or_else(|| err(ErrorCode::OutOfOrder, "join first"))
    }

    /// A peer that is still the session `outbox` belongs to.
    pub fn peer_of_session(&self, peer_id: &str, outbox: &Outbox) -> Option<&Peer> {
        self.peers.get(peer_id).filter(|p| p.outbox.same(outbox))
    }

    fn peer_mut_of_session(&mut self, peer_id: &str, outbox: &Outbox) -> Option<&mut Peer> {
        self.peers
            .get_mut(peer_id)
            .filter(|p| p.outbox.same(outbox))
    }

    /// Every peer, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = (&String, &Peer)> {
        self.peers.iter()
    }

    /// A peer's router.
    pub fn router_of(&self, peer: &Peer) -> RouterRef {
        self.routers[&peer.router_id].clone()
    }

    /// The room's routers.
    pub fn routers(&self) -> &HashMap<String, RouterRef> {
        &self.routers
    }

    /// A producer.
    pub fn producer(&self, producer_id: &str) -> Option<&ProducerRec> {
        self.producers.get(producer_id)
    }

    /// The room's producers.
    pub fn producer_ids(&self) -> Vec<String> {
        self.producers.keys().cloned().collect()
    }

    /// Sends `msg` to everyone but `except`: an event serialized once into
    /// one buffer every queue shares (a message that ends sessions,
    /// `reconnect`, goes as itself: each writer must see that).
    pub fn broadcast(&self, except: Option<&str>, msg: &ServerMessage) {
        let shared = (msg.is_event() && !msg.ends_session()).then(|| {
            axum::extract::ws::Utf8Bytes::from(
                serde_json::to_string(msg).expect("server messages serialize"),
            )
        });
        for (id, p) in &self.peers {
            if Some(id.as_str()) != except {
                match &shared {
                    Some(text) => p.outbox.send_shared(text.clone()),
                    None => p.outbox.send(msg.clone()),
                }
            }
        }
    }

    fn peer_info(&self, peer_id: &str, p: &Peer) -> PeerInfo {
        PeerInfo {
            peer_id: peer_id.to_string(),
            display_name: p.display_name.clone(),
            role: p.role,
            producers: p
                .producers
                .iter()
                .filter_map(|id| self.producers.get(id).map(|r| (id, r)))
                .map(|(id, r)| ProducerInfo {
                    producer_id: id.clone(),
                    kind: r.kind,
                    source: r.source.clone(),
                    paused: r.paused,
                })
                .collect(),
        }
    }

    /// A page of the roster for `except` (who is not listed): up to
    /// `limit` peers in join order after the peer whose join sequence is
    /// `after`. O(log N + limit).
    pub fn peer_page(&self, except: &str, after: Option<u64>, limit: usize) -> PeerPage {
        let mut peers = Vec::new();
        let mut next_cursor = None;
        let mut last = None;
        let from = after.map_or(0, |a| a.saturating_add(1));
        for (seq, id) in self.order.range(from..) {
            if id == except {
                continue;
            }
            if peers.len() == limit {
                next_cursor = last.map(|s: u64| s.to_string());
                break;
            }
            peers.push(self.peer_info(id, &self.peers[id]));
            last = Some(*seq);
        }
        PeerPage {
            peers,
            next_cursor,
            peer_count: self.order.len(),
        }
    }

    /// A page of an event's audience (like [`RoomState::peer_page`]; no
    /// producers: the audience does not publish).
    pub fn audience_page(&self, after: Option<u64>, limit: usize) -> PeerPage {
        let from = after.map_or(0, |a| a.saturating_add(1));
        let mut peers = Vec::new();
        let mut next_cursor = None;
        for (seq, id) in self.audience.range(from..) {
            if peers.len() == limit {
                next_cursor = Some((seq - 1).to_string());
                break;
            }
            peers.push(PeerInfo {
                peer_id: id.clone(),
                display_name: self.peers[id].display_name.clone(),
                role: Role::Audience,
                producers: Vec::new(),
            });
        }
        PeerPage {
            peers,
            next_cursor,
            peer_count: self.audience.len(),
        }
    }

    /// Audience members in the room.
    pub fn audience_count(&self) -> usize {
        self.audience.len()
    }

    /// Tells everyone the state now of up to `max` identities whose
    /// presence changed (oldest change first): `peersLeft` for those gone,
    /// then `peersJoined` for those present. Returns whether changes are
    /// left for the next flush.
    pub fn flush_presence(&mut self, max: usize) -> bool {
        let mut joined: Vec<(u64, PeerInfo)> = Vec::new();
        let mut left = Vec::new();
        for id in self.presence.take(max) {
            match self.peers.get(&id) {
                Some(p) if p.role.on_stage() => joined.push((p.seq, self.peer_info(&id, p))),
                // Gone, or (demoted) off the stage.
                _ => left.push(id),
            }
        }
        let (audience, hands) = self.presence.take_counts(self.audience.len());
        if audience {
            self.broadcast(
                None,
                &ServerMessage::Audience {
                    count: self.audience.len(),
                },
            );
        }
        if hands {
            let msg = ServerMessage::Hands {
                hands: self
                    .hands
                    .iter()
                    .take(crate::protocol::AUDIENCE_PAGE_MAX)
                    .map(|id| Hand {
                        peer_id: id.clone(),
                        display_name: self.peers[id].display_name.clone(),
                    })
                    .collect(),
                count: self.hands.len(),
            };
            for p in self.peers.values().filter(|p| p.role == Role::Host) {
                p.outbox.send(msg.clone());
            }
        }
        let peer_count = self.order.len();
        if !left.is_empty() {
            self.broadcast(
                None,
                &ServerMessage::PeersLeft {
                    peer_ids: left,
                    peer_count,
                },
            );
        }
        joined.sort_by_key(|(seq, _)| *seq);
        let mut joined = joined.into_iter().map(|(_, p)| p).peekable();
        while joined.peek().is_some() {
            self.broadcast(
                None,
                &ServerMessage::PeersJoined {
                    peers: joined
                        .by_ref()
                        .take(crate::protocol::PEER_PAGE_MAX)
                        .collect(),
                    peer_count,
                },
            );
        }
        self.presence.pending() > 0 || self.presence.audience_waiting()
    }

    /// The peer's session ended without a leave: the peer stays, its media
    /// untouched, as detachment `mark` (false: `outbox` is no longer its
    /// session's, e.g. it resumed or was replaced meanwhile).
    pub fn detach(&mut self, peer_id: &str, outbox: &Outbox, mark: u64) -> bool {
        match self.peer_mut_of_session(peer_id, outbox) {
            Some(peer) => {
                peer.detached = Some(mark);
                true
            }
            None => false,
        }
    }

    /// Marks a peer rebuilt from the nodes (`room::takeover`): detached as
    /// `mark`, and adopted (see [`Peer::adopted`]).
    pub fn mark_adopted(&mut self, peer_id: &str, mark: u64) {
        if let Some(peer) = self.peers.get_mut(peer_id) {
            peer.detached = Some(mark);
            peer.adopted = true;
        }
    }

    /// Whether the peer is still detached as `mark` (not resumed since).
    pub fn detached_as(&self, peer_id: &str, mark: u64) -> bool {
        self.peers
            .get(peer_id)
            .is_some_and(|p| p.detached == Some(mark))
    }

    /// Takes up the peer's session on `outbox`, if `nonce` is its resume
    /// nonce. A session it still had (a socket the server has not yet seen
    /// close) is told it was replaced. Returns what the client needs to line
    /// its view up with the room, and its transports (for the owner index).
    pub fn reattach(
        &mut self,
        peer_id: &str,
        nonce: &str,
        can_publish: bool,
        outbox: &Outbox,
    ) -> Result<Reattached, RoomError> {
        let gone = || {
            err(
                ErrorCode::NotFound,
                "this session is no longer held; join again",
            )
        };
        let peer = self.peers.get_mut(peer_id).ok_or_else(gone)?;
        if peer.adopted {
            // Rebuilt from the nodes: the token tells what the join granted.
            peer.adopted = false;
            peer.resume_nonce = nonce.to_string();
            peer.can_publish = can_publish;
        } else if !throng_ops::same_secret(nonce, &peer.resume_nonce) {
            return Err(gone());
        }
        if peer.detached.is_none() && !peer.outbox.same(outbox) {
            peer.outbox.send(ServerMessage::error(
                None,
                ErrorCode::Replaced,
                "this session was resumed on another connection",
            ));
        }
        peer.outbox = outbox.clone();
        peer.detached = None;
        let peer = &self.peers[peer_id];
        let mut producers = self.peer_info(peer_id, peer).producers;
        producers.sort_by(|a, b| a.producer_id.cmp(&b.producer_id));
        let mut consumers: Vec<ResumedConsumer> = peer
            .consumers
            .iter()
            .map(|(id, c)| ResumedConsumer {
                consumer_id: id.clone(),
                producer_id: c.producer_id.clone(),
                paused: c.paused,
            })
            .collect();
        consumers.sort_by(|a, b| a.consumer_id.cmp(&b.consumer_id));
        Ok(Reattached {
            can_publish: peer.can_publish,
            roster: self.peer_page(peer_id, None, crate::protocol::JOINED_PEERS),
            producers,
            consumers,
            transports: [&peer.send_transport, &peer.recv_transport]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        })
    }

    /// Adds a router the room was placed on.
    pub fn add_router(&mut self, router: RouterRef) {
        self.routers.insert(router.router_id.clone(), router);
    }

    /// Adds a meeting participant placed on `router_id` (see
    /// [`RoomState::add_peer_as`]).
    pub fn add_peer(
        &mut self,
        peer_id: &str,
        display_name: &str,
        can_publish: bool,
        outbox: Outbox,
        router_id: &str,
    ) {
        self.add_peer_as(
            peer_id,
            display_name,
            can_publish,
            Role::Member,
            outbox,
            router_id,
        );
    }

    /// Adds a peer placed on `router_id`: in the roster (announced with the
    /// next presence flush), or, an event's audience member, counted. An
    /// audience member never publishes.
    pub fn add_peer_as(
        &mut self,
        peer_id: &str,
        display_name: &str,
        can_publish: bool,
        role: Role,
        outbox: Outbox,
        router_id: &str,
    ) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if role.on_stage() {
            self.order.insert(seq, peer_id.to_string());
            self.presence.note(peer_id);
        } else {
            self.audience.insert(seq, peer_id.to_string());
            self.presence.note_audience();
        }
        self.peers.insert(
            peer_id.to_string(),
            Peer {
                display_name: display_name.to_string(),
                can_publish: can_publish && role.on_stage(),
                role,
                outbox,
                router_id: router_id.to_string(),
                send_transport: None,
                recv_transport: None,
                producers: HashSet::new(),
                consumers: HashMap::new(),
                seq,
                resume_nonce: uuid::Uuid::new_v4().simple().to_string(),
                detached: None,
                adopted: false,
            },
        );
    }

    /// Takes a departed peer out of the roster or the audience (and its
    /// hand down), telling the room with the next flush.
    fn unlist(&mut self, peer_id: &str, peer: &Peer) {
        if peer.role.on_stage() {
            self.order.remove(&peer.seq);
            self.presence.note(peer_id);
        } else {
            self.audience.remove(&peer.seq);
            self.presence.note_audience();
            if self.hands.shift_remove(peer_id) {
                self.presence.note_hands();
            }
        }
    }

    /// An audience member's hand goes up (in line after the others) or down.
    pub fn raise_hand(&mut self, peer_id: &str, raised: bool) -> Result<(), RoomError> {
        if self.peer(peer_id)?.role != Role::Audience {
            return Err(err(ErrorCode::Rejected, "only the audience raises hands"));
        }
        let changed = if raised {
            self.hands.insert(peer_id.to_string())
        } else {
            self.hands.shift_remove(peer_id)
        };
        if changed {
            self.presence.note_hands();
        }
        Ok(())
    }

    fn host(&self, peer_id: &str) -> Result<(), RoomError> {
        if self.peer(peer_id)?.role != Role::Host {
            return Err(err(ErrorCode::Forbidden, "only hosts do that"));
        }
        Ok(())
    }

    /// A host brings an audience member on stage: it is told (and may
    /// publish at once), the room sees it arrive, the audience shrinks.
    pub fn promote(&mut self, host: &str, target: &str) -> Result<(), RoomError> {
        self.host(host)?;
        let peer = self
            .peers
            .get(target)
            .ok_or_else(|| err(ErrorCode::NotFound, "no such participant"))?;
        if peer.role != Role::Audience {
            return Err(err(ErrorCode::Rejected, "not in the audience"));
        }
        if self.hands.shift_remove(target) {
            self.presence.note_hands();
        }
        self.restage(target, Role::Speaker);
        Ok(())
    }

    /// Gives `target` its new role (a speaker publishes, the audience does
    /// not), tells it, and moves it between the roster and the audience.
    fn restage(&mut self, target: &str, role: Role) {
        let Some(peer) = self.peers.get_mut(target) else {
            return;
        };
        peer.role = role;
        peer.can_publish = role.on_stage();
        peer.outbox.send(ServerMessage::RoleChanged {
            role,
            can_publish: peer.can_publish,
        });
        let seq = peer.seq;
        let (from, to) = if role.on_stage() {
            (&mut self.audience, &mut self.order)
        } else {
            (&mut self.order, &mut self.audience)
        };
        from.remove(&seq);
        to.insert(seq, target.to_string());
        self.presence.note(target);
        self.presence.note_audience();
    }

    /// A host sends a speaker back to the audience: its producers close
    /// (returned: the nodes must close them), it is told, and the room sees
    /// it leave the stage.
    pub fn demote(&mut self, host: &str, target: &str) -> Result<Vec<ProducerGone>, RoomError> {
        self.host(host)?;
        let peer = self
            .peers
            .get(target)
            .ok_or_else(|| err(ErrorCode::NotFound, "no such participant"))?;
        if peer.role != Role::Speaker {
            return Err(err(ErrorCode::Rejected, "not a speaker"));
        }
        let producers: Vec<String> = peer.producers.iter().cloned().collect();
        let gone = producers
            .iter()
            .filter_map(|p| self.remove_producer(p))
            .collect();
        self.restage(target, Role::Audience);
        Ok(gone)
    }

    /// Removes a peer and its producers, telling the room; returns what the
    /// nodes must close. `None` if it is not in the room.
    pub fn remove_peer(&mut self, peer_id: &str) -> Option<PeerGone> {
        let producers: Vec<String> = self.peers.get(peer_id)?.producers.iter().cloned().collect();
        let producers = producers
            .into_iter()
            .filter_map(|p| self.remove_producer(&p))
            .collect();
        let peer = self.peers.remove(peer_id).expect("looked up above");
        self.unlist(peer_id, &peer);
        Some(PeerGone {
            router: self.routers.get(&peer.router_id).cloned(),
            producers,
            transports: [peer.send_transport, peer.recv_transport]
                .into_iter()
                .flatten()
                .collect(),
            consumers: peer.consumers.into_keys().collect(),
        })
    }

    /// Removes a producer and tells the room; returns where its copies are.
    pub fn remove_producer(&mut self, producer_id: &str) -> Option<ProducerGone> {
        let rec = self.producers.remove(producer_id)?;
        let mut nodes: Vec<RouterRef> = Vec::new();
        for router in self.pipes.forget_producer(producer_id) {
            if let Some(r) = self.routers.get(&router) {
                if !nodes.iter().any(|n| n.node_id == r.node_id) {
                    nodes.push(r.clone());
                }
            }
        }
        if let Some(peer) = self.peers.get_mut(&rec.peer_id) {
            peer.producers.remove(producer_id);
        }
        self.broadcast(
            Some(&rec.peer_id),
            &ServerMessage::ProducerClosed {
                peer_id: rec.peer_id.clone(),
                producer_id: producer_id.into(),
            },
        );
        Some(ProducerGone {
            producer_id: producer_id.to_string(),
            nodes,
        })
    }

    // ----- plans (checked under the lock, before a node call) ---------------

    /// Whether `peer_id` may create a transport of `direction`: its router.
    pub fn plan_transport(
        &self,
        peer_id: &str,
        direction: Direction,
    ) -> Result<RouterRef, RoomError> {
        let peer = self.peer(peer_id)?;
        if peer.transport(direction).is_some() {
            return Err(err(
                ErrorCode::OutOfOrder,
                format!("a {} transport exists already", direction.as_str()),
            ));
        }
        if direction == Direction::Send && !peer.can_publish {
            return Err(err(
                ErrorCode::Forbidden,
                "this token does not allow publishing",
            ));
        }
        Ok(self.router_of(peer))
    }

    /// Whether `transport_id` is the peer's: its router.
    pub fn plan_own_transport(
        &self,
        peer_id: &str,
        transport_id: &str,
    ) -> Result<RouterRef, RoomError> {
        let peer = self.peer(peer_id)?;
        if !peer.owns_transport(transport_id) {
            return Err(err(ErrorCode::NotFound, "no such transport of yours"));
        }
        Ok(self.router_of(peer))
    }

    /// Whether the peer may produce on `transport_id`: its router.
    pub fn plan_produce(&self, peer_id: &str, transport_id: &str) -> Result<RouterRef, RoomError> {
        let peer = self.peer(peer_id)?;
        if !peer.can_publish {
            return Err(err(
                ErrorCode::Forbidden,
                "this token does not allow publishing",
            ));
        }
        if peer.send_transport.as_deref() != Some(transport_id) {
            return Err(err(ErrorCode::NotFound, "no such send transport of yours"));
        }
        Ok(self.router_of(peer))
    }

    /// Whether the peer may consume `producer_id`: its router, its recv
    /// transport, and the producer's origin router.
    pub fn plan_consume(
        &self,
        peer_id: &str,
        producer_id: &str,
    ) -> Result<(RouterRef, String), RoomError> {
        let peer = self.peer(peer_id)?;
        let recv = peer
            .recv_transport
            .clone()
            .ok_or_else(|| err(ErrorCode::OutOfOrder, "create a recv transport first"))?;
        if !self.producers.contains_key(producer_id) {
            return Err(err(ErrorCode::NotFound, "no such producer in this room"));
        }
        Ok((self.router_of(peer), recv))
    }

    /// Whether `consumer_id` is the peer's: its router.
    pub fn plan_own_consumer(
        &self,
        peer_id: &str,
        consumer_id: &str,
    ) -> Result<RouterRef, RoomError> {
        let peer = self.peer(peer_id)?;
        if !peer.consumers.contains_key(consumer_id) {
            return Err(err(ErrorCode::NotFound, "no such consumer of yours"));
        }
        Ok(self.router_of(peer))
    }

    /// Whether `producer_id` is the peer's: its router.
    pub fn plan_own_producer(
        &self,
        peer_id: &str,
        producer_id: &str,
    ) -> Result<RouterRef, RoomError> {
        let peer = self.peer(peer_id)?;
        if !peer.producers.contains(producer_id) {
            return Err(err(ErrorCode::NotFound, "no such producer of yours"));
        }
        Ok(self.router_of(peer))
    }

    // ----- commits (after the node call, re-checked) --------------------------

    /// Records a created transport if the session is still the peer's and the
    /// slot still empty.
    pub fn commit_transport(
        &mut self,
        peer_id: &str,
        outbox: &Outbox,
        direction: Direction,
        transport_id: &str,
    ) -> bool {
        match self.peer_mut_of_session(peer_id, outbox) {
            Some(peer) if peer.transport(direction).is_none() => {
                *peer.transport_slot(direction) = Some(transport_id.to_string());
                true
            }
            _ => false,
        }
    }

    /// Records a new producer of the peer (consumable on its own router) if
    /// the session is still the peer's and the transport still its. Not yet
    /// announced: see [`RoomState::announce_producer`].
    pub fn commit_producer(
        &mut self,
        peer_id: &str,
        outbox: &Outbox,
        transport_id: &str,
        producer_id: &str,
        kind: MediaKind,
        source: &str,
    ) -> bool {
        let Some(peer) = self.peer_mut_of_session(peer_id, outbox) else {
            return false;
        };
        if peer.send_transport.as_deref() != Some(transport_id) {
            return false;
        }
        peer.producers.insert(producer_id.to_string());
        let router_id = peer.router_id.clone();
        if let Some(router) = self.routers.get(&router_id) {
            self.pipes.add_source(producer_id, router);
        }
        self.producers.insert(
            producer_id.to_string(),
            ProducerRec {
                peer_id: peer_id.into(),
                paused: false,
                kind,
                source: source.into(),
                router_id,
            },
        );
        true
    }

    /// Tells everyone else about a new producer.
    pub fn announce_producer(&mut self, producer_id: &str) {
        let Some(rec) = self.producers.get(producer_id) else {
            return;
        };
        // A publisher's presence is not held back: those who did not hear
        // of it yet do now, with its producers, before `newProducer`.
        if self.presence.take_one(&rec.peer_id) {
            if let Some(p) = self.peers.get(&rec.peer_id) {
                self.broadcast(
                    None,
                    &ServerMessage::PeersJoined {
                        peers: vec![self.peer_info(&rec.peer_id, p)],
                        peer_count: self.order.len(),
                    },
                );
            }
        }
        self.broadcast(Some(&rec.peer_id), &offer(producer_id, rec));
    }

    /// Records a consumer if the producer is still there and the session and
    /// its recv transport are still the peer's.
    pub fn commit_consumer(
        &mut self,
        peer_id: &str,
        outbox: &Outbox,
        recv: &str,
        consumer_id: &str,
        producer_id: &str,
    ) -> bool {
        if !self.producers.contains_key(producer_id) {
            return false;
        }
        match self.peer_mut_of_session(peer_id, outbox) {
            Some(peer) if peer.recv_transport.as_deref() == Some(recv) => {
                peer.consumers.insert(
                    consumer_id.to_string(),
                    ConsumerRec {
                        producer_id: producer_id.to_string(),
                        paused: true,
                        preferred_layer: None,
                        current_layers: None,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Updates (or, `None`, removes) one of a peer's consumers.
    pub fn update_consumer(
        &mut self,
        peer_id: &str,
        consumer_id: &str,
        update: Option<&dyn Fn(&mut ConsumerRec)>,
    ) {
        let Some(peer) = self.peers.get_mut(peer_id) else {
            return;
        };
        match update {
            Some(f) => {
                if let Some(c) = peer.consumers.get_mut(consumer_id) {
                    f(c);
                }
            }
            None => {
                peer.consumers.remove(consumer_id);
            }
        }
    }

    /// A producer was paused or resumed by its peer: recorded and announced.
    pub fn commit_producer_paused(&mut self, peer_id: &str, producer_id: &str, paused: bool) {
        let Some(rec) = self.producers.get_mut(producer_id) else {
            return;
        };
        rec.paused = paused;
        // Same-node copies pause with their source; across nodes the pipe
        // consumer pauses, so the far copy simply receives no RTP.
        self.broadcast(
            Some(peer_id),
            &ServerMessage::ProducerPaused {
                peer_id: peer_id.into(),
                producer_id: producer_id.into(),
                paused,
            },
        );
    }

    /// A node is gone: its routers leave the room, producers on them close,
    /// and peers on them are sent elsewhere (`reconnect`). Returns the closed
    /// producers (their copies on other nodes must close) and, for each peer
    /// sent away, what it had.
    pub fn lose_node(&mut self, node_id: &str) -> NodeLoss {
        let dead: Vec<String> = self
            .routers
            .values()
            .filter(|r| r.node_id == node_id)
            .map(|r| r.router_id.clone())
            .collect();
        if dead.is_empty() {
            return NodeLoss::default();
        }
        let (orphans, dead_pipes) = self.pipes.forget_node(node_id, &self.routers);
        for router in &dead {
            self.routers.remove(router);
        }
        let lost: Vec<String> = self
            .producers
            .iter()
            .filter(|(_, p)| dead.contains(&p.router_id))
            .map(|(id, _)| id.clone())
            .collect();
        let producers = lost
            .iter()
            .filter_map(|p| self.remove_producer(p))
            .collect();
        let ids: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| dead.contains(&p.router_id))
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone = Vec::new();
        for peer_id in ids {
            let peer = self.peers.remove(&peer_id).expect("listed above");
            self.unlist(&peer_id, &peer);
            peer.outbox.send(ServerMessage::Reconnect {
                reason: "media node lost".into(),
            });
            gone.push((
                peer_id,
                PeerGone {
                    router: None,
                    producers: Vec::new(),
                    transports: [peer.send_transport, peer.recv_transport]
                        .into_iter()
                        .flatten()
                        .collect(),
                    consumers: peer.consumers.into_keys().collect(),
                },
            ));
        }
        NodeLoss {
            producers,
            sent_away: gone,
            dead_pipes,
            // Those whose origin was on the node closed with it.
            orphans: orphans
                .into_iter()
                .filter(|(p, _)| self.producers.contains_key(p))
                .collect(),
        }
    }

    /// A producer's copies on `node` were closed (they were fed through a
    /// node that is gone): the peers placed there hear it closed and then
    /// offered again, and consume it afresh (fed through another node).
    pub fn reoffer(&mut self, producer_id: &str, node: &str) {
        let Some(rec) = self.producers.get(producer_id) else {
            return;
        };
        let offer = offer(producer_id, rec);
        let closed = ServerMessage::ProducerClosed {
            peer_id: rec.peer_id.clone(),
            producer_id: producer_id.into(),
        };
        for (id, peer) in &self.peers {
            let there = self
                .routers
                .get(&peer.router_id)
                .is_some_and(|r| r.node_id == node);
            if there && *id != rec.peer_id {
                peer.outbox.send(closed.clone());
                peer.outbox.send(offer.clone());
            }
        }
    }

    /// A router of the room on `node`, if any.
    pub fn router_on(&self, node: &str) -> Option<&RouterRef> {
        self.routers.values().find(|r| r.node_id == node)
    }

    /// Makes `producer` consumable on `target` (a router of the room), fed
    /// through the relay tree (`media::pipes`).
    pub async fn make_available(
        &mut self,
        clients: &NodeClients,
        producer: &str,
        target: &RouterRef,
    ) -> Result<(), NodeCallError> {
        if self.pipes.is_available(producer, &target.router_id) {
            return Ok(());
        }
        // Boxed: the pipe's node calls are a 5.5 KB future, which every
        // join and consume would otherwise carry for its whole life (most
        // need no pipe), and a surge holds a thousand of them at once.
        Box::pin(
            self.pipes
                .make_available(clients, producer, target, &self.routers),
        )
        .await
    }

    /// Closes the room: it is marked closed and gives its routers back.
    pub fn close(&mut self) -> Vec<RouterRef> {
        self.closed = true;
        self.presence.close();
        self.pipes.clear();
        self.routers.drain().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::media::pipes::test_router as router;

    fn drain(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::protocol::Outgoing>,
    ) -> Vec<String> {
        messages(rx)
            .iter()
            .map(|v| v["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn peers_are_listed_in_join_order_and_leaving_is_announced_with_the_producers() {
        let mut room = RoomState::default();
        room.add_router(router("r1", "n1"));
        let (ann, mut ann_rx) = Outbox::channel();
        let (bob, _bob_rx) = Outbox::channel();
        let (cid, _cid_rx) = Outbox::channel();
        room.add_peer("ann", "Ann", true, ann.clone(), "r1");
        room.add_peer("bob", "Bob", true, bob.clone(), "r1");
        room.add_peer("cid", "Cid", false, cid, "r1");
        assert!(drain(&mut ann_rx).is_empty(), "presence waits for a flush");
        assert!(room.flush_presence(2), "cid is left for the next flush");
        assert!(!room.flush_presence(2));
        assert_eq!(drain(&mut ann_rx), ["peersJoined", "peersJoined"]);
        let order: Vec<_> = room
            .peer_page("", None, 10)
            .peers
            .into_iter()
            .map(|p| p.peer_id)
            .collect();
        assert_eq!(order, ["ann", "bob", "cid"]);

        assert!(room.commit_transport("bob", &bob, Direction::Send, "t-bob"));
        assert!(
            !room.commit_transport("bob", &ann, Direction::Recv, "t-x"),
            "another session"
        );
        assert!(room.commit_producer("bob", &bob, "t-bob", "p-bob", MediaKind::Audio, "mic"));
        room.announce_producer("p-bob");
        assert!(room.pipes.is_available("p-bob", "r1"));
        assert_eq!(drain(&mut ann_rx), ["newProducer"]);
        assert_eq!(
            room.plan_transport("cid", Direction::Send)
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );

        let gone = room.remove_peer("bob").unwrap();
        assert_eq!(gone.producers.len(), 1);
        assert_eq!(gone.producers[0].nodes.len(), 1);
        assert_eq!(gone.transports, ["t-bob"]);
        assert_eq!(drain(&mut ann_rx), ["producerClosed"]);
        room.flush_presence(10);
        assert_eq!(drain(&mut ann_rx), ["peersLeft"]);
        let order: Vec<_> = room
            .peer_page("", None, 10)
            .peers
            .into_iter()
            .map(|p| p.peer_id)
            .collect();
        assert_eq!(order, ["ann", "cid"]);
        assert!(room.producer("p-bob").is_none());
        assert!(room.remove_peer("bob").is_none());
    }

    fn messages(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::protocol::Outgoing>,
    ) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(serde_json::from_str(m.into_text().unwrap().as_str()).unwrap());
        }
        out
    }

    #[test]
    fn presence_is_coalesced_per_identity_bounded_per_flush_and_a_publisher_goes_first() {
        let mut room = RoomState::default();
        room.add_router(router("r1", "n1"));
        let (watcher, mut rx) = Outbox::channel();
        room.add_peer("w", "W", false, watcher, "r1");
        room.flush_presence(10);
        let _ = messages(&mut rx);
        // Five join, one of them leaves and another joins again, in one window.
        let mut boxes = Vec::new();
        for i in 0..5 {
            let (o, r) = Outbox::channel();
            room.add_peer(&format!("p{i}"), &format!("P{i}"), true, o.clone(), "r1");
            boxes.push((o, r));
        }
        let _ = room.remove_peer("p1");
        let _ = room.remove_peer("p3");
        room.add_peer("p3", "P3 again", true, boxes[3].0.clone(), "r1");
        // At most 2 identities a flush: p0, p1 (gone), then p2, p3, then p4.
        assert!(room.flush_presence(2));
        let m = messages(&mut rx);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0]["type"], "peersLeft");
        assert_eq!(m[0]["peerIds"], json!(["p1"]));
        assert_eq!(m[1]["type"], "peersJoined");
        assert_eq!(m[1]["peers"][0]["peerId"], "p0");
        assert_eq!(m[1]["peerCount"], 5);
        assert!(room.flush_presence(2));
        let m = messages(&mut rx);
        assert_eq!(m.len(), 1, "p2 and p3 are present: {m:?}");
        let names: Vec<_> = m[0]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["displayName"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["P2", "P3 again"]);
        // p4 publishes before the next flush: announced at once, then its
        // producer.
        let (o4, _) = &boxes[4];
        assert!(room.commit_transport("p4", o4, Direction::Send, "t4"));
        assert!(room.commit_producer("p4", o4, "t4", "pr4", MediaKind::Audio, "mic"));
        room.announce_producer("pr4");
        let m = messages(&mut rx);
        let types: Vec<_> = m.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["peersJoined", "newProducer"]);
        assert_eq!(m[0]["peers"][0]["peerId"], "p4");
        assert_eq!(m[0]["peers"][0]["producers"][0]["producerId"], "pr4");
        assert!(!room.flush_presence(2), "p4 was told already");
        assert!(messages(&mut rx).is_empty());
    }

    #[test]
    fn the_roster_pages_in_join_order_without_the_asker() {
        let mut room = RoomState::default();
        room.add_router(router("r1", "n1"));
        for i in 0..7 {
            let (o, _) = Outbox::channel();
            room.add_peer(&format!("p{i}"), "x", false, o, "r1");
        }
        let _ = room.remove_peer("p2");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = room.peer_page("p4", after, 2);
            assert_eq!(page.peer_count, 6);
            assert!(page.peers.len() <= 2);
            seen.extend(page.peers.into_iter().map(|p| p.peer_id));
            match page.next_cursor {
                Some(c) => after = Some(c.parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, ["p0", "p1", "p3", "p5", "p6"]);
        // A page that ends exactly at the last peer has no next cursor.
        let page = room.peer_page("p4", None, 5);
        assert_eq!(page.peers.len(), 5);
        assert!(page.next_cursor.is_none());
    }

    #[test]
    fn a_consumer_is_recorded_only_while_its_producer_and_session_last() {
        let mut room = RoomState::default();
        room.add_router(router("r1", "n1"));
        let (a, _a_rx) = Outbox::channel();
        let (b, _b_rx) = Outbox::channel();
        room.add_peer("a", "A", true, a.clone(), "r1");
        room.add_peer("b", "B", true, b.clone(), "r1");
        assert!(room.commit_transport("a", &a, Direction::Send, "ta"));
        assert!(room.commit_producer("a", &a, "ta", "pa", MediaKind::Video, "camera"));
        assert_eq!(
            room.plan_consume("b", "pa").unwrap_err().code,
            ErrorCode::OutOfOrder
        );
        assert!(room.commit_transport("b", &b, Direction::Recv, "tb"));
        let (router, recv) = room.plan_consume("b", "pa").unwrap();
        assert_eq!(recv, "tb");
        assert_eq!(router.router_id, room.peer("b").unwrap().router_id);
        let _ = room.remove_producer("pa");
        assert!(!room.commit_consumer("b", &b, "tb", "c1", "pa"));
        assert!(room.plan_own_consumer("b", "c1").is_err());
    }

    #[test]
    fn losing_a_node_sends_its_peers_away_and_closes_its_producers() {
        let mut room = RoomState::default();
        room.add_router(router("r1", "n1"));
        room.add_router(router("r2", "n2"));
        let (a, mut a_rx) = Outbox::channel();
        let (b, mut b_rx) = Outbox::channel();
        room.add_peer("a", "A", true, a.clone(), "r1");
        room.add_peer("b", "B", true, b.clone(), "r2");
        assert!(room.commit_transport("b", &b, Direction::Send, "tb"));
        assert!(room.commit_producer("b", &b, "tb", "pb", MediaKind::Audio, "mic"));
        room.flush_presence(10);
        let _ = (drain(&mut a_rx), drain(&mut b_rx));
        let NodeLoss {
            producers,
            sent_away: gone,
            orphans,
            ..
        } = room.lose_node("n2");
        assert!(orphans.is_empty());
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].0.as_str(), gone[0].1.transports.as_slice()),
            ("b", &["tb".to_string()][..])
        );
        assert_eq!(producers.len(), 1);
        assert_eq!(drain(&mut b_rx), ["reconnect"]);
        assert_eq!(drain(&mut a_rx), ["producerClosed"]);
        room.flush_presence(10);
        assert_eq!(drain(&mut a_rx), ["peersLeft"]);
        assert_eq!(room.routers().len(), 1);
        assert_eq!(room.lose_node("n2"), NodeLoss::default());
        let routers = room.close();
        assert!(room.closed);
        assert_eq!(routers.len(), 1);
    }

    #[test]
    fn losing_a_relaying_node_reoffers_what_it_fed_to_the_peers_past_it() {
        // a publishes on n1; n2 was fed from n1 and fed n3 (fan-out 1).
        let mut room = RoomState {
            pipes: RoomPipes::new(1),
            ..Default::default()
        };
        let (r1, r2, r3) = (router("r1", "n1"), router("r2", "n2"), router("r3", "n3"));
        for r in [&r1, &r2, &r3] {
            room.add_router(r.clone());
        }
        let (a, mut a_rx) = Outbox::channel();
        let (b, mut b_rx) = Outbox::channel();
        let (c, mut c_rx) = Outbox::channel();
        room.add_peer("a", "A", true, a.clone(), "r1");
        room.add_peer("b", "B", true, b.clone(), "r2");
        room.add_peer("c", "C", true, c.clone(), "r3");
        assert!(room.commit_transport("a", &a, Direction::Send, "ta"));
        assert!(room.commit_producer("a", &a, "ta", "pa", MediaKind::Video, "camera"));
        room.pipes.record_feed("pa", &r2, "n1");
        room.pipes.record_feed("pa", &r3, "n2");
        room.flush_presence(10);
        let _ = (drain(&mut a_rx), drain(&mut b_rx), drain(&mut c_rx));

        let loss = room.lose_node("n2");
        assert_eq!(loss.orphans, vec![("pa".to_string(), "n3".to_string())]);
        assert!(loss.dead_pipes.is_empty(), "no pair was made here");
        assert!(loss.producers.is_empty(), "a's producer lives on");
        assert!(!room.pipes.is_available("pa", "r3"), "n3's copy is stale");
        assert!(room.pipes.is_available("pa", "r1"));
        assert_eq!(room.router_on("n3"), Some(&r3));
        room.reoffer("pa", "n3");
        assert_eq!(drain(&mut c_rx), ["producerClosed", "newProducer"]);
        assert_eq!(drain(&mut b_rx), ["reconnect"]);
        assert!(
            drain(&mut a_rx).is_empty(),
            "the publisher is not offered its own"
        );
        // n3 is fed from n1 now (the only node with free fan-out).
        assert_eq!(room.pipes.fed_by("pa", "n1"), 0);

        // Losing the origin's node closes the producer: nothing to reoffer.
        let loss = room.lose_node("n1");
        assert!(loss.orphans.is_empty());
        assert_eq!(loss.producers.len(), 1);
    }
}
