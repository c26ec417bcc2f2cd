//! Test harness shared by the coordinator's tests: a real redis-server, a
//! real media node and coordinator in this process (real gRPC and WebSocket
//! over 127.0.0.1), and a WebSocket client of the signalling protocol.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::auth::TokenKey;
use coordinator::config::{vars as cvars, CoordinatorConfig};
use futures::{SinkExt, StreamExt};
use media_node::config::{vars as nvars, NodeConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0";
pub const API_KEY: &str = "test-api-key-test-api-key-test-api-key";
pub const ADMIN_KEY: &str = "test-admin-key-test-admin-key-test-adm";

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

pub fn free_port_block(n: u16) -> u16 {
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
    let env: HashMap<String, String> = [
        (nvars::NODE_ID, node_id.to_string()),
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
    .chain(redis.map(|r| (nvars::REDIS_URL.to_string(), r.url())))
    .collect();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(media_node::run(
        NodeConfig::from_env(&env).unwrap(),
        async move {
            let _ = stop_rx.await;
        },
        move |b| {
            let _ = ready_tx.send(b);
        },
    ));
    (ready_rx.await.expect("media node started").grpc, stop)
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
    let env: HashMap<String, String> = [
        (cvars::LISTEN, "127.0.0.1:0".to_string()),
        (cvars::MEDIA_NODES, nodes.join(",")),
        (cvars::TOKEN_SECRET, SECRET.into()),
        (cvars::API_KEY, API_KEY.into()),
        (cvars::ADMIN_KEY, ADMIN_KEY.into()),
        (cvars::WORKER_CAPACITY, worker_capacity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(redis.map(|r| (cvars::REDIS_URL.to_string(), r.url())))
    .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
    .collect();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(coordinator::run(
        CoordinatorConfig::from_env(&env).unwrap(),
        async move {
            let _ = stop_rx.await;
        },
        move |a| {
            let _ = ready_tx.send(a);
        },
    ));
    (ready_rx.await.expect("coordinator started"), stop)
}

/// `nodes` media nodes and one coordinator.
pub async fn cluster_of(
    nodes: usize,
    workers: usize,
    worker_capacity: u32,
    redis: Option<&RedisServer>,
) -> Cluster {
    let mut addrs = Vec::new();
    let mut node_stops = Vec::new();
    for i in 0..nodes {
        let (addr, stop) = start_node(&format!("node-{}", i + 1), workers, redis).await;
        addrs.push(addr.to_string());
        node_stops.push(Some(stop));
    }
    let (http, coord_stop) = start_coordinator(&addrs, worker_capacity, redis).await;
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
    /// Waits until the coordinator sees `nodes` media nodes (it reads them every second).
    pub async fn wait_for_nodes(&self, nodes: usize) {
        for _ in 0..50 {
            let v = admin(self, "/admin/nodes").await;
            if v["nodes"].as_array().is_some_and(|n| n.len() == nodes) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("coordinator never saw the {nodes} media nodes");
    }

    /// A coordinator (and no node of its own) over `nodes` and Redis, once it sees them.
    pub async fn coordinator(
        nodes: &[String],
        worker_capacity: u32,
        redis: &RedisServer,
    ) -> Cluster {
        let (http, coord_stop) = start_coordinator(nodes, worker_capacity, Some(redis)).await;
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
