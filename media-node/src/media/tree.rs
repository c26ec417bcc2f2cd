//! The node's media objects as the tree mediasoup builds them: router ->
//! transports -> producers and consumers, plus the producers a router holds
//! without a transport (same-node piped copies). Every object is found by id
//! and knows its parent; every parent keeps the ids of its children, so a
//! removal visits only the subtree it removes (a leave surge is linear, not
//! quadratic) and the per-worker counts of the load report are kept as the
//! tree changes instead of being recounted.
//!
//! Pure data: no locks, no I/O, no mediasoup calls. [`super::Rooms`] keeps one
//! tree behind its mutex; whatever a removal takes out comes back as a
//! [`Removed`] that the caller drops after unlocking, because dropping a
//! mediasoup handle closes the object and its close handlers run right there.
//! Generic over the handle and id types ([`Kinds`]) so that it is tested here
//! without a worker.
//!
//! About 660 lines, a fifth of them its unit tests: one data structure.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

/// The types a tree holds.
pub trait Kinds {
    /// Router id.
    type RouterId: Copy + Eq + Hash + Debug;
    /// Transport id.
    type TransportId: Copy + Eq + Hash + Debug;
    /// Producer id (a piped copy keeps its source's id, once per router).
    type ProducerId: Copy + Eq + Hash + Debug;
    /// Consumer id.
    type ConsumerId: Copy + Eq + Hash + Debug;
    /// What a router node holds.
    type Router;
    /// What a transport node holds.
    type Transport;
    /// What a producer node holds.
    type Producer;
    /// What a consumer node holds.
    type Consumer;
}

/// A producer is keyed by its router and its id.
pub type ProducerKey<K> = (<K as Kinds>::RouterId, <K as Kinds>::ProducerId);

/// Per-worker object counts, for the load report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Routers.
    pub routers: u32,
    /// Transports of every kind.
    pub transports: u32,
    /// Producers, piped copies included.
    pub producers: u32,
    /// Consumers, pipe consumers included.
    pub consumers: u32,
}

/// What a producer is on its router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Sent to this node by a participant or an ingest.
    Source,
    /// Piped from another router of this node (same id as its source).
    SameNodePipe,
    /// Arrived over a cross-node pipe (same id as its source on the other node).
    RemotePipe,
}

/// A router and the ids of what hangs off it.
pub struct RouterNode<K: Kinds> {
    /// The handle.
    pub handle: K::Router,
    /// The room it serves.
    pub room: String,
    /// Its worker.
    pub worker: usize,
    transports: HashSet<K::TransportId>,
    /// Producers without a transport of their own (same-node piped copies).
    copies: HashSet<K::ProducerId>,
}

/// A transport and the ids of its producers and consumers.
pub struct TransportNode<K: Kinds> {
    /// The handle.
    pub handle: K::Transport,
    /// Its router.
    pub router: K::RouterId,
    /// The participant it belongs to; `None` for pipe transports (the room's).
    pub participant: Option<String>,
    producers: HashSet<K::ProducerId>,
    consumers: HashSet<K::ConsumerId>,
}

/// A producer.
pub struct ProducerNode<K: Kinds> {
    /// The handle.
    pub handle: K::Producer,
    /// The transport it receives on; `None` for same-node piped copies.
    pub transport: Option<K::TransportId>,
    /// Source or copy.
    pub origin: Origin,
}

/// A consumer.
pub struct ConsumerNode<K: Kinds> {
    /// The handle.
    pub handle: K::Consumer,
    /// The transport it sends on.
    pub transport: K::TransportId,
}

