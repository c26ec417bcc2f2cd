//! Test harness: a real redis-server on a free port, real media nodes (in this
//! process or as `media-node` processes), real gRPC over TCP on 127.0.0.1,
//! and plain RTP senders and receivers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use media_node::config::{vars, NodeConfig};
use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

pub type Client = MediaNodeClient<Channel>;

/// A redis-server of our own, killed on drop.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
    _dir: tempdir::TempDir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "throng-{tag}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}

impl Redis {
    pub fn start() -> Self {
        let port = free_tcp_port();
        let dir = tempdir::TempDir::new("redis");
        let child = std::process::Command::new("redis-server")
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
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port with `n` consecutive ports free for both UDP and TCP.
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
        let all_free = (base..base + n).all(|p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// Environment for a node on loopback with `workers` workers.
pub fn node_env(node_id: &str, workers: usize, redis: Option<&Redis>) -> HashMap<String, String> {
    let mut env = HashMap::from([
        (vars::NODE_ID.to_string(), node_id.to_string()),
        (vars::WORKERS.to_string(), workers.to_string()),
        (vars::RTC_LISTEN_IP.to_string(), "127.0.0.1".to_string()),
        (
            vars::RTC_BASE_PORT.to_string(),
            free_port_block(workers as u16).to_string(),
        ),
        (vars::GRPC_LISTEN.to_string(), "127.0.0.1:0".to_string()),
        (vars::HTTP_LISTEN.to_string(), "127.0.0.1:0".to_string()),
        (vars::REPORT_INTERVAL_MS.to_string(), "250".to_string()),
        (vars::REPORT_TTL_MS.to_string(), "1500".to_string()),
        (vars::DRAIN_GRACE_SECS.to_string(), "1".to_string()),
    ]);
    if let Some(r) = redis {
        env.insert(vars::REDIS_URL.to_string(), r.url());
    }
    env
}

pub async fn connect(addr: SocketAddr) -> Client {
    let endpoint = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match MediaNodeClient::connect(endpoint.clone()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {endpoint}: {e}"),
        }
    }
}

/// A node running in this process.
pub struct InProcessNode {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), media_node::NodeError>>,
}

impl InProcessNode {
    pub async fn start(env: HashMap<String, String>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let config = NodeConfig::from_env(&env).expect("valid test config");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(media_node::run(
            config,
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
        let client = connect(bound.grpc).await;
        Self {
            grpc: bound.grpc,
            http: bound.http,
            client,
            stop: Some(stop_tx),
            task,
        }
    }

    /// SIGTERM equivalent: drain, then return how the node ended.
    pub async fn stop(mut self) -> Result<(), media_node::NodeError> {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.expect("node task")
    }
}

/// A `media-node` process.
pub struct NodeProcess {
    pub child: tokio::process::Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl NodeProcess {
    pub async fn spawn(env: HashMap<String, String>) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_media-node"))
            .env_clear()
            .envs(&env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn media-node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("media-node did not become ready")
            .unwrap()
            .expect("media-node exited before ready");
        // "media node: gRPC <addr> status http://<addr>/status"
        let grpc = line
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse().ok())
            .expect(&line);
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .expect(&line);
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, grpc, http }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

// ----- RTP -------------------------------------------------------------------

pub fn opus_capabilities_json() -> String {
    serde_json::json!({
        "codecs": [
            {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []},
            {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101, "clockRate": 90000, "parameters": {}, "rtcpFeedback": []}
        ],
        "headerExtensions": []
    })
    .to_string()
}

/// An RTP packet; `keyframe_vp8` makes the payload a VP8 keyframe start.
pub fn rtp_packet(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// VP8 payload descriptor (S=1, partition 0) + a keyframe header, so that
/// mediasoup's video consumers start forwarding at once.
pub fn vp8_keyframe_payload(i: usize) -> Vec<u8> {
    let mut p = vec![
        0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
    ];
    p.extend((0..100).map(|j| (i + j) as u8));
    p
}

pub fn opus_payload(i: usize) -> Vec<u8> {
    (0..80).map(|j| (i * 7 + j) as u8).collect()
}

/// Sends `count` packets of the given kind to `to`, 5 ms apart.
pub async fn send_rtp(to: SocketAddr, pt: u8, ssrc: u32, video: bool, count: usize) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..count {
        let payload = if video {
            vp8_keyframe_payload(i)
        } else {
            opus_payload(i)
        };
        let ts = if video {
            (i as u32) * 3000
        } else {
            (i as u32) * 960
        };
        socket
            .send_to(&rtp_packet(pt, ssrc, 100 + i as u16, ts, &payload), to)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A UDP socket that counts RTP (not RTCP) packets it receives.
pub struct RtpSink {
    pub socket: tokio::net::UdpSocket,
}

impl RtpSink {
    pub async fn bind() -> Self {
        Self {
            socket: tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Counts RTP packets until `want` arrived or `quiet` passed without any.
    pub async fn count(&self, want: usize, quiet: Duration) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while n < want {
            match tokio::time::timeout(quiet, self.socket.recv(&mut buf)).await {
                Ok(Ok(len)) if len >= 12 && !(72..=76).contains(&(buf[1] & 0x7f)) => n += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        n
    }
}

/// Sum of `packetCount` over the outbound streams of a consumer's stats.
pub async fn consumer_packets(client: &mut Client, consumer_id: &str) -> u64 {
    let stats = client
        .get_stats(pb::GetStatsRequest {
            target: Some(pb::get_stats_request::Target::ConsumerId(
                consumer_id.to_string(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    let v: serde_json::Value = serde_json::from_str(&stats.stats_json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "outbound-rtp")
        .map(|s| s["packetCount"].as_u64().unwrap_or(0))
        .sum()
}
