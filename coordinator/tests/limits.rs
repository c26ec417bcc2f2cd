//! The admission limits, against a real coordinator and media node over
//! WebSocket, HTTP and gRPC on 127.0.0.1 (and a real Redis where it matters):
//! the longest join queue, the per-IP request budget, the per-session message
//! budget, the sessions per identity, a relayed session not counted twice, and
//! a refused join costing no Redis write.

mod common;

use std::time::Duration;

use common::*;
use coordinator::auth::TokenKey;
use coordinator::room::HOOK_JOIN_AT_LOCK;
use coordinator::Hooks;
use serde_json::{json, Value};
use throng_test_support::{Coordinator, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 request; returns the status and the whole response.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
}

/// A media node and a coordinator over it with `settings` (`THRONG_*`,
/// value) and `hooks`, once the coordinator sees the node.
async fn node_and_coordinator(settings: &[(&str, &str)], hooks: Hooks) -> (Node, Coordinator) {
    let node = Node::start(Node::env("node-1", 1, None)).await;
    let mut env = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let coord = Coordinator::start_with(env, hooks).await;
    coord.wait_for_nodes(1).await;
    (node, coord)
}

fn join_msg(room: &str, identity: &str) -> Value {
    let token = TokenKey::new(SECRET).mint(room, identity, true, 600);
    json!({"type": "join", "room": room, "displayName": identity, "token": token})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_beyond_the_longest_queue_is_refused_at_once_with_a_retry_hint() {
    let hooks = Hooks::enabled();
    // One join placed at a time, one waiting at most.
    let (_node, coord) = node_and_coordinator(
        &[("THRONG_JOIN_CONCURRENCY", "1"), ("THRONG_QUEUE_MAX", "1")],
        hooks.clone(),
    )
    .await;
    let url = coord.ws_url();

    // Ann's join is admitted and held at the room's lock: it keeps the slot.
    let held = hooks.pause_at(HOOK_JOIN_AT_LOCK);
    let u = url.clone();
    let ann = tokio::spawn(async move {
        let mut c = Client::connect_url(&u).await;
        let j = c.join("busy", "ann", true).await;
        (c, j)
    });
    assert!(held.reached(1, Duration::from_secs(5)).await);
    // Bob waits in line (position 1).
    let mut bob = Client::connect_url(&url).await;
    bob.send_raw(
        json!({"reqId": "b", "type": "join", "room": "busy", "displayName": "bob",
            "token": TokenKey::new(SECRET).mint("busy", "bob", true, 600)})
        .to_string(),
    )
    .await;
    let q = bob.wait(|m| m["type"] == "queued").await;
    assert_eq!(q["position"], 1, "{q}");
    // Cy finds the line full: refused at once, with a hint, no place taken.
    let mut cy = Client::connect_url(&url).await;
    let started = std::time::Instant::now();
    let e = cy.request(join_msg("busy", "cy")).await;
    assert!(started.elapsed() < Duration::from_secs(1), "{e}");
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{e}"
    );
    let hint = e["retryAfterMs"].as_u64().expect("a retry hint");
    assert!((1000..=30_000).contains(&hint), "{hint}");
    let metrics = get(
        coord.http,
        "/metrics",
        &format!("x-admin-key: {ADMIN_KEY}\r\n"),
    )
    .await
    .1;
    assert!(
        metrics.contains("throng_refusals_total{reason=\"queue_full\"} 1"),
        "{metrics}"
    );
    // The line moves: Ann and Bob get in, and Cy's retry (same socket) too.
    held.open();
    let (_ann, j) = ann.await.unwrap();
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(bob.wait(|m| m["reqId"] == "b").await["type"], "joined");
    let again = cy.request(join_msg("busy", "cy")).await;
    assert_eq!(again["type"], "joined", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_from_one_address_get_429_with_retry_after_and_probes_are_not_counted() {
    let (_node, coord) = node_and_coordinator(
        &[
            ("THRONG_RATE_IP_PER_SEC", "1"),
            ("THRONG_RATE_IP_BURST", "3"),
            ("THRONG_TRUSTED_PROXIES", "127.0.0.1"),
        ],
        Hooks::none(),
    )
    .await;

    for _ in 0..3 {
        assert_eq!(get(coord.http, "/api/config", "").await.0, 200);
    }
    let (status, text) = get(coord.http, "/api/config", "").await;
    assert_eq!(status, 429, "{text}");
    assert!(text.to_lowercase().contains("retry-after: 1"), "{text}");
    assert!(text.contains("retryAfterMs"), "{text}");
    // The WebSocket upgrade counts against the same budget.
    let refused = tokio_tungstenite::connect_async(coord.ws_url()).await;
    assert!(refused.is_err(), "the upgrade was not refused");
    // Health probes and the admin API are not limited.
    for _ in 0..5 {
        assert_eq!(get(coord.http, "/healthz", "").await.0, 200);
    }
    // Behind a trusted proxy, each forwarded client has its own budget.
    for i in 0..3 {
        let xff = format!("X-Forwarded-For: 198.51.100.{i}\r\n");
        assert_eq!(
            get(coord.http, "/api/config", &xff).await.0,
            200,
            "client {i}"
        );
    }
    // A client's forged hop before the proxy's is not believed: the proxy's
    // last hop is what counts (198.51.100.0 has spent one of its three).
    let xff = "X-Forwarded-For: 203.0.113.1, 198.51.100.0\r\n";
    assert_eq!(get(coord.http, "/api/config", xff).await.0, 200);
    assert_eq!(get(coord.http, "/api/config", xff).await.0, 200);
    assert_eq!(get(coord.http, "/api/config", xff).await.0, 429);
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(coord.http, "/api/config", "").await.0, 200);
    let metrics = get(
        coord.http,
        "/metrics",
        &format!("x-admin-key: {ADMIN_KEY}\r\n"),
    )
    .await
    .1;
    assert!(
        metrics.contains("throng_refusals_total{reason=\"ip_rate\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_its_message_budget_is_refused_then_closed_and_others_carry_on() {
    let (_node, coord) = node_and_coordinator(
        &[
            ("THRONG_RATE_SESSION_PER_SEC", "5"),
            ("THRONG_RATE_SESSION_BURST", "5"),
        ],
        Hooks::none(),
    )
    .await;
    let url = coord.ws_url();

    let mut calm = Client::connect_url(&url).await;
    assert_eq!(calm.join("r", "calm", true).await["type"], "joined");

    let mut noisy = Client::connect_url(&url).await;
    // Five messages go through (each answered: out of order, not joined).
    for i in 0..5 {
        let e = noisy
            .request(json!({"type": "createTransport", "direction": "recv"}))
            .await;
        assert_eq!(e["code"], "out_of_order", "message {i}: {e}");
    }
    // The sixth is refused unprocessed, with when to send the next.
    let e = noisy
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    let hint = e["retryAfterMs"].as_u64().unwrap();
    assert!((1..=200).contains(&hint), "{hint}");
    // Keeping on: closed once the strikes are spent too (the server may
    // close the socket before the flood is all written: a broken pipe here
    // is the closing this test wants, seen early).
    let mut closed_early = false;
    for _ in 0..20 {
        use futures::SinkExt;
        let flood = json!({"type": "createTransport", "direction": "recv", "reqId": "x"});
        let sent = noisy
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                flood.to_string().into(),
            ))
            .await;
        if sent.is_err() {
            closed_early = true;
            break;
        }
    }
    // The reset that broke the pipe may take the last message with it.
    if !closed_early {
        let closing = noisy
            .wait(|m| m["type"] == "error" && m["reqId"].is_null() && m["code"] == "rate_limited")
            .await;
        assert!(
            closing["message"].as_str().unwrap().contains("closing"),
            "{closing}"
        );
    }
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        use futures::StreamExt;
        loop {
            match noisy.ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the flooding session was not closed");
    // The calm one is untouched.
    let t = calm
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_gets_at_most_its_cap_of_sessions_and_a_leave_frees_one() {
    let (_node, coord) =
        node_and_coordinator(&[("THRONG_SESSIONS_PER_IDENTITY", "2")], Hooks::none()).await;
    let url = coord.ws_url();

    let mut a = Client::connect_url(&url).await;
    assert_eq!(a.join("one", "dana", true).await["type"], "joined");
    let mut b = Client::connect_url(&url).await;
    assert_eq!(b.join("two", "dana", true).await["type"], "joined");
    let mut c = Client::connect_url(&url).await;
    let e = c.join("three", "dana", true).await;
    assert_eq!(e["code"], "too_many_sessions", "{e}");
    // Someone else is not affected.
    let mut other = Client::connect_url(&url).await;
    assert_eq!(other.join("three", "eli", true).await["type"], "joined");
    // Dana leaves room one: room three takes her now (same socket, retried).
    assert_eq!(
        a.request(json!({"type": "leave"})).await["type"],
        "response"
    );
    let mut joined = Value::Null;
    for _ in 0..20 {
        joined = c.join("three", "dana", true).await;
        if joined["type"] == "joined" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(joined["type"], "joined", "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_writes_nothing_to_redis_and_a_relayed_session_is_counted_once() {
    let redis = RedisServer::start();
    let (node, _stop) = start_node("node-1", 1, Some(&redis)).await;
    let nodes = [node.to_string()];
    // The owner allows one request per address now and then: the test's own
    // join spends it; a relayed join from the other coordinator must not.
    let owner_env = [
        ("THRONG_RATE_IP_PER_SEC", "1".to_string()),
        ("THRONG_RATE_IP_BURST", "1".to_string()),
    ];
    let (owner, _s1) = start_coordinator_with(&nodes, 1500, Some(&redis), &owner_env).await;
    let (front, _s2) = start_coordinator_with(&nodes, 1500, Some(&redis), &[]).await;
    throng_test_support::wait_for_nodes(owner, 1).await;
    throng_test_support::wait_for_nodes(front, 1).await;

    // A forged join at the front: refused, and Redis never hears of the room.
    let mut mallory = Client::connect_url(&format!("ws://{front}/ws")).await;
    let forged =
        TokenKey::new("another-secret-another-secret-another").mint("hall", "mallory", true, 60);
    let e = mallory
        .request(json!({"type": "join", "room": "hall", "displayName": "m", "token": forged}))
        .await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    let e = mallory
        .request(json!({"type": "join", "room": "hall", "displayName": "", "token": "x"}))
        .await;
    assert_eq!(e["code"], "bad_request", "{e}");
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !keys.iter().any(|k| k.contains("hall")),
        "a refused join left {keys:?}"
    );

    // The room is claimed by the owner (first join there).
    let mut first = Client::connect_url(&format!("ws://{owner}/ws")).await;
    assert_eq!(first.join("hall", "first", true).await["type"], "joined");
    // The owner's budget for 127.0.0.1 (1 a second) is spent; a direct
    // upgrade fails, and a forged relay header does not help.
    let mut second = Client::connect_url(&format!("ws://{front}/ws")).await;
    let drain = || async { while get(owner, "/api/config", "").await.0 != 429 {} };
    drain().await;
    assert!(tokio_tungstenite::connect_async(format!("ws://{owner}/ws"))
        .await
        .is_err());
    drain().await;
    let (status, _) = get(owner, "/api/config", "x-throng-relay: 00\r\n").await;
    assert_eq!(status, 429);
    // A join at the front for the owner's room, at once: relayed with the
    // relay key and not counted again, it gets in.
    drain().await;
    let j = second.join("hall", "second", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(peer_ids(&j), ["first"]);
}
