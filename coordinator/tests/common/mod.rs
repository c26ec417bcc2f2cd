//! Test harness of the coordinator's tests: a cluster built from
//! `throng-test-support` (a real redis-server, real media nodes and
//! coordinators in this process over real gRPC and WebSocket on 127.0.0.1),
//! and a WebSocket client of the signalling protocol.
#![allow(dead_code, unused_imports)]

pub mod scenario;

use std::net::SocketAddr;
use std::time::Duration;

use coordinator::auth::TokenKey;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use throng_test_support::{Coordinator, Node};
use tokio_tungstenite::tungstenite::Message;

pub use throng_test_support::{
    admin_get, free_port_block, Redis as RedisServer, ADMIN_KEY, API_KEY, SECRET,
};

pub struct Cluster {
    pub url: String,
    pub http: SocketAddr,
    /// Stops (drains) each media node, by index.
    pub node_stops: Vec<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Stops (drains) the coordinator, as SIGTERM does.
    pub coord_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub async fn cluster(workers: usize, worker_capacity: u32) -> Cluster {
    cluster_with(workers, worker_capacity, None).await
}

/// A media node and a coordinator; with `redis`, both use it (the node reports there).
pub async fn cluster_with(
    workers: usize,
    worker_capacity: u32,
    redis: Option<&RedisServer>,
) -> Cluster {
    cluster_of(1, workers, worker_capacity, redis).await
}

/// A media node in this process; returns its gRPC address and its stop switch.
pub async fn start_node(
    node_id: &str,
    workers: usize,
    redis: Option<&RedisServer>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let url = redis.map(|r| r.url());
    let mut node = Node::start(Node::env(node_id, workers, url.as_deref())).await;
    (node.grpc, node.take_stop().expect("fresh node"))
}

/// A coordinator in this process over `nodes` (gRPC addresses).
pub async fn start_coordinator(
    nodes: &[String],
    worker_capacity: u32,
    redis: Option<&RedisServer>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_coordinator_with(nodes, worker_capacity, redis, &[]).await
}

/// [`start_coordinator`] with more settings (`THRONG_*` variable, value).
pub async fn start_coordinator_with(
    nodes: &[String],
    worker_capacity: u32,
    redis: Option<&RedisServer>,
    extra: &[(&str, String)],
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let url = redis.map(|r| r.url());
    let mut env = Coordinator::env(nodes, worker_capacity, url.as_deref());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut c = Coordinator::start(env).await;
    (c.http, c.take_stop().expect("fresh coordinator"))
}

/// `nodes` media nodes and one coordinator.
pub async fn cluster_of(
    nodes: usize,
    workers: usize,
    worker_capacity: u32,
    redis: Option<&RedisServer>,
) -> Cluster {
    cluster_of_with(nodes, workers, worker_capacity, redis, &[]).await
}

/// [`cluster_of`] with more coordinator settings (`THRONG_*`, value).
pub async fn cluster_of_with(
    nodes: usize,
    workers: usize,
    worker_capacity: u32,
    redis: Option<&RedisServer>,
    extra: &[(&str, String)],
) -> Cluster {
    let mut addrs = Vec::new();
    let mut node_stops = Vec::new();
    for i in 0..nodes {
        let (addr, stop) = start_node(&format!("node-{}", i + 1), workers, redis).await;
        addrs.push(addr.to_string());
        node_stops.push(Some(stop));
    }
    let (http, coord_stop) = start_coordinator_with(&addrs, worker_capacity, redis, extra).await;
    let c = Cluster {
        url: format!("ws://{http}/ws"),
        http,
        node_stops,
        coord_stop: Some(coord_stop),
    };
    c.wait_for_nodes(nodes).await;
    c
}

impl Cluster {
    /// A coordinator at `http` whose nodes and stopping the test does not own.
    pub fn at(http: SocketAddr) -> Self {
        Cluster {
            url: format!("ws://{http}/ws"),
            http,
            node_stops: Vec::new(),
            coord_stop: None,
        }
    }

    /// Waits until the coordinator sees `nodes` media nodes (it reads them every second).
    pub async fn wait_for_nodes(&self, nodes: usize) {
        throng_test_support::wait_for_nodes(self.http, nodes).await
    }

    /// A coordinator (and no node of its own) over `nodes` and Redis, once it sees them.
    pub async fn coordinator(
        nodes: &[String],
        worker_capacity: u32,
        redis: &RedisServer,
    ) -> Cluster {
        Self::coordinator_with(nodes, worker_capacity, redis, &[]).await
    }

