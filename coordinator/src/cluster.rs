//! What this coordinator knows of the cluster around it, and the only code
//! that watches it: the live media nodes (read from the registry; without
//! Redis, polled from the nodes themselves into the in-memory registry), one
//! event stream per live node, this coordinator's heartbeat and the reaping of
//! coordinators that stopped beating.
//!
//! A node is lost in exactly one place, [`Cluster::lose`], whichever way its
//! loss shows (its report says dead, its report expired while its event
//! stream is down too, its event stream reported a dead worker, or its event
//! stream ended and its gRPC port then refused connections: the process is
//! gone, and its report, still in the registry until its TTL, is ignored from
//! then on unless a newer one comes; or it says that another coordinator
//! evicted it while it was cut off). A report
//! missing while the node's stream is open is not a loss: Redis restarted
//! empty, or the node cannot reach Redis for now; its participants' calls go
//! on, and it takes no new placements until it reports again. Then its stream stops, its client is forgotten, its
//! reservations are evicted from the registry, and the rooms hear of it as
//! [`ClusterEvent::NodeLost`]. Everything the nodes report goes to the rooms
//! on the same channel, in order per node. Calls: registry, media clients and
//! events, the join queue (live-node count). Never calls the rooms.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use throng_proto::report::NodeReport;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use crate::join::queue::JoinQueue;
use crate::media::client::NodeClients;
use crate::media::events::{follow, NodeEvent};
use crate::registry::memory::MemoryRegistry;
use crate::registry::{Registry, RegistryError};

/// How often node reports are read (and, without Redis, polled).
pub const NODE_POLL: Duration = Duration::from_secs(1);
/// How long a node whose event stream is open may go without a report in a
/// registry that answers (it cannot reach Redis) before it is lost anyway.
pub const REPORT_MISSING_LIMIT: Duration = Duration::from_secs(10);
/// How long node reports are reused for placement: during a surge every
/// join would otherwise read them again (capacity itself is never cached).
const SNAPSHOT_TTL: Duration = Duration::from_millis(250);

/// What the rooms hear from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A live node reported something.
    Node(String, NodeEvent),
    /// A node is gone: its participants must be placed elsewhere.
    NodeLost(String),
}

/// Without Redis: the nodes to poll and the memory registry they go into.
pub struct Polled {
    /// The single-machine registry.
    pub memory: Arc<MemoryRegistry>,
    /// gRPC addresses of the media nodes.
    pub addresses: Vec<String>,
}

/// The task following one node's events, and whether its stream is open.
struct Follower {
    task: AbortHandle,
    connected: Arc<AtomicBool>,
}

struct Snapshot {
    at: Instant,
    nodes: Arc<Vec<NodeReport>>,
}

/// The cluster as this coordinator sees it.
pub struct Cluster {
    id: String,
    registry: Arc<dyn Registry>,
    clients: Arc<NodeClients>,
    queue: Arc<JoinQueue>,
    snapshot: Mutex<Option<Snapshot>>,
    /// Live nodes, each with the task following its events.
    followed: Mutex<HashMap<String, Follower>>,
    /// Nodes whose process is gone while their report lives on: the time of
    /// the last report seen from each; reports not newer are ignored.
    stopped: Mutex<HashMap<String, u64>>,
    events_in: mpsc::UnboundedSender<(String, NodeEvent)>,
    rooms: mpsc::UnboundedSender<ClusterEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// A cluster view; node events and losses go to `rooms`. The returned
    /// receiver carries the raw node events to [`Cluster::dispatch`].
    pub fn new(
        id: String,
        registry: Arc<dyn Registry>,
        clients: Arc<NodeClients>,
        queue: Arc<JoinQueue>,
        rooms: mpsc::UnboundedSender<ClusterEvent>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<(String, NodeEvent)>) {
        let (events_in, events_rx) = mpsc::unbounded_channel();
        let cluster = Arc::new(Self {
            id,
            registry,
            clients,
            queue,
            snapshot: Mutex::new(None),
            followed: Mutex::new(HashMap::new()),
            stopped: Mutex::new(HashMap::new()),
            events_in,
            rooms,
        });
        (cluster, events_rx)
    }

