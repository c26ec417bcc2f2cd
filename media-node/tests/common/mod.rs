//! Test harness: a real redis-server on a free port and real media nodes in
//! this process (from `throng-test-support`) or as `media-node` processes,
//! real gRPC over TCP on 127.0.0.1, and plain RTP senders and receivers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

pub type Client = MediaNodeClient<Channel>;

#[allow(unused_imports)]
pub use throng_test_support::plain::{opus_capabilities_json, plain_consumer};
#[allow(unused_imports)]
pub use throng_test_support::{connect_node as connect, Redis};

/// Environment for a node on loopback with `workers` workers.
pub fn node_env(node_id: &str, workers: usize, redis: Option<&Redis>) -> HashMap<String, String> {
    let url = redis.map(|r| r.url());
    throng_test_support::Node::env(node_id, workers, url.as_deref())
}

/// A node running in this process.
pub struct InProcessNode {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub client: Client,
    node: throng_test_support::Node,
}

impl InProcessNode {
    pub async fn start(env: HashMap<String, String>) -> Self {
        Self::start_with(env, media_node::Hooks::none()).await
    }

    pub async fn start_with(env: HashMap<String, String>, hooks: media_node::Hooks) -> Self {
        let node = throng_test_support::Node::start_with(env, hooks).await;
        Self {
            grpc: node.grpc,
            http: node.http,
            client: node.client().await,
            node,
        }
    }

    /// SIGTERM equivalent: drain, then return how the node ended.
    pub async fn stop(self) -> Result<(), media_node::NodeError> {
        self.node.stop().await
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
