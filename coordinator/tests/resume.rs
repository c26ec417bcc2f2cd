//! Session resume: a participant whose socket closes without a `leave` keeps
//! its place, transports, producers and consumers for the grace
//! (`THRONG_RESUME_GRACE_SECS`), and takes them up again with its resume
//! token on a new socket, through the same or another coordinator. Real
//! coordinators, media node and redis-server on 127.0.0.1.
//!
//! The browser side (a coordinator SIGKILLed under two Chromium
//! participants, media checked) is `web_client.rs`
//! `chromium_keeps_its_media_when_its_coordinator_is_killed`.

mod common;

use std::time::Duration;

use common::*;
use coordinator::auth::TokenKey;
use coordinator::config::vars as cvars;
use serde_json::{json, Value};

/// Reads what arrives within `for_ms` (nothing is lost: it is all returned).
async fn drain(client: &mut Client, for_ms: u64) -> Vec<Value> {
    let mut seen = std::mem::take(&mut client.backlog);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(
        Duration::from_millis(for_ms),
        futures::StreamExt::next(&mut client.ws),
    )
    .await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            seen.push(serde_json::from_str(&t).unwrap());
        }
    }
    seen
}

/// A socket dropped without a close frame, as a network change or a killed
/// coordinator on the way does.
fn cut(client: Client) {
    drop(client);
}

async fn resume(client: &mut Client, room: &str, token: &str) -> Value {
    client
        .request(json!({"type": "resume", "room": room, "resumeToken": token}))
        .await
}

