//! Faults that must interrupt no call, against a real redis-server, media
//! node and coordinator on 127.0.0.1: Redis killed and restarted empty; a
//! media node cut off from Redis and the coordinators, then back (and, without
//! Redis, cut off from its only coordinator, then back).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Routers, transports, producers and consumers a node holds, asked directly.
async fn totals(
    node: &throng_proto::media::media_node_client::MediaNodeClient<tonic::transport::Channel>,
) -> (u32, u32, u32, u32) {
    let mut node = node.clone();
    throng_test_support::node_totals(
        &node
            .get_node_info(throng_proto::media::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner(),
    )
}

/// Reserved units per node, from `/admin/nodes`.
fn reserved_by_node(nodes: &serde_json::Value) -> Vec<(String, u64)> {
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["nodeId"].as_str().unwrap().to_string(),
                n["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["reserved"].as_u64().unwrap())
                    .sum(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_tells_nobody_to_reconnect_and_the_room_carries_on() {
    let mut redis = RedisServer::start();
    let c = cluster_with(1, 1500, Some(&redis)).await;
    let mut ann = Client::connect(&c).await;
    assert_eq!(ann.join("steady", "ann", true).await["type"], "joined");
    let producer = publish_audio(&mut ann, 5151).await;
    let mut bob = Client::connect(&c).await;
    assert_eq!(bob.join("steady", "bob", true).await["type"], "joined");
    let r = bob
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(r["type"], "response", "{r}");

    let reserved = |v: serde_json::Value| -> Vec<u64> {
        v["nodes"][0]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["reserved"].as_u64().unwrap())
            .collect()
    };
    let before = reserved(admin(&c, "/admin/nodes").await);
    assert!(before.iter().sum::<u64>() > 0, "{before:?}");
    // Redis is killed, away for 3 s, and comes back empty.
    let restarted = tokio::task::spawn_blocking(move || {
        redis.restart(Duration::from_secs(3));
        redis
    });
    let redis = restarted.await.unwrap();
    // The node's report is missing until it writes the next one; the
    // coordinator reads the nodes every second meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Nobody was sent away.
    for (who, client) in [("ann", &mut ann), ("bob", &mut bob)] {
        while let Ok(Some(Ok(m))) = tokio::time::timeout(
            Duration::from_millis(200),
            futures::StreamExt::next(&mut client.ws),
        )
        .await
        {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_ne!(v["type"], "reconnect", "{who} was told to reconnect: {v}");
                assert_ne!(v["type"], "peersLeft", "{who} saw someone leave: {v}");
            }
        }
    }
    // Their sessions work: node calls through the coordinator still succeed.
    let e = ann
        .request(json!({"type": "pauseProducer", "producerId": producer}))
        .await;
    assert_eq!(e["type"], "response", "{e}");
    let e = ann
        .request(json!({"type": "resumeProducer", "producerId": producer}))
        .await;
    assert_eq!(e["type"], "response", "{e}");
    // The node reports again and the coordinator has re-asserted its room:
    // the reservations are what they were.
    c.wait_for_nodes(1).await;
    let mut after = Vec::new();
    for _ in 0..50 {
        after = reserved(admin(&c, "/admin/nodes").await);
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, before, "reservations after the restart");
    // A newcomer joins the same room (on its router) and sees both.
    let mut cy = Client::connect(&c).await;
    let j = cy.join("steady", "cy", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(peer_ids(&j), ["ann", "bob"]);
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_made_while_redis_is_away_wait_in_line_and_are_admitted_when_it_returns() {
    let mut redis = RedisServer::start();
    let c = cluster_with(1, 1500, Some(&redis)).await;
    // Redis is killed and comes back empty 4 s later.
    let restarted = tokio::task::spawn_blocking(move || {
        redis.restart(Duration::from_secs(4));
        (redis, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Five people join while it is away (two rooms).
    let mut joiners = Vec::new();
    for i in 0..5 {
        let mut client = Client::connect(&c).await;
        let room = format!("outage-{}", i % 2);
        let token =
            coordinator::auth::TokenKey::new(SECRET).mint(&room, &format!("p{i}"), true, 600);
        client
            .send_raw(
                json!({"type": "join", "reqId": "j", "room": room, "displayName": format!("p{i}"), "token": token})
                    .to_string(),
            )
            .await;
        joiners.push(client);
    }
    // Each is told its place in line, again and again, and nothing else.
    for (i, client) in joiners.iter_mut().enumerate() {
        let mut queued = 0;
        for _ in 0..2 {
            let m = client.recv().await;
            assert_eq!(m["type"], "queued", "joiner {i} got {m}");
            assert!(m["position"].as_u64().is_some_and(|p| p >= 1), "{m}");
            queued += 1;
        }
        assert_eq!(queued, 2);
    }
    let (redis, back) = restarted.await.unwrap();
    // Once Redis is back (and the node reported again), all are admitted.
    let mut waits = Vec::new();
    for (i, client) in joiners.iter_mut().enumerate() {
        let m = client.wait(|m| m["reqId"] == "j").await;
        assert_eq!(m["type"], "joined", "joiner {i}: {m}");
        waits.push(back.elapsed());
    }
    let last = waits.iter().max().unwrap();
    eprintln!("figure: 5 joins queued during a 4 s Redis outage, all admitted {last:?} after Redis returned (empty)");
    assert!(
        *last < Duration::from_secs(5),
        "admitted {last:?} after Redis returned"
    );
    // Their placements are recorded: the reserved units add up.
    assert_eq!(reserved_units(&c).await, 5 * 26);
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_and_evicted_closes_what_it_held_when_it_comes_back() {
    use throng_test_support::{Node, Proxy};
    let redis = RedisServer::start();
    // node-1 reaches Redis, and is reached by coordinators, through proxies
    // the test cuts: a partition, the node itself running on.
    let redis_proxy = Proxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let grpc_port = throng_test_support::free_tcp_port();
    let grpc_proxy = Proxy::start(format!("127.0.0.1:{grpc_port}").parse().unwrap()).await;
    let mut env = Node::env("node-1", 1, Some(&format!("redis://{}/", redis_proxy.addr)));
    env.insert(
        "THRONG_GRPC_LISTEN".into(),
        format!("127.0.0.1:{grpc_port}"),
    );
    env.insert("THRONG_GRPC_ADVERTISE".into(), grpc_proxy.addr.to_string());
    let mut node1 = Node::start(env).await;
    let direct = node1.client().await;
    let (http, _stop) = start_coordinator(&[grpc_proxy.addr.to_string()], 1500, Some(&redis)).await;
    let c = Cluster::at(http);
    c.wait_for_nodes(1).await;
    let mut a = Client::connect(&c).await;
    assert_eq!(a.join("cut", "a", true).await["type"], "joined");
    publish_audio(&mut a, 6161).await;
    assert_eq!(totals(&direct).await, (1, 1, 1, 0));
    // Another node joins the cluster.
    let (n2, _s2) = start_node("node-2", 1, Some(&redis)).await;
    c.wait_for_nodes(2).await;

    // The partition: node-1's report expires, its stream is down; the
    // coordinator evicts it and sends its participant elsewhere.
    redis_proxy.cut();
    grpc_proxy.cut();
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        a.wait(|m| m["type"] == "reconnect"),
    )
    .await
    .expect("told to reconnect");
    assert!(m["reason"].as_str().unwrap().contains("node"), "{m}");
    let mut a2 = Client::connect(&c).await;
    assert_eq!(a2.join("cut", "a", true).await["type"], "joined");
    publish_audio(&mut a2, 6262).await;
    let room = admin(&c, "/admin/rooms/cut").await;
    assert_eq!(room["routers"][0]["nodeId"], "node-2", "{room}");
    // node-1, cut off, still holds the old objects.
    assert_eq!(totals(&direct).await, (1, 1, 1, 0));
    let mut conn = redis.conn().await;
    let marked: bool = redis::cmd("EXISTS")
        .arg(throng_proto::report::node_evicted_key("node-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(marked, "the eviction is marked for the node");

    // The partition heals: node-1 finds the mark, closes what it held and
    // only then reports again; the coordinator follows it again.
    redis_proxy.heal();
    grpc_proxy.heal();
    let healed = std::time::Instant::now();
    loop {
        let t = totals(&direct).await;
        if t == (0, 0, 0, 0) {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "node-1 still holds {t:?} after the partition healed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_after = healed.elapsed();
    c.wait_for_nodes(2).await;
    let marked: bool = redis::cmd("EXISTS")
        .arg(throng_proto::report::node_evicted_key("node-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !marked,
        "the mark is cleared once the node closed everything"
    );
    // What is left is exactly a's new placement, on node-2.
    let nodes = admin(&c, "/admin/nodes").await;
    let reserved = reserved_by_node(&nodes);
    assert!(reserved.contains(&("node-1".into(), 0)), "{nodes}");
    assert!(reserved.contains(&("node-2".into(), 26)), "{nodes}");
    // a's call on node-2 goes on.
    let t = a2
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    eprintln!("figure: a node evicted while cut off closed what it held {closed_after:?} after the partition healed");
    let _ = n2;
    drop(node1.take_stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_node_cut_off_and_evicted_is_cleared_by_its_coordinator_when_it_answers_again(
) {
    use throng_test_support::{Node, Proxy};
    // The single-machine form: no Redis; the coordinator polls its nodes.
    // node-1 is reached only through a proxy the test cuts.
    let grpc_port = throng_test_support::free_tcp_port();
    let grpc_proxy = Proxy::start(format!("127.0.0.1:{grpc_port}").parse().unwrap()).await;
    let mut env = Node::env("node-1", 1, None);
    env.insert(
        "THRONG_GRPC_LISTEN".into(),
        format!("127.0.0.1:{grpc_port}"),
    );
    env.insert("THRONG_GRPC_ADVERTISE".into(), grpc_proxy.addr.to_string());
    let mut node1 = Node::start(env).await;
    let direct = node1.client().await;
    let (n2, _s2) = start_node("node-2", 1, None).await;
    let (http, _stop) =
        start_coordinator(&[grpc_proxy.addr.to_string(), n2.to_string()], 1500, None).await;
    let c = Cluster::at(http);
    c.wait_for_nodes(2).await;
    // Both empty: the first join goes to node-1 (the smaller key).
    let mut a = Client::connect(&c).await;
    assert_eq!(a.join("cut", "a", true).await["type"], "joined");
    publish_audio(&mut a, 6363).await;
    assert_eq!(totals(&direct).await, (1, 1, 1, 0));

    // The partition: polls fail, the stream is down, the report expires;
    // the coordinator evicts node-1 and sends its participant elsewhere.
    grpc_proxy.cut();
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        a.wait(|m| m["type"] == "reconnect"),
    )
    .await
    .expect("told to reconnect");
    assert!(m["reason"].as_str().unwrap().contains("node"), "{m}");
    let mut a2 = Client::connect(&c).await;
    assert_eq!(a2.join("cut", "a", true).await["type"], "joined");
    publish_audio(&mut a2, 6464).await;
    let room = admin(&c, "/admin/rooms/cut").await;
    assert_eq!(room["routers"][0]["nodeId"], "node-2", "{room}");
    // node-1, cut off, still holds the old objects.
    assert_eq!(totals(&direct).await, (1, 1, 1, 0));

    // The partition heals: the coordinator's next poll finds the node it
    // evicted, has it close everything (CloseAll), and only then takes its
    // report again.
    grpc_proxy.heal();
    let healed = std::time::Instant::now();
    loop {
        let t = totals(&direct).await;
        if t == (0, 0, 0, 0) {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "node-1 still holds {t:?} after the partition healed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_after = healed.elapsed();
    c.wait_for_nodes(2).await;
    let nodes = admin(&c, "/admin/nodes").await;
    let reserved = reserved_by_node(&nodes);
    assert!(reserved.contains(&("node-1".into(), 0)), "{nodes}");
    assert!(reserved.contains(&("node-2".into(), 26)), "{nodes}");
    // A newcomer to another room may land on node-1 again, and works there.
    let mut b = Client::connect(&c).await;
    assert_eq!(b.join("after", "b", true).await["type"], "joined");
    publish_audio(&mut b, 6565).await;
    let room = admin(&c, "/admin/rooms/after").await;
    assert_eq!(room["routers"][0]["nodeId"], "node-1", "{room}");
    assert_eq!(totals(&direct).await, (1, 1, 1, 0));
    // a's call on node-2 goes on.
    let t = a2
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    eprintln!("figure: without Redis, a node evicted while cut off closed what it held {closed_after:?} after the partition healed");
    drop(node1.take_stop());
}