    /// This coordinator's id in the registry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// Live node reports, at most [`SNAPSHOT_TTL`] old.
    pub async fn live_nodes(&self) -> Result<Arc<Vec<NodeReport>>, RegistryError> {
        if let Some(s) = lock(&self.snapshot).as_ref() {
            if s.at.elapsed() < SNAPSHOT_TTL {
                return Ok(s.nodes.clone());
            }
        }
        self.read_nodes().await
    }

    async fn read_nodes(&self) -> Result<Arc<Vec<NodeReport>>, RegistryError> {
        let mut nodes = self.registry.nodes().await?;
        {
            let mut stopped = lock(&self.stopped);
            if !stopped.is_empty() {
                // Forget a stopped node once its report expired or a newer
                // one came (it was started again).
                stopped.retain(|id, last| {
                    nodes
                        .iter()
                        .any(|n| n.node_id == *id && n.reported_at_ms <= *last)
                });
                nodes.retain(|n| !stopped.contains_key(&n.node_id));
            }
        }
        let nodes = Arc::new(nodes);
        *lock(&self.snapshot) = Some(Snapshot {
            at: Instant::now(),
            nodes: nodes.clone(),
        });
        Ok(nodes)
    }

    /// The gRPC address a node reported last.
    fn address(&self, node_id: &str) -> Option<String> {
        lock(&self.snapshot)
            .as_ref()?
            .nodes
            .iter()
            .find(|n| n.node_id == node_id)
            .map(|n| n.grpc_address.clone())
    }

    /// Watches the nodes until the task is aborted: every [`NODE_POLL`],
    /// reads them (polling them first without Redis), follows new live ones
    /// and loses the ones gone.
    pub async fn watch(self: Arc<Self>, polled: Option<Polled>) {
        let mut ticker = tokio::time::interval(NODE_POLL);
        // Nodes whose report is missing while their stream is open, since when
        // (counted only while the registry answers).
        let mut missing: HashMap<String, Instant> = HashMap::new();
        loop {
            ticker.tick().await;
            if let Some(p) = &polled {
                self.poll(p).await;
            }
            let Ok(nodes) = self.read_nodes().await else {
                continue;
            };
            self.queue
                .set_live_nodes(nodes.iter().filter(|n| n.is_open()).count());
            let live: HashMap<&str, &NodeReport> = nodes
                .iter()
                .filter(|n| !n.dead)
                .map(|n| (n.node_id.as_str(), n))
                .collect();
            let known: HashSet<String> = lock(&self.followed).keys().cloned().collect();
            let reported_dead: HashSet<&str> = nodes
                .iter()
                .filter(|n| n.dead)
                .map(|n| n.node_id.as_str())
                .collect();
            for gone in known.iter().filter(|k| !live.contains_key(k.as_str())) {
                let open = self.stream_open(gone);
                let patient = missing
                    .get(gone)
                    .is_none_or(|since| since.elapsed() < REPORT_MISSING_LIMIT);
                if reported_dead.contains(gone.as_str()) {
                    warn!(node = %gone, "media node lost (it reported dead)");
                } else if open && patient {
                    // Redis lost its report (restarted empty, or the node
                    // cannot reach it for now): the node itself still answers.
                    if !missing.contains_key(gone) {
                        warn!(node = %gone, "media node report missing but its stream is open: calls go on");
                        missing.insert(gone.clone(), Instant::now());
                    }
                    continue;
                } else if open {
                    warn!(node = %gone, "media node lost (no report for {REPORT_MISSING_LIMIT:?})");
                } else {
                    warn!(node = %gone, "media node lost (report expired, stream down)");
                }
                missing.remove(gone);
                self.lose(gone).await;
            }
            missing.retain(|n, _| !live.contains_key(n.as_str()));
            for (id, report) in live {
                if !known.contains(id) {
                    self.follow(id, &report.grpc_address);
                }
            }
        }
    }

