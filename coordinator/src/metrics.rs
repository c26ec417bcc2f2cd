//! The coordinator's Prometheus metrics, one registry per instance. Events
//! are counted where they happen (the session, the handler, the queue,
//! placement, the node client's layer, the registry); gauges of the
//! cluster's state (the queue, rooms, every worker's load against its
//! capacity) are read when `/metrics` is scraped ([`Metrics::render`]), from
//! the registry (Redis) and this coordinator's rooms. Labels are bounded:
//! outcomes, kinds, reasons, gRPC methods and codes, node and worker ids.
//!
//! Served by `crate::http` at `/metrics` (admin key) and, when
//! `THRONG_METRICS_LISTEN` is set, without a key on that internal address.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use throng_telemetry::metrics::{duration_buckets, RpcMetrics};

use throng_proto::report::NodeReport;

/// One label: what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `admitted`, or the error code a join got (`unavailable`, `full`...),
    /// or `abandoned` (the client left while queued or placed).
    pub outcome: String,
}

/// One label: which kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// See the family's help.
    pub kind: &'static str,
}

/// One label: why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// See the family's help.
    pub reason: &'static str,
}

/// One label: which way.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `in` (from browsers) or `out`.
    pub direction: &'static str,
}

/// A registry operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    /// The registry method (`place`, `release`...).
    pub op: &'static str,
}

/// A worker of a node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Worker {
    /// Node id.
    pub node: String,
    /// Worker index.
    pub worker: String,
}

/// A node's state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeState {
    /// `serving`, `draining` or `dead`.
    pub state: &'static str,
}

type WorkerGauge = Family<Worker, Gauge>;

/// A node's report with the units reserved on each of its workers.
pub type NodeReserved = (NodeReport, Vec<Option<u32>>);

/// The registry operations `crate::registry::counted` counts failures of.
pub const REGISTRY_OPS: &[&str] = &[
    "nodes",
    "place",
    "set_router",
    "router",
    "release",
    "remove_router",
    "reserved",
    "room",
    "rooms",
    "heartbeat",
    "dead_coordinators",
    "reap_coordinator",
    "evict_node",
    "epoch",
    "restore",
    "adopt",
];

/// The limits' refusal reasons (`crate::limits`).
pub const REFUSALS: &[&str] = &["ip_rate", "session_rate", "queue_full", "identity_cap"];

/// What becomes of a session kept for a resume.
pub const RESUME_OUTCOMES: &[&str] = &["detached", "resumed", "expired", "refused"];

/// The coordinator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Joins by outcome.
    pub joins: Family<Outcome, Counter>,
    /// From a join's message to its `joined` (admitted joins).
    pub join_seconds: Histogram,
    /// Time a join waited in the queue before being admitted.
    pub queue_wait_seconds: Histogram,
    queue_length: Gauge,
    /// Placements by kind.
    pub placements: Family<Kind, Counter>,
    /// Pipes made between routers of a room, by kind.
    pub pipes: Family<Kind, Counter>,
    /// Participants told to reconnect, by reason.
    pub reconnects: Family<Reason, Counter>,
    /// WebSocket messages, by direction.
    pub ws_messages: Family<Direction, Counter>,
    /// Open WebSocket sessions.
    pub ws_sessions: Gauge,
    /// Participants joined through this coordinator.
    pub participants: Gauge,
    rooms: Gauge,
    /// Registry (Redis) calls that failed, by operation.
    pub registry_errors: Family<Operation, Counter>,
    /// Requests, messages and joins refused by a limit, by which.
    refusals: Family<Reason, Counter>,
    /// Sessions kept for a resume and what became of them.
    resumes: Family<Reason, Counter>,
    /// Node calls: duration and failures by method and code.
    pub node_rpc: RpcMetrics,
    nodes: Family<NodeState, Gauge>,
    worker_consumers: WorkerGauge,
    worker_producers: WorkerGauge,
    worker_transports: WorkerGauge,
    worker_routers: WorkerGauge,
    worker_reserved: WorkerGauge,
    worker_capacity: WorkerGauge,
    worker_cpu: Family<Worker, Gauge<f64, AtomicU64>>,
    worker_capacity_units: u32,
}

