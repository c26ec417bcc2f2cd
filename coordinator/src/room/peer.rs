//! A room's participants and what they own, as the room's state keeps them
//! (`room::state`): plain records, no I/O.

use std::collections::{HashMap, HashSet};

use crate::media::client::RouterRef;
use crate::protocol::{Direction, MediaKind, Outbox, Role};

/// A producer of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRec {
    /// Whose.
    pub peer_id: String,
    /// Paused by its peer (muted).
    pub paused: bool,
    /// Audio or video.
    pub kind: MediaKind,
    /// "mic", "camera", ...
    pub source: String,
    /// The router it arrives on.
    pub router_id: String,
}

/// One of a peer's consumers as the coordinator last set it on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRec {
    /// What it consumes.
    pub producer_id: String,
    /// Paused by the client (tile off screen).
    pub paused: bool,
    /// Preferred spatial layer the client asked for (tile size), if it did.
    pub preferred_layer: Option<u32>,
    /// Layers the node reports sending (simulcast), if it reported any.
    pub current_layers: Option<(Option<u32>, Option<u32>)>,
}

/// A participant.
pub struct Peer {
    /// Name shown to others.
    pub display_name: String,
    /// The token allows publishing (or a host promoted it).
    pub can_publish: bool,
    /// What it is in the room (an event's host, speaker or audience).
    pub role: Role,
    /// Its client's queue.
    pub outbox: Outbox,
    /// The router it was placed on.
    pub router_id: String,
    pub(super) send_transport: Option<String>,
    pub(super) recv_transport: Option<String>,
    pub(super) producers: HashSet<String>,
    pub(super) consumers: HashMap<String, ConsumerRec>,
    pub(super) seq: u64,
    /// What its resume token names (`auth::Claims::rsm`): only a token
    /// issued to this peer's join resumes it.
    pub resume_nonce: String,
    /// Its session ended without a leave: kept (media untouched) until it
    /// resumes or the grace ends. The number tells one detachment from the
    /// next, so that an old grace timer does not remove a peer that resumed
    /// and detached again.
    pub detached: Option<u64>,
    /// Rebuilt from the nodes by a coordinator that took the room over: its
    /// resume nonce is not known here, so its first resume token (of this
    /// identity and room) is taken as it comes.
    pub adopted: bool,
}

impl Peer {
    /// Its transport of one direction.
    pub fn transport(&self, direction: Direction) -> Option<&str> {
        match direction {
            Direction::Send => self.send_transport.as_deref(),
            Direction::Recv => self.recv_transport.as_deref(),
        }
    }

    pub(super) fn transport_slot(&mut self, direction: Direction) -> &mut Option<String> {
        match direction {
            Direction::Send => &mut self.send_transport,
            Direction::Recv => &mut self.recv_transport,
        }
    }

    /// Whether `transport_id` is one of its transports.
    pub fn owns_transport(&self, transport_id: &str) -> bool {
        self.send_transport.as_deref() == Some(transport_id)
            || self.recv_transport.as_deref() == Some(transport_id)
    }

    /// Whether `producer_id` is its.
    pub fn owns_producer(&self, producer_id: &str) -> bool {
        self.producers.contains(producer_id)
    }

    /// One of its consumers.
    pub fn consumer(&self, consumer_id: &str) -> Option<&ConsumerRec> {
        self.consumers.get(consumer_id)
    }

    /// Its consumers.
    pub fn consumers(&self) -> impl Iterator<Item = (&String, &ConsumerRec)> {
        self.consumers.iter()
    }

    /// Its producers' ids.
    pub fn producer_ids(&self) -> impl Iterator<Item = &String> {
        self.producers.iter()
    }
}

/// What leaving takes with it, for the node calls made after unlocking.
#[derive(Debug, PartialEq)]
pub struct PeerGone {
    /// Its router (its node closes its transports and what is on them).
    pub router: Option<RouterRef>,
    /// Its producers' copies elsewhere (to close on each node).
    pub producers: Vec<ProducerGone>,
    /// Its transports and consumers (to forget in the owner index).
    pub transports: Vec<String>,
    /// Its consumers.
    pub consumers: Vec<String>,
}

/// A producer that left the room, with the nodes holding it or a copy.
#[derive(Debug, PartialEq)]
pub struct ProducerGone {
    /// Producer id.
    pub producer_id: String,
    /// One router per node where it (or a copy) exists.
    pub nodes: Vec<RouterRef>,
}