    /// Without Redis, nodes cannot report themselves: ask them (GetNodeInfo).
    /// A node this coordinator evicted while it could not reach it (a
    /// partition; or a process started again) is told to close everything
    /// it still holds (CloseAll) before its report is taken: nothing there
    /// is anybody's, and this coordinator is its only owner.
    async fn poll(&self, polled: &Polled) {
        for address in &polled.addresses {
            let Ok(client) = self.clients.client(address, address) else {
                continue;
            };
            let info = match client.node_info().await {
                Ok(info) => info,
                Err(e) => {
                    warn!(%address, error = %e, "media node not answering");
                    continue;
                }
            };
            let mut report: NodeReport = info.into();
            if polled.memory.evicted(&report.node_id) {
                match client.close_all().await {
                    Ok(routers) => {
                        info!(node = %report.node_id, routers, "evicted media node answers again: it closed what it held");
                        polled.memory.eviction_done(&report.node_id);
                    }
                    Err(e) => {
                        warn!(node = %report.node_id, error = %e, "evicted media node not cleared");
                        continue;
                    }
                }
                // Its load as it is now, empty.
                match client.node_info().await {
                    Ok(info) => report = info.into(),
                    Err(_) => continue,
                }
            }
            polled.memory.report_node(report, NODE_POLL * 3);
        }
    }

    fn follow(&self, node_id: &str, address: &str) {
        let client = match self.clients.client(node_id, address) {
            Ok(c) => c,
            Err(e) => {
                warn!(node = %node_id, error = %e, "cannot follow the node's events");
                return;
            }
        };
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(follow(
            client,
            address.to_string(),
            self.events_in.clone(),
            connected.clone(),
        ));
        info!(node = %node_id, %address, "media node live");
        let follower = Follower {
            task: task.abort_handle(),
            connected,
        };
        if let Some(old) = lock(&self.followed).insert(node_id.to_string(), follower) {
            old.task.abort();
        }
    }

    /// Whether the node's event stream is open now.
    fn stream_open(&self, node_id: &str) -> bool {
        lock(&self.followed)
            .get(node_id)
            .is_some_and(|f| f.connected.load(Ordering::Relaxed))
    }

    /// Passes node events to the rooms, and a dead worker's node to [`Cluster::lose`].
    pub async fn dispatch(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<(String, NodeEvent)>,
    ) {
        while let Some((node, event)) = events.recv().await {
            match event {
                NodeEvent::WorkerDied { worker, reason } => {
                    warn!(node = %node, worker, %reason, "media worker died");
                    self.lose(&node).await;
                }
                NodeEvent::Evicted => {
                    // Another coordinator evicted it while this one still
                    // followed it: its participants here go elsewhere too.
                    warn!(node = %node, "media node lost (it was evicted and closes everything)");
                    self.lose(&node).await;
                }
                NodeEvent::Stopped => {
                    warn!(node = %node, "media node lost (its stream ended and its port refuses connections)");
                    self.lose_stopped(&node).await;
                }
                event => {
                    let _ = self.rooms.send(ClusterEvent::Node(node, event));
                }
            }
        }
    }

    /// A node died or vanished: its event stream stops, its reservations go,
    /// and the rooms are told (they send its participants elsewhere). Losing
    /// a node twice does nothing the second time.
    pub async fn lose(&self, node_id: &str) {
        let Some(follower) = lock(&self.followed).remove(node_id) else {
            return;
        };
        follower.task.abort();
        self.clients.forget(node_id);
        match self.registry.evict_node(node_id).await {
            Ok(evicted) => info!(node = node_id, participants = evicted.len(), "node evicted"),
            Err(e) => warn!(node = node_id, error = %e, "node not evicted"),
        }
        let _ = self.rooms.send(ClusterEvent::NodeLost(node_id.to_string()));
    }

