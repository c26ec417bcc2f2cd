//! A surge: 1000 WebSocket joins released at once (signalling only) through
//! one coordinator, with Redis as the registry and a real media node. All are
//! admitted, none fails, every client sees its place in line, and no worker's
//! reservation in Redis ever exceeds its capacity while it happens.

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
