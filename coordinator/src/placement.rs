//! Join path: join queue -> **placement** -> registry -> media node. Where a
//! participant goes: a worker with consumer capacity left (reserved
//! atomically in the registry, shared by every coordinator), and the room's
//! router on it (recorded, being created by another coordinator, or created
//! now). The only caller of the registry's `place`/`set_router`/
//! `remove_router` and of the nodes' CreateRouter/GetRouter/CloseRouter.
//!
//! A [`Seat`] carries a [`Reservation`] that gives the capacity back if it is
//! dropped before [`Seat::keep`]: a join that fails after being placed
//! (node slot timed out, router not created, pipes failed) holds nothing.
//!
//! Called with the room's lock held: placement may span registry and node
//! calls under it (so two joins of one room never create two routers on one
//! worker, and a closing room's routers are gone before it is placed again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use throng_proto::report::NodeReport;
use tracing::{debug, info_span, warn, Instrument};

use crate::cluster::Cluster;
use crate::join::queue::JoinQueue;
use crate::media::client::{NodeCallError, NodeClients, RouterRef};
use crate::metrics::Metrics;
use crate::registry::{
    Candidate, PlacementRefused, PlacementRequest, Registry, RegistryError, WorkerRef,
};

/// How long a placement waits for a live node when the registry lists none.
const NODES_WAIT: Duration = Duration::from_secs(3);

/// Placement settings.
#[derive(Debug, Clone)]
pub struct PlacementSettings {
    /// Consumer capacity of one worker (the original author's 1500).
    pub worker_capacity: u32,
    /// Share of a core (0 to 1) above which a worker, as its node last
    /// reported, gets no new participant; 1.0: no ceiling.
    pub cpu_ceiling: f64,
    /// Tiles on one page of the grid (12).
    pub tiles_per_page: u32,
    /// Most participants in one room, across the cluster.
    pub room_cap: u32,
}

impl PlacementSettings {
    /// Consumer units one participant costs: audio + video for each tile of a
    /// page, plus its own two producers.
    pub fn participant_cost(&self) -> u32 {
        self.tiles_per_page * 2 + 2
    }

    /// What a participant of `role` costs: an event's audience member
    /// consumes a page of the stage and sends nothing.
    pub fn cost_of(&self, role: crate::protocol::Role) -> u32 {
        if role.on_stage() {
            self.participant_cost()
        } else {
            self.tiles_per_page * 2
        }
    }
}

/// Why a participant could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// The room holds its cap already.
    #[error("the room is full ({0} participants)")]
    RoomFull(u32),
    /// No worker has the capacity left.
    #[error("no media capacity left; try again later")]
    NoCapacity,
    /// Every live worker's reported CPU is above the ceiling.
    #[error("every media worker is above its CPU ceiling; try again later")]
    Overloaded,
    /// No node slot within the queue timeout.
    #[error("{0}")]
    Busy(String),
    /// The chosen node is not among the live ones any more.
    #[error("media node vanished")]
    NodeVanished,
    /// Another coordinator is creating the router and did not finish.
    #[error("the room's router was not created in time")]
    RouterTimeout,
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A node call failed.
    #[error(transparent)]
    Node(#[from] NodeCallError),
}

/// Capacity reserved for one participant; released on drop unless kept.
pub struct Reservation {
    registry: Arc<dyn Registry>,
    room: String,
    participant: String,
    kept: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (registry, room, participant) = (
            self.registry.clone(),
            std::mem::take(&mut self.room),
            std::mem::take(&mut self.participant),
        );
        tokio::spawn(async move {
            if let Err(e) = registry.release(&room, &participant).await {
                warn!(room, participant, error = %e, "reservation of a failed join not released");
            }
        });
    }
}

/// Where a participant was placed.
pub struct Seat {
    /// The room's router on the chosen worker.
    pub router: RouterRef,
    /// The router is new to the room as this coordinator knows it: the
    /// room's producers must be made available on it.
    pub new_to_room: bool,
    reservation: Reservation,
}

