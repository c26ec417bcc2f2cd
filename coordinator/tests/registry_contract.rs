//! One contract, two registries: every test runs against the in-memory
//! registry and against Redis (a real redis-server started here).

mod common;

use std::sync::Arc;

use common::RedisServer;

use coordinator::registry::memory::MemoryRegistry;
use coordinator::registry::redis::RedisRegistry;
use coordinator::registry::{Candidate, PlacementRefused, PlacementRequest, Registry, WorkerRef};

/// Runs `check` against both registries.
async fn both<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Registry>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    check(Arc::new(MemoryRegistry::new())).await;
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(&format!("redis://127.0.0.1:{}/", redis.port))
        .await
        .unwrap();
    check(Arc::new(registry)).await;
}

fn w(node: &str, worker: u32) -> WorkerRef {
    WorkerRef {
        node_id: node.into(),
        worker,
    }
}

fn candidates(workers: &[(&str, u32)], capacity: u32) -> Vec<Candidate> {
    workers
        .iter()
        .map(|(n, i)| Candidate {
            worker: w(n, *i),
            capacity,
        })
        .collect()
}

fn req(room: &str, pid: &str, cost: u32, cap: u32, cands: &[Candidate]) -> PlacementRequest {
    PlacementRequest {
        room_id: room.into(),
        participant_id: pid.into(),
        cost,
        room_cap: cap,
        candidates: cands.to_vec(),
        owner: "coordinator-1".into(),
    }
}

#[tokio::test]
async fn four_rooms_over_two_workers_are_spread_not_stacked() {
    both(|r| async move {
        let cands = candidates(&[("a", 0), ("a", 1)], 1500);
        let mut per_worker = std::collections::HashMap::new();
        for room in ["r1", "r2", "r3", "r4"] {
            let p = r
                .place(&req(room, "first", 26, 100, &cands))
                .await
                .unwrap()
                .unwrap();
            assert!(p.new_router, "first participant opens the room");
            *per_worker.entry(p.worker.clone()).or_insert(0) += 1;
        }
        assert_eq!(per_worker.get(&w("a", 0)), Some(&2));
        assert_eq!(per_worker.get(&w("a", 1)), Some(&2));
    })
    .await;
}

