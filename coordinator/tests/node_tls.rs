//! TLS between coordinators and media nodes, against a real node and
//! coordinators over gRPC and WebSocket on 127.0.0.1, with certificates this
//! test makes with `openssl`: a node serving TLS with a client CA (mutual
//! TLS) is driven by a coordinator holding a certificate of that CA, and by
//! nobody else: not a plain-gRPC caller, not a TLS caller without a
//! certificate or with one of another CA, not a coordinator checking the
//! node for a name its certificate lacks. The configuration refuses a key
//! that is not the certificate's before anything starts.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use throng_ops::grpc_tls as vars;
use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use throng_test_support::tls::{Ca, Issued};
use throng_test_support::{Coordinator, Node};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A raw TLS gRPC call to the node: GetNodeInfo, with `identity` if given,
/// checking the node for `name`.
async fn call(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<&Issued>,
    name: &str,
) -> Result<pb::NodeInfo, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name(name);
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&id.cert).unwrap(),
            std::fs::read(&id.key).unwrap(),
        ));
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    MediaNodeClient::new(channel)
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("{e:?}"))
}

fn coordinator_env(
    node: &Node,
    ca: Option<&Path>,
    id: Option<&Issued>,
    name: &str,
) -> HashMap<String, String> {
    let mut env = Coordinator::env(&[node.grpc.to_string()], 1500, None);
    if let Some(ca) = ca {
        env.insert(vars::NODE_TLS_CA_FILE.into(), path(ca));
        env.insert(vars::NODE_TLS_SERVER_NAME.into(), name.into());
    }
    if let Some(id) = id {
        env.insert(vars::NODE_TLS_CERT_FILE.into(), path(&id.cert));
        env.insert(vars::NODE_TLS_KEY_FILE.into(), path(&id.key));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_mutual_tls_serves_only_coordinators_holding_a_certificate_of_its_ca() {
    let tmp = throng_test_support::TempDir::new("node-tls");
    let dir = tmp.path();
    let ca = Ca::new(dir, "ca");
    let node_cert = ca.issue("node", &["DNS:media-node"]);
    let coordinator_cert = ca.issue("coordinator", &["DNS:coordinator"]);
    let other = Ca::new(dir, "other-ca");
    let rogue = other.issue("rogue", &["DNS:coordinator"]);

    let mut env = Node::env("node-1", 1, None);
    env.insert(vars::GRPC_TLS_CERT_FILE.into(), path(&node_cert.cert));
    env.insert(vars::GRPC_TLS_KEY_FILE.into(), path(&node_cert.key));
    env.insert(vars::GRPC_TLS_CLIENT_CA_FILE.into(), path(&ca.pem()));
    let node = Node::start(env).await;

    // Raw callers: only TLS with a certificate of the node's CA is served.
    let info = call(node.grpc, &ca.pem(), Some(&coordinator_cert), "media-node")
        .await
        .expect("a certificate of the node's CA is served");
    assert_eq!(info.node_id, "node-1");
    let e = call(node.grpc, &ca.pem(), None, "media-node")
        .await
        .expect_err("no client certificate");
    eprintln!("without a certificate: {e}");
    let e = call(node.grpc, &ca.pem(), Some(&rogue), "media-node")
        .await
        .expect_err("a certificate of another CA");
    eprintln!("another CA's certificate: {e}");
    let e = call(
        node.grpc,
        &ca.pem(),
        Some(&coordinator_cert),
        "not-the-node",
    )
    .await
    .expect_err("a node certificate without the name asked for");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let plain = Endpoint::from_shared(format!("http://{}", node.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let e = MediaNodeClient::new(channel)
            .get_node_info(pb::GetNodeInfoRequest {})
            .await
            .expect_err("plain gRPC to a TLS port");
        eprintln!("plain gRPC: {e}");
    }

    // A coordinator with its certificate seats a participant whose
    // transport and producer are made on the node over TLS.
    let good = Coordinator::start(coordinator_env(
        &node,
        Some(&ca.pem()),
        Some(&coordinator_cert),
        "media-node",
    ))
    .await;
    good.wait_for_nodes(1).await;
    let mut ann = Client::connect_url(&good.ws_url()).await;
    let j = ann.join("sealed", "ann", true).await;
    assert_eq!(j["type"], "joined", "{j}");
    let producer = publish_audio(&mut ann, 7171).await;
    assert!(!producer.is_empty());
    let info = call(node.grpc, &ca.pem(), Some(&coordinator_cert), "media-node")
        .await
        .unwrap();
    assert_eq!(throng_test_support::node_totals(&info), (1, 1, 1, 0));

    // Coordinators that cannot pass never list the node; their joins get
    // `unavailable`, and the node holds only ann's objects.
    let refused = [
        ("plain gRPC", coordinator_env(&node, None, None, "")),
        (
            "TLS without a certificate",
            coordinator_env(&node, Some(&ca.pem()), None, "media-node"),
        ),
        (
            "another CA's certificate",
            coordinator_env(&node, Some(&ca.pem()), Some(&rogue), "media-node"),
        ),
        (
            "a name the node's certificate lacks",
            coordinator_env(&node, Some(&ca.pem()), Some(&coordinator_cert), "127.0.0.1"),
        ),
    ];
    let mut started = Vec::new();
    for (what, env) in refused {
        started.push((what, Coordinator::start(env).await));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    futures::future::join_all(started.iter().map(|(what, c)| async move {
        let nodes = admin_get(c.http, "/admin/nodes").await;
        assert_eq!(
            nodes["nodes"].as_array().map(Vec::len),
            Some(0),
            "{what}: {nodes}"
        );
        let mut bob = Client::connect_url(&c.ws_url()).await;
        let e = bob.join("sealed-too", "bob", true).await;
        assert_eq!(e["code"], "unavailable", "{what}: {e}");
    }))
    .await;
    let info = call(node.grpc, &ca.pem(), Some(&coordinator_cert), "media-node")
        .await
        .unwrap();
    assert_eq!(throng_test_support::node_totals(&info), (1, 1, 1, 0));
}

#[test]
fn tls_settings_are_checked_before_anything_starts() {
    let tmp = throng_test_support::TempDir::new("node-tls-config");
    let dir = tmp.path();
    let ca = Ca::new(dir, "ca");
    let a = ca.issue("a", &["DNS:media-node"]);
    let b = ca.issue("b", &["DNS:media-node"]);
    let base = |pairs: &[(&str, String)]| -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("THRONG_RTC_LISTEN_IP", "127.0.0.1".to_string()),
            ("THRONG_GRPC_LISTEN", "0.0.0.0:50051".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    };
    use media_node::config::{ConfigError, NodeConfig};
    // Beyond loopback, mutual TLS stands for the token.
    let c = NodeConfig::from_env(&base(&[
        (vars::GRPC_TLS_CERT_FILE, path(&a.cert)),
        (vars::GRPC_TLS_KEY_FILE, path(&a.key)),
        (vars::GRPC_TLS_CLIENT_CA_FILE, path(&ca.pem())),
    ]))
    .expect("mutual TLS without a token");
    assert!(c.describe().contains("callers' certificates checked"));
    assert!(!c.describe().contains("PRIVATE KEY"));
    // TLS alone does not: anyone can still connect.
    match NodeConfig::from_env(&base(&[
        (vars::GRPC_TLS_CERT_FILE, path(&a.cert)),
        (vars::GRPC_TLS_KEY_FILE, path(&a.key)),
    ])) {
        Err(ConfigError::Invalid { var, .. }) => assert_eq!(var, "THRONG_NODE_TOKEN"),
        other => panic!("{other:?}"),
    }
    // Another certificate's key.
    match NodeConfig::from_env(&base(&[
        (vars::GRPC_TLS_CERT_FILE, path(&a.cert)),
        (vars::GRPC_TLS_KEY_FILE, path(&b.key)),
        (vars::GRPC_TLS_CLIENT_CA_FILE, path(&ca.pem())),
    ])) {
        Err(ConfigError::Invalid { var, reason, .. }) => {
            assert_eq!(var, vars::GRPC_TLS_KEY_FILE, "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The coordinator's side: the same check of its certificate and key.
    let mut env = Coordinator::env(&["127.0.0.1:1".into()], 1500, None);
    env.insert(vars::NODE_TLS_CA_FILE.into(), path(&ca.pem()));
    env.insert(vars::NODE_TLS_CERT_FILE.into(), path(&a.cert));
    env.insert(vars::NODE_TLS_KEY_FILE.into(), path(&b.key));
    let e = coordinator::config::CoordinatorConfig::from_env(&env).unwrap_err();
    assert_eq!(e.var, vars::NODE_TLS_KEY_FILE, "{}", e.reason);
    env.insert(vars::NODE_TLS_KEY_FILE.into(), path(&a.key));
    let c = coordinator::config::CoordinatorConfig::from_env(&env).unwrap();
    assert!(c.describe().contains("this coordinator's certificate"));
}