    /// [`Cluster::coordinator`] with more settings (`THRONG_*`, value).
    pub async fn coordinator_with(
        nodes: &[String],
        worker_capacity: u32,
        redis: &RedisServer,
        extra: &[(&str, String)],
    ) -> Cluster {
        let (http, coord_stop) =
            start_coordinator_with(nodes, worker_capacity, Some(redis), extra).await;
        let c = Cluster {
            url: format!("ws://{http}/ws"),
            http,
            node_stops: Vec::new(),
            coord_stop: Some(coord_stop),
        };
        c.wait_for_nodes(nodes.len()).await;
        c
    }
}

pub async fn admin(c: &Cluster, path: &str) -> Value {
    admin_get(c.http, path).await
}

/// Consumer units reserved on the first node's workers, summed.
pub async fn reserved_units(c: &Cluster) -> u64 {
    let nodes = admin(c, "/admin/nodes").await;
    nodes["nodes"][0]["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers: {nodes}"))
        .iter()
        .map(|w| w["reserved"].as_u64().unwrap())
        .sum()
}

/// A coordinator as a process of its own (to be SIGKILLed), from `env`
/// (`Coordinator::env` and more) on a free port; returns once it accepts
/// connections.
pub async fn coordinator_process(
    mut env: std::collections::HashMap<String, String>,
) -> (tokio::process::Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", throng_test_support::free_tcp_port())
        .parse()
        .unwrap();
    env.insert(
        coordinator::config::vars::LISTEN.to_string(),
        addr.to_string(),
    );
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(env)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a coordinator process");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the coordinator process never listened on {addr}");
}

pub struct Client {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub next: u64,
    /// Messages received while waiting for something else.
    pub backlog: Vec<Value>,
}

impl Client {
    pub async fn connect(c: &Cluster) -> Self {
        Self::connect_url(&c.url).await
    }

    pub async fn connect_url(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let mut client = Self {
            ws,
            next: 0,
            backlog: Vec::new(),
        };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["protocol"], coordinator::protocol::PROTOCOL_VERSION);
        client
    }

    pub async fn recv(&mut self) -> Value {
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
    pub async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
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

    /// Waits for a `peersJoined` that lists `peer`; returns its entry.
    pub async fn peer_joined(&mut self, peer: &str) -> Value {
        let m = self.wait(|m| lists(m, "peersJoined", peer)).await;
        m["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peerId"] == peer)
            .cloned()
            .unwrap()
    }

    /// Waits for a `peersLeft` that names `peer`; returns the message.
    pub async fn peer_left(&mut self, peer: &str) -> Value {
        self.wait(|m| lists(m, "peersLeft", peer)).await
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a request and returns its reply (response, joined or error).
    pub async fn request(&mut self, mut msg: Value) -> Value {
        self.next += 1;
        let id = format!("r{}", self.next);
        msg["reqId"] = json!(id);
        self.send_raw(msg.to_string()).await;
        self.wait(|m| m["reqId"] == json!(id)).await
    }

    pub async fn join(&mut self, room: &str, identity: &str, publish: bool) -> Value {
        let token = TokenKey::new(SECRET).mint(room, identity, publish, 600);
        self.request(json!({"type": "join", "room": room, "displayName": identity, "token": token}))
            .await
    }
}

/// The ids of the peers a `joined` message lists, in join order.
pub fn peer_ids(joined: &Value) -> Vec<&str> {
    joined["peers"]
        .as_array()
        .map(|peers| peers.iter().filter_map(|p| p["peerId"].as_str()).collect())
        .unwrap_or_default()
}

pub fn opus_rtp_parameters(ssrc: u32) -> Value {
    json!({
        "mid": "0",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": format!("c{ssrc}"), "reducedSize": true}
    })
}

pub async fn publish_audio(client: &mut Client, ssrc: u32) -> String {
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

/// Whether `m` is a presence list of `kind` (`peersJoined`, `peersLeft`)
/// naming `peer`.
pub fn lists(m: &Value, kind: &str, peer: &str) -> bool {
    if m["type"] != kind {
        return false;
    }
    let field = if kind == "peersJoined" {
        "peers"
    } else {
        "peerIds"
    };
    m[field].as_array().is_some_and(|a| {
        a.iter()
            .any(|p| p["peerId"] == peer || p.as_str() == Some(peer))
    })
}
