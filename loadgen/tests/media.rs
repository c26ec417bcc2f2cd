//! The load generator's WebRTC participants against a real cluster (media node
//! with a mediasoup worker, coordinator, signalling over WebSocket, media over
//! DTLS-SRTP on 127.0.0.1): one str0m sender with the ffmpeg source, one str0m
//! receiver consuming both of its producers, packets counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use coordinator::auth::TokenKey;
use coordinator::config::{vars as cvars, CoordinatorConfig};
use loadgen::participant::Participant;
use loadgen::source::Source;
use media_node::config::{vars as nvars, NodeConfig};

const SECRET: &str = "loadgen-test-secret-loadgen-test-secret";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A free UDP+TCP port for one worker.
fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        drop(u);
        if port > 10000 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

async fn cluster() -> String {
    let env: HashMap<String, String> = [
        (nvars::NODE_ID, "node-1".to_string()),
        (nvars::WORKERS, "1".into()),
        (nvars::RTC_LISTEN_IP, "127.0.0.1".into()),
        (nvars::RTC_BASE_PORT, free_port().to_string()),
        (nvars::GRPC_LISTEN, "127.0.0.1:0".into()),
        (nvars::HTTP_LISTEN, "127.0.0.1:0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(media_node::run(
        NodeConfig::from_env(&env).unwrap(),
        std::future::pending(),
        move |b| {
            let _ = ready_tx.send(b);
        },
    ));
    let grpc = ready_rx.await.unwrap().grpc;
    let env: HashMap<String, String> = [
        (cvars::LISTEN, "127.0.0.1:0".to_string()),
        (cvars::MEDIA_NODES, grpc.to_string()),
        (cvars::TOKEN_SECRET, SECRET.into()),
        (cvars::API_KEY, SECRET.into()),
        (cvars::ADMIN_KEY, SECRET.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(coordinator::run(
        CoordinatorConfig::from_env(&env).unwrap(),
        std::future::pending(),
        move |a| {
            let _ = ready_tx.send(a);
        },
    ));
    let http = ready_rx.await.unwrap();
    // The in-memory registry learns about the node within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    format!("ws://{http}/ws")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_str0m_sender_reaches_a_str0m_receiver_through_the_cluster() {
    let url = cluster().await;
    let key = TokenKey::new(SECRET.as_bytes());
    let source = Source::start(640, 360, 30, 500).await.expect("ffmpeg");
    let limit = Duration::from_secs(30);
    let token = key.mint("r", "alice", true, 600);
    let mut alice = Participant::join(&url, &token, "r", "Alice", LOOPBACK, limit)
        .await
        .expect("alice joins");
    let producers = alice.send(&source, 1000).await.expect("alice sends");
    assert_eq!(producers.len(), 2);
    let token = key.mint("r", "bob", true, 600);
    let mut bob = Participant::join(&url, &token, "r", "Bob", LOOPBACK, limit)
        .await
        .expect("bob joins");
    for p in &producers {
        bob.consume(p).await.expect("bob consumes");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = bob.received().unwrap().lock().unwrap().clone();
    let by_kind = |k: &str| {
        stats
            .values()
            .filter(|s| s.kind == k)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (audio, video) = (by_kind("audio"), by_kind("video"));
    eprintln!("audio {audio:?}\nvideo {video:?}");
    assert_eq!(audio.len(), 1, "{stats:?}");
    assert!(
        audio[0].packets > 120,
        "audio packets: {}",
        audio[0].packets
    );
    assert!(
        !video.is_empty() && video[0].packets > 60,
        "video: {video:?}"
    );
    assert!(
        audio[0].lost() + video[0].lost() < 10,
        "loss: {audio:?} {video:?}"
    );
    alice.leave();
    bob.leave();
}
