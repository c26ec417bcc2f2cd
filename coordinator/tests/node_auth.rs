//! The media nodes' gRPC token, against a real node and coordinators over
//! gRPC and WebSocket on 127.0.0.1: a node with a token refuses every call
//! without it (nothing is created), a coordinator with the token seats
//! participants, one with another token gets a clear refusal and the node
//! stays untouched.

mod common;

use common::*;
use throng_proto::media as pb;
use throng_test_support::{Coordinator, Node};

const TOKEN: &str = "node-token-for-the-test-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_token_serves_only_callers_that_send_it() {
    let mut env = Node::env("node-1", 1, None);
    env.insert("THRONG_NODE_TOKEN".into(), TOKEN.into());
    let node = Node::start(env).await;

    // No token: refused before the service runs.
    let mut raw = node.client().await;
    let e = raw
        .create_router(pb::CreateRouterRequest {
            room_id: "r".into(),
            worker_index: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert!(e.message().contains("THRONG_NODE_TOKEN"), "{e}");
    // The wrong token: refused the same way.
    let mut req = tonic::Request::new(pb::GetNodeInfoRequest {});
    req.metadata_mut().insert(
        "authorization",
        "Bearer not-the-token-not-the-token-0000000"
            .parse()
            .unwrap(),
    );
    let e = raw.get_node_info(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // The right one: served, and the refused calls created nothing.
    let mut req = tonic::Request::new(pb::GetNodeInfoRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let info = raw.get_node_info(req).await.unwrap().into_inner();
    assert_eq!(info.workers.iter().map(|w| w.routers).sum::<u32>(), 0);

    // A coordinator with the token polls the node and seats a participant.
    let mut cenv = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    cenv.insert("THRONG_NODE_TOKEN".into(), TOKEN.into());
    let good = Coordinator::start(cenv).await;
    good.wait_for_nodes(1).await;
    let mut ann = Client::connect_url(&good.ws_url()).await;
    let j = ann.join("guarded", "ann", true).await;
    assert_eq!(j["type"], "joined", "{j}");

    // One with another token never sees the node: nobody is seated through it.
    let mut benv = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    benv.insert(
        "THRONG_NODE_TOKEN".into(),
        "the-wrong-node-token-0123456789abcdefgh".into(),
    );
    let bad = Coordinator::start(benv).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let nodes = admin_get(bad.http, "/admin/nodes").await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(0), "{nodes}");
    let mut bob = Client::connect_url(&bad.ws_url()).await;
    let e = bob.join("guarded-too", "bob", true).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "unavailable", "{e}");
}