impl Seat {
    /// The join succeeded: the reservation stays until the participant leaves.
    pub fn keep(mut self) -> RouterRef {
        self.reservation.kept = true;
        self.router
    }
}

/// Live, non-draining workers with their capacity, but those whose last
/// reported CPU is above the ceiling: reserved consumer units are the fast,
/// surge-safe count, and the ceiling catches a worker that reaches a core
/// before its units are used up (units sized for another machine, or streams
/// that cost more than the estimate).
fn candidates(nodes: &[NodeReport], settings: &PlacementSettings) -> Vec<Candidate> {
    let ceiling = settings.cpu_ceiling;
    nodes
        .iter()
        .filter(|n| n.is_open())
        .flat_map(|n| {
            n.workers
                .iter()
                .filter(move |w| ceiling >= 1.0 || w.cpu_load <= ceiling)
                .map(|w| Candidate {
                    worker: WorkerRef {
                        node_id: n.node_id.clone(),
                        worker: w.index,
                    },
                    capacity: settings.worker_capacity,
                })
        })
        .collect()
}

/// Places participants.
pub struct Placement {
    registry: Arc<dyn Registry>,
    cluster: Arc<Cluster>,
    clients: Arc<NodeClients>,
    queue: Arc<JoinQueue>,
    settings: PlacementSettings,
}

impl Placement {
    /// Placement over a registry and the cluster's live nodes.
    pub fn new(
        cluster: Arc<Cluster>,
        clients: Arc<NodeClients>,
        queue: Arc<JoinQueue>,
        settings: PlacementSettings,
    ) -> Self {
        Self {
            registry: cluster.registry().clone(),
            cluster,
            clients,
            queue,
            settings,
        }
    }