impl Metrics {
    /// A new registry; `worker_capacity` is each worker's consumer capacity.
    pub fn new(worker_capacity: u32) -> Self {
        let mut registry = Registry::with_prefix("throng");
        let hist = || Histogram::new(duration_buckets());
        let m = Self {
            joins: Family::default(),
            join_seconds: hist(),
            queue_wait_seconds: hist(),
            queue_length: Gauge::default(),
            placements: Family::default(),
            pipes: Family::default(),
            reconnects: Family::default(),
            ws_messages: Family::default(),
            ws_sessions: Gauge::default(),
            participants: Gauge::default(),
            rooms: Gauge::default(),
            registry_errors: Family::default(),
            refusals: Family::default(),
            resumes: Family::default(),
            node_rpc: RpcMetrics::register(&mut registry, "node_rpc", "calls to media nodes"),
            nodes: Family::default(),
            worker_consumers: Family::default(),
            worker_producers: Family::default(),
            worker_transports: Family::default(),
            worker_routers: Family::default(),
            worker_reserved: Family::default(),
            worker_capacity: Family::default(),
            worker_cpu: Family::default(),
            worker_capacity_units: worker_capacity,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "joins",
            "Joins by outcome (admitted, an error code, abandoned)",
            m.joins.clone(),
        );
        r.register(
            "join_duration_seconds",
            "Time from a join message to the participant being in the room (admitted joins)",
            m.join_seconds.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time a join waited in the join queue before its turn",
            m.queue_wait_seconds.clone(),
        );
        r.register(
            "queue_length",
            "Joins waiting in this coordinator's queue",
            m.queue_length.clone(),
        );
        r.register(
            "placements",
            "Placements by kind: existing (a router of the room), first (the room's first router), \
             spill_same_node / spill_other_node (a new router for a room that had others)",
            m.placements.clone(),
        );
        r.register(
            "pipes",
            "Producers piped between a room's routers, by kind (same_node, cross_node)",
            m.pipes.clone(),
        );
        r.register(
            "reconnects",
            "Participants told to reconnect, by reason",
            m.reconnects.clone(),
        );
        r.register(
            "websocket_messages",
            "Signalling messages, by direction",
            m.ws_messages.clone(),
        );
        r.register(
            "websocket_sessions",
            "Open signalling WebSockets",
            m.ws_sessions.clone(),
        );
        r.register(
            "participants",
            "Participants in rooms this coordinator hosts",
            m.participants.clone(),
        );
        r.register("rooms", "Rooms this coordinator hosts", m.rooms.clone());
        r.register(
            "registry_errors",
            "Registry (Redis) calls that failed, by operation",
            m.registry_errors.clone(),
        );
        r.register(
            "refusals",
            "Refused by a limit before any work, by reason: ip_rate (HTTP 429), session_rate \
             (a message over the session's budget), queue_full, identity_cap",
            m.refusals.clone(),
        );
        r.register(
            "session_resumes",
            "Sessions whose socket closed without a leave, by outcome: detached (kept for a resume), \
             resumed (taken up on a new socket), expired (not resumed within the grace: left), \
             refused (a resume for a session no longer held; the client joins again)",
            m.resumes.clone(),
        );
        r.register(
            "nodes",
            "Media nodes the registry lists, by state",
            m.nodes.clone(),
        );
        r.register(
            "worker_consumers",
            "Consumers on each worker (node report)",
            m.worker_consumers.clone(),
        );
        r.register(
            "worker_producers",
            "Producers on each worker (node report)",
            m.worker_producers.clone(),
        );
        r.register(
            "worker_transports",
            "Transports on each worker (node report)",
            m.worker_transports.clone(),
        );
        r.register(
            "worker_routers",
            "Routers on each worker (node report)",
            m.worker_routers.clone(),
        );
        r.register(
            "worker_reserved_units",
            "Consumer units reserved on each worker by placement",
            m.worker_reserved.clone(),
        );
        r.register(
            "worker_capacity_units",
            "Consumer units each worker may be reserved up to",
            m.worker_capacity.clone(),
        );
        r.register(
            "worker_cpu_ratio",
            "CPU each worker thread used over the last report interval (1 = a core)",
            m.worker_cpu.clone(),
        );
        // Series that exist from the start at 0, so that a rate() or an
        // alert on them works before the first event.
        for kind in ["existing", "first", "spill_same_node", "spill_other_node"] {
            let _ = m.placements.get_or_create(&Kind { kind });
        }
        for kind in ["same_node", "cross_node"] {
            let _ = m.pipes.get_or_create(&Kind { kind });
        }
        for reason in ["media_node_lost", "coordinator_restarting"] {
            let _ = m.reconnects.get_or_create(&Reason { reason });
        }
        for reason in REFUSALS {
            let _ = m.refusals.get_or_create(&Reason { reason });
        }
        for reason in RESUME_OUTCOMES {
            let _ = m.resumes.get_or_create(&Reason { reason });
        }
        for direction in ["in", "out"] {
            let _ = m.ws_messages.get_or_create(&Direction { direction });
        }
        for op in REGISTRY_OPS {
            let _ = m.registry_errors.get_or_create(&Operation { op });
        }
        m.join_outcome_zero("admitted");
        Self { registry, ..m }
    }

