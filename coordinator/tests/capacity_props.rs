//! Property tests of capacity accounting with several coordinators at once:
//! three registry clients (three coordinators' connections, owners c0..c2)
//! over one real redis-server, and the in-memory registry, run random
//! batches of placements, releases, coordinator reaps and node evictions,
//! each batch concurrently. After every batch, every worker's reserved units
//! equal what the successful placements still hold (never negative, never
//! above capacity), and rooms never exceed their cap; once everyone left,
//! nothing is reserved and no room is left. bolero's random engine under the
//! normal test runner (`BOLERO_RANDOM_TEST_TIME_MS` makes a long run).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bolero::generator::TypeGenerator;
use common::RedisServer;
use coordinator::registry::memory::MemoryRegistry;
use coordinator::registry::redis::RedisRegistry;
use coordinator::registry::{Candidate, PlacementRequest, Registry, WorkerRef};
use throng_test_support::Cases;

const CAPACITY: u32 = 120;
const ROOM_CAP: u32 = 5;
const NODES: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone, TypeGenerator)]
enum Op {
    /// Coordinator `by % 3` places participant `pid % 8` in room `room % 3`
    /// at `cost % 50 + 1` units, on the workers of the live nodes.
    Place {
        by: u8,
        room: u8,
        pid: u8,
        cost: u8,
    },
    Release {
        by: u8,
        room: u8,
        pid: u8,
    },
    /// Coordinator `by` reaps coordinator `dead % 3` (it stopped beating).
    Reap {
        by: u8,
        dead: u8,
    },
    /// Node `node % 2` died.
    Evict {
        by: u8,
        node: u8,
    },
}

fn workers() -> Vec<WorkerRef> {
    NODES
        .iter()
        .flat_map(|n| {
            (0..2).map(move |w| WorkerRef {
                node_id: n.to_string(),
                worker: w,
            })
        })
        .collect()
}

/// (room, participant) -> (worker, cost, owner).
type Model = BTreeMap<(String, String), (WorkerRef, u32, String)>;

async fn check(registries: &[Arc<dyn Registry>], batches: &[Vec<Op>]) {
    let mut model: Model = BTreeMap::new();
    let mut dead_nodes: BTreeSet<String> = BTreeSet::new();
    for batch in batches.iter().take(12) {
        // Distinct (room, participant) per batch: concurrent ops on one
        // participant have no defined order, and the model must be exact.
        let mut seen = BTreeSet::new();
        // Placements and releases of the batch race each other; then its
        // reaps and evictions race each other (a reap racing a re-placement
        // of the participant it reaps has no defined outcome to model).
        let ops: Vec<&Op> = batch.iter().take(16).collect();
        let (moves, sweeps): (Vec<&Op>, Vec<&Op>) = ops
            .into_iter()
            .partition(|op| matches!(op, Op::Place { .. } | Op::Release { .. }));
        for phase in [moves, sweeps] {
            let mut tasks = Vec::new();
            for op in phase {
                let key = match op {
                    Op::Place { room, pid, .. } | Op::Release { room, pid, .. } => {
                        Some((format!("r{}", room % 3), format!("p{}", pid % 8)))
                    }
                    _ => None,
                };
                if let Some(k) = &key {
                    if !seen.insert(k.clone()) {
                        continue;
                    }
                }
                let by = match op {
                    Op::Place { by, .. }
                    | Op::Release { by, .. }
                    | Op::Reap { by, .. }
                    | Op::Evict { by, .. } => *by as usize % registries.len(),
                };
                let r = registries[by].clone();
                let candidates: Vec<Candidate> = workers()
                    .into_iter()
                    .filter(|w| !dead_nodes.contains(&w.node_id))
                    .map(|worker| Candidate {
                        worker,
                        capacity: CAPACITY,
                    })
                    .collect();
                let op = op.clone();
                tasks.push(tokio::spawn(async move { apply(r, op, candidates).await }));
            }
            let outcomes: Vec<Outcome> = futures::future::join_all(tasks)
                .await
                .into_iter()
                .map(|t| t.expect("task"))
                .collect();
            for o in &outcomes {
                match o {
                    Outcome::Placed(req, Some((worker, cost))) => {
                        let key = (req.room_id.clone(), req.participant_id.clone());
                        // Placing again returns the first placement, whoever asks.
                        let held = model
                            .entry(key)
                            .or_insert_with(|| (worker.clone(), *cost, req.owner.clone()));
                        assert_eq!(
                            (&held.0, held.1),
                            (worker, *cost),
                            "placing twice moved {req:?}"
                        );
                    }
                    Outcome::Placed(..) => {}
                    Outcome::Released(room, pid, was) => {
                        let had = model.remove(&(room.clone(), pid.clone())).is_some();
                        assert_eq!(*was, had, "release of {room}/{pid}");
                    }
                    Outcome::Reaped(owner, gone) => {
                        for k in gone {
                            let held = model.remove(k);
                            assert!(
                                held.as_ref().is_some_and(|(_, _, o)| o == owner),
                                "reaping {owner} released {k:?}, held {held:?}"
                            );
                        }
                    }
                    Outcome::Evicted(node, gone) => {
                        for k in gone {
                            let held = model.remove(k);
                            assert!(
                                held.as_ref().is_some_and(|(w, _, _)| w.node_id == *node),
                                "evicting {node} released {k:?}, held {held:?}"
                            );
                        }
                        dead_nodes.insert(node.clone());
                    }
                }
            }
        }
        verify(registries[0].as_ref(), &model).await;
        // Nodes come back (a replacement) now and then.
        if dead_nodes.len() == NODES.len() {
            dead_nodes.clear();
        }
    }
    // Everyone leaves: nothing stays reserved, no room is left.
    for (room, pid) in model.keys().cloned().collect::<Vec<_>>() {
        assert!(registries[1 % registries.len()]
            .release(&room, &pid)
            .await
            .unwrap()
            .is_some());
        model.remove(&(room, pid));
    }
    verify(registries[0].as_ref(), &model).await;
    for room in ["r0", "r1", "r2"] {
        assert_eq!(registries[0].room(room).await.unwrap().participants, 0);
    }
}