    /// A node whose process is gone: its last report is ignored from now on
    /// (it would otherwise be followed and placed on again until its TTL).
    async fn lose_stopped(&self, node_id: &str) {
        // The registry's last report, read now: the process wrote nothing
        // since it stopped.
        let last = match self.registry.nodes().await {
            Ok(nodes) => nodes
                .iter()
                .find(|n| n.node_id == node_id)
                .map(|n| n.reported_at_ms),
            Err(_) => lock(&self.snapshot).as_ref().and_then(|s| {
                s.nodes
                    .iter()
                    .find(|n| n.node_id == node_id)
                    .map(|n| n.reported_at_ms)
            }),
        };
        if let Some(last) = last {
            lock(&self.stopped).insert(node_id.to_string(), last);
            *lock(&self.snapshot) = None;
        }
        self.lose(node_id).await;
    }

    /// Stops every event stream (the coordinator stops).
    pub fn stop(&self) {
        for (_, f) in lock(&self.followed).drain() {
            f.task.abort();
        }
    }

    /// Keeps this coordinator registered and reaps coordinators that died
    /// (their heartbeat expired) once `resume_grace` has passed since: their
    /// participants had that long to resume through another coordinator,
    /// which adopted their placements (`crate::room::takeover`); what is
    /// left is closed. Runs until the task is aborted.
    pub async fn heartbeat(self: Arc<Self>, ttl: Duration, resume_grace: Duration) {
        let mut ticker = tokio::time::interval(ttl / 4);
        // Dead coordinators not reaped yet, since when they are known dead.
        let mut dead_since: HashMap<String, Instant> = HashMap::new();
        loop {
            ticker.tick().await;
            if let Err(e) = self.registry.heartbeat(&self.id, ttl).await {
                warn!(error = %e, "heartbeat not written");
                continue;
            }
            let Ok(dead) = self.registry.dead_coordinators().await else {
                continue;
            };
            dead_since.retain(|id, _| dead.contains(id));
            for id in dead.iter().filter(|id| **id != self.id) {
                let since = *dead_since.entry(id.clone()).or_insert_with(|| {
                    warn!(coordinator = %id, "coordinator stopped beating; reaped after the resume grace");
                    Instant::now()
                });
                if since.elapsed() >= resume_grace {
                    self.reap(id).await;
                }
            }
        }
    }

    /// Another coordinator died: release what it placed, close its
    /// participants' media objects, and give back routers of rooms it emptied.
    pub async fn reap(&self, dead: &str) {
        let reaped = match self.registry.reap_coordinator(dead).await {
            Ok(r) => r,
            Err(e) => {
                warn!(coordinator = dead, error = %e, "dead coordinator not reaped");
                return;
            }
        };
        info!(
            coordinator = dead,
            participants = reaped.len(),
            "dead coordinator reaped"
        );
        let _ = self.read_nodes().await;
        let client = |node: &str| {
            self.address(node)
                .and_then(|addr| self.clients.client(node, &addr).ok())
        };
        let mut rooms: Vec<String> = Vec::new();
        for (room, participant, worker) in reaped {
            if let Some(c) = client(&worker.node_id) {
                match c.close_participant(&participant).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        warn!(room = %room, participant = %participant, error = %e, "media objects of a reaped participant not closed")
                    }
                }
            }
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        for room in rooms {
            let Ok(state) = self.registry.room(&room).await else {
                continue;
            };
            if state.participants > 0 {
                continue;
            }
            for (worker, router_id) in state.routers {
                if let (Some(router_id), Some(c)) = (router_id, client(&worker.node_id)) {
                    let _ = c.close_router(&router_id).await;
                }
                let _ = self.registry.remove_router(&room, &worker).await;
            }
        }
    }
}
