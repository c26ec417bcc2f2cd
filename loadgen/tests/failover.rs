//! Faults under participants that all send and receive real media (str0m
//! over DTLS-SRTP on 127.0.0.1), `loadgen node-kill`'s participants
//! re-joining as the web client does when told to:
//!
//! - a media node SIGKILLed mid-call (two media node processes reporting to a
//!   real Redis, a coordinator): every affected participant receives every
//!   sender again, within the 5 s, and the coordinator tells them
//!   within a second (the node's port refuses once its process is gone: no
//!   waiting for its report to expire);
//! - redis-server SIGKILLed and restarted empty 3 s later: nobody is sent
//!   away and nobody's media stops.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use coordinator::auth::TokenKey;
use loadgen::failover::{node_kill, under_fault, Fault, NodeKillArgs};
use loadgen::source::SourceSpec;
use media_node::config::vars as nvars;
use throng_test_support::{free_tcp_port, Coordinator, Node, Redis, ADMIN_KEY, SECRET};

/// The media-node binary beside this package's (the workspace builds both).
fn media_node_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_loadgen")).with_file_name("media-node");
    assert!(
        bin.exists(),
        "{} missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// A media node process `id` of one worker reporting to `redis`.
async fn node_process(id: &str, redis: &Redis) -> (tokio::process::Child, String) {
    let grpc = format!("127.0.0.1:{}", free_tcp_port());
    let mut env = Node::env(id, 1, Some(&redis.url()));
    env.insert(nvars::GRPC_LISTEN.into(), grpc.clone());
    let child = tokio::process::Command::new(media_node_binary())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a media node process");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&grpc).await.is_ok() {
            return (child, grpc);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("media node {id} never listened on {grpc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_killed_mid_call_every_participant_gets_media_again_within_5_s() {
    let redis = Redis::start();
    let (n1, a1) = node_process("node-1", &redis).await;
    let (n2, a2) = node_process("node-2", &redis).await;
    let coordinator =
        Coordinator::start(Coordinator::env(&[a1, a2], 1500, Some(&redis.url()))).await;
    coordinator.wait_for_nodes(2).await;
    let key = TokenKey::new(SECRET.as_bytes());
    let args = NodeKillArgs {
        // Three rooms of three: the rooms spread over both nodes.
        rooms: 3,
        per_room: 3,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        // Light media: the suite runs browsers and other tests on the same two cores.
        source: SourceSpec::LIGHT,
        nodes: vec![
            ("node-1".into(), n1.id().expect("pid")),
            ("node-2".into(), n2.id().expect("pid")),
        ],
        watch: Duration::from_secs(8),
    };
    let r = node_kill(
        &args,
        &coordinator.ws_url(),
        &format!("http://{}", coordinator.http),
        ADMIN_KEY,
        |room: &str, id: &str| key.mint(room, id, true, 600),
    )
    .await
    .expect("node-kill runs");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(
        r.on_killed_node >= 3,
        "a room lived on the killed node: {r:?}"
    );
    assert!(r.affected >= r.on_killed_node, "{r:?}");
    assert_eq!(r.not_recovered, 0, "everyone hears everyone again: {r:?}");
    assert!(
        r.rejoins >= r.on_killed_node,
        "those on it joined again: {r:?}"
    );
    assert!(
        r.told_after[3] < 1.0,
        "told to reconnect within a second of the kill (not after the report's TTL): {r:?}"
    );
    assert!(
        r.interruption[3] < 5.0,
        "every affected participant has media again within 5 s: {r:?}"
    );
    assert!(
        r.untouched_max < 1.0,
        "rooms on the other node were not interrupted: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_a_call_stops_nobodys_media() {
    let redis = Redis::start();
    let url = redis.url();
    let node = Node::start(Node::env("node-1", 1, Some(&url))).await;
    let coordinator =
        Coordinator::start(Coordinator::env(&[node.grpc.to_string()], 1500, Some(&url))).await;
    coordinator.wait_for_nodes(1).await;
    let key = TokenKey::new(SECRET.as_bytes());
    let args = NodeKillArgs {
        rooms: 2,
        per_room: 3,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        source: SourceSpec::LIGHT,
        nodes: Vec::new(),
        watch: Duration::from_secs(4),
    };
    // Killed, away 3 s, back empty; kept until the end of the test.
    let held = std::sync::Arc::new(std::sync::Mutex::new(None));
    let restart = {
        let held = held.clone();
        Fault::Other(Box::pin(async move {
            let mut redis = redis;
            let redis = tokio::task::spawn_blocking(move || {
                redis.restart(Duration::from_secs(3));
                redis
            })
            .await
            .expect("restart");
            *held.lock().unwrap() = Some(redis);
        }))
    };
    let r = under_fault(
        &args,
        &coordinator.ws_url(),
        &format!("http://{}", coordinator.http),
        ADMIN_KEY,
        |room: &str, id: &str| key.mint(room, id, true, 600),
        restart,
    )
    .await
    .expect("the call runs");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r.affected, 6, "{r:?}");
    assert_eq!(r.rejoins, 0, "nobody was sent away: {r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(r.not_recovered, 0, "{r:?}");
    assert!(
        r.interruption[3] < 1.0,
        "nobody's media stopped (longest gap {} s): {r:?}",
        r.interruption[3]
    );
    drop(held);
}