async fn apply(r: Arc<dyn Registry>, op: Op, candidates: Vec<Candidate>) -> Outcome {
    match op {
        Op::Place {
            room,
            pid,
            cost,
            by,
        } => {
            let req = PlacementRequest {
                room_id: format!("r{}", room % 3),
                participant_id: format!("p{}", pid % 8),
                cost: u32::from(cost % 50) + 1,
                room_cap: ROOM_CAP,
                candidates,
                owner: format!("c{}", by % 3),
            };
            let placed = r.place(&req).await.expect("registry").ok();
            Outcome::Placed(req, placed.map(|p| (p.worker, p.cost)))
        }
        Op::Release { room, pid, .. } => {
            let (room, pid) = (format!("r{}", room % 3), format!("p{}", pid % 8));
            let released = r.release(&room, &pid).await.expect("registry");
            Outcome::Released(room, pid, released.is_some())
        }
        Op::Reap { dead, .. } => {
            let dead = format!("c{}", dead % 3);
            let reaped = r.reap_coordinator(&dead).await.expect("registry");
            Outcome::Reaped(dead, reaped.into_iter().map(|(r, p, _)| (r, p)).collect())
        }
        Op::Evict { node, .. } => {
            let node = NODES[node as usize % 2].to_string();
            let evicted = r.evict_node(&node).await.expect("registry");
            Outcome::Evicted(node, evicted.into_iter().collect())
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Placed(PlacementRequest, Option<(WorkerRef, u32)>),
    Released(String, String, bool),
    Reaped(String, BTreeSet<(String, String)>),
    Evicted(String, BTreeSet<(String, String)>),
}

async fn verify(r: &dyn Registry, model: &Model) {
    for w in workers() {
        let reserved = r.reserved(&w).await.expect("registry");
        let expected: u32 = model
            .values()
            .filter(|(mw, _, _)| *mw == w)
            .map(|(_, c, _)| c)
            .sum();
        assert!(
            reserved <= CAPACITY,
            "{} over capacity: {reserved}",
            w.key()
        );
        assert_eq!(
            reserved,
            expected,
            "{} reserved vs held placements {model:?}",
            w.key()
        );
    }
    for room in ["r0", "r1", "r2"] {
        let state = r.room(room).await.expect("registry");
        let held = model.keys().filter(|(r, _)| r == room).count() as u32;
        assert!(
            state.participants <= ROOM_CAP,
            "{room}: {}",
            state.participants
        );
        assert_eq!(state.participants, held, "{room}: {state:?} vs {model:?}");
    }
}

fn run(
    name: &'static str,
    make: impl Fn(&tokio::runtime::Runtime) -> Vec<Arc<dyn Registry>>,
    iterations: usize,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registries = make(&rt);
    let shared = std::panic::AssertUnwindSafe((&rt, registries));
    let cases = Cases::new(name);
    bolero::check!()
        .with_type::<Vec<Vec<Op>>>()
        .with_iterations(iterations)
        .for_each(|batches| {
            let (rt, registries) = &*shared;
            cases.one();
            rt.block_on(async {
                check(registries, batches).await;
                // A clean slate for the next case: reap everyone.
                for c in 0..3 {
                    registries[0]
                        .reap_coordinator(&format!("c{c}"))
                        .await
                        .unwrap();
                }
                verify(registries[0].as_ref(), &BTreeMap::new()).await;
            })
        });
}

#[test]
fn capacity_accounting_holds_across_three_coordinators_on_redis() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    run(
        "capacity accounting, 3 coordinators on Redis",
        |rt| {
            rt.block_on(async {
                let mut out: Vec<Arc<dyn Registry>> = Vec::new();
                for _ in 0..3 {
                    out.push(Arc::new(RedisRegistry::connect(&url).await.unwrap()));
                }
                out
            })
        },
        150,
    );
}

#[test]
fn capacity_accounting_holds_in_memory() {
    let shared: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    run(
        "capacity accounting, in memory",
        |_| vec![shared.clone(), shared.clone(), shared.clone()],
        300,
    );
}
