//! The coordinator end to end at the signalling level: real media node
//! (mediasoup workers, gRPC over TCP), real coordinator, WebSocket clients
//! speaking the documented protocol.

mod common;

use common::*;
use coordinator::auth::TokenKey;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_see_and_consume_each_other_and_leaving_is_announced() {
    let c = cluster(1, 1500).await;
    let mut alice = Client::connect(&c).await;
    let joined = alice.join("standup", "alice", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["peerId"], "alice");
    assert!(
        joined["routerRtpCapabilities"]["codecs"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    let producer = publish_audio(&mut alice, 1111).await;

    let mut bob = Client::connect(&c).await;
    let joined = bob.join("standup", "bob", true).await;
    let peers = joined["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["peerId"], "alice");
    assert_eq!(peers[0]["producers"][0]["producerId"], json!(producer));
    let seen = alice.peer_joined("bob").await;
    assert_eq!(seen["displayName"], "bob");

    let recv = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(recv["type"], "response", "{recv}");
    let caps = joined["routerRtpCapabilities"].clone();
    let consumed = bob
        .request(json!({"type": "consume", "producerId": producer, "rtpCapabilities": caps}))
        .await;
    assert_eq!(consumed["type"], "response", "{consumed}");
    assert_eq!(consumed["data"]["kind"], "audio");
    assert_eq!(consumed["data"]["producerId"], json!(producer));
    let consumer_id = consumed["data"]["id"].clone();
    let resumed = bob
        .request(json!({"type": "resumeConsumer", "consumerId": consumer_id}))
        .await;
    assert_eq!(resumed["type"], "response", "{resumed}");

    // Muting is announced to the others.
    let muted = alice
        .request(json!({"type": "pauseProducer", "producerId": producer}))
        .await;
    assert_eq!(muted["type"], "response", "{muted}");
    let m = bob.wait(|m| m["type"] == "producerPaused").await;
    assert_eq!(
        (m["peerId"].as_str(), m["paused"].as_bool()),
        (Some("alice"), Some(true))
    );
    alice
        .request(json!({"type": "resumeProducer", "producerId": producer}))
        .await;
    let m = bob.wait(|m| m["type"] == "producerPaused").await;
    assert_eq!(m["paused"], false);

    let room = admin(&c, "/admin/rooms/standup").await;
    assert_eq!(room["participants"], 2);
    assert_eq!(room["participantIds"], json!(["alice", "bob"]));
    assert_eq!(admin(&c, "/admin/rooms").await["rooms"], json!(["standup"]));

    alice.request(json!({"type": "leave"})).await;
    let closed = bob.wait(|m| m["type"] == "producerClosed").await;
    assert_eq!(closed["producerId"], json!(producer));
    let left = bob.peer_left("alice").await;
    assert_eq!(left["peerCount"], 1, "{left}");
    let gone = bob.wait(|m| m["type"] == "consumerClosed").await;
    assert_eq!(gone["consumerId"], consumer_id);
    let room = admin(&c, "/admin/rooms/standup").await;
    assert_eq!(room["participants"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_that_outgrows_a_worker_spills_and_both_sides_receive_each_other() {
    // 26 units per participant, 60 per worker: two participants per worker.
    let c = cluster(2, 60).await;
    let mut clients = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let mut cl = Client::connect(&c).await;
        let j = cl.join("town-hall", name, true).await;
        assert_eq!(j["type"], "joined", "{j}");
        clients.push((cl, j["routerRtpCapabilities"].clone()));
    }
    let room = admin(&c, "/admin/rooms/town-hall").await;
    assert_eq!(
        room["routers"].as_array().unwrap().len(),
        2,
        "spilled to a second worker: {room}"
    );
    let nodes = admin(&c, "/admin/nodes").await;
    for w in nodes["nodes"][0]["workers"].as_array().unwrap() {
        assert!(w["reserved"].as_u64().unwrap() <= 60, "overfilled: {nodes}");
    }

    // p1 (worker A) and p3 (worker B) each publish; each consumes the other.
    let producer_1 = publish_audio(&mut clients[0].0, 1001).await;
    let producer_3 = publish_audio(&mut clients[2].0, 3003).await;
    for (i, producer) in [(2usize, producer_1.clone()), (0usize, producer_3.clone())] {
        let (cl, caps) = &mut clients[i];
        cl.wait(|m| m["type"] == "newProducer" && m["producer"]["producerId"] == json!(producer))
            .await;
        let recv = cl
            .request(json!({"type": "createTransport", "direction": "recv"}))
            .await;
        assert_eq!(recv["type"], "response", "{recv}");
        let consumed = cl
            .request(
                json!({"type": "consume", "producerId": producer, "rtpCapabilities": caps.clone()}),
            )
            .await;
        assert_eq!(
            consumed["type"], "response",
            "consume across workers: {consumed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_leave_other_sessions_alone() {
    let c = cluster(1, 1500).await;
    let mut good = Client::connect(&c).await;
    assert_eq!(good.join("calm", "good", true).await["type"], "joined");
    let good_producer = publish_audio(&mut good, 4242).await;

    let mut bad = Client::connect(&c).await;
    bad.send_raw("{not json".into()).await;
    assert_eq!(
        bad.wait(|m| m["type"] == "error").await["code"],
        "bad_request"
    );
    bad.send_raw(json!({"type": "teleport", "reqId": "x"}).to_string())
        .await;
    let e = bad.wait(|m| m["type"] == "error").await;
    assert_eq!(
        (e["code"].as_str(), e["reqId"].as_str()),
        (Some("bad_request"), Some("x"))
    );
    bad.send_raw(format!(
        "{{\"type\":\"leave\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    ))
    .await;
    assert_eq!(
        bad.wait(|m| m["type"] == "error").await["code"],
        "too_large"
    );
    let e = bad
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    assert_eq!(e["code"], "out_of_order");
    let e = bad.request(json!({"type": "join", "room": "calm", "displayName": "x", "token": "forged.token.sig"})).await;
    assert_eq!(e["code"], "unauthorized");
    let other_room = TokenKey::new(SECRET).mint("elsewhere", "mallory", true, 60);
    let e = bad
        .request(json!({"type": "join", "room": "calm", "displayName": "x", "token": other_room}))
        .await;
    assert_eq!(e["code"], "unauthorized");
    let foreign =
        TokenKey::new("another-secret-another-secret-another").mint("calm", "mallory", true, 60);
    let e = bad
        .request(json!({"type": "join", "room": "calm", "displayName": "x", "token": foreign}))
        .await;
    assert_eq!(e["code"], "unauthorized");

    // Joined as a viewer: no publishing, and nobody else's objects.
    assert_eq!(bad.join("calm", "viewer", false).await["type"], "joined");
    let e = bad
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    assert_eq!(e["code"], "forbidden");
    let e = bad
        .request(json!({"type": "closeProducer", "producerId": good_producer}))
        .await;
    assert_eq!(e["code"], "not_found");
    let e = bad
        .request(json!({"type": "resumeConsumer", "consumerId": "someone-elses"}))
        .await;
    assert_eq!(e["code"], "not_found");
    let e = bad
        .request(json!({"type": "consume", "producerId": good_producer, "rtpCapabilities": {}}))
        .await;
    assert_eq!(e["code"], "out_of_order", "consume before a recv transport");
    let e = bad
        .request(json!({"type": "join", "room": "calm", "displayName": "again", "token": "t"}))
        .await;
    assert_eq!(e["code"], "out_of_order");

    // The good session carries on.
    let t = good
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let e = good
        .request(json!({"type": "pauseProducer", "producerId": good_producer}))
        .await;
    assert_eq!(e["type"], "response", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_dies_its_participants_are_told_to_reconnect_and_are_placed_elsewhere() {
    let redis = RedisServer::start();
    // Two nodes of one worker, room for two participants each.
    let mut c = cluster_of(2, 1, 60, Some(&redis)).await;
    let mut a = Client::connect(&c).await;
    let mut b = Client::connect(&c).await;
    assert_eq!(a.join("resilient", "a", true).await["type"], "joined");
    assert_eq!(b.join("resilient", "b", true).await["type"], "joined");
    // Room placement: both on the first worker chosen (it has room for two).
    let room = admin(&c, "/admin/rooms/resilient").await;
    let routers = room["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 1, "{room}");
    let doomed = routers[0]["nodeId"].as_str().unwrap().to_string();
    let index: usize = doomed.trim_start_matches("node-").parse::<usize>().unwrap() - 1;

    // The node goes away (its report disappears from Redis).
    drop(c.node_stops[index].take());
    for client in [&mut a, &mut b] {
        let m = client.wait(|m| m["type"] == "reconnect").await;
        assert!(m["reason"].as_str().unwrap().contains("node"), "{m}");
        // ... and the old socket is closed by the server.
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::StreamExt::next(&mut client.ws),
        )
        .await;
        assert!(
            matches!(
                end,
                Ok(None)
                    | Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))))
                    | Ok(Some(Err(_)))
            ),
            "socket not closed: {end:?}"
        );
    }
    // The clients re-join on new sockets and land on the surviving node.
    let mut a2 = Client::connect(&c).await;
    let j = a2.join("resilient", "a", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    let room = admin(&c, "/admin/rooms/resilient").await;
    let routers = room["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 1, "{room}");
    assert_ne!(routers[0]["nodeId"].as_str().unwrap(), doomed);
    assert_eq!(
        room["participants"], 1,
        "the dead node's reservations were released: {room}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_joined_through_different_coordinators_see_and_receive_each_other() {
    let redis = RedisServer::start();
    let (n1, _s1) = start_node("node-1", 1, Some(&redis)).await;
    let (n2, _s2) = start_node("node-2", 1, Some(&redis)).await;
    let nodes = vec![n1.to_string(), n2.to_string()];
    // Two participants per worker: the third spills to the other node.
    let coord_a = Cluster::coordinator(&nodes, 60, &redis).await;
    let coord_b = Cluster::coordinator(&nodes, 60, &redis).await;

    let mut x = Client::connect(&coord_a).await;
    let jx = x.join("global", "x", true).await;
    assert_eq!(jx["type"], "joined", "{jx}");
    let producer = publish_audio(&mut x, 7777).await;

    let mut y = Client::connect(&coord_b).await;
    let jy = y.join("global", "y", true).await;
    assert_eq!(jy["type"], "joined", "{jy}");
    assert_eq!(
        jy["peers"][0]["peerId"], "x",
        "y sees x through the other coordinator: {jy}"
    );
    assert_eq!(
        jy["peers"][0]["producers"][0]["producerId"],
        json!(producer)
    );
    x.peer_joined("y").await;

    let mut z = Client::connect(&coord_b).await;
    let jz = z.join("global", "z", true).await;
    assert_eq!(jz["type"], "joined", "{jz}");
    let room = admin(&coord_b, "/admin/rooms/global").await;
    let routers = room["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 2, "spread over both nodes: {room}");
    assert_ne!(routers[0]["nodeId"], routers[1]["nodeId"]);

    // y and z (through coordinator B) consume x's producer (coordinator A's
    // participant), z across the node-to-node pipe; x consumes z's producer.
    for (client, caps) in [
        (&mut y, jy["routerRtpCapabilities"].clone()),
        (&mut z, jz["routerRtpCapabilities"].clone()),
    ] {
        let recv = client
            .request(json!({"type": "createTransport", "direction": "recv"}))
            .await;
        assert_eq!(recv["type"], "response", "{recv}");
        let c = client
            .request(json!({"type": "consume", "producerId": producer, "rtpCapabilities": caps}))
            .await;
        assert_eq!(c["type"], "response", "{c}");
    }
    let z_producer = publish_audio(&mut z, 8888).await;
    x.wait(|m| m["type"] == "newProducer" && m["producer"]["producerId"] == json!(z_producer))
        .await;
    let recv = x
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(recv["type"], "response", "{recv}");
    let c = x.request(json!({"type": "consume", "producerId": z_producer, "rtpCapabilities": jx["routerRtpCapabilities"].clone()})).await;
    assert_eq!(c["type"], "response", "{c}");

    // Leaving through coordinator B is seen through coordinator A, whether
    // by `leave` or by the browser closing its socket (a tab closed).
    y.request(json!({"type": "leave"})).await;
    x.peer_left("y").await;
    let _ = z.ws.close(None).await;
    x.peer_left("z").await;
    let room = admin(&coord_a, "/admin/rooms/global").await;
    assert_eq!(room["participantIds"], json!(["x"]), "{room}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_coordinator_sends_its_participants_elsewhere_and_releases_their_places() {
    let redis = RedisServer::start();
    let (n1, _s1) = start_node("node-1", 1, Some(&redis)).await;
    let nodes = vec![n1.to_string()];
    let mut leaving = Cluster::coordinator(&nodes, 1500, &redis).await;
    let staying = Cluster::coordinator(&nodes, 1500, &redis).await;
    let mut a = Client::connect(&leaving).await;
    assert_eq!(a.join("handover", "a", true).await["type"], "joined");
    publish_audio(&mut a, 5150).await;
    assert_eq!(
        admin(&staying, "/admin/rooms/handover").await["participants"],
        1
    );

    drop(leaving.coord_stop.take());
    let m = a.wait(|m| m["type"] == "reconnect").await;
    assert!(m["reason"].as_str().unwrap().contains("coordinator"), "{m}");
    for _ in 0..50 {
        let room = admin(&staying, "/admin/rooms/handover").await;
        if room["participants"] == 0 {
            // The client comes back through the other coordinator.
            let mut again = Client::connect(&staying).await;
            assert_eq!(again.join("handover", "a", true).await["type"], "joined");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the stopped coordinator's participant kept its reservation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinators_participants_are_reaped_by_the_others() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let redis = RedisServer::start();
    let (n1, _s1) = start_node("node-1", 1, Some(&redis)).await;
    // The survivor reaps a dead coordinator once its participants have had
    // the resume grace to come back through it (they do not, here).
    let (http, _stop) = start_coordinator_with(
        &[n1.to_string()],
        1500,
        Some(&redis),
        &[(
            coordinator::config::vars::RESUME_GRACE_SECS,
            "2".to_string(),
        )],
    )
    .await;
    let survivor = Cluster::at(http);
    survivor.wait_for_nodes(1).await;

    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .env_clear()
        .env("THRONG_LISTEN", "127.0.0.1:0")
        .env("THRONG_REDIS_URL", redis.url())
        .env("THRONG_TOKEN_SECRET", SECRET)
        .env("THRONG_API_KEY", API_KEY)
        .env("THRONG_ADMIN_KEY", ADMIN_KEY)
        .env("THRONG_COORDINATOR_TTL_MS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn coordinator");
    let mut lines = tokio::io::BufReader::new(doomed.stdout.take().unwrap()).lines();
    // Log lines may come first (e.g. "web client not built").
    let line = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("coordinator printed its address");
        if line.starts_with("coordinator: http://") {
            break line;
        }
    };
    let addr: std::net::SocketAddr = line
        .trim_start_matches("coordinator: http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let doomed_cluster = Cluster::at(addr);
    doomed_cluster.wait_for_nodes(1).await;

    let mut a = Client::connect(&doomed_cluster).await;
    assert_eq!(a.join("orphaned", "a", true).await["type"], "joined");
    publish_audio(&mut a, 9090).await;
    let nodes = admin(&survivor, "/admin/nodes").await;
    assert_eq!(nodes["nodes"][0]["workers"][0]["reserved"], 26);

    doomed.start_kill().unwrap();
    let _ = doomed.wait().await;
    for _ in 0..100 {
        let room = admin(&survivor, "/admin/rooms/orphaned").await;
        let nodes = admin(&survivor, "/admin/nodes").await;
        let w = &nodes["nodes"][0]["workers"][0];
        if room["participants"] == 0
            && w["reserved"] == 0
            && w["transports"] == 0
            && w["routers"] == 0
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "the dead coordinator's participant was not reaped: {} {}",
        admin(&survivor, "/admin/rooms/orphaned").await,
        admin(&survivor, "/admin/nodes").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_again_with_the_same_identity_replaces_the_old_session_and_its_close_leaves_the_new_one(
) {
    let c = cluster(1, 1500).await;
    let mut watcher = Client::connect(&c).await;
    watcher.join("replace", "watcher", false).await;
    let mut first = Client::connect(&c).await;
    assert_eq!(first.join("replace", "ada", true).await["type"], "joined");
    publish_audio(&mut first, 4242).await;
    let first_peer_joined = watcher.peer_joined("ada").await;
    assert_eq!(first_peer_joined["producers"].as_array().unwrap().len(), 1);

    // Ada again, on a new socket (a re-join after a network change).
    let mut second = Client::connect(&c).await;
    let joined = second.join("replace", "ada", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let told = first.wait(|m| m["type"] == "error").await;
    assert_eq!(told["code"], "replaced", "{told}");
    assert!(told.get("reqId").is_none_or(|r| r.is_null()));
    // The old session's producer went with it; the room saw Ada come back
    // (her leave and return fall in one presence window or two: a
    // `peersJoined` names her again either way, without the old producer).
    watcher.wait(|m| m["type"] == "producerClosed").await;
    let back = watcher.peer_joined("ada").await;
    assert_eq!(back["producers"], json!([]), "{back}");

    // The server closed the old socket; its end must not remove the new session.
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let room = admin(&c, "/admin/rooms/replace").await;
    assert_eq!(room["participants"], 2, "{room}");
    let producer = publish_audio(&mut second, 4343).await;
    let seen = watcher
        .wait(|m| m["type"] == "newProducer" && m["producer"]["producerId"] == json!(producer))
        .await;
    assert_eq!(seen["peerId"], "ada");
}
