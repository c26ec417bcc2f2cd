//! The coordinator end to end at the signalling level: real media node
//! (mediasoup workers, gRPC over TCP), real coordinator, WebSocket clients
//! speaking the documented protocol.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use coordinator::auth::TokenKey;
use coordinator::config::{vars as cvars, CoordinatorConfig};
use futures::{SinkExt, StreamExt};
use media_node::config::{vars as nvars, NodeConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-test-secret-test-secret-0";
const API_KEY: &str = "test-api-key-test-api-key-test-api-key";
const ADMIN_KEY: &str = "test-admin-key-test-admin-key-test-adm";

fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base < 10000 || base as u32 + n as u32 > 65000 {
            continue;
        }
        if (base..base + n).all(|p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        }) {
            return base;
        }
    }
    panic!("no free port block");
}

struct Cluster {
    url: String,
    http: SocketAddr,
    _node_stop: tokio::sync::oneshot::Sender<()>,
    _coord_stop: tokio::sync::oneshot::Sender<()>,
}

async fn cluster(workers: usize, worker_capacity: u32) -> Cluster {
    let env: HashMap<String, String> = [
        (nvars::NODE_ID, "node-1".to_string()),
        (nvars::WORKERS, workers.to_string()),
        (nvars::RTC_LISTEN_IP, "127.0.0.1".into()),
        (
            nvars::RTC_BASE_PORT,
            free_port_block(workers as u16).to_string(),
        ),
        (nvars::GRPC_LISTEN, "127.0.0.1:0".into()),
        (nvars::HTTP_LISTEN, "127.0.0.1:0".into()),
        (nvars::DRAIN_GRACE_SECS, "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (node_stop, node_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(media_node::run(
        NodeConfig::from_env(&env).unwrap(),
        async move {
            let _ = node_stop_rx.await;
        },
        move |b| {
            let _ = ready_tx.send(b);
        },
    ));
    let node = ready_rx.await.expect("media node started");

    let env: HashMap<String, String> = [
        (cvars::LISTEN, "127.0.0.1:0".to_string()),
        (cvars::MEDIA_NODES, node.grpc.to_string()),
        (cvars::TOKEN_SECRET, SECRET.into()),
        (cvars::API_KEY, API_KEY.into()),
        (cvars::ADMIN_KEY, ADMIN_KEY.into()),
        (cvars::WORKER_CAPACITY, worker_capacity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (coord_stop, coord_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(coordinator::run(
        CoordinatorConfig::from_env(&env).unwrap(),
        async move {
            let _ = coord_stop_rx.await;
        },
        move |a| {
            let _ = ready_tx.send(a);
        },
    ));
    let http = ready_rx.await.expect("coordinator started");
    // Let the coordinator see the node once (it polls every second).
    let c = Cluster {
        url: format!("ws://{http}/ws"),
        http,
        _node_stop: node_stop,
        _coord_stop: coord_stop,
    };
    wait_for_nodes(&c).await;
    c
}

async fn wait_for_nodes(c: &Cluster) {
    for _ in 0..50 {
        let v = admin(c, "/admin/nodes").await;
        if v["nodes"].as_array().is_some_and(|n| !n.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("coordinator never saw the media node");
}

async fn admin(c: &Cluster, path: &str) -> Value {
    // A tiny HTTP/1.1 GET: enough for the admin API, no client dependency.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(c.http).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nx-admin-key: {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let json = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("admin {path}: {e}: {body}"))
}

struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    /// Messages received while waiting for something else.
    backlog: Vec<Value>,
}

impl Client {
    async fn connect(c: &Cluster) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(&c.url)
            .await
            .expect("ws connect");
        let mut client = Self {
            ws,
            next: 0,
            backlog: Vec::new(),
        };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["protocol"], 1);
        client
    }

    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no message within 10 s")
                .expect("socket closed")
                .expect("socket error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    /// Waits for a message matching `pred`, keeping the others.
    async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        loop {
            let m = self.recv().await;
            if pred(&m) {
                return m;
            }
            self.backlog.push(m);
        }
    }

    async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a request and returns its reply (response, joined or error).
    async fn request(&mut self, mut msg: Value) -> Value {
        self.next += 1;
        let id = format!("r{}", self.next);
        msg["reqId"] = json!(id);
        self.send_raw(msg.to_string()).await;
        self.wait(|m| m["reqId"] == json!(id)).await
    }

    async fn join(&mut self, room: &str, identity: &str, publish: bool) -> Value {
        let token = TokenKey::new(SECRET).mint(room, identity, publish, 600);
        self.request(json!({"type": "join", "room": room, "displayName": identity, "token": token}))
            .await
    }
}

fn opus_rtp_parameters(ssrc: u32) -> Value {
    json!({
        "mid": "0",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": format!("c{ssrc}"), "reducedSize": true}
    })
}

async fn publish_audio(client: &mut Client, ssrc: u32) -> String {
    let t = client
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let p = client
        .request(json!({"type": "produce", "transportId": t["data"]["id"], "kind": "audio", "rtpParameters": opus_rtp_parameters(ssrc), "source": "mic"}))
        .await;
    assert_eq!(p["type"], "response", "{p}");
    p["data"]["id"].as_str().unwrap().to_string()
}

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
    let seen = alice.wait(|m| m["type"] == "peerJoined").await;
    assert_eq!(seen["peer"]["peerId"], "bob");

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

    let room = admin(&c, "/admin/rooms/standup").await;
    assert_eq!(room["participants"], 2);

    alice.request(json!({"type": "leave"})).await;
    let closed = bob.wait(|m| m["type"] == "producerClosed").await;
    assert_eq!(closed["producerId"], json!(producer));
    let left = bob.wait(|m| m["type"] == "peerLeft").await;
    assert_eq!(left["peerId"], "alice");
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