    fn join_outcome_zero(&self, outcome: &str) {
        let _ = self.joins.get_or_create(&Outcome {
            outcome: outcome.to_string(),
        });
    }

    /// Counts a refusal by a limit (one of [`REFUSALS`]).
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&Reason { reason }).inc();
    }

    /// Counts a join's outcome.
    pub fn join_outcome(&self, outcome: &str) {
        self.joins
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one event of a `kind` family.
    pub fn count(family: &Family<Kind, Counter>, kind: &'static str) {
        family.get_or_create(&Kind { kind }).inc();
    }

    /// Counts what became of a session kept for a resume (one of
    /// [`RESUME_OUTCOMES`]).
    pub fn resume_outcome(&self, outcome: &'static str) {
        self.resumes
            .get_or_create(&Reason { reason: outcome })
            .inc();
    }

    /// Counts participants told to reconnect.
    pub fn reconnected(&self, reason: &'static str, participants: usize) {
        self.reconnects
            .get_or_create(&Reason { reason })
            .inc_by(participants as u64);
    }

    /// Counts a failed registry call.
    pub fn registry_error(&self, op: &'static str) {
        self.registry_errors.get_or_create(&Operation { op }).inc();
    }

    /// Sets the gauges of the cluster's state and encodes everything.
    /// `cluster`: every node's report with the units reserved on each of its
    /// workers (`None` where the registry did not answer); `None` when the
    /// registry could not list the nodes (the gauges keep their last values).
    /// A leaf: the caller (`crate::http`) reads the registry.
    pub fn render(
        &self,
        cluster: Option<&[NodeReserved]>,
        queue_length: usize,
        rooms: usize,
    ) -> String {
        self.queue_length.set(queue_length as i64);
        self.rooms.set(rooms as i64);
        if let Some(nodes) = cluster {
            for family in [
                &self.worker_consumers,
                &self.worker_producers,
                &self.worker_transports,
                &self.worker_routers,
                &self.worker_reserved,
                &self.worker_capacity,
            ] {
                family.clear();
            }
            self.worker_cpu.clear();
            let (mut serving, mut draining, mut dead) = (0, 0, 0);
            for (n, reserved) in nodes {
                match (n.dead, n.draining) {
                    (true, _) => dead += 1,
                    (false, true) => draining += 1,
                    (false, false) => serving += 1,
                }
                for (i, w) in n.workers.iter().enumerate() {
                    let labels = Worker {
                        node: n.node_id.clone(),
                        worker: w.index.to_string(),
                    };
                    let set = |f: &WorkerGauge, v: u32| {
                        f.get_or_create(&labels).set(i64::from(v));
                    };
                    set(&self.worker_consumers, w.consumers);
                    set(&self.worker_producers, w.producers);
                    set(&self.worker_transports, w.transports);
                    set(&self.worker_routers, w.routers);
                    set(&self.worker_capacity, self.worker_capacity_units);
                    self.worker_cpu.get_or_create(&labels).set(w.cpu_load);
                    if let Some(Some(r)) = reserved.get(i) {
                        set(&self.worker_reserved, *r);
                    }
                }
            }
            for (state, v) in [("serving", serving), ("draining", draining), ("dead", dead)] {
                self.nodes.get_or_create(&NodeState { state }).set(v);
            }
        }
        throng_telemetry::metrics::encode(&self.registry)
    }
}
