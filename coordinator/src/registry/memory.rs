//! In-memory registry: the single-machine default (one coordinator, no
//! Redis). Same contract and same placement rule as the Redis registry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use throng_proto::report::NodeReport;

use super::{
    Placement, PlacementRefused, PlacementRequest, Registry, RegistryError, Released, RoomState,
    WorkerRef,
};

#[derive(Default)]
struct Room {
    /// participant -> (worker, cost, placing coordinator)
    participants: HashMap<String, (WorkerRef, u32, String)>,
    /// worker -> router id (None while being created)
    routers: BTreeMap<WorkerRef, Option<String>>,
}

#[derive(Default)]
struct State {
    reserved: HashMap<WorkerRef, u32>,
    rooms: HashMap<String, Room>,
    nodes: HashMap<String, (NodeReport, Instant)>,
    /// Nodes evicted and not told yet (the memory form of Redis's eviction
    /// mark): whatever they still hold is nobody's.
    evicted: HashSet<String>,
}

/// The in-memory registry.
#[derive(Default)]
pub struct MemoryRegistry {
    state: Mutex<State>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a node's report, valid for `ttl` (the coordinator polls the
    /// node when there is no Redis to receive reports).
    pub fn report_node(&self, report: NodeReport, ttl: Duration) {
        let mut s = self.lock();
        s.nodes
            .insert(report.node_id.clone(), (report, Instant::now() + ttl));
    }

    /// Whether `node_id` was evicted and has not closed what it held yet:
    /// its reports are not taken until [`MemoryRegistry::eviction_done`].
    pub fn evicted(&self, node_id: &str) -> bool {
        self.lock().evicted.contains(node_id)
    }