/// One router of a room and what hangs off it ([`Tree::room`]).
pub struct RoomRouter<'a, K: Kinds> {
    /// Its id.
    pub id: K::RouterId,
    /// The router.
    pub node: &'a RouterNode<K>,
    /// Participants' transports on it.
    pub transports: Vec<(K::TransportId, &'a TransportNode<K>)>,
    /// Producers on it, sources and copies.
    pub producers: Vec<(K::ProducerId, &'a ProducerNode<K>)>,
    /// Consumers on those transports.
    pub consumers: Vec<(K::ConsumerId, &'a ConsumerNode<K>)>,
}

/// Why an object could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Its parent is not (or no longer) in the tree.
    #[error("its {0} is gone")]
    ParentGone(&'static str),
    /// An object with this id is there already.
    #[error("it exists already")]
    Exists,
}

/// Whatever a removal took out of the tree: drop it after unlocking.
#[must_use = "drop the removed handles after releasing the lock"]
pub struct Removed<K: Kinds> {
    /// Routers, with their room.
    pub routers: Vec<(K::RouterId, RouterNode<K>)>,
    /// Transports.
    pub transports: Vec<(K::TransportId, TransportNode<K>)>,
    /// Producers, with the room of their router.
    pub producers: Vec<(ProducerKey<K>, String, ProducerNode<K>)>,
    /// Consumers.
    pub consumers: Vec<(K::ConsumerId, ConsumerNode<K>)>,
}

impl<K: Kinds> Default for Removed<K> {
    fn default() -> Self {
        Self {
            routers: Vec::new(),
            transports: Vec::new(),
            producers: Vec::new(),
            consumers: Vec::new(),
        }
    }
}

impl<K: Kinds> Removed<K> {
    /// Nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
            && self.transports.is_empty()
            && self.producers.is_empty()
            && self.consumers.is_empty()
    }
}

/// The tree.
pub struct Tree<K: Kinds> {
    routers: HashMap<K::RouterId, RouterNode<K>>,
    transports: HashMap<K::TransportId, TransportNode<K>>,
    producers: HashMap<ProducerKey<K>, ProducerNode<K>>,
    consumers: HashMap<K::ConsumerId, ConsumerNode<K>>,
    /// Where each producer id exists (its source and its copies).
    producer_routers: HashMap<K::ProducerId, Vec<K::RouterId>>,
    /// Each participant's transports.
    participants: HashMap<String, HashSet<K::TransportId>>,
    counts: Vec<WorkerCounts>,
}

impl<K: Kinds> Tree<K> {
    /// An empty tree for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            routers: HashMap::new(),
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            producer_routers: HashMap::new(),
            participants: HashMap::new(),
            counts: vec![WorkerCounts::default(); workers],
        }
    }

    /// Object counts per worker.
    pub fn counts(&self) -> &[WorkerCounts] {
        &self.counts
    }

    /// Routers in the tree.
    pub fn router_count(&self) -> usize {
        self.routers.len()
    }

    fn count(&mut self, worker: usize) -> &mut WorkerCounts {
        &mut self.counts[worker]
    }

    fn worker_of(&self, router: &K::RouterId) -> usize {
        self.routers[router].worker
    }

    // ----- lookups ----------------------------------------------------------

    /// Every producer (sources and copies) with its worker.
    pub fn producers(&self) -> impl Iterator<Item = (&ProducerNode<K>, usize)> {
        self.producers
            .iter()
            .map(|((router, _), p)| (p, self.worker_of(router)))
    }

    /// Every consumer with its transport.
    pub fn consumers(&self) -> impl Iterator<Item = (&ConsumerNode<K>, &TransportNode<K>)> {
        self.consumers
            .values()
            .filter_map(|c| Some((c, self.transports.get(&c.transport)?)))
    }

    /// Every transport with its worker.
    pub fn transports(&self) -> impl Iterator<Item = (&TransportNode<K>, usize)> {
        self.transports
            .values()
            .map(|t| (t, self.worker_of(&t.router)))
    }

    /// Everything one room has here: each of its routers with the
    /// participants' transports on it (pipe transports left out), every
    /// producer on it (sources and copies) and the consumers on those
    /// transports. Visits the whole tree: for the rare rebuild of a room.
    pub fn room(&self, room: &str) -> Vec<RoomRouter<'_, K>> {
        let mut out: Vec<RoomRouter<'_, K>> = self
            .routers
            .iter()
            .filter(|(_, r)| r.room == room)
            .map(|(id, node)| RoomRouter {
                id: *id,
                node,
                transports: Vec::new(),
                producers: Vec::new(),
                consumers: Vec::new(),
            })
            .collect();
        for r in &mut out {
            for (tid, t) in &self.transports {
                if t.router == r.id && t.participant.is_some() {
                    r.transports.push((*tid, t));
                    for cid in &t.consumers {
                        if let Some(c) = self.consumers.get(cid) {
                            r.consumers.push((*cid, c));
                        }
                    }
                }
            }
            for ((router, pid), p) in &self.producers {
                if *router == r.id {
                    r.producers.push((*pid, p));
                }
            }
        }
        out
    }

    /// A router.
    pub fn router(&self, id: &K::RouterId) -> Option<&RouterNode<K>> {
        self.routers.get(id)
    }

    /// A transport.
    pub fn transport(&self, id: &K::TransportId) -> Option<&TransportNode<K>> {
        self.transports.get(id)
    }

    /// The worker of a transport.
    pub fn transport_worker(&self, id: &K::TransportId) -> Option<usize> {
        let t = self.transports.get(id)?;
        Some(self.worker_of(&t.router))
    }

    /// A producer on one router.
    pub fn producer(&self, key: &ProducerKey<K>) -> Option<&ProducerNode<K>> {
        self.producers.get(key)
    }

    /// Every router holding a producer of this id (source first if asked for by
    /// the caller's sort), with the worker of each.
    pub fn producer_copies(
        &self,
        id: &K::ProducerId,
    ) -> Vec<(K::RouterId, usize, &ProducerNode<K>)> {
        self.producer_routers
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let p = self.producers.get(&(*r, *id))?;
                Some((*r, self.worker_of(r), p))
            })
            .collect()
    }

    /// A consumer and its worker.
    pub fn consumer(&self, id: &K::ConsumerId) -> Option<(&ConsumerNode<K>, usize)> {
        let c = self.consumers.get(id)?;
        Some((c, self.transport_worker(&c.transport)?))
    }

    // ----- inserts ----------------------------------------------------------

    /// Adds a router.
    pub fn insert_router(
        &mut self,
        id: K::RouterId,
        room: String,
        worker: usize,
        handle: K::Router,
    ) -> Result<(), InsertError> {
        if self.routers.contains_key(&id) {
            return Err(InsertError::Exists);
        }
        self.routers.insert(
            id,
            RouterNode {
                handle,
                room,
                worker,
                transports: HashSet::new(),
                copies: HashSet::new(),
            },
        );
        self.count(worker).routers += 1;
        Ok(())
    }

    /// Adds a transport under its router.
    pub fn insert_transport(
        &mut self,
        id: K::TransportId,
        router: K::RouterId,
        participant: Option<String>,
        handle: K::Transport,
    ) -> Result<(), InsertError> {
        if self.transports.contains_key(&id) {
            return Err(InsertError::Exists);
        }
        let r = self
            .routers
            .get_mut(&router)
            .ok_or(InsertError::ParentGone("router"))?;
        r.transports.insert(id);
        let worker = r.worker;
        if let Some(p) = &participant {
            self.participants.entry(p.clone()).or_default().insert(id);
        }
        self.transports.insert(
            id,
            TransportNode {
                handle,
                router,
                participant,
                producers: HashSet::new(),
                consumers: HashSet::new(),
            },
        );
        self.count(worker).transports += 1;
        Ok(())
    }

    /// Adds a producer: on its transport, or (a same-node piped copy, `transport`
    /// `None`) directly on the router.
    pub fn insert_producer(
        &mut self,
        router: K::RouterId,
        id: K::ProducerId,
        transport: Option<K::TransportId>,
        origin: Origin,
        handle: K::Producer,
    ) -> Result<(), InsertError> {
        if self.producers.contains_key(&(router, id)) {
            return Err(InsertError::Exists);
        }
        match transport {
            Some(t) => {
                let node = self
                    .transports
                    .get_mut(&t)
                    .filter(|n| n.router == router)
                    .ok_or(InsertError::ParentGone("transport"))?;
                node.producers.insert(id);
            }
            None => {
                self.routers
                    .get_mut(&router)
                    .ok_or(InsertError::ParentGone("router"))?
                    .copies
                    .insert(id);
            }
        }
        self.producers.insert(
            (router, id),
            ProducerNode {
                handle,
                transport,
                origin,
            },
        );
        self.producer_routers.entry(id).or_default().push(router);
        let worker = self.worker_of(&router);
        self.count(worker).producers += 1;
        Ok(())
    }

    /// Adds a consumer on its transport.
    pub fn insert_consumer(
        &mut self,
        id: K::ConsumerId,
        transport: K::TransportId,
        handle: K::Consumer,
    ) -> Result<(), InsertError> {
        if self.consumers.contains_key(&id) {
            return Err(InsertError::Exists);
        }
        let node = self
            .transports
            .get_mut(&transport)
            .ok_or(InsertError::ParentGone("transport"))?;
        node.consumers.insert(id);
        let router = node.router;
        self.consumers
            .insert(id, ConsumerNode { handle, transport });
        let worker = self.worker_of(&router);
        self.count(worker).consumers += 1;
        Ok(())
    }

    // ----- removals ---------------------------------------------------------

    /// Removes a router and everything on it.
    pub fn remove_router(&mut self, id: &K::RouterId) -> Removed<K> {
        let mut removed = Removed::default();
        let Some(node) = self.routers.get(id) else {
            return removed;
        };
        let transports: Vec<_> = node.transports.iter().copied().collect();
        let copies: Vec<_> = node.copies.iter().copied().collect();
        for t in transports {
            self.take_transport(&t, &mut removed);
        }
        for p in copies {
            self.take_producer(&(*id, p), &mut removed);
        }
        let node = self.routers.remove(id).expect("looked up above");
        self.count(node.worker).routers -= 1;
        removed.routers.push((*id, node));
        removed
    }

    /// Removes a transport with its producers and consumers.
    pub fn remove_transport(&mut self, id: &K::TransportId) -> Removed<K> {
        let mut removed = Removed::default();
        self.take_transport(id, &mut removed);
        removed
    }

    /// Removes one producer (on one router).
    pub fn remove_producer(&mut self, key: &ProducerKey<K>) -> Removed<K> {
        let mut removed = Removed::default();
        self.take_producer(key, &mut removed);
        removed
    }

    /// Removes every copy of a producer id on this node.
    pub fn remove_producer_everywhere(&mut self, id: &K::ProducerId) -> Removed<K> {
        let mut removed = Removed::default();
        for router in self.producer_routers.get(id).cloned().unwrap_or_default() {
            self.take_producer(&(router, *id), &mut removed);
        }
        removed
    }

    /// Removes one consumer.
    pub fn remove_consumer(&mut self, id: &K::ConsumerId) -> Removed<K> {
        let mut removed = Removed::default();
        self.take_consumer(id, &mut removed);
        removed
    }

    /// Removes every transport (and what is on it) a participant owns.
    pub fn remove_participant(&mut self, participant: &str) -> Removed<K> {
        let mut removed = Removed::default();
        for t in self.participants.remove(participant).unwrap_or_default() {
            self.take_transport(&t, &mut removed);
        }
        removed
    }

    /// Removes everything (the node stops).
    pub fn clear(&mut self) -> Removed<K> {
        let mut removed = Removed::default();
        let ids: Vec<_> = self.routers.keys().copied().collect();
        for id in ids {
            let r = self.remove_router(&id);
            removed.routers.extend(r.routers);
            removed.transports.extend(r.transports);
            removed.producers.extend(r.producers);
            removed.consumers.extend(r.consumers);
        }
        removed
    }

    fn take_transport(&mut self, id: &K::TransportId, removed: &mut Removed<K>) {
        let Some(node) = self.transports.get(id) else {
            return;
        };
        let router = node.router;
        let producers: Vec<_> = node.producers.iter().copied().collect();
        let consumers: Vec<_> = node.consumers.iter().copied().collect();
        for p in producers {
            self.take_producer(&(router, p), removed);
        }
        for c in consumers {
            self.take_consumer(&c, removed);
        }
        let node = self.transports.remove(id).expect("looked up above");
        if let Some(r) = self.routers.get_mut(&router) {
            r.transports.remove(id);
        }
        if let Some(p) = &node.participant {
            if let Some(set) = self.participants.get_mut(p) {
                set.remove(id);
                if set.is_empty() {
                    self.participants.remove(p);
                }
            }
        }
        let worker = self.worker_of(&router);
        self.count(worker).transports -= 1;
        removed.transports.push((*id, node));
    }

    fn take_producer(&mut self, key: &ProducerKey<K>, removed: &mut Removed<K>) {
        let Some(node) = self.producers.remove(key) else {
            return;
        };
        let (router, id) = *key;
        match node.transport {
            Some(t) => {
                if let Some(t) = self.transports.get_mut(&t) {
                    t.producers.remove(&id);
                }
            }
            None => {
                if let Some(r) = self.routers.get_mut(&router) {
                    r.copies.remove(&id);
                }
            }
        }
        if let Some(routers) = self.producer_routers.get_mut(&id) {
            routers.retain(|r| *r != router);
            if routers.is_empty() {
                self.producer_routers.remove(&id);
            }
        }
        let r = &self.routers[&router];
        let (room, worker) = (r.room.clone(), r.worker);
        self.count(worker).producers -= 1;
        removed.producers.push((*key, room, node));
    }

    fn take_consumer(&mut self, id: &K::ConsumerId, removed: &mut Removed<K>) {
        let Some(node) = self.consumers.remove(id) else {
            return;
        };
        let router = match self.transports.get_mut(&node.transport) {
            Some(t) => {
                t.consumers.remove(id);
                Some(t.router)
            }
            None => None,
        };
        if let Some(worker) = router.map(|r| self.worker_of(&r)) {
            self.count(worker).consumers -= 1;
        }
        removed.consumers.push((*id, node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T;
    impl Kinds for T {
        type RouterId = u32;
        type TransportId = u32;
        type ProducerId = u32;
        type ConsumerId = u32;
        type Router = ();
        type Transport = ();
        type Producer = ();
        type Consumer = ();
    }

    fn totals(t: &Tree<T>) -> (u32, u32, u32, u32) {
        t.counts().iter().fold((0, 0, 0, 0), |a, c| {
            (
                a.0 + c.routers,
                a.1 + c.transports,
                a.2 + c.producers,
                a.3 + c.consumers,
            )
        })
    }

    /// Two routers on two workers; participant "a" sends producer 100 on
    /// router 1 (copied to router 2); "b" on router 2 consumes it.
    fn room() -> Tree<T> {
        let mut t = Tree::<T>::new(2);
        t.insert_router(1, "room".into(), 0, ()).unwrap();
        t.insert_router(2, "room".into(), 1, ()).unwrap();
        t.insert_transport(10, 1, Some("a".into()), ()).unwrap();
        t.insert_transport(20, 2, Some("b".into()), ()).unwrap();
        t.insert_producer(1, 100, Some(10), Origin::Source, ())
            .unwrap();
        t.insert_producer(2, 100, None, Origin::SameNodePipe, ())
            .unwrap();
        t.insert_consumer(200, 20, ()).unwrap();
        t
    }

    #[test]
    fn a_room_lists_its_routers_transports_producers_and_consumers() {
        let mut t = room();
        t.insert_router(3, "other".into(), 0, ()).unwrap();
        t.insert_transport(30, 3, Some("c".into()), ()).unwrap();
        // A pipe transport (no participant) is not listed.
        t.insert_transport(11, 1, None, ()).unwrap();
        let mut routers = t.room("room");
        routers.sort_by_key(|r| r.id);
        let ids: Vec<u32> = routers.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2]);
        let transports: Vec<Vec<u32>> = routers
            .iter()
            .map(|r| r.transports.iter().map(|(id, _)| *id).collect())
            .collect();
        assert_eq!(transports, [vec![10], vec![20]]);
        assert_eq!(routers[0].producers.len(), 1);
        assert_eq!(routers[0].producers[0].1.origin, Origin::Source);
        assert_eq!(routers[1].producers[0].1.origin, Origin::SameNodePipe);
        assert_eq!(
            routers[1]
                .consumers
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            [200]
        );
        assert!(t.room("nowhere").is_empty());
    }

    #[test]
    fn counts_follow_inserts_and_removals_per_worker() {
        let mut t = room();
        assert_eq!(totals(&t), (2, 2, 2, 1));
        assert_eq!(t.counts()[1].consumers, 1);
        assert_eq!(t.producer_copies(&100).len(), 2);
        let r = t.remove_participant("a");
        assert_eq!((r.transports.len(), r.producers.len()), (1, 1));
        assert_eq!(r.producers[0].1, "room");
        assert_eq!(totals(&t), (2, 1, 1, 1));
        let r = t.remove_router(&2);
        assert_eq!(
            (
                r.routers.len(),
                r.transports.len(),
                r.producers.len(),
                r.consumers.len()
            ),
            (1, 1, 1, 1)
        );
        let _ = t.remove_router(&1);
        assert_eq!(totals(&t), (0, 0, 0, 0));
        assert!(t.producer_copies(&100).is_empty());
        assert!(t.participants.is_empty());
    }

    #[test]
    fn an_object_whose_parent_is_gone_is_refused() {
        let mut t = room();
        let _ = t.remove_router(&1);
        assert_eq!(
            t.insert_transport(11, 1, Some("a".into()), ()),
            Err(InsertError::ParentGone("router"))
        );
        assert_eq!(
            t.insert_producer(1, 101, Some(10), Origin::Source, ()),
            Err(InsertError::ParentGone("transport"))
        );
        assert_eq!(
            t.insert_consumer(201, 10, ()),
            Err(InsertError::ParentGone("transport"))
        );
        assert_eq!(
            t.insert_producer(2, 100, None, Origin::SameNodePipe, ()),
            Err(InsertError::Exists)
        );
        // A producer of router 2 cannot hang off a transport of another router.
        assert_eq!(
            t.insert_producer(2, 102, Some(10), Origin::Source, ()),
            Err(InsertError::ParentGone("transport"))
        );
    }

    #[test]
    fn removing_what_is_gone_removes_nothing() {
        let mut t = room();
        assert!(t.remove_consumer(&999).is_empty());
        assert!(t.remove_participant("nobody").is_empty());
        let _ = t.remove_producer_everywhere(&100);
        assert!(t.remove_producer(&(1, 100)).is_empty());
        assert_eq!(totals(&t), (2, 2, 0, 1));
    }

    #[test]
    fn a_leave_surge_touches_only_what_leaves() {
        // 500 participants, each with two transports, a producer and 20
        // consumers: removing them all is linear in what they own.
        let mut t = Tree::<T>::new(1);
        t.insert_router(1, "big".into(), 0, ()).unwrap();
        let mut next = 1000;
        for p in 0..500u32 {
            let name = format!("p{p}");
            let (send, recv) = (next, next + 1);
            next += 2;
            t.insert_transport(send, 1, Some(name.clone()), ()).unwrap();
            t.insert_transport(recv, 1, Some(name), ()).unwrap();
            t.insert_producer(1, send, Some(send), Origin::Source, ())
                .unwrap();
            for _ in 0..20 {
                t.insert_consumer(next, recv, ()).unwrap();
                next += 1;
            }
        }
        assert_eq!(totals(&t), (1, 1000, 500, 10_000));
        for p in 0..500u32 {
            let r = t.remove_participant(&format!("p{p}"));
            assert_eq!(r.consumers.len(), 20);
        }
        assert_eq!(totals(&t), (1, 0, 0, 0));
    }
}
