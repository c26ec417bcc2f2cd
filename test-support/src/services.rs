//! Media nodes and coordinators in the test process: real gRPC, HTTP and
//! WebSocket on 127.0.0.1, configured through the same environment variables
//! as the binaries, with test hooks when a test needs to hold one at a race.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coordinator::config::{vars as cvars, CoordinatorConfig};
use media_node::config::{vars as nvars, NodeConfig};
use throng_hooks::Hooks;
use throng_proto::media::media_node_client::MediaNodeClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::{free_port_block, init_logs, ADMIN_KEY, API_KEY, SECRET};

/// An environment map from `(variable, value)` pairs.
pub fn env_of(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A media node running in this process; it drains when stopped or dropped.
pub struct Node {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Health and status address.
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), media_node::NodeError>>>,
}

impl Node {
    /// The environment of a node `id` on loopback with `workers` workers on
    /// free ports, reporting to `redis` (fast reports, 1 s drain grace).
    pub fn env(id: &str, workers: usize, redis: Option<&str>) -> HashMap<String, String> {
        let mut env = env_of(&[
            (nvars::NODE_ID, id.to_string()),
            (nvars::WORKERS, workers.to_string()),
            (nvars::RTC_LISTEN_IP, "127.0.0.1".into()),
            (
                nvars::RTC_BASE_PORT,
                free_port_block(workers as u16).to_string(),
            ),
            (nvars::GRPC_LISTEN, "127.0.0.1:0".into()),
            (nvars::HTTP_LISTEN, "127.0.0.1:0".into()),
            (nvars::REPORT_INTERVAL_MS, "250".into()),
            (nvars::REPORT_TTL_MS, "1500".into()),
            (nvars::DRAIN_GRACE_SECS, "1".into()),
        ]);
        if let Some(url) = redis {
            env.insert(nvars::REDIS_URL.to_string(), url.to_string());
        }
        env
    }

    /// Starts a node from `env`.
    pub async fn start(env: HashMap<String, String>) -> Self {
        Self::start_with(env, Hooks::none()).await
    }

    /// Starts a node from `env` with test hooks.
    pub async fn start_with(env: HashMap<String, String>, hooks: Hooks) -> Self {
        init_logs();
        let config = NodeConfig::from_env(&env).expect("valid test config");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(media_node::run_with(
            config,
            hooks,
            async move {
                let _ = stop_rx.await;
            },
            move |bound| {
                let _ = ready_tx.send(bound);
            },
        ));
        let bound = match ready_rx.await {
            Ok(b) => b,
            Err(_) => panic!("node failed to start: {:?}", task.await),
        };
        Self {
            grpc: bound.grpc,
            http: bound.http,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// A gRPC client of the node.
    pub async fn client(&self) -> MediaNodeClient<Channel> {
        connect_node(self.grpc).await
    }

    /// The node's stop switch (send or drop it to drain the node, as SIGTERM
    /// does); the node then runs until it drained.
    pub fn take_stop(&mut self) -> Option<oneshot::Sender<()>> {
        self.task.take();
        self.stop.take()
    }

    /// SIGTERM equivalent: drain, then return how the node ended.
    pub async fn stop(mut self) -> Result<(), media_node::NodeError> {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task
            .take()
            .expect("not taken")
            .await
            .expect("node task")
    }
}

/// A gRPC client of the node at `addr`, retrying for up to 10 s.
pub async fn connect_node(addr: SocketAddr) -> MediaNodeClient<Channel> {
    let endpoint = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match MediaNodeClient::connect(endpoint.clone()).await {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {endpoint}: {e}"),
        }
    }
}

/// A coordinator running in this process; it drains when stopped or dropped.
pub struct Coordinator {
    /// HTTP (and WebSocket) address.
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), coordinator::CoordinatorError>>>,
}

impl Coordinator {
    /// The environment of a coordinator over `nodes` (gRPC addresses) with the
    /// test secrets, a worker capacity and, optionally, Redis.
    pub fn env(
        nodes: &[String],
        worker_capacity: u32,
        redis: Option<&str>,
    ) -> HashMap<String, String> {
        let mut env = env_of(&[
            (cvars::LISTEN, "127.0.0.1:0".to_string()),
            (cvars::MEDIA_NODES, nodes.join(",")),
            (cvars::TOKEN_SECRET, SECRET.into()),
            (cvars::API_KEY, API_KEY.into()),
            (cvars::ADMIN_KEY, ADMIN_KEY.into()),
            (cvars::WORKER_CAPACITY, worker_capacity.to_string()),
        ]);
        if let Some(url) = redis {
            env.insert(cvars::REDIS_URL.to_string(), url.to_string());
        }
        env
    }

    /// Starts a coordinator from `env`.
    pub async fn start(env: HashMap<String, String>) -> Self {
        Self::start_with(env, Hooks::none()).await
    }

    /// Starts a coordinator from `env` with test hooks.
    pub async fn start_with(env: HashMap<String, String>, hooks: Hooks) -> Self {
        init_logs();
        let config = CoordinatorConfig::from_env(&env).expect("valid test config");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(coordinator::run_with(
            config,
            hooks,
            async move {
                let _ = stop_rx.await;
            },
            move |a| {
                let _ = ready_tx.send(a);
            },
        ));
        let http = match ready_rx.await {
            Ok(a) => a,
            Err(_) => panic!("coordinator failed to start: {:?}", task.await),
        };
        Self {
            http,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Its WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// Its stop switch (send or drop it to drain the coordinator, as SIGTERM does).
    pub fn take_stop(&mut self) -> Option<oneshot::Sender<()>> {
        self.task.take();
        self.stop.take()
    }

    /// SIGTERM equivalent: drain, then return how it ended.
    pub async fn stop(mut self) -> Result<(), coordinator::CoordinatorError> {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task
            .take()
            .expect("not taken")
            .await
            .expect("coordinator task")
    }

    /// Waits until the coordinator's admin API lists `nodes` media nodes.
    pub async fn wait_for_nodes(&self, nodes: usize) {
        wait_for_nodes(self.http, nodes).await
    }
}

/// Waits until the admin API at `http` lists `nodes` media nodes (the
/// coordinator reads them every second).
pub async fn wait_for_nodes(http: SocketAddr, nodes: usize) {
    for _ in 0..50 {
        let v = admin_get(http, "/admin/nodes").await;
        if v["nodes"].as_array().is_some_and(|n| n.len() == nodes) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("coordinator never saw the {nodes} media nodes");
}

/// `GET path` on a coordinator's admin API with the test admin key.
pub async fn admin_get(http: SocketAddr, path: &str) -> serde_json::Value {
    // A tiny HTTP/1.1 GET: enough for the admin API, no client dependency.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nx-admin-key: {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let json = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("admin {path}: {e}: {body}"))
}
