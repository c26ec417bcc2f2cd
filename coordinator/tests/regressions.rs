//! Regression tests for defects a review of the coordinator found (real
//! media nodes, coordinator, Redis where it matters, WebSocket clients):
//! - a join that waited at the lock of a room being closed landed in the
//!   orphaned room and its next request got "join first";
//! - a producer closed by its node (not by the coordinator) left its copy on
//!   other nodes open and the room never heard of it: the node's
//!   ProducerClosed event was dropped.

mod common;

use std::time::Duration;

use common::*;
use coordinator::room::{HOOK_JOIN_AT_LOCK, HOOK_ROOM_CLOSING};
use coordinator::Hooks;
use serde_json::json;
use throng_proto::media as pb;
use throng_test_support::{Coordinator, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_waited_while_its_room_closed_lands_in_a_new_room() {
    let node = Node::start(Node::env("node-1", 1, None)).await;
    let hooks = Hooks::enabled();
    let coord = Coordinator::start_with(
        Coordinator::env(&[node.grpc.to_string()], 1500, None),
        hooks.clone(),
    )
    .await;
    coord.wait_for_nodes(1).await;
    let url = coord.ws_url();

    let mut ann = Client::connect_url(&url).await;
    assert_eq!(ann.join("again", "ann", true).await["type"], "joined");
    // Ann is the last one: her leave closes the room, and the close is held
    // with the room's lock taken.
    let closing = hooks.pause_at(HOOK_ROOM_CLOSING);
    let at_lock = hooks.signal_at(HOOK_JOIN_AT_LOCK);
    let left = ann.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "response", "{left}");
    assert!(
        closing.reached(1, Duration::from_secs(5)).await,
        "the room never started closing"
    );
    // Bob (Ann back on a new socket, say) joins now: he waits at the lock.
    let bob = tokio::spawn(async move {
        let mut bob = Client::connect_url(&url).await;
        let joined = bob.join("again", "bob", true).await;
        (bob, joined)
    });
    assert!(
        at_lock.reached(1, Duration::from_secs(5)).await,
        "bob's join never got to the room's lock"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    closing.open();
    let (mut bob, joined) = tokio::time::timeout(Duration::from_secs(10), bob)
        .await
        .expect("bob's join did not finish")
        .unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    // His room is the live one: his next requests work...
    let t = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "bob's room is an orphan: {t}");
    // ... and whoever joins next sees him.
    let mut cy = Client::connect(&Cluster {
        url: coord.ws_url(),
        http: coord.http,
        node_stops: Vec::new(),
        coord_stop: None,
    })
    .await;
    let j = cy.join("again", "cy", true).await;
    assert_eq!(peer_ids(&j), ["bob"], "{j}");
    let room = admin_get(coord.http, "/admin/rooms/again").await;
    assert_eq!(room["participants"], 2, "{room}");
    assert_eq!(room["routers"].as_array().map(Vec::len), Some(1), "{room}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_its_node_closed_is_closed_everywhere_and_announced() {
    let redis = RedisServer::start();
    // Two nodes of one worker, room for one participant per worker: Ann on
    // one node, Bob on the other, her producer piped to his.
    let a = Node::start(Node::env("node-a", 1, Some(&redis.url()))).await;
    let b = Node::start(Node::env("node-b", 1, Some(&redis.url()))).await;
    let coord = Coordinator::start(Coordinator::env(
        &[a.grpc.to_string(), b.grpc.to_string()],
        30,
        Some(&redis.url()),
    ))
    .await;
    coord.wait_for_nodes(2).await;
    let url = coord.ws_url();
    let mut ann = Client::connect_url(&url).await;
    assert_eq!(ann.join("cut", "ann", true).await["type"], "joined");
    let producer = publish_audio(&mut ann, 7777).await;
    let mut bob = Client::connect_url(&url).await;
    assert_eq!(bob.join("cut", "bob", true).await["type"], "joined");
    let room = admin_get(coord.http, "/admin/rooms/cut").await;
    assert_eq!(room["routers"].as_array().map(Vec::len), Some(2), "{room}");
    let t = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let caps = json!({"codecs": [{"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}], "headerExtensions": []});
    let c = bob
        .request(json!({"type": "consume", "producerId": producer, "rtpCapabilities": caps}))
        .await;
    assert_eq!(c["type"], "response", "{c}");
    let consumer = c["data"]["id"].as_str().unwrap().to_string();

    // Ann's node closes her producer by itself (the coordinator did not ask).
    let ann_node = if room["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["peerId"] == "ann" && routed_on(&room, p, "node-a"))
    {
        &a
    } else {
        &b
    };
    ann_node
        .client()
        .await
        .close_producer(pb::ProducerRequest {
            producer_id: producer.clone(),
        })
        .await
        .unwrap();
    // Bob hears that it is gone, and his consumer (on the other node, fed
    // through the pipe) closes with its copy there.
    let closed = bob
        .wait(|m| m["type"] == "producerClosed" && m["producerId"] == json!(producer))
        .await;
    assert_eq!(closed["peerId"], "ann", "{closed}");
    let gone = bob
        .wait(|m| m["type"] == "consumerClosed" && m["consumerId"] == json!(consumer))
        .await;
    assert_eq!(gone["type"], "consumerClosed");
    let room = admin_get(coord.http, "/admin/rooms/cut").await;
    let peer = |id: &str| {
        room["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peerId"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(peer("ann")["producers"], json!([]), "{room}");
    assert_eq!(peer("bob")["consumers"], json!([]), "{room}");
}

/// Whether `peer` of an admin room listing is on a router of `node`.
fn routed_on(room: &serde_json::Value, peer: &serde_json::Value, node: &str) -> bool {
    room["routers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["routerId"] == peer["routerId"] && r["nodeId"] == node)
}
