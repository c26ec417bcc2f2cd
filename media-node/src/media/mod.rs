//! Join path on the node: [`crate::rpc`] -> **media** -> [`crate::workers`].
//! Every media object this node hosts, kept as mediasoup's own tree
//! ([`tree`]: router -> transports -> producers/consumers, by id, with
//! parents), and the operations the gRPC API offers on it, one file per kind
//! of object: [`webrtc`] (browser transports, producers, consumers),
//! [`pipes`] (between workers and between nodes), [`ingest`] (plain RTP in),
//! [`describe`] (a room's objects, for a coordinator taking it over).
//! The domain takes typed ids and parameters; parsing wire strings and
//! building replies is `rpc`'s.
//!
//! Invariants, enforced here:
//! - One lock, `Rooms::tree` (a std mutex): never held across an `.await`,
//!   never while dropping a mediasoup handle. A removal collects what it takes
//!   out ([`tree::Removed`]) under the lock and drops it after unlocking,
//!   because dropping a handle closes the object and runs its close handlers.
//! - mediasoup callbacks capture only channel senders (the event broadcast and
//!   the cleanup queue), never `Rooms`: a callback holding the last reference
//!   would drop every handle inside mediasoup's dispatch, which deadlocks on
//!   the channel lock that dispatches it.
//! - Removals that mediasoup's own events ask for (a transport closed because
//!   its router did...) go through the cleanup queue and its task, for the
//!   same reason.
//! - A new object is inserted, then subscribed to (`on_close`, which mediasoup
//!   calls in place for an object already closed), then re-checked: a close
//!   racing the registration removes the entry instead of leaving a dead one.

pub mod codecs;
pub mod describe;
pub mod events;
pub mod ingest;
pub mod pipes;
pub mod tree;
pub mod webrtc;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use throng_hooks::Hooks;
use throng_proto::media as pb;
use tokio::sync::{broadcast, mpsc};
use tracing::info;

use crate::error::MediaError;
use crate::node::NodeState;
use crate::workers::NodeWorker;
pub use describe::{ProducerLabel, TransportLabel};
use events::{Cleanup, Events};
use tree::{InsertError, Kinds, Origin, ProducerKey, Removed, Tree, WorkerCounts};

/// The mediasoup handles the node's tree holds.
pub struct Ms;

/// A router and the room's active speaker observer on it.
pub struct RouterHandle {
    /// The router.
    pub router: Router,
    /// Its active speaker observer (audio producers are added to it).
    pub active_speaker: ActiveSpeakerObserver,
}

/// A producer; `serial` tells a copy from a later one with the same id.
pub struct ProducerHandle {
    /// The producer.
    pub producer: Producer,
    /// The pipe consumer that feeds a same-node piped copy: it lives as long
    /// as the copy.
    pub feed: Option<Consumer>,
    serial: u64,
}

impl Kinds for Ms {
    type RouterId = RouterId;
    type TransportId = TransportId;
    type ProducerId = ProducerId;
    type ConsumerId = ConsumerId;
    type Router = RouterHandle;
    type Transport = AnyTransport;
    type Producer = ProducerHandle;
    type Consumer = Consumer;
}

/// Any transport this node creates.
#[derive(Clone, Debug)]
pub enum AnyTransport {
    /// Browser transport on the worker's WebRtcServer.
    WebRtc(WebRtcTransport),
    /// Pipe between routers of different nodes.
    Pipe(PipeTransport),
    /// Plain RTP (ingest, non-browser participants).
    Plain(PlainTransport),
}

impl AnyTransport {
    fn id(&self) -> TransportId {
        match self {
            Self::WebRtc(t) => t.id(),
            Self::Pipe(t) => t.id(),
            Self::Plain(t) => t.id(),
        }
    }

    fn closed(&self) -> bool {
        match self {
            Self::WebRtc(t) => t.closed(),
            Self::Pipe(t) => t.closed(),
            Self::Plain(t) => t.closed(),
        }
    }

    fn on_close(&self, callback: Box<dyn FnOnce() + Send + 'static>) {
        match self {
            Self::WebRtc(t) => t.on_close(callback).detach(),
            Self::Pipe(t) => t.on_close(callback).detach(),
            Self::Plain(t) => t.on_close(callback).detach(),
        }
    }
}

