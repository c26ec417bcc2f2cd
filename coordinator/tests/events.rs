//! Event mode, protocol level: join tokens with a `role` (host, speaker,
//! audience). The audience receives the stage and is only counted (never in
//! the roster or its lists), pages through itself with `listAudience`,
//! raises hands that hosts see in order; a host promotes (publish at once,
//! no re-join) and demotes (producers close); placement charges the
//! audience no producers. The stage reaches an event's nodes through a relay
//! tree of bounded fan-out that heals when a relaying node is lost.

mod common;

use std::time::Duration;

use common::*;
use coordinator::auth::TokenKey;
use coordinator::protocol::Role;
use serde_json::{json, Value};
use throng_test_support::SECRET;

async fn join_as(c: &Cluster, room: &str, id: &str, role: Role) -> (Client, Value) {
    let mut client = Client::connect(c).await;
    let token = TokenKey::new(SECRET).mint_role(room, id, role, 600);
    let joined = client
        .request(json!({"type": "join", "room": room, "displayName": id, "token": token}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    (client, joined)
}

/// Messages that arrive within `ms`.
async fn drain(c: &mut Client, ms: u64) -> Vec<Value> {
    let mut out = std::mem::take(&mut c.backlog);
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(ms), c.recv()).await {
        out.push(m);
    }
    out
}

fn names_audience(messages: &[Value], audience: &[&str]) -> Option<Value> {
    messages
        .iter()
        .find(|m| {
            audience
                .iter()
                .any(|a| lists(m, "peersJoined", a) || lists(m, "peersLeft", a))
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audience_watches_the_stage_raises_hands_and_is_promoted_and_demoted_live() {
    let c = cluster(1, 1500).await;
    let room = "keynote";
    let (mut host, joined) = join_as(&c, room, "host", Role::Host).await;
    assert_eq!(joined["role"], "host");
    let talk = publish_audio(&mut host, 7100).await;
    let (mut speaker, _) = join_as(&c, room, "speaker", Role::Speaker).await;
    let mut audience = Vec::new();
    for id in ["a1", "a2", "a3"] {
        let (client, joined) = join_as(&c, room, id, Role::Audience).await;
        // The stage, not the audience: host and speaker, and a count.
        assert_eq!(peer_ids(&joined), ["host", "speaker"], "{joined}");
        assert_eq!(joined["canPublish"], false);
        assert_eq!(joined["role"], "audience");
        assert_eq!(joined["peerCount"], 2, "{joined}");
        audience.push(client);
    }
    assert_eq!(
        audience[2].request(json!({"type": "listAudience"})).await["data"]["peerCount"],
        3
    );
    // Nobody hears of the audience as peers; everyone gets its count.
    let seen = drain(&mut speaker, 600).await;
    assert!(
        names_audience(&seen, &["a1", "a2", "a3"]).is_none(),
        "{seen:?}"
    );
    let last_count = seen
        .iter()
        .rfind(|m| m["type"] == "audience")
        .expect("an audience count");
    assert_eq!(last_count["count"], 3);

    // The audience consumes the stage but cannot publish.
    let a1 = &mut audience[0];
    let recv = a1
        .request(json!({"type": "createTransport", "direction": "recv"}))
        .await;
    assert_eq!(recv["type"], "response", "{recv}");
    let caps = joined["routerRtpCapabilities"].clone();
    let consumed = a1
        .request(json!({"type": "consume", "producerId": talk, "rtpCapabilities": caps}))
        .await;
    assert_eq!(consumed["type"], "response", "{consumed}");
    let send = a1
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    assert_eq!(send["code"], "forbidden", "{send}");

    // Anyone pages through the audience, in join order.
    let page = speaker
        .request(json!({"type": "listAudience", "limit": 2}))
        .await;
    assert_eq!(peer_ids(&page["data"]), ["a1", "a2"], "{page}");
    let cursor = page["data"]["nextCursor"].clone();
    let page = speaker
        .request(json!({"type": "listAudience", "cursor": cursor}))
        .await;
    assert_eq!(peer_ids(&page["data"]), ["a3"], "{page}");
    assert!(page["data"].get("nextCursor").is_none(), "{page}");

    // Hands, in the order they went up, to hosts only.
    for i in [2, 0] {
        let r = audience[i]
            .request(json!({"type": "raiseHand", "raised": true}))
            .await;
        assert_eq!(r["type"], "response", "{r}");
    }
    let r = speaker
        .request(json!({"type": "raiseHand", "raised": true}))
        .await;
    assert_eq!(r["code"], "rejected", "only the audience: {r}");
    let hands = host.wait(|m| m["type"] == "hands" && m["count"] == 2).await;
    let order: Vec<&str> = hands["hands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["peerId"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["a3", "a1"], "{hands}");
    assert!(drain(&mut speaker, 400)
        .await
        .iter()
        .all(|m| m["type"] != "hands"));

    // Only a host promotes; a3 comes on stage and publishes at once.
    let r = speaker
        .request(json!({"type": "promote", "peerId": "a3"}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = host
        .request(json!({"type": "promote", "peerId": "a3"}))
        .await;
    assert_eq!(r["type"], "response", "{r}");
    let changed = audience[2].wait(|m| m["type"] == "roleChanged").await;
    assert_eq!(
        (changed["role"].as_str(), changed["canPublish"].as_bool()),
        (Some("speaker"), Some(true))
    );
    speaker.peer_joined("a3").await;
    audience[1].peer_joined("a3").await;
    host.wait(|m| m["type"] == "hands" && m["count"] == 1).await;
    let a3_mic = publish_audio(&mut audience[2], 7300).await;
    let new = audience[1]
        .wait(|m| m["type"] == "newProducer" && m["peerId"] == "a3")
        .await;
    assert_eq!(new["producer"]["producerId"], json!(a3_mic));
    speaker
        .wait(|m| m["type"] == "audience" && m["count"] == 2)
        .await;

    // Demoted: its producer closes for everyone, it leaves the stage.
    let r = host
        .request(json!({"type": "demote", "peerId": "a3"}))
        .await;
    assert_eq!(r["type"], "response", "{r}");
    let changed = audience[2].wait(|m| m["type"] == "roleChanged").await;
    assert_eq!(changed["role"], "audience");
    let closed = speaker.wait(|m| m["type"] == "producerClosed").await;
    assert_eq!(closed["producerId"], json!(a3_mic));
    speaker.peer_left("a3").await;
    speaker
        .wait(|m| m["type"] == "audience" && m["count"] == 3)
        .await;
    let r = audience[2]
        .request(json!({"type": "produce", "transportId": "x", "kind": "audio", "rtpParameters": opus_rtp_parameters(1), "source": "mic"}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    // The node no longer has a3's producer: the host's and nothing else.
    let room_view = admin(&c, "/admin/rooms/keynote").await;
    let producers: usize = room_view["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["producers"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(producers, 1, "{room_view}");

    // Placement: the stage costs 2 x 12 + 2 units each, the audience 2 x 12.
    let nodes = admin(&c, "/admin/nodes").await;
    let reserved: u64 = nodes["nodes"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reserved"].as_u64().unwrap())
        .sum();
    assert_eq!(reserved, 2 * 26 + 3 * 24, "{nodes}");
}

/// Per node: (pipe consumers, whether it holds `producer`, whether it is
/// the producer's origin). Nobody in the room consumes, so every consumer on
/// a node is a pipe consumer feeding another node.
async fn feeds(
    nodes: &[std::net::SocketAddr],
    room: &str,
    producer: &str,
) -> Vec<(u32, bool, bool)> {
    use throng_proto::media as pb;
    let mut out = Vec::new();
    for addr in nodes {
        let mut client = throng_test_support::connect_node(*addr).await;
        let info = client
            .get_node_info(pb::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        let consumers = info.workers.iter().map(|w| w.consumers).sum();
        let described = client
            .describe_room(pb::DescribeRoomRequest {
                room_id: room.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let copies: Vec<_> = described
            .routers
            .iter()
            .flat_map(|r| &r.producers)
            .filter(|p| p.producer_id == producer)
            .collect();
        out.push((
            consumers,
            !copies.is_empty(),
            copies.iter().any(|p| !p.transport_id.is_empty()),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_reaches_every_node_through_a_relay_tree_that_heals_when_a_relay_is_lost() {
    // Four one-worker nodes, room for a speaker and one audience member on
    // each (26 + 24 units of 50), a fan-out of 1: the speaker's node pipes
    // to one node, which pipes to the next, and so on.
    let redis = RedisServer::start();
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    for i in 1..=4 {
        let (addr, stop) = start_node(&format!("node-{i}"), 1, Some(&redis)).await;
        addrs.push(addr);
        stops.push(Some(stop));
    }
    let grpc: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let c =
        Cluster::coordinator_with(&grpc, 50, &redis, &[("THRONG_PIPE_FANOUT", "1".into())]).await;
    let room = "relayed";
    let (mut speaker, _) = join_as(&c, room, "speaker", Role::Speaker).await;
    let talk = publish_audio(&mut speaker, 7300).await;
    let mut audience = Vec::new();
    for i in 0..7 {
        let (client, joined) = join_as(&c, room, &format!("a{i}"), Role::Audience).await;
        audience.push((client, joined["routerRtpCapabilities"].clone()));
    }
    let described = admin(&c, &format!("/admin/rooms/{room}")).await;
    let routers = described["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 4, "the event spans every node: {described}");

    // A chain: every node has the speaker's producer, none feeds more than one.
    let tree = feeds(&addrs, room, &talk).await;
    eprintln!("before: {tree:?}");
    assert!(tree.iter().all(|(_, has, _)| *has), "{tree:?}");
    assert!(
        tree.iter().all(|(pipes, _, _)| *pipes <= 1),
        "fan-out 1: {tree:?}"
    );
    assert_eq!(tree.iter().map(|t| t.0).sum::<u32>(), 3, "{tree:?}");
    let origin = tree.iter().position(|t| t.2).expect("an origin");
    assert_eq!(tree[origin].0, 1, "the origin feeds one node only");
    // The admin API shows the same chain: one origin, each node fed by one
    // other, none feeding two.
    assert_eq!(
        described["relays"],
        admin(&c, &format!("/admin/rooms/{room}/relays")).await["relays"]
    );
    let relays = &described["relays"][talk.as_str()];
    let parents: Vec<&Value> = relays.as_object().expect("a tree").values().collect();
    assert_eq!(parents.len(), 4, "{relays}");
    assert_eq!(
        parents.iter().filter(|p| p.is_null()).count(),
        1,
        "{relays}"
    );
    let mut fed: Vec<&str> = parents.iter().filter_map(|p| p.as_str()).collect();
    fed.sort();
    fed.dedup();
    assert_eq!(fed.len(), 3, "each relay feeds one: {relays}");
    assert_eq!(
        relays[format!("node-{}", origin + 1)],
        Value::Null,
        "the origin is the speaker's node: {relays}"
    );

    // A relay (not the origin, feeding another) is lost.
    let relay = (0..4)
        .find(|&i| i != origin && tree[i].0 == 1)
        .expect("a relay");
    let relay_node = format!("node-{}", relay + 1);
    let node_of = |client_idx: usize, described: &Value| -> String {
        let id = format!("a{client_idx}");
        let router = described["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["peerId"] == id.as_str()))
            .map(|p| p["routerId"].clone())
            .unwrap_or_default();
        routers
            .iter()
            .find(|r| r["routerId"] == router)
            .and_then(|r| r["nodeId"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let placed: Vec<String> = (0..7).map(|i| node_of(i, &described)).collect();
    assert!(placed.iter().all(|n| !n.is_empty()), "{described}");
    drop(stops[relay].take());

    // Those on the relay reconnect; those beyond it are told the stage's
    // producer closed and is offered again, and consume it fed anew.
    let mut refed = 0;
    for (i, (client, caps)) in audience.iter_mut().enumerate() {
        if placed[i] == relay_node {
            client.wait(|m| m["type"] == "reconnect").await;
            continue;
        }
        let seen = drain(client, 300).await;
        let offered_again = seen
            .iter()
            .position(|m| m["type"] == "producerClosed" && m["producerId"] == talk.as_str())
            .is_some_and(|closed| {
                seen[closed..].iter().any(|m| {
                    m["type"] == "newProducer" && m["producer"]["producerId"] == talk.as_str()
                })
            });
        let t = client
            .request(json!({"type": "createTransport", "direction": "recv"}))
            .await;
        assert_eq!(t["type"], "response", "{t}");
        let consumed = client
            .request(json!({"type": "consume", "producerId": talk, "rtpCapabilities": caps}))
            .await;
        assert_eq!(
            consumed["type"], "response",
            "a{i} on {}: {consumed}",
            placed[i]
        );
        if offered_again {
            refed += 1;
        }
    }
    let _ = &mut speaker;
    assert!(refed >= 1, "the nodes beyond the relay were fed again");
    let mut live = addrs.clone();
    live.remove(relay);
    let after = feeds(&live, room, &talk).await;
    eprintln!("after, without node-{}: {after:?}", relay + 1);
    assert!(after.iter().all(|(_, has, _)| *has), "{after:?}");
    // The fan-out still holds: each node's consumers are its audience's
    // plus at most one pipe.
    let nodes_left = (0..4).filter(|&i| i != relay);
    for (n, (consumers, _, _)) in nodes_left.zip(&after) {
        let here = placed
            .iter()
            .filter(|p| **p == format!("node-{}", n + 1))
            .count() as u32;
        assert!(
            consumers.checked_sub(here).is_some_and(|pipes| pipes <= 1),
            "node-{}: {consumers} consumers for {here} audience members: {after:?}",
            n + 1
        );
    }
}
