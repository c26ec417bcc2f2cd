//! Placement under load. A surge: 1000 WebSocket joins released at once
//! (signalling only) through one coordinator, with Redis as the registry and a real media node. All are
//! admitted, none fails, every client sees its place in line, and no worker's
//! reservation in Redis ever exceeds its capacity while it happens. A worker
//! made hot with real RTP gets no participant while its reported CPU is
//! above the ceiling.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const JOINS: usize = 1000;
const ROOMS: usize = 4;
// 26 units per participant (12 tiles x 2 + 2): 2 workers x 13000 = exactly 1000 participants.
const CAPACITY: u32 = 13_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_joins_at_once_are_all_admitted_without_overfilling_a_worker() {
    let redis = RedisServer::start();
    let c = cluster_with(2, CAPACITY, Some(&redis)).await;

    // Watch the reservations in Redis for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let stop = stop.clone();
        let url = redis.url();
        tokio::spawn(async move {
            let mut conn = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let mut max_seen = 0u32;
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let reserved: HashMap<String, u32> = redis::cmd("HGETALL")
                    .arg("throng:reserved")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for v in reserved.values() {
                    max_seen = max_seen.max(*v);
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (max_seen, samples)
        })
    };

    // Connect everyone first, then release all joins together.
    let mut clients = Vec::with_capacity(JOINS);
    for _ in 0..JOINS {
        clients.push(Client::connect(&c).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                let token = coordinator::auth::TokenKey::new(SECRET).mint(&format!("room-{}", i % ROOMS), &format!("p{i}"), true, 600);
                client
                    .send_raw(json!({"type": "join", "reqId": "j", "room": format!("room-{}", i % ROOMS), "displayName": format!("p{i}"), "token": token}).to_string())
                    .await;
                let mut positions = 0;
                loop {
                    let m = client.recv().await;
                    match m["type"].as_str() {
                        Some("queued") => positions += 1,
                        Some("joined") => return (Ok(start.elapsed()), positions, client),
                        Some("error") => return (Err(m.to_string()), positions, client),
                        _ => {}
                    }
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut keep = Vec::new();
    for t in futures::future::join_all(tasks).await {
        let (result, positions, client) = t.unwrap();
        assert!(positions >= 1, "a client never saw its place in line");
        admitted.push(result.unwrap_or_else(|e| panic!("a join failed: {e}")));
        keep.push(client);
    }
    stop.store(true, Ordering::Relaxed);
    let (max_seen, samples) = monitor.await.unwrap();
    assert_eq!(admitted.len(), JOINS);
    assert!(
        samples > 10,
        "the monitor sampled Redis only {samples} times"
    );
    assert!(
        max_seen <= CAPACITY,
        "a worker reached {max_seen} reserved units"
    );

    admitted.sort();
    let p = |q: f64| admitted[((admitted.len() as f64 * q) as usize).min(admitted.len() - 1)];
    eprintln!(
        "surge: {JOINS} joins into {ROOMS} rooms admitted; p50 {:?}, p95 {:?}, p99 {:?}, max {:?}; peak reservation {max_seen}/{CAPACITY} ({samples} samples)",
        p(0.5), p(0.95), p(0.99), admitted[admitted.len() - 1]
    );
    assert_eq!(reserved_units(&c).await, JOINS as u64 * 26);
    drop(keep);
}

/// The reserved units and the CPU load of each node's worker 0, as the admin API shows them.
async fn worker_view(c: &Cluster) -> HashMap<String, (u64, f64)> {
    admin(c, "/admin/nodes").await["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let w = &n["workers"][0];
            (
                n["nodeId"].as_str().unwrap().to_string(),
                (
                    w["reserved"].as_u64().unwrap_or(0),
                    w["cpuLoad"].as_f64().unwrap_or(0.0),
                ),
            )
        })
        .collect()
}

/// Waits (up to 20 s) until `node`'s worker CPU load satisfies `ok`; its last load.
async fn wait_for_load(c: &Cluster, node: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let load = worker_view(c).await.get(node).map_or(-1.0, |v| v.1);
        if ok(load) {
            // The coordinator's own view of the nodes is read every second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return load;
        }
        assert!(
            Instant::now() < deadline,
            "{node}'s worker load stayed at {load}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Placement reserves consumer units but skips a worker whose reported CPU
/// is above `THRONG_WORKER_CPU_CEILING`, however many units it has free (a
/// real worker made hot with real RTP copied to plain receivers); the worker
/// gets participants again once it cooled down, and with every worker hot a
/// join is refused with a clear error rather than put on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_above_the_cpu_ceiling_gets_no_new_participant_until_it_cools_down() {
    let redis = RedisServer::start();
    let (hot_addr, _hot_stop) = start_node("node-hot", 1, Some(&redis)).await;
    let (cool_addr, _cool_stop) = start_node("node-cool", 1, Some(&redis)).await;
    let c = Cluster::coordinator_with(
        &[hot_addr.to_string(), cool_addr.to_string()],
        100_000,
        &redis,
        &[("THRONG_WORKER_CPU_CEILING", "8".into())],
    )
    .await;
    let http = c.http;
    let join = |room: &'static str, who: String| {
        let c = Cluster::at(http);
        async move {
            let mut client = Client::connect(&c).await;
            let reply = client.join(room, &who, true).await;
            (client, reply)
        }
    };

    let mut node = throng_test_support::connect_node(hot_addr).await;
    let heat =
        throng_test_support::hot_worker::HotWorker::start(&mut node, "heat", 0, 30, 4000).await;
    let hot = wait_for_load(&c, "node-hot", |l| l > 0.08).await;
    let mut keep = Vec::new();
    // Each in a room of their own: every one goes to the least reserved
    // worker that qualifies, which would be the hot one every other time.
    for (i, room) in ["r0", "r1", "r2", "r3", "r4", "r5"].into_iter().enumerate() {
        let (client, reply) = join(room, format!("p{i}")).await;
        assert_eq!(reply["type"], "joined", "{reply}");
        keep.push(client);
    }
    let view = worker_view(&c).await;
    eprintln!("hot worker at {:.0} % of a core: {view:?}", hot * 100.0);
    assert!(
        view["node-hot"].1 > 0.08,
        "the hot worker cooled down during the joins ({view:?}): the test proves nothing"
    );
    assert_eq!(
        view["node-hot"].0, 0,
        "a participant was placed on the hot worker"
    );
    assert!(view["node-cool"].0 > 0, "{view:?}");

    // Both hot: refused, with the reason.
    let mut other = throng_test_support::connect_node(cool_addr).await;
    let heat_too =
        throng_test_support::hot_worker::HotWorker::start(&mut other, "heat", 0, 30, 4000).await;
    wait_for_load(&c, "node-cool", |l| l > 0.08).await;
    let (_, reply) = join("r0", "late".into()).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("CPU ceiling"),
        "{reply}"
    );
    assert!(heat.sent() > 0 && heat_too.sent() > 0);
    drop(heat_too);

    // The first one cools down: the next participant, who would fit either
    // worker, goes to it (it has the fewest units reserved).
    drop(heat);
    wait_for_load(&c, "node-hot", |l| (0.0..0.08).contains(&l)).await;
    wait_for_load(&c, "node-cool", |l| (0.0..0.08).contains(&l)).await;
    let (client, reply) = join("another", "q0".into()).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    keep.push(client);
    let view = worker_view(&c).await;
    assert!(
        view["node-hot"].0 > 0,
        "the cooled worker got no one: {view:?}"
    );
    drop(keep);
}
