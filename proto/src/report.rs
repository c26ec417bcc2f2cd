//! The load report a media node keeps in Redis, read by coordinators.
//!
//! Key `throng:node:{node_id}` holds the JSON below with a TTL of a few
//! seconds, rewritten every second: a node that dies vanishes when its TTL
//! expires. The sorted set `throng:nodes` lists node ids by last report time
//! (milliseconds) so coordinators can find the keys without scanning.

use serde::{Deserialize, Serialize};

/// Redis key of a node's report.
pub fn node_key(node_id: &str) -> String {
    format!("throng:node:{node_id}")
}

/// Sorted set of node ids, scored by last report time in ms since the epoch.
pub const NODES_INDEX_KEY: &str = "throng:nodes";

/// Set by a coordinator that evicted the node (took it for lost and released
/// everything placed on it) together with deleting its report: a node that
/// was only cut off finds it at its next report, closes everything it held
/// (nobody owns it any more) and only then reports again, so nothing is
/// placed on it before that.
pub fn node_evicted_key(node_id: &str) -> String {
    format!("throng:node-evicted:{node_id}")
}

/// How long an eviction mark waits for its node (a day; a node away longer
/// has long been restarted).
pub const NODE_EVICTED_TTL_SECS: u64 = 86_400;

/// One worker's load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Worker index on the node.
    pub index: u32,
    /// UDP and TCP port of its WebRtcServer.
    pub port: u16,
    /// Routers.
    pub routers: u32,
    /// Transports.
    pub transports: u32,
    /// Producers.
    pub producers: u32,
    /// Consumers.
    pub consumers: u32,
    /// Worker thread CPU time since start, ms.
    pub cpu_time_ms: u64,
    /// Share of one core over the last interval, 0.0 to 1.0.
    pub cpu_load: f64,
}

/// A node's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Node id.
    pub node_id: String,
    /// host:port of its gRPC service.
    pub grpc_address: String,
    /// Address announced to browsers.
    pub announced_address: String,
    /// No new placements when set.
    pub draining: bool,
    /// Set once when a worker died, just before the node exits.
    pub dead: bool,
    /// Workers by index.
    pub workers: Vec<WorkerReport>,
    /// When this report was written, ms since the epoch.
    pub reported_at_ms: u64,
}

impl NodeReport {
    /// Takes new participants: neither draining nor dead.
    pub fn is_open(&self) -> bool {
        !self.draining && !self.dead
    }
}

/// `GetNodeInfo` carries the same facts as the report (the single-machine
/// coordinator polls it instead of reading Redis).
impl From<crate::media::NodeInfo> for NodeReport {
    fn from(info: crate::media::NodeInfo) -> Self {
        Self {
            node_id: info.node_id,
            grpc_address: info.grpc_address,
            announced_address: info.announced_address,
            draining: info.draining,
            dead: false,
            workers: info
                .workers
                .into_iter()
                .map(|w| WorkerReport {
                    index: w.index,
                    port: u16::try_from(w.port).unwrap_or(0),
                    routers: w.routers,
                    transports: w.transports,
                    producers: w.producers,
                    consumers: w.consumers,
                    cpu_time_ms: w.cpu_time_ms,
                    cpu_load: w.cpu_load,
                })
                .collect(),
            reported_at_ms: 0,
        }
    }
}

impl From<NodeReport> for crate::media::NodeInfo {
    fn from(r: NodeReport) -> Self {
        Self {
            node_id: r.node_id,
            grpc_address: r.grpc_address,
            announced_address: r.announced_address,
            draining: r.draining,
            workers: r
                .workers
                .into_iter()
                .map(|w| crate::media::WorkerInfo {
                    index: w.index,
                    port: u32::from(w.port),
                    routers: w.routers,
                    transports: w.transports,
                    producers: w.producers,
                    consumers: w.consumers,
                    cpu_time_ms: w.cpu_time_ms,
                    cpu_load: w.cpu_load,
                })
                .collect(),
        }
    }
}