#[tokio::test]
async fn a_room_stays_on_its_worker_until_full_then_spills_and_never_overfills() {
    both(|r| async move {
        // 4 participants of 26 fit in 110; the 5th spills to the other worker.
        let cands = candidates(&[("a", 0), ("a", 1)], 110);
        let first = r
            .place(&req("big", "p0", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        r.set_router("big", &first.worker, "router-1")
            .await
            .unwrap();
        for i in 1..4 {
            let p = r
                .place(&req("big", &format!("p{i}"), 26, 100, &cands))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                p.worker, first.worker,
                "stays on its worker while it has room"
            );
            assert_eq!(p.router_id.as_deref(), Some("router-1"));
            assert!(!p.new_router);
        }
        let spilled = r
            .place(&req("big", "p4", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(spilled.worker, first.worker);
        assert!(spilled.new_router);
        assert_eq!(r.reserved(&first.worker).await.unwrap(), 104);
        // Both full now for this cost: refused, nothing reserved.
        for i in 5..8 {
            let _ = r
                .place(&req("big", &format!("p{i}"), 26, 100, &cands))
                .await
                .unwrap();
        }
        assert!(r.reserved(&first.worker).await.unwrap() <= 110);
        assert!(r.reserved(&spilled.worker).await.unwrap() <= 110);
        let refused = r.place(&req("big", "late", 26, 100, &cands)).await.unwrap();
        assert_eq!(refused, Err(PlacementRefused::NoCapacity(26)));
        let room = r.room("big").await.unwrap();
        assert_eq!(room.participants, 8);
        assert_eq!(room.participant_ids.len(), 8);
        assert_eq!(r.rooms().await.unwrap(), vec!["big".to_string()]);
        assert_eq!(room.routers.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn spill_prefers_the_same_node_then_other_nodes() {
    both(|r| async move {
        let cands = candidates(&[("a", 0), ("a", 1), ("b", 0)], 52);
        let p0 = r
            .place(&req("room", "p0", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        // Make node b the least loaded by far: it still loses to the room's own node.
        let p1 = r
            .place(&req("room", "p1", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p1.worker, p0.worker);
        let p2 = r
            .place(&req("room", "p2", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p2.worker.node_id, p0.worker.node_id, "same node first");
        assert_ne!(p2.worker, p0.worker);
        let _ = r
            .place(&req("room", "p3", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        let p4 = r
            .place(&req("room", "p4", 26, 100, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(p4.worker.node_id, p0.worker.node_id, "then another node");
    })
    .await;
}

#[tokio::test]
async fn the_room_cap_holds_and_placing_twice_is_idempotent() {
    both(|r| async move {
        let cands = candidates(&[("a", 0)], 10_000);
        for i in 0..3 {
            r.place(&req("capped", &format!("p{i}"), 10, 3, &cands))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            r.place(&req("capped", "p3", 10, 3, &cands)).await.unwrap(),
            Err(PlacementRefused::RoomFull(3))
        );
        let again = r
            .place(&req("capped", "p1", 10, 3, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.cost, 10);
        assert_eq!(
            r.reserved(&w("a", 0)).await.unwrap(),
            30,
            "a repeated place reserves nothing more"
        );
    })
    .await;
}

#[tokio::test]
async fn release_returns_capacity_and_empties_the_room() {
    both(|r| async move {
        let cands = candidates(&[("a", 0)], 100);
        let p = r
            .place(&req("room", "p0", 40, 10, &cands))
            .await
            .unwrap()
            .unwrap();
        r.set_router("room", &p.worker, "router-x").await.unwrap();
        r.place(&req("room", "p1", 40, 10, &cands))
            .await
            .unwrap()
            .unwrap();
        let released = r.release("room", "p0").await.unwrap().unwrap();
        assert_eq!(released.worker, w("a", 0));
        assert_eq!(released.room_participants_left, 1);
        assert_eq!(
            r.release("room", "p0").await.unwrap(),
            None,
            "second release is a no-op"
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 40);
        assert_eq!(
            r.release("room", "p1")
                .await
                .unwrap()
                .unwrap()
                .room_participants_left,
            0
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 0);
        assert_eq!(
            r.router("room", &w("a", 0)).await.unwrap().as_deref(),
            Some("router-x")
        );
        r.remove_router("room", &w("a", 0)).await.unwrap();
        assert_eq!(r.room("room").await.unwrap(), Default::default());
    })
    .await;
}

#[tokio::test]
async fn evicting_a_dead_node_releases_its_placements_only() {
    both(|r| async move {
        let cands = candidates(&[("a", 0), ("b", 0)], 26);
        let pa = r
            .place(&req("room", "pa", 26, 10, &cands))
            .await
            .unwrap()
            .unwrap();
        let pb = r
            .place(&req("room", "pb", 26, 10, &cands))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(pa.worker.node_id, pb.worker.node_id);
        let dead = pa.worker.node_id.clone();
        let evicted = r.evict_node(&dead).await.unwrap();
        assert_eq!(evicted, vec![("room".to_string(), "pa".to_string())]);
        assert_eq!(r.reserved(&pa.worker).await.unwrap(), 0);
        assert_eq!(r.reserved(&pb.worker).await.unwrap(), 26);
        let room = r.room("room").await.unwrap();
        assert_eq!(room.participants, 1);
        assert!(room.routers.iter().all(|(w, _)| w.node_id != dead));
        // The evicted participant can be placed again, elsewhere.
        let survivors = candidates(&[(pb.worker.node_id.as_str(), 0), ("c", 0)], 26);
        let again = r
            .place(&req("room", "pa", 26, 10, &survivors))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.worker, w("c", 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_never_exceed_a_worker_capacity() {
    both(|r| async move {
        // 300 joins racing for 4 workers of 1500 units at 26 each: at most 57
        // fit per worker (228 in all), the rest must be refused, none overfilled.
        let cands = candidates(&[("a", 0), ("a", 1), ("b", 0), ("b", 1)], 1500);
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let r = r.clone();
                let cands = cands.clone();
                tokio::spawn(async move {
                    r.place(&req(
                        &format!("room{}", i % 7),
                        &format!("p{i}"),
                        26,
                        1000,
                        &cands,
                    ))
                    .await
                })
            })
            .collect();
        let mut placed = 0;
        let mut refused = 0;
        for t in futures::future::join_all(tasks).await {
            match t.unwrap().unwrap() {
                Ok(_) => placed += 1,
                Err(PlacementRefused::NoCapacity(_)) => refused += 1,
                Err(e) => panic!("unexpected refusal {e}"),
            }
        }
        assert_eq!(placed, 4 * (1500 / 26));
        assert_eq!(refused, 300 - placed);
        for c in &cands {
            let reserved = r.reserved(&c.worker).await.unwrap();
            assert!(reserved <= 1500, "{} reserved {reserved}", c.worker.key());
            assert_eq!(reserved, 26 * (1500 / 26));
        }
    })
    .await;
}

#[tokio::test]
async fn a_dead_coordinators_placements_are_reaped_and_no_one_elses() {
    both(|r| async move {
        let cands = candidates(&[("a", 0)], 1000);
        let mut mine = req("room", "p1", 26, 10, &cands);
        mine.owner = "coordinator-dead".into();
        r.place(&mine).await.unwrap().unwrap();
        r.place(&req("room", "p2", 26, 10, &cands))
            .await
            .unwrap()
            .unwrap();
        let reaped = r.reap_coordinator("coordinator-dead").await.unwrap();
        assert_eq!(
            reaped,
            vec![("room".to_string(), "p1".to_string(), w("a", 0))]
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 26);
        assert_eq!(
            r.room("room").await.unwrap().participant_ids,
            vec!["p2".to_string()]
        );
        assert!(
            r.reap_coordinator("coordinator-dead")
                .await
                .unwrap()
                .is_empty(),
            "reaping twice is harmless"
        );
    })
    .await;
}

#[tokio::test]
async fn an_adopted_placement_survives_the_reaping_of_its_dead_owner() {
    both(|r| async move {
        let cands = candidates(&[("a", 0)], 1000);
        for pid in ["p1", "p2"] {
            let mut theirs = req("room", pid, 26, 10, &cands);
            theirs.owner = "coordinator-dead".into();
            r.place(&theirs).await.unwrap().unwrap();
        }
        // Another coordinator takes the room over: p1 resumed there.
        assert!(r.adopt("room", "p1", "coordinator-2").await.unwrap());
        assert!(
            r.adopt("room", "p1", "coordinator-2").await.unwrap(),
            "twice is harmless"
        );
        assert!(!r.adopt("room", "nobody", "coordinator-2").await.unwrap());
        assert!(!r.adopt("elsewhere", "p1", "coordinator-2").await.unwrap());
        // Reaping the dead owner releases p2 only.
        let reaped = r.reap_coordinator("coordinator-dead").await.unwrap();
        assert_eq!(
            reaped,
            vec![("room".to_string(), "p2".to_string(), w("a", 0))]
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 26);
        // p1 is the adopter's now: reaping the adopter releases it.
        let reaped = r.reap_coordinator("coordinator-2").await.unwrap();
        assert_eq!(
            reaped,
            vec![("room".to_string(), "p1".to_string(), w("a", 0))]
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_lost_placement_is_restored_once_and_the_epoch_is_stable() {
    both(|r| async move {
        let e1 = r.epoch().await.unwrap();
        assert_eq!(r.epoch().await.unwrap(), e1, "the epoch is stable");
        assert!(r
            .restore("room", "p1", &w("a", 0), 26, "coordinator-1")
            .await
            .unwrap());
        assert!(
            !r.restore("room", "p1", &w("a", 0), 26, "coordinator-1")
                .await
                .unwrap(),
            "restoring twice changes nothing"
        );
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 26);
        assert_eq!(
            r.room("room").await.unwrap().participant_ids,
            vec!["p1".to_string()]
        );
        // A restored placement is released, reaped and evicted like any other.
        let reaped = r.reap_coordinator("coordinator-1").await.unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(r.reserved(&w("a", 0)).await.unwrap(), 0);
        r.restore("room", "p2", &w("b", 1), 26, "coordinator-2")
            .await
            .unwrap();
        assert_eq!(
            r.evict_node("b").await.unwrap(),
            vec![("room".to_string(), "p2".to_string())]
        );
        assert_eq!(r.reserved(&w("b", 1)).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn the_redis_epoch_changes_when_redis_loses_its_data() {
    let redis = RedisServer::start();
    let r = RedisRegistry::connect(&redis.url()).await.unwrap();
    let before = r.epoch().await.unwrap();
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let after = r.epoch().await.unwrap();
    assert_ne!(before, after);
    assert_eq!(r.epoch().await.unwrap(), after);
}
