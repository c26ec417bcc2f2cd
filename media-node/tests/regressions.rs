//! Regression tests for defects a review of the node's object registry found,
//! each reproduced with a test hook at the race window (real workers, real
//! gRPC on 127.0.0.1):
//! - an ingest whose second producer fails left its two transports behind;
//! - a close landing between creating an object and registering it left a
//!   dead entry (the close handler was subscribed before the insert);
//! - a mediasoup callback that upgraded a weak reference to the registry could
//!   end up holding the last one at shutdown and drop every handle inside
//!   mediasoup's dispatch (a deadlock); callbacks now hold channel senders
//!   only, and the last reference going while a callback runs frees the
//!   objects outside it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use media_node::config::NodeConfig;
use media_node::media::events::HOOK_IN_CALLBACK;
use media_node::media::ingest::{PlainSrtp, HOOK_INGEST_VIDEO};
use media_node::media::webrtc::HOOK_BEFORE_REGISTER;
use media_node::media::Rooms;
use media_node::node::{NodeIdentity, NodeState};
use media_node::workers::{NodeWorker, WorkerPool};
use media_node::Hooks;
use mediasoup::prelude::Transport;
use throng_proto::media as pb;
use tonic::Code;

async fn totals(client: &mut Client) -> (u32, u32, u32, u32) {
    let info = client
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    throng_test_support::node_totals(&info)
}

/// Waits until the node's counts are `want` (close events run asynchronously).
async fn counts_become(client: &mut Client, want: (u32, u32, u32, u32)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = totals(client).await;
        if t == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counts stayed {t:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn router(client: &mut Client, room: &str) -> String {
    client
        .create_router(pb::CreateRouterRequest {
            room_id: room.into(),
            worker_index: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .router_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_whose_video_producer_fails_leaves_nothing_behind() {
    let hooks = Hooks::enabled();
    let node = InProcessNode::start_with(node_env("ingest-fail", 1, None), hooks.clone()).await;
    let mut client = node.client.clone();
    let router_id = router(&mut client, "feed-room").await;
    hooks.fail_at(HOOK_INGEST_VIDEO, 1);
    let err = client
        .create_ingest(pb::CreateIngestRequest {
            router_id: router_id.clone(),
            participant_id: "feed".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    // Only the router is left: no transport, and no audio producer.
    counts_become(&mut client, (1, 0, 0, 0)).await;
    // The same ingest succeeds once nothing fails.
    let ok = client
        .create_ingest(pb::CreateIngestRequest {
            router_id,
            participant_id: "feed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(ok.audio_port, ok.video_port);
    counts_become(&mut client, (1, 2, 2, 0)).await;
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_closed_while_its_transport_is_being_created_leaves_no_dead_entry() {
    let hooks = Hooks::enabled();
    let node = InProcessNode::start_with(node_env("close-race", 1, None), hooks.clone()).await;
    let mut client = node.client.clone();
    let router_id = router(&mut client, "race-room").await;
    let gate = hooks.pause_at(HOOK_BEFORE_REGISTER);
    let mut creator = client.clone();
    let r = router_id.clone();
    let create = tokio::spawn(async move {
        creator
            .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                router_id: r,
                participant_id: "late".into(),
                producing: false,
                ..Default::default()
            })
            .await
    });
    assert!(
        gate.reached(1, Duration::from_secs(5)).await,
        "the transport creation never reached registration"
    );
    // The transport exists in mediasoup and is not registered yet: close its
    // router now, as a leaving room would.
    client
        .close_router(pb::CloseRouterRequest {
            router_id: router_id.clone(),
        })
        .await
        .unwrap();
    gate.open();
    let created = create.await.unwrap();
    assert_eq!(
        created.as_ref().map_err(|s| s.code()).err(),
        Some(Code::NotFound),
        "a transport of a closed router is refused: {created:?}"
    );
    counts_become(&mut client, (0, 0, 0, 0)).await;
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_reference_to_the_nodes_objects_never_ends_in_a_mediasoup_callback() {
    // The node's objects driven directly (no gRPC server holding them): a
    // consumer whose producer closes runs its producer-close handler inside
    // mediasoup's dispatch, which the hook holds there.
    let hooks = Hooks::enabled();
    let config = NodeConfig::from_env(&node_env("callback-drop", 1, None)).unwrap();
    let (died_tx, _died_rx) = tokio::sync::mpsc::unbounded_channel();
    let pool = WorkerPool::start(&config, died_tx).await.unwrap();
    let workers: Arc<[NodeWorker]> = pool.workers().to_vec().into();
    let node = Arc::new(NodeState::new(NodeIdentity {
        node_id: "callback-drop".into(),
        grpc_address: "127.0.0.1:1".into(),
        announced_address: "127.0.0.1".into(),
    }));
    let rooms = Rooms::new(
        workers,
        node,
        config.rtc_listen_ip,
        None,
        config.key_frame_request_delay_ms,
        hooks.clone(),
    );
    let router = rooms.create_router("cb-room", 0).await.unwrap();
    let ingest = rooms.create_ingest(router.id(), "feed").await.unwrap();
    let sink = RtpSink::bind().await;
    let viewer = rooms
        .create_plain_transport(router.id(), "viewer", false, PlainSrtp::Off)
        .await
        .unwrap();
    rooms
        .connect_plain_transport(viewer.id(), sink.addr().ip(), sink.addr().port(), None)
        .await
        .unwrap();
    let caps = serde_json::from_str(&opus_capabilities_json()).unwrap();
    let consumer = rooms
        .consume(viewer.id(), ingest.audio_producer, caps)
        .await
        .unwrap();
    let audio = ingest.audio_producer;
    // Only the node's own objects hold handles from here on.
    drop((router, ingest, viewer, consumer));

    let gate = hooks.pause_at(HOOK_IN_CALLBACK);
    rooms.close_producer(audio).unwrap();
    assert!(
        gate.reached(1, Duration::from_secs(5)).await,
        "the consumer's producer-close handler never ran"
    );
    // The last outside reference goes while the handler is held. Whatever the
    // handler holds must not be the node's objects: then they are dropped
    // here, not inside mediasoup's dispatch when the handler returns (which
    // deadlocks on the lock that dispatches it).
    let weak = Arc::downgrade(&rooms);
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(rooms);
        let _ = dropped_tx.send(());
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.open();
    tokio::task::spawn_blocking(move || {
        dropped_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("dropping the node's objects did not finish")
    })
    .await
    .unwrap();
    assert!(
        weak.upgrade().is_none(),
        "a callback still holds the node's objects"
    );
    // And the workers exit: nothing was left holding mediasoup's dispatch.
    let (exited_tx, exited_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool);
        let _ = exited_tx.send(());
    });
    tokio::task::spawn_blocking(move || {
        exited_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the workers did not exit")
    })
    .await
    .unwrap();
}
