//! Join path: placement -> **registry**. Where rooms live and how much
//! consumer capacity each worker has left, shared by every coordinator.
//!
//! Capacity is reserved atomically when a participant is placed and released
//! when it leaves; it is never inferred from the nodes' load reports, which
//! are seconds old during a surge. Two implementations honour one contract
//! (tests/registry_contract.rs): [`redis::RedisRegistry`] (Lua scripts, for a
//! cluster of coordinators) and [`memory::MemoryRegistry`] (the single-machine
//! default).

pub mod counted;
pub mod memory;
pub mod redis;

use serde::{Deserialize, Serialize};
use throng_proto::report::NodeReport;

/// A worker of a node: the unit of capacity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerRef {
    /// Node id.
    pub node_id: String,
    /// Worker index on the node.
    pub worker: u32,
}

impl WorkerRef {
    /// `node/worker`, the form used as a key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.node_id, self.worker)
    }

    /// Parses [`WorkerRef::key`].
    pub fn parse(key: &str) -> Option<Self> {
        let (node, worker) = key.rsplit_once('/')?;
        Some(Self {
            node_id: node.to_string(),
            worker: worker.parse().ok()?,
        })
    }
}

/// A worker that may receive placements, with its capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The worker.
    pub worker: WorkerRef,
    /// Consumer capacity of the worker.
    pub capacity: u32,
}

/// What a join asks of the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRequest {
    /// Room.
    pub room_id: String,
    /// Participant (unique within the room).
    pub participant_id: String,
    /// Consumer units this participant costs.
    pub cost: u32,
    /// Most participants the room may hold (across every coordinator).
    pub room_cap: u32,
    /// Live, non-draining workers, with capacities, from the load reports.
    pub candidates: Vec<Candidate>,
    /// The coordinator placing: if it dies, its placements are reaped.
    pub owner: String,
}

/// Where a participant was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The worker.
    pub worker: WorkerRef,
    /// The room's router on that worker, if it exists already; `None` means
    /// the caller must create it and record it with [`Registry::set_router`]
    /// (other joiners wait for it with [`Registry::router`]).
    pub router_id: Option<String>,
    /// True when this reservation opened the room on this worker.
    pub new_router: bool,
    /// Consumer units reserved.
    pub cost: u32,
}

/// Why a placement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementRefused {
    /// The room holds `room_cap` participants already.
    #[error("room is full ({0} participants)")]
    RoomFull(u32),
    /// No candidate worker has the capacity left.
    #[error("no worker has {0} consumer units left")]
    NoCapacity(u32),
}

/// The registry failed (storage unreachable, corrupt data).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis error.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Data in the store is not what this version writes.
    #[error("corrupt registry data: {0}")]
    Corrupt(String),
}

/// What is known of one room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomState {
    /// Participants placed in the room.
    pub participants: u32,
    /// Their ids, sorted.
    pub participant_ids: Vec<String>,
    /// Workers hosting the room, with the router id once created.
    pub routers: Vec<(WorkerRef, Option<String>)>,
}

/// A released participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Where it was.
    pub worker: WorkerRef,
    /// Participants left in the room.
    pub room_participants_left: u32,
}

/// The registry contract.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Live node reports (expired ones are gone).
    async fn nodes(&self) -> Result<Vec<NodeReport>, RegistryError>;

    /// Atomically: checks the room cap, picks a worker (the room's existing
    /// routers first, then the least-reserved candidate, same node first), and
    /// reserves `cost` on it. Placing a participant already placed returns its
    /// placement unchanged. No worker is ever reserved beyond its capacity.
    async fn place(
        &self,
        req: &PlacementRequest,
    ) -> Result<Result<Placement, PlacementRefused>, RegistryError>;

    /// Records the router created for a room on a worker.
    async fn set_router(
        &self,
        room_id: &str,
        worker: &WorkerRef,
        router_id: &str,
    ) -> Result<(), RegistryError>;

    /// The room's router on a worker, if recorded.
    async fn router(
        &self,
        room_id: &str,
        worker: &WorkerRef,
    ) -> Result<Option<String>, RegistryError>;

    /// Releases a participant's reservation; `None` if it was not placed.
    async fn release(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<Option<Released>, RegistryError>;

    /// Forgets the room on `worker` (its router closed). Reservations of the
    /// room's participants there must have been released first.
    async fn remove_router(&self, room_id: &str, worker: &WorkerRef) -> Result<(), RegistryError>;

    /// Consumer units reserved on a worker.
    async fn reserved(&self, worker: &WorkerRef) -> Result<u32, RegistryError>;

    /// The room's participants and routers.
    async fn room(&self, room_id: &str) -> Result<RoomState, RegistryError>;

    /// Rooms with participants or routers, sorted.
    async fn rooms(&self) -> Result<Vec<String>, RegistryError>;

    /// Marks a coordinator alive for `ttl`.
    async fn heartbeat(
        &self,
        coordinator_id: &str,
        ttl: std::time::Duration,
    ) -> Result<(), RegistryError>;

    /// Coordinators that registered and stopped beating.
    async fn dead_coordinators(&self) -> Result<Vec<String>, RegistryError>;

    /// Releases every placement a dead coordinator made; returns (room,
    /// participant, worker) of each so that their media objects can be closed.
    async fn reap_coordinator(
        &self,
        coordinator_id: &str,
    ) -> Result<Vec<(String, String, WorkerRef)>, RegistryError>;

    /// Releases every reservation and room placement on `node_id` (it died,
    /// or it is cut off), and forgets its report; a node that reports to the
    /// store finds that it was evicted (`throng_proto::report::node_evicted_key`)
    /// and closes what it held before it reports again.
    /// Returns the (room, participant) pairs that were placed there.
    async fn evict_node(&self, node_id: &str) -> Result<Vec<(String, String)>, RegistryError>;

    /// The store's generation: the same value for as long as the store keeps
    /// its data; a new one after it lost it (Redis restarted empty). Creating
    /// it is part of reading it.
    async fn epoch(&self) -> Result<String, RegistryError>;

    /// Takes over a placement another (dead) coordinator made: from now on
    /// `participant_id` in `room_id` is `owner`'s (reaping its old owner
    /// leaves it alone). Returns whether the participant is placed.
    async fn adopt(
        &self,
        room_id: &str,
        participant_id: &str,
        owner: &str,
    ) -> Result<bool, RegistryError>;

    /// Records an existing placement again (the store lost it): `cost` on
    /// `worker` for `participant_id` in `room_id`, made by `owner`. Nothing
    /// changes if the participant is placed already; returns whether it was
    /// recorded. Capacity is not checked: the participant is there.
    async fn restore(
        &self,
        room_id: &str,
        participant_id: &str,
        worker: &WorkerRef,
        cost: u32,
        owner: &str,
    ) -> Result<bool, RegistryError>;
}

/// Every live node's report with the consumer units reserved on each of its
/// workers (`None` where the registry did not answer for that worker): what
/// the admin API, the live view and `/metrics` show.
pub async fn nodes_with_reserved(
    registry: &dyn Registry,
) -> Result<Vec<(NodeReport, Vec<Option<u32>>)>, RegistryError> {
    let nodes = registry.nodes().await?;
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut reserved = Vec::with_capacity(n.workers.len());
        for w in &n.workers {
            let key = WorkerRef {
                node_id: n.node_id.clone(),
                worker: w.index,
            };
            reserved.push(registry.reserved(&key).await.ok());
        }
        out.push((n, reserved));
    }
    Ok(out)
}