    /// The evicted node closed everything it held (CloseAll answered).
    pub fn eviction_done(&self, node_id: &str) {
        self.lock().evicted.remove(node_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The placement rule shared with the Lua script: among candidates with room
/// for `cost`, prefer a worker already hosting the room, then a worker on a
/// node hosting the room, then any; within a rank the lowest reserved/capacity
/// ratio wins, then the smaller key.
pub(crate) fn choose<'a>(
    candidates: impl Iterator<Item = (&'a WorkerRef, u32, u32)>,
    cost: u32,
    room_workers: &BTreeMap<WorkerRef, Option<String>>,
) -> Option<WorkerRef> {
    let mut best: Option<(&WorkerRef, u32, u32, u8)> = None;
    for (w, capacity, reserved) in candidates {
        if u64::from(reserved) + u64::from(cost) > u64::from(capacity) {
            continue;
        }
        let rank = if room_workers.contains_key(w) {
            1
        } else if room_workers.keys().any(|r| r.node_id == w.node_id) {
            2
        } else {
            3
        };
        let better = match best {
            None => true,
            Some((bw, br, bc, brank)) => {
                let (lhs, rhs) = (
                    u64::from(reserved) * u64::from(bc),
                    u64::from(br) * u64::from(capacity),
                );
                rank < brank || (rank == brank && (lhs < rhs || (lhs == rhs && w.key() < bw.key())))
            }
        };
        if better {
            best = Some((w, reserved, capacity, rank));
        }
    }
    best.map(|(w, ..)| w.clone())
}

#[async_trait::async_trait]
impl Registry for MemoryRegistry {
    async fn nodes(&self) -> Result<Vec<NodeReport>, RegistryError> {
        let mut s = self.lock();
        let now = Instant::now();
        s.nodes.retain(|_, (_, expiry)| *expiry > now);
        let mut nodes: Vec<_> = s.nodes.values().map(|(r, _)| r.clone()).collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    async fn place(
        &self,
        req: &PlacementRequest,
    ) -> Result<Result<Placement, PlacementRefused>, RegistryError> {
        let mut s = self.lock();
        let State {
            reserved, rooms, ..
        } = &mut *s;
        let room = rooms.entry(req.room_id.clone()).or_default();
        if let Some((worker, cost, _)) = room.participants.get(&req.participant_id) {
            return Ok(Ok(Placement {
                worker: worker.clone(),
                router_id: room.routers.get(worker).cloned().flatten(),
                new_router: false,
                cost: *cost,
            }));
        }
        let count = room.participants.len() as u32;
        if count >= req.room_cap {
            if room.participants.is_empty() && room.routers.is_empty() {
                rooms.remove(&req.room_id);
            }
            return Ok(Err(PlacementRefused::RoomFull(count)));
        }
        let chosen = choose(
            req.candidates.iter().map(|c| {
                (
                    &c.worker,
                    c.capacity,
                    reserved.get(&c.worker).copied().unwrap_or(0),
                )
            }),
            req.cost,
            &room.routers,
        );
        let Some(worker) = chosen else {
            if room.participants.is_empty() && room.routers.is_empty() {
                rooms.remove(&req.room_id);
            }
            return Ok(Err(PlacementRefused::NoCapacity(req.cost)));
        };
        *reserved.entry(worker.clone()).or_default() += req.cost;
        room.participants.insert(
            req.participant_id.clone(),
            (worker.clone(), req.cost, req.owner.clone()),
        );
        let (router_id, new_router) = match room.routers.get(&worker) {
            Some(r) => (r.clone(), false),
            None => {
                room.routers.insert(worker.clone(), None);
                (None, true)
            }
        };
        Ok(Ok(Placement {
            worker,
            router_id,
            new_router,
            cost: req.cost,
        }))
    }

    async fn set_router(
        &self,
        room_id: &str,
        worker: &WorkerRef,
        router_id: &str,
    ) -> Result<(), RegistryError> {
        let mut s = self.lock();
        let room = s.rooms.entry(room_id.to_string()).or_default();
        room.routers
            .insert(worker.clone(), Some(router_id.to_string()));
        Ok(())
    }

    async fn router(
        &self,
        room_id: &str,
        worker: &WorkerRef,
    ) -> Result<Option<String>, RegistryError> {
        let s = self.lock();
        Ok(s.rooms
            .get(room_id)
            .and_then(|r| r.routers.get(worker).cloned().flatten()))
    }

    async fn release(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<Option<Released>, RegistryError> {
        let mut s = self.lock();
        let State {
            reserved, rooms, ..
        } = &mut *s;
        let Some(room) = rooms.get_mut(room_id) else {
            return Ok(None);
        };
        let Some((worker, cost, _)) = room.participants.remove(participant_id) else {
            return Ok(None);
        };
        if let Some(r) = reserved.get_mut(&worker) {
            *r = r.saturating_sub(cost);
            if *r == 0 {
                reserved.remove(&worker);
            }
        }
        let left = room.participants.len() as u32;
        Ok(Some(Released {
            worker,
            room_participants_left: left,
        }))
    }

    async fn remove_router(&self, room_id: &str, worker: &WorkerRef) -> Result<(), RegistryError> {
        let mut s = self.lock();
        if let Some(room) = s.rooms.get_mut(room_id) {
            room.routers.remove(worker);
            if room.routers.is_empty() && room.participants.is_empty() {
                s.rooms.remove(room_id);
            }
        }
        Ok(())
    }

    async fn reserved(&self, worker: &WorkerRef) -> Result<u32, RegistryError> {
        Ok(self.lock().reserved.get(worker).copied().unwrap_or(0))
    }

    async fn room(&self, room_id: &str) -> Result<RoomState, RegistryError> {
        let s = self.lock();
        Ok(s.rooms
            .get(room_id)
            .map(|r| RoomState {
                participants: r.participants.len() as u32,
                participant_ids: {
                    let mut ids: Vec<String> = r.participants.keys().cloned().collect();
                    ids.sort();
                    ids
                },
                routers: r
                    .routers
                    .iter()
                    .map(|(w, id)| (w.clone(), id.clone()))
                    .collect(),
            })
            .unwrap_or_default())
    }

    async fn rooms(&self) -> Result<Vec<String>, RegistryError> {
        let mut rooms: Vec<String> = self.lock().rooms.keys().cloned().collect();
        rooms.sort();
        Ok(rooms)
    }

    async fn evict_node(&self, node_id: &str) -> Result<Vec<(String, String)>, RegistryError> {
        let mut s = self.lock();
        let State {
            reserved,
            rooms,
            nodes,
            evicted: marks,
        } = &mut *s;
        nodes.remove(node_id);
        marks.insert(node_id.to_string());
        reserved.retain(|w, _| w.node_id != node_id);
        let mut evicted = Vec::new();
        rooms.retain(|room_id, room| {
            room.participants.retain(|pid, (w, _, _)| {
                let gone = w.node_id == node_id;
                if gone {
                    evicted.push((room_id.clone(), pid.clone()));
                }
                !gone
            });
            room.routers.retain(|w, _| w.node_id != node_id);
            !(room.participants.is_empty() && room.routers.is_empty())
        });
        evicted.sort();
        Ok(evicted)
    }

    async fn epoch(&self) -> Result<String, RegistryError> {
        // Memory is lost only with the process, and the rooms with it.
        Ok("memory".into())
    }

    async fn restore(
        &self,
        room_id: &str,
        participant_id: &str,
        worker: &WorkerRef,
        cost: u32,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        let mut s = self.lock();
        let room = s.rooms.entry(room_id.to_string()).or_default();
        if room.participants.contains_key(participant_id) {
            return Ok(false);
        }
        room.participants.insert(
            participant_id.to_string(),
            (worker.clone(), cost, owner.to_string()),
        );
        *s.reserved.entry(worker.clone()).or_insert(0) += cost;
        Ok(true)
    }

    async fn adopt(
        &self,
        room_id: &str,
        participant_id: &str,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        let mut s = self.lock();
        let placed = s
            .rooms
            .get_mut(room_id)
            .and_then(|room| room.participants.get_mut(participant_id));
        Ok(match placed {
            Some((_, _, o)) => {
                *o = owner.to_string();
                true
            }
            None => false,
        })
    }

    async fn heartbeat(&self, _coordinator_id: &str, _ttl: Duration) -> Result<(), RegistryError> {
        // One coordinator per memory registry: it cannot outlive itself.
        Ok(())
    }

    async fn dead_coordinators(&self) -> Result<Vec<String>, RegistryError> {
        Ok(Vec::new())
    }

    async fn reap_coordinator(
        &self,
        coordinator_id: &str,
    ) -> Result<Vec<(String, String, WorkerRef)>, RegistryError> {
        let mut s = self.lock();
        let State {
            reserved, rooms, ..
        } = &mut *s;
        let mut reaped = Vec::new();
        for (room_id, room) in rooms.iter_mut() {
            room.participants.retain(|pid, (w, cost, owner)| {
                if owner != coordinator_id {
                    return true;
                }
                if let Some(r) = reserved.get_mut(w) {
                    *r = r.saturating_sub(*cost);
                }
                reaped.push((room_id.clone(), pid.clone(), w.clone()));
                false
            });
        }
        reserved.retain(|_, r| *r > 0);
        reaped.sort();
        Ok(reaped)
    }
}