/// The node's media objects and the events they raise.
pub struct Rooms {
    workers: Arc<[NodeWorker]>,
    node: Arc<NodeState>,
    tree: Mutex<Tree<Ms>>,
    events: Events,
    cleanup: mpsc::UnboundedSender<Cleanup>,
    /// Address pipe and plain transports listen on and announce.
    pipe_listen_ip: IpAddr,
    pipe_announced_address: Option<String>,
    /// mediasoup's `keyFrameRequestDelay` for every producer this node
    /// creates from a sender (participant or remote pipe).
    key_frame_request_delay_ms: u32,
    hooks: Hooks,
    serials: std::sync::atomic::AtomicU64,
}

/// The tree's lock (poisoning is ignored: the tree stays consistent between
/// statements that could panic).
fn lock(m: &Mutex<Tree<Ms>>) -> MutexGuard<'_, Tree<Ms>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rooms {
    /// An empty set of rooms over the node's workers.
    pub fn new(
        workers: Arc<[NodeWorker]>,
        node: Arc<NodeState>,
        pipe_listen_ip: IpAddr,
        pipe_announced_address: Option<String>,
        key_frame_request_delay_ms: u32,
        hooks: Hooks,
    ) -> Arc<Self> {
        let (cleanup, cleanup_rx) = mpsc::unbounded_channel();
        let rooms = Arc::new(Self {
            tree: Mutex::new(Tree::new(workers.len())),
            workers,
            node,
            events: Events::new(),
            cleanup,
            pipe_listen_ip,
            pipe_announced_address,
            key_frame_request_delay_ms,
            hooks,
            serials: Default::default(),
        });
        tokio::spawn(Self::cleanup_loop(Arc::downgrade(&rooms), cleanup_rx));
        rooms
    }

    /// Applies the removals mediasoup's events ask for, outside any callback.
    async fn cleanup_loop(rooms: Weak<Self>, mut rx: mpsc::UnboundedReceiver<Cleanup>) {
        while let Some(cleanup) = rx.recv().await {
            let Some(rooms) = rooms.upgrade() else { break };
            rooms.apply_cleanup(cleanup);
        }
    }

    fn apply_cleanup(&self, cleanup: Cleanup) {
        let removed = {
            let mut tree = self.lock();
            match cleanup {
                Cleanup::Router(id) => tree.remove_router(&id),
                Cleanup::Transport(id) => tree.remove_transport(&id),
                Cleanup::Producer { key, serial } => {
                    if tree
                        .producer(&key)
                        .is_some_and(|p| p.handle.serial == serial)
                    {
                        tree.remove_producer(&key)
                    } else {
                        Removed::default()
                    }
                }
                Cleanup::Consumer { id, participant } => {
                    let removed = tree.remove_consumer(&id);
                    if let (false, Some(participant_id)) = (removed.is_empty(), participant) {
                        self.events
                            .emit(pb::event::Event::ConsumerClosed(pb::ConsumerClosed {
                                consumer_id: id.to_string(),
                                participant_id,
                                reason: "producer_closed".into(),
                            }));
                    }
                    removed
                }
            }
        };
        self.finish_removal(removed);
    }

    /// Announces the sources among what was removed, then drops it all (the
    /// tree's lock is not held here).
    fn finish_removal(&self, removed: Removed<Ms>) {
        for ((_, id), room, p) in &removed.producers {
            if p.origin == Origin::Source {
                self.events
                    .emit(pb::event::Event::ProducerClosed(pb::ProducerClosed {
                        producer_id: id.to_string(),
                        room_id: room.clone(),
                    }));
            }
        }
        drop(removed);
    }

    fn lock(&self) -> MutexGuard<'_, Tree<Ms>> {
        lock(&self.tree)
    }

    /// What the stats sweep reads ([`crate::metrics`]): the producers
    /// participants send (sources, not piped copies) and the consumers they
    /// receive (on their own transports, not pipes), with their kind; handles
    /// cloned under the lock, asked for stats after it.
    pub fn streams(&self) -> (Vec<Producer>, Vec<Consumer>) {
        let tree = self.lock();
        let producers = tree
            .producers()
            .filter(|(p, _)| p.origin == Origin::Source)
            .map(|(p, _)| p.handle.producer.clone())
            .collect();
        let consumers = tree
            .consumers()
            .filter(|(_, t)| t.participant.is_some())
            .map(|(c, _)| c.handle.clone())
            .collect();
        (producers, consumers)
    }

    /// Per worker: cross-node pipe transports, and producers piped in (from
    /// another worker of this node or another node).
    pub fn pipe_counts(&self) -> Vec<(u32, u32)> {
        let tree = self.lock();
        let mut counts = vec![(0, 0); self.workers.len()];
        for (t, worker) in tree.transports() {
            if matches!(t.handle, AnyTransport::Pipe(_)) {
                counts[worker].0 += 1;
            }
        }
        for (p, worker) in tree.producers() {
            if p.origin != Origin::Source {
                counts[worker].1 += 1;
            }
        }
        counts
    }

    /// Subscribes to the node's events.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.events.subscribe()
    }

    /// Publishes a worker death to every subscriber.
    pub fn emit_worker_died(&self, worker_index: usize, reason: String) {
        self.events
            .emit(pb::event::Event::WorkerDied(pb::WorkerDied {
                worker_index: worker_index as u32,
                reason,
            }));
    }

    /// The cluster evicted the node while it was cut off: everything here is
    /// nobody's. Tells the coordinators still following it (NodeEvicted),
    /// then closes everything; returns the routers closed.
    pub fn evicted(&self) -> usize {
        let routers = self.router_count();
        self.events
            .emit(pb::event::Event::NodeEvicted(pb::NodeEvicted {
                routers: routers as u32,
            }));
        self.close_all();
        routers
    }

    /// The node's workers.
    pub fn workers(&self) -> &[NodeWorker] {
        &self.workers
    }

    /// The node's state (draining, dead).
    pub fn node(&self) -> &NodeState {
        &self.node
    }

    /// Object counts per worker index.
    pub fn counts(&self) -> Vec<WorkerCounts> {
        self.lock().counts().to_vec()
    }

    /// Routers (rooms on workers) still open.
    pub fn router_count(&self) -> usize {
        self.lock().router_count()
    }

    /// Closes everything (the node stops): handles dropped here, outside any
    /// callback.
    pub fn close_all(&self) {
        let removed = self.lock().clear();
        self.finish_removal(removed);
    }

    fn worker(&self, index: usize) -> Result<&NodeWorker, MediaError> {
        let worker = self.workers.get(index).ok_or_else(|| {
            MediaError::invalid(
                "worker_index",
                format!("{index} >= {} workers", self.workers.len()),
            )
        })?;
        if worker.worker.closed() {
            return Err(MediaError::WorkerUnavailable(index));
        }
        Ok(worker)
    }

    // ----- registration: insert, subscribe, re-check --------------------------

    /// Inserts what `insert` adds, then subscribes `subscribe` (which must
    /// send a cleanup when the object closes), then re-checks `closed`. An
    /// insert refused because the parent is gone closes the object (its handle
    /// comes back in the error) and answers NotFound.
    fn register(
        &self,
        what: &'static str,
        insert: impl FnOnce(&mut Tree<Ms>) -> Result<(), InsertError>,
        subscribe: impl FnOnce(),
        closed: impl Fn() -> bool,
        remove: impl FnOnce(&mut Tree<Ms>) -> Removed<Ms>,
    ) -> Result<(), MediaError> {
        let inserted = insert(&mut self.lock());
        match inserted {
            Ok(()) => {
                subscribe();
                if closed() {
                    let removed = remove(&mut self.lock());
                    self.finish_removal(removed);
                    return Err(MediaError::not_found(what, "closed while being created"));
                }
                Ok(())
            }
            Err(InsertError::ParentGone(parent)) => Err(MediaError::not_found(
                parent,
                format!("(closed while the {what} was being created)"),
            )),
            Err(InsertError::Exists) => Err(MediaError::FailedPrecondition(format!(
                "the {what} exists already"
            ))),
        }
    }

    fn register_router(
        &self,
        room: &str,
        worker: usize,
        router: Router,
        active_speaker: ActiveSpeakerObserver,
    ) -> Result<(), MediaError> {
        let id = router.id();
        let handle = RouterHandle {
            router: router.clone(),
            active_speaker,
        };
        self.register(
            "router",
            |t| t.insert_router(id, room.to_string(), worker, handle),
            || events::on_router_close(&router, &self.cleanup),
            || router.closed(),
            |t| t.remove_router(&id),
        )
    }

    fn register_transport(
        &self,
        transport: AnyTransport,
        router: RouterId,
        participant: Option<String>,
    ) -> Result<(), MediaError> {
        let id = transport.id();
        let t = transport.clone();
        self.register(
            "transport",
            |tree| tree.insert_transport(id, router, participant, transport),
            || events::on_transport_close(&t, &self.cleanup),
            || t.closed(),
            |tree| tree.remove_transport(&id),
        )
    }

    fn register_producer(
        &self,
        producer: Producer,
        router: RouterId,
        transport: Option<TransportId>,
        origin: Origin,
        feed: Option<Consumer>,
    ) -> Result<(), MediaError> {
        let key: ProducerKey<Ms> = (router, producer.id());
        let serial = self
            .serials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = ProducerHandle {
            producer: producer.clone(),
            feed,
            serial,
        };
        self.register(
            "producer",
            |t| t.insert_producer(router, key.1, transport, origin, handle),
            || events::on_producer_close(&producer, key, serial, &self.cleanup),
            || producer.closed(),
            |t| t.remove_producer(&key),
        )?;
        if producer.kind() == MediaKind::Audio {
            let observer = self
                .lock()
                .router(&router)
                .map(|r| r.handle.active_speaker.clone());
            if let Some(observer) = observer {
                let id = producer.id();
                tokio::spawn(async move {
                    if let Err(e) = observer
                        .add_producer(RtpObserverAddProducerOptions::new(id))
                        .await
                    {
                        tracing::debug!(producer_id = %id, error = %e, "not added to the active speaker observer");
                    }
                });
            }
        }
        Ok(())
    }

    fn register_consumer(
        &self,
        consumer: Consumer,
        transport: TransportId,
        participant: Option<String>,
    ) -> Result<(), MediaError> {
        let id = consumer.id();
        let c = consumer.clone();
        self.register(
            "consumer",
            |t| t.insert_consumer(id, transport, consumer),
            || events::watch_consumer(&c, participant, &self.cleanup, &self.events, &self.hooks),
            || c.closed(),
            |t| t.remove_consumer(&id),
        )
    }

    // ----- routers ------------------------------------------------------------

    /// A router for `room` on worker `worker`, with its active speaker observer.
    #[tracing::instrument(skip(self), fields(room = %room))]
    pub async fn create_router(&self, room: &str, worker: usize) -> Result<Router, MediaError> {
        if self.node.is_draining() {
            return Err(MediaError::FailedPrecondition(
                "node is draining: no new routers".into(),
            ));
        }
        let w = self.worker(worker)?;
        let router = w
            .worker
            .create_router(RouterOptions::new(codecs::media_codecs()))
            .await?;
        let mut observer_options = ActiveSpeakerObserverOptions::default();
        observer_options.interval = 300;
        let active_speaker = router
            .create_active_speaker_observer(observer_options)
            .await
            .map_err(MediaError::request("create active speaker observer"))?;
        events::on_dominant_speaker(&active_speaker, room, &self.events);
        self.register_router(room, worker, router.clone(), active_speaker)?;
        info!(router_id = %router.id(), "router created");
        Ok(router)
    }

    /// An existing router and its worker index.
    pub fn router(&self, id: RouterId) -> Result<(Router, usize), MediaError> {
        let tree = self.lock();
        let r = tree
            .router(&id)
            .ok_or_else(|| MediaError::not_found("router", id))?;
        Ok((r.handle.router.clone(), r.worker))
    }

    /// Closes a router and, with it, everything on it.
    pub fn close_router(&self, id: RouterId) -> Result<(), MediaError> {
        let removed = self.lock().remove_router(&id);
        if removed.routers.is_empty() {
            return Err(MediaError::not_found("router", id));
        }
        self.finish_removal(removed);
        Ok(())
    }

    /// A transport's handle, router and worker.
    fn transport(&self, id: TransportId) -> Result<(AnyTransport, RouterId, usize), MediaError> {
        let tree = self.lock();
        let t = tree
            .transport(&id)
            .ok_or_else(|| MediaError::not_found("transport", id))?;
        let worker = tree
            .transport_worker(&id)
            .expect("a transport has a router");
        Ok((t.handle.clone(), t.router, worker))
    }

    /// NotFound unless the transport exists (the gRPC API answers an unknown
    /// id before looking at what came with it).
    pub fn check_transport(&self, id: TransportId) -> Result<(), MediaError> {
        self.transport(id).map(|_| ())
    }

    /// A transport's participant (`None` for pipes).
    fn transport_participant(&self, id: TransportId) -> Option<String> {
        self.lock().transport(&id)?.participant.clone()
    }

    /// Closes a transport and its producers and consumers.
    pub fn close_transport(&self, id: TransportId) -> Result<(), MediaError> {
        let removed = self.lock().remove_transport(&id);
        if removed.transports.is_empty() {
            return Err(MediaError::not_found("transport", id));
        }
        self.finish_removal(removed);
        Ok(())
    }

    /// Closes everything `participant` owns on this node; returns how many
    /// transports that was.
    pub fn close_participant(&self, participant: &str) -> usize {
        let removed = self.lock().remove_participant(participant);
        let n = removed.transports.len();
        self.finish_removal(removed);
        n
    }
}