    /// The registry lost what it knew (Redis restarted empty): records again
    /// a room's routers and its participants' reservations, as this
    /// coordinator placed them. Returns the participants recorded.
    pub async fn reassert(
        &self,
        room: &str,
        routers: &[RouterRef],
        peers: &[(String, RouterRef)],
    ) -> Result<usize, RegistryError> {
        for r in routers {
            let worker = WorkerRef {
                node_id: r.node_id.clone(),
                worker: r.worker,
            };
            self.registry
                .set_router(room, &worker, &r.router_id)
                .await?;
        }
        let cost = self.settings.participant_cost();
        let mut restored = 0;
        for (peer, r) in peers {
            let worker = WorkerRef {
                node_id: r.node_id.clone(),
                worker: r.worker,
            };
            if self
                .registry
                .restore(room, peer, &worker, cost, self.cluster.id())
                .await?
            {
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// What every live node holds of `room` (a coordinator taking the room
    /// over rebuilds it from this), each router with its reference.
    pub async fn describe_room(
        &self,
        room: &str,
    ) -> Result<Vec<(RouterRef, throng_proto::media::RouterDescription)>, PlacementError> {
        let nodes = self.cluster.live_nodes().await?;
        let mut out = Vec::new();
        for node in nodes.iter().filter(|n| !n.dead) {
            let client = self.clients.client(&node.node_id, &node.grpc_address)?;
            for d in client.describe_room(room).await? {
                let Some(info) = d.router.clone() else {
                    continue;
                };
                let caps = serde_json::from_str(&info.rtp_capabilities_json).map_err(|_| {
                    NodeCallError::BadReply {
                        node: node.node_id.clone(),
                        field: "rtp_capabilities_json",
                    }
                })?;
                let router = RouterRef {
                    router_id: info.router_id,
                    node_id: node.node_id.clone(),
                    worker: info.worker_index,
                    address: node.grpc_address.clone(),
                    caps: std::sync::Arc::new(caps),
                };
                out.push((router, d));
            }
        }
        Ok(out)
    }

    /// Takes over the placements of a room's participants whose coordinator
    /// died: each becomes this coordinator's (or is recorded again, if the
    /// registry lost it), so that reaping the dead one leaves them alone.
    pub async fn adopt(
        &self,
        room: &str,
        peers: &[(String, RouterRef)],
    ) -> Result<(), RegistryError> {
        let cost = self.settings.participant_cost();
        for (peer, r) in peers {
            if !self.registry.adopt(room, peer, self.cluster.id()).await? {
                let worker = WorkerRef {
                    node_id: r.node_id.clone(),
                    worker: r.worker,
                };
                self.registry
                    .restore(room, peer, &worker, cost, self.cluster.id())
                    .await?;
            }
        }
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &PlacementSettings {
        &self.settings
    }

    fn candidates(&self, nodes: &[NodeReport]) -> Vec<Candidate> {
        candidates(nodes, &self.settings)
    }

    /// Reserves capacity for `participant` in `room` and finds (or creates)
    /// the room's router on the chosen worker. `known` are the room's routers
    /// as this coordinator knows them.
    pub async fn seat(
        &self,
        room: &str,
        participant: &str,
        cost: u32,
        known: &HashMap<String, RouterRef>,
    ) -> Result<Seat, PlacementError> {
        let mut nodes = self.cluster.live_nodes().await?;
        // No worker to place on at all: the cluster is starting, or Redis
        // restarted empty and the nodes have not reported again yet. Their
        // reports come within a second or two: wait for them rather than
        // refuse the joins that queued meanwhile.
        let waited = Instant::now();
        while self.candidates(&nodes).is_empty() && waited.elapsed() < NODES_WAIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
            nodes = self.cluster.live_nodes().await?;
        }
        let candidates = self.candidates(&nodes);
        // Open workers exist, but the ceiling took them all.
        if candidates.is_empty() && nodes.iter().any(|n| n.is_open() && !n.workers.is_empty()) {
            return Err(PlacementError::Overloaded);
        }
        let span = info_span!(
            "placement.reserve",
            room,
            participant,
            node = tracing::field::Empty,
            worker = tracing::field::Empty
        );
        let request = PlacementRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
            cost,
            room_cap: self.settings.room_cap,
            candidates,
            owner: self.cluster.id().to_string(),
        };
        let placed = match self
            .registry
            .place(&request)
            .instrument(span.clone())
            .await?
        {
            Ok(p) => p,
            Err(PlacementRefused::RoomFull(n)) => return Err(PlacementError::RoomFull(n)),
            Err(PlacementRefused::NoCapacity(_)) => return Err(PlacementError::NoCapacity),
        };
        span.record("node", placed.worker.node_id.as_str());
        span.record("worker", placed.worker.worker);
        let reservation = Reservation {
            registry: self.registry.clone(),
            room: room.to_string(),
            participant: participant.to_string(),
            kept: false,
        };
        let metrics = self.clients.metrics();
        if let Some(router) = placed.router_id.as_ref().and_then(|id| known.get(id)) {
            Metrics::count(&metrics.placements, "existing");
            return Ok(Seat {
                router: router.clone(),
                new_to_room: false,
                reservation,
            });
        }
        let node = nodes
            .iter()
            .find(|n| n.node_id == placed.worker.node_id)
            .ok_or(PlacementError::NodeVanished)?;
        // At most `per_node` joins talk to one node at once, however they fall.
        let _slot = self
            .queue
            .node_slot(&node.node_id)
            .await
            .map_err(|e| PlacementError::Busy(e.to_string()))?;
        let client = self.clients.client(&node.node_id, &node.grpc_address)?;
        let found = if placed.new_router {
            let kind = if known.is_empty() {
                "first"
            } else if known.values().any(|r| r.node_id == node.node_id) {
                "spill_same_node"
            } else {
                "spill_other_node"
            };
            let found = client
                .create_router(room, placed.worker.worker)
                .instrument(info_span!("router.create", node = %node.node_id, worker = placed.worker.worker))
                .await?;
            Metrics::count(&metrics.placements, kind);
            self.registry
                .set_router(room, &placed.worker, &found.router_id)
                .await?;
            found
        } else {
            let router_id = match &placed.router_id {
                Some(id) => id.clone(),
                None => self.wait_for_router(room, &placed.worker).await?,
            };
            let found = client.get_router(&router_id).await?;
            Metrics::count(&metrics.placements, "existing");
            found
        };
        let new_to_room = !known.contains_key(&found.router_id);
        Ok(Seat {
            router: RouterRef {
                router_id: found.router_id,
                node_id: node.node_id.clone(),
                worker: placed.worker.worker,
                address: node.grpc_address.clone(),
                caps: std::sync::Arc::new(found.caps),
            },
            new_to_room,
            reservation,
        })
    }

    /// Another coordinator reserved the room's first place on this worker and
    /// is creating its router: wait until it is recorded.
    async fn wait_for_router(
        &self,
        room: &str,
        worker: &WorkerRef,
    ) -> Result<String, PlacementError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.registry.router(room, worker).await? {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(PlacementError::RouterTimeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Releases a participant's capacity (it left).
    pub async fn release(&self, room: &str, participant: &str) {
        if let Err(e) = self.registry.release(room, participant).await {
            warn!(room, participant, error = %e, "reservation not released");
        }
    }

    /// Whether anyone is placed in the room (on any coordinator). A registry
    /// that cannot answer counts as "yes": routers are kept rather than
    /// closed under someone.
    pub async fn room_in_use(&self, room: &str) -> bool {
        match self.registry.room(room).await {
            Ok(state) if state.participants > 0 => {
                debug!(
                    room,
                    remaining = state.participants,
                    "room still used elsewhere"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(room, error = %e, "cannot check room; keeping routers");
                true
            }
        }
    }

    /// Closes a room's routers on their nodes and forgets them in the registry.
    pub async fn close_routers(&self, room: &str, routers: Vec<RouterRef>) {
        for r in routers {
            if let Ok(client) = self.clients.of(&r) {
                if let Err(e) = client.close_router(&r.router_id).await {
                    if !e.is_not_found() {
                        warn!(room, router = %r.router_id, error = %e, "router not closed");
                    }
                }
            }
            let worker = WorkerRef {
                node_id: r.node_id.clone(),
                worker: r.worker,
            };
            if let Err(e) = self.registry.remove_router(room, &worker).await {
                warn!(room, error = %e, "router not removed from the registry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use throng_proto::report::WorkerReport;

    fn node(id: &str, loads: &[f64]) -> NodeReport {
        NodeReport {
            node_id: id.into(),
            grpc_address: "127.0.0.1:1".into(),
            announced_address: "127.0.0.1".into(),
            draining: false,
            dead: false,
            reported_at_ms: 0,
            workers: loads
                .iter()
                .enumerate()
                .map(|(i, &cpu_load)| WorkerReport {
                    index: i as u32,
                    port: 40000 + i as u16,
                    routers: 0,
                    transports: 0,
                    producers: 0,
                    consumers: 0,
                    cpu_time_ms: 0,
                    cpu_load,
                })
                .collect(),
        }
    }

    #[test]
    fn workers_above_the_cpu_ceiling_are_not_candidates() {
        let mut settings = PlacementSettings {
            worker_capacity: 1500,
            cpu_ceiling: 0.85,
            tiles_per_page: 12,
            room_cap: 1000,
        };
        let nodes = [node("a", &[0.2, 0.9]), node("b", &[0.85, 0.86])];
        let picked: Vec<_> = candidates(&nodes, &settings)
            .into_iter()
            .map(|c| format!("{}/{}", c.worker.node_id, c.worker.worker))
            .collect();
        assert_eq!(picked, ["a/0", "b/0"]);
        settings.cpu_ceiling = 1.0;
        assert_eq!(candidates(&nodes, &settings).len(), 4, "100 %: no ceiling");
    }
}
