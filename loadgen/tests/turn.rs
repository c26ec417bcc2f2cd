//! The load generator's participants through a TURN relay only (a real
//! coturn on 127.0.0.1, credentials minted by the coordinator): a str0m
//! sender and a str0m receiver that reach the media node only through their
//! relayed addresses (`Participant::relay_only`), packets counted at the
//! receiver and coturn's allocations seen in its log.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use coordinator::auth::TokenKey;
use loadgen::participant::Participant;
use loadgen::source::SourceSpec;
use throng_test_support::turn::Coturn;
use throng_test_support::{Coordinator, Node, SECRET};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TURN_SECRET: &str = "loadgen-turn-secret-0123456789abcdefgh";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_participants_send_and_receive_through_a_turn_relay_only() {
    let coturn = Coturn::start(TURN_SECRET, None);
    let node = Node::start(Node::env("node-1", 1, None)).await;
    let mut env = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    env.insert(
        "THRONG_TURN_URLS".into(),
        format!("{},{}", coturn.tcp_url(), coturn.udp_url()),
    );
    env.insert("THRONG_TURN_SECRET".into(), TURN_SECRET.into());
    let coordinator = Coordinator::start(env).await;
    coordinator.wait_for_nodes(1).await;
    let url = coordinator.ws_url();
    let key = TokenKey::new(SECRET.as_bytes());
    let source = SourceSpec::LIGHT.start().await.expect("ffmpeg");
    let limit = Duration::from_secs(30);

    let mut alice = Participant::join(
        &url,
        &key.mint("r", "alice", true, 600),
        "r",
        "Alice",
        LOOPBACK,
        limit,
    )
    .await
    .expect("alice joins");
    alice.relay_only();
    let producers = alice
        .send(&source, 2000)
        .await
        .expect("alice sends through the relay");
    let mut bob = Participant::join(
        &url,
        &key.mint("r", "bob", true, 600),
        "r",
        "Bob",
        LOOPBACK,
        limit,
    )
    .await
    .expect("bob joins");
    bob.relay_only();
    for p in &producers {
        bob.consume(p)
            .await
            .expect("bob consumes through the relay");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = bob.received().unwrap().lock().unwrap().clone();
    let packets = |k: &str| -> u64 {
        stats
            .values()
            .filter(|s| s.kind == k)
            .map(|s| s.packets)
            .sum()
    };
    let (audio, video) = (packets("audio"), packets("video"));
    eprintln!("figure: through TURN/UDP only, bob received {audio} audio and {video} video packets in about 4 s");
    assert!(audio > 40 && video > 10, "{stats:?}");
    // Both went through coturn: two allocations with their credentials.
    let log = coturn.log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    assert!(allocations >= 2, "coturn allocated {allocations}:\n{log}");
    assert!(log.contains(":alice>") && log.contains(":bob>"), "{log}");
    drop((alice, bob, coordinator, node));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_receivers_are_relayed_gets_its_media_through_coturn() {
    let coturn = Coturn::start(TURN_SECRET, None);
    let node = Node::start(Node::env("node-1", 1, None)).await;
    let mut env = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    env.insert("THRONG_TURN_URLS".into(), coturn.udp_url());
    env.insert("THRONG_TURN_SECRET".into(), TURN_SECRET.into());
    let coordinator = Coordinator::start(env).await;
    coordinator.wait_for_nodes(1).await;
    let key = TokenKey::new(SECRET.as_bytes());
    let args = loadgen::scenario::RoomArgs {
        rooms: 1,
        per_room: 6,
        senders: 2,
        tiles: 12,
        window: Duration::from_secs(3),
        bind: LOOPBACK,
        node_pid: None,
        source: SourceSpec::LIGHT,
        relay: true,
    };
    let cpu_before = coturn.cpu_ms();
    let r = loadgen::scenario::rooms(&args, &coordinator.ws_url(), |room, id| {
        key.mint(room, id, true, 600)
    })
    .await
    .expect("room run");
    let cpu = coturn.cpu_ms() - cpu_before;
    eprintln!("{r:#?}");
    assert_eq!(r.errors, 0);
    assert_eq!(r.without_media, 0, "every relayed receiver got media");
    let log = coturn.log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    assert!(allocations >= 6, "one relay per receiver: {allocations}");
    eprintln!(
        "figure: 6 relayed receivers of 2 light senders: coturn used {cpu} ms of CPU over the run ({:.1} s of receiving)",
        args.window.as_secs_f64()
    );
}