/// Ann publishes audio; Bob receives it on a connected receive transport.
/// Returns (ann, bob, bob's joined message, ann's producer, bob's transport,
/// bob's consumer, ann's resume token).
async fn two_in_a_room(
    c: &Cluster,
    room: &str,
) -> (Client, Client, Value, String, String, String, String) {
    let mut ann = Client::connect(c).await;
    let ann_joined = ann.join(room, "ann", true).await;
    assert_eq!(ann_joined["type"], "joined");
    let ann_token = ann_joined["resumeToken"].as_str().unwrap().to_string();
    let producer = publish_audio(&mut ann, 7171).await;
    let mut bob = Client::connect(c).await;
    let joined = bob.join(room, "bob", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert!(
        joined["resumeToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{joined}"
    );
    let t = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let transport = t["data"]["id"].as_str().unwrap().to_string();
    let caps = joined["routerRtpCapabilities"].clone();
    let consumed = bob
        .request(json!({"type": "consume", "producerId": producer, "rtpCapabilities": caps}))
        .await;
    assert_eq!(consumed["type"], "response", "{consumed}");
    let consumer = consumed["data"]["id"].as_str().unwrap().to_string();
    (ann, bob, joined, producer, transport, consumer, ann_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_with_the_same_transport_consumer_and_nobody_sees_it_leave() {
    let c = cluster(1, 1500).await;
    let (mut ann, bob, joined, producer, transport, consumer, _) =
        two_in_a_room(&c, "steady").await;
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    // Ann saw Bob arrive (once).
    ann.peer_joined("bob").await;
    cut(bob);
    // While Bob is away, Ann mutes: Bob missed that event.
    let r = ann
        .request(json!({"type": "pauseProducer", "producerId": producer}))
        .await;
    assert_eq!(r["type"], "response", "{r}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut bob = Client::connect(&c).await;
    let r = resume(&mut bob, "steady", &token).await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["peerId"], "bob");
    assert_eq!(r["transports"], json!([transport]));
    assert_eq!(r["consumers"][0]["consumerId"], json!(consumer));
    assert_eq!(r["consumers"][0]["producerId"], json!(producer));
    // The room as it is now, with what Bob missed.
    assert_eq!(r["peers"][0]["peerId"], "ann");
    assert_eq!(r["peers"][0]["producers"][0]["paused"], true, "{r}");
    let next = r["resumeToken"].as_str().unwrap().to_string();
    assert!(!next.is_empty());
    // Bob's session works on the same objects.
    let p = bob
        .request(json!({"type": "pauseConsumer", "consumerId": consumer}))
        .await;
    assert_eq!(p["type"], "response", "{p}");
    // The node still has the very same transport and consumer.
    let room = admin(&c, "/admin/rooms/steady").await;
    let bob_peer = room["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peerId"] == "bob")
        .cloned()
        .unwrap();
    assert_eq!(
        bob_peer["consumers"][0]["consumerId"],
        json!(consumer),
        "{room}"
    );
    // Ann never saw Bob leave or arrive.
    for m in drain(&mut ann, 300).await {
        assert!(
            !lists(&m, "peersLeft", "bob") && !lists(&m, "peersJoined", "bob"),
            "Ann saw {m}"
        );
    }
    // Node events about Bob's transport reach his new socket: Ann leaving
    // closes his consumer.
    let left = ann.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "response");
    bob.peer_left("ann").await;
    // The next resume works with the newer token.
    cut(bob);
    let mut bob = Client::connect(&c).await;
    let r = resume(&mut bob, "steady", &next).await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["peers"], json!([]), "{r}");
    assert_eq!(r["consumers"], json!([]), "{r}");
    let left = bob.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_a_session_not_resumed_within_the_grace_leaves() {
    let node =
        throng_test_support::Node::start(throng_test_support::Node::env("node-1", 1, None)).await;
    let (http, _stop) = start_coordinator_with(
        &[node.grpc.to_string()],
        1500,
        None,
        &[(cvars::RESUME_GRACE_SECS, "2".into())],
    )
    .await;
    let c = Cluster::at(http);
    c.wait_for_nodes(1).await;
    let (mut ann, bob, joined, _producer, _transport, _consumer, _) =
        two_in_a_room(&c, "grace").await;
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    let key = TokenKey::new(SECRET);

    // A resume token is no join token, and a join token no resume token.
    let mut eve = Client::connect(&c).await;
    let r = eve
        .request(json!({"type": "join", "room": "grace", "displayName": "Eve", "token": token}))
        .await;
    assert_eq!(r["code"], "unauthorized", "{r}");
    let join_token = key.mint("grace", "bob", true, 60);
    let r = resume(&mut eve, "grace", &join_token).await;
    assert_eq!(r["code"], "unauthorized", "{r}");
    // A resume token of another room, and one naming another session.
    let r = resume(&mut eve, "other", &token).await;
    assert_eq!(r["code"], "unauthorized", "{r}");
    let forged = key.mint_resume("grace", "bob", true, "not-the-nonce", 60);
    let r = resume(&mut eve, "grace", &forged).await;
    assert_eq!(r["code"], "not_found", "{r}");
    // Bob is still attached: nobody was replaced by the failed attempts.
    // Now his socket drops and he does not come back within the grace.
    cut(bob);
    ann.peer_left("bob").await;
    let mut bob = Client::connect(&c).await;
    let r = resume(&mut bob, "grace", &token).await;
    assert_eq!(r["code"], "not_found", "{r}");
    // His objects are gone from the node; a fresh join works.
    let room = admin(&c, "/admin/rooms/grace").await;
    let ids: Vec<&str> = room["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["peerId"].as_str())
        .collect();
    assert_eq!(ids, ["ann"], "{room}");
    let j = bob.join("grace", "bob", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    let metrics = throng_test_support::metrics::http_get(
        c.http,
        "/metrics",
        &format!("x-admin-key: {ADMIN_KEY}\r\n"),
    )
    .await
    .1;
    for line in [
        "throng_session_resumes_total{reason=\"detached\"} 1",
        "throng_session_resumes_total{reason=\"expired\"} 1",
        "throng_session_resumes_total{reason=\"refused\"} 2",
        "throng_session_resumes_total{reason=\"resumed\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_proxied_through_another_coordinator_resumes_through_a_third_path() {
    // Two coordinators on one Redis. The room is hosted by the first (Ann
    // joined there); Bob's session reaches it through the second. Bob's
    // socket drops (as when the second coordinator dies) and he resumes
    // directly at the owner: same transport and consumer.
    let redis = RedisServer::start();
    let (node, _node_stop) = start_node("node-1", 1, Some(&redis)).await;
    let nodes = [node.to_string()];
    let owner = Cluster::coordinator(&nodes, 1500, &redis).await;
    let relay = Cluster::coordinator(&nodes, 1500, &redis).await;
    let mut ann = Client::connect(&owner).await;
    assert_eq!(ann.join("relayed", "ann", true).await["type"], "joined");
    let producer = publish_audio(&mut ann, 8181).await;
    let mut bob = Client::connect(&relay).await;
    let joined = bob.join("relayed", "bob", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let token = joined["resumeToken"].as_str().unwrap().to_string();
    let t = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    let transport = t["data"]["id"].as_str().unwrap().to_string();
    let consumed = bob
        .request(json!({"type": "consume", "producerId": producer, "rtpCapabilities": joined["routerRtpCapabilities"]}))
        .await;
    assert_eq!(consumed["type"], "response", "{consumed}");
    let consumer = consumed["data"]["id"].as_str().unwrap().to_string();
    ann.peer_joined("bob").await;
    // The owner serves Bob (relayed).
    assert_eq!(
        peer_ids(&admin(&owner, "/admin/rooms/relayed").await),
        ["ann", "bob"]
    );
    cut(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = Client::connect(&owner).await;
    let r = resume(&mut bob, "relayed", &token).await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["transports"], json!([transport]));
    assert_eq!(r["consumers"][0]["consumerId"], json!(consumer));
    // And again through the relay (proxied to the owner).
    let next = r["resumeToken"].as_str().unwrap().to_string();
    cut(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = Client::connect(&relay).await;
    let r = resume(&mut bob, "relayed", &next).await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["consumers"][0]["consumerId"], json!(consumer));
    for m in drain(&mut ann, 300).await {
        assert!(m["type"] != "peersLeft", "Ann saw {m}");
    }
    // A socket closed with a close frame (a tab closed) is a leave, at once.
    let _ = bob.ws.close(None).await;
    tokio::time::timeout(Duration::from_secs(3), ann.peer_left("bob"))
        .await
        .expect("a clean close is a leave, without the grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_outlives_its_coordinator_killed_and_is_taken_over_where_they_resume() {
    let redis = RedisServer::start();
    let (node, _node_stop) = start_node("node-1", 1, Some(&redis)).await;
    let nodes = [node.to_string()];
    // The owner: a process of its own, to be SIGKILLed, with the same short
    // heartbeat and resume grace as the survivor.
    let mut env = throng_test_support::Coordinator::env(&nodes, 1500, Some(&redis.url()));
    env.insert(cvars::COORDINATOR_TTL_MS.into(), "2000".into());
    env.insert(cvars::RESUME_GRACE_SECS.into(), "4".into());
    let (mut doomed, doomed_addr) = coordinator_process(env).await;
    throng_test_support::wait_for_nodes(doomed_addr, 1).await;
    let owner = Cluster::at(doomed_addr);
    // The survivor, in this process, with the same short timings.
    let (http, _stop) = start_coordinator_with(
        &nodes,
        1500,
        Some(&redis),
        &[
            (cvars::COORDINATOR_TTL_MS, "2000".into()),
            (cvars::RESUME_GRACE_SECS, "4".into()),
        ],
    )
    .await;
    let survivor = Cluster::at(http);
    survivor.wait_for_nodes(1).await;

    // Ann publishes, Bob receives her; Cy has a transport but will not come back.
    let (ann, bob, joined, producer, transport, consumer, ann_token) =
        two_in_a_room(&owner, "orphan").await;
    let bob_token = joined["resumeToken"].as_str().unwrap().to_string();
    let mut cy = Client::connect(&owner).await;
    assert_eq!(cy.join("orphan", "cy", true).await["type"], "joined");
    let t = cy
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let mut grpc = throng_test_support::connect_node(node).await;
    let totals = |info: throng_proto::media::NodeInfo| throng_test_support::node_totals(&info);
    let before = totals(
        grpc.get_node_info(throng_proto::media::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner(),
    );

    // SIGKILL: no drain, no goodbye.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &doomed.id().unwrap().to_string()])
        .status();
    let _ = doomed.wait().await;
    drop((ann, bob, cy));

    // Bob resumes through the survivor: it takes the room over.
    let started = std::time::Instant::now();
    let mut bob = Client::connect(&survivor).await;
    let r = resume(&mut bob, "orphan", &bob_token).await;
    let took = started.elapsed();
    assert_eq!(r["type"], "resumed", "{r}");
    eprintln!(
        "figure: resume after the room's coordinator was SIGKILLed, through another: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(r["transports"], json!([transport]));
    assert_eq!(r["consumers"][0]["consumerId"], json!(consumer));
    assert_eq!(r["consumers"][0]["producerId"], json!(producer));
    let others: Vec<&str> = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["peerId"].as_str())
        .collect();
    assert_eq!(others, ["ann", "cy"], "{r}");
    assert_eq!(r["peers"][0]["displayName"], "ann");
    assert_eq!(r["peers"][0]["producers"][0]["producerId"], json!(producer));
    assert_eq!(r["peers"][0]["producers"][0]["source"], "mic");
    // Bob's session works on the rebuilt room.
    let p = bob
        .request(json!({"type": "pauseConsumer", "consumerId": consumer}))
        .await;
    assert_eq!(p["type"], "response", "{p}");
    // Ann resumes too (the room is hosted here now): her producer is hers.
    let mut ann = Client::connect(&survivor).await;
    let r = resume(&mut ann, "orphan", &ann_token).await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["producers"][0]["producerId"], json!(producer), "{r}");
    let m = ann
        .request(json!({"type": "pauseProducer", "producerId": producer}))
        .await;
    assert_eq!(m["type"], "response", "{m}");
    let paused = bob.wait(|m| m["type"] == "producerPaused").await;
    assert_eq!(paused["peerId"], "ann");

    // Cy never comes back: after the grace she leaves, and only her objects go.
    tokio::time::timeout(Duration::from_secs(10), bob.peer_left("cy"))
        .await
        .expect("cy leaves after the grace");
    // The dead coordinator is reaped meanwhile: Ann's and Bob's placements
    // were adopted, so nothing of theirs is closed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = totals(
        grpc.get_node_info(throng_proto::media::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        (after.0, after.1 + 1, after.2, after.3),
        before,
        "only Cy's transport went (routers, transports, producers, consumers)"
    );
    assert_eq!(
        reserved_units(&survivor).await,
        2 * 26,
        "Ann's and Bob's reservations"
    );
    let room = admin(&survivor, "/admin/rooms/orphan").await;
    assert_eq!(peer_ids(&room), ["ann", "bob"], "{room}");
    let _ = grpc;
}
