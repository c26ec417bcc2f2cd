//! `/metrics` of a coordinator and its two media nodes after a scripted
//! session (joins, a spill to the other node, a leave, a refused join),
//! parsed by a Prometheus text parser: the counters and gauges hold what the
//! session implies. The key is required on the coordinator's public address
//! and not on its internal metrics address.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use throng_test_support::metrics::{http_get, scrape, sum, value, Scrape};
use throng_test_support::{free_tcp_port, Coordinator, Node};

fn admin_header() -> String {
    format!("x-admin-key: {ADMIN_KEY}\r\n")
}

fn v(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// Scrapes until `check` holds (gauges follow reports and closes within a second or two).
async fn scrape_until(addr: SocketAddr, headers: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = scrape(addr, headers).await;
    for _ in 0..60 {
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = scrape(addr, headers).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_both_services_follow_a_scripted_session() {
    let n1 = Node::start(Node::env("node-1", 1, None)).await;
    let n2 = Node::start(Node::env("node-2", 1, None)).await;
    let nodes = vec![n1.grpc.to_string(), n2.grpc.to_string()];
    let internal: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    // Two participants (26 units each) per worker: the third spills to node-2.
    let mut env = Coordinator::env(&nodes, 60, None);
    env.insert("THRONG_METRICS_LISTEN".into(), internal.to_string());
    let coord = Coordinator::start(env).await;
    coord.wait_for_nodes(2).await;
    let cluster = Cluster {
        url: coord.ws_url(),
        http: coord.http,
        node_stops: Vec::new(),
        coord_stop: None,
    };

    // Refused without the key, served with it (header or bearer token).
    let (status, _) = http_get(coord.http, "/metrics", "").await;
    assert_eq!(status, 401, "/metrics without the admin key");
    let (status, _) = http_get(coord.http, "/metrics", "x-admin-key: wrong\r\n").await;
    assert_eq!(status, 401, "/metrics with a wrong key");
    let (status, _) = http_get(
        coord.http,
        "/metrics",
        &format!("Authorization: Bearer {ADMIN_KEY}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "/metrics with the key as a bearer token");

    let mut a = Client::connect(&cluster).await;
    assert_eq!(a.join("m", "a", true).await["type"], "joined");
    publish_audio(&mut a, 1111).await;
    let mut b = Client::connect(&cluster).await;
    assert_eq!(b.join("m", "b", true).await["type"], "joined");
    let mut c = Client::connect(&cluster).await;
    assert_eq!(c.join("m", "c", true).await["type"], "joined");
    let mut refused = Client::connect(&cluster).await;
    let bad = refused
        .request(json!({"type": "join", "room": "m", "displayName": "x", "token": "not-a-token"}))
        .await;
    assert_eq!(bad["code"], "unauthorized", "{bad}");
    let left = b.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "response", "{left}");
    drop(b);
    drop(refused);

    let s = scrape_until(coord.http, &admin_header(), |s| {
        value(s, "throng_participants", &[]) == Some(2.0)
            && value(s, "throng_websocket_sessions", &[]) == Some(2.0)
            && value(s, "throng_worker_reserved_units", &[("node", "node-1")]) == Some(26.0)
            // The routers as the nodes report them (read every second).
            && sum(s, "throng_worker_routers", &[]) == 2.0
    })
    .await;
    assert_eq!(v(&s, "throng_joins_total", &[("outcome", "admitted")]), 3.0);
    assert_eq!(
        v(&s, "throng_joins_total", &[("outcome", "unauthorized")]),
        1.0
    );
    assert_eq!(
        v(&s, "throng_join_duration_seconds", &[]),
        3.0,
        "one observation per admitted join"
    );
    assert_eq!(v(&s, "throng_queue_wait_seconds", &[]), 3.0);
    assert_eq!(v(&s, "throng_placements_total", &[("kind", "first")]), 1.0);
    assert_eq!(
        v(&s, "throng_placements_total", &[("kind", "existing")]),
        1.0
    );
    assert_eq!(
        v(
            &s,
            "throng_placements_total",
            &[("kind", "spill_other_node")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "throng_placements_total",
            &[("kind", "spill_same_node")]
        ),
        Some(0.0)
    );
    assert_eq!(
        v(&s, "throng_pipes_total", &[("kind", "cross_node")]),
        1.0,
        "a's microphone piped to node-2"
    );
    assert_eq!(v(&s, "throng_participants", &[]), 2.0, "b left");
    assert_eq!(v(&s, "throng_rooms", &[]), 1.0);
    assert_eq!(v(&s, "throng_websocket_sessions", &[]), 2.0);
    // In: a's join, createTransport and produce; b's join and leave; c's
    // join; the refused join.
    let ws = |d| v(&s, "throng_websocket_messages_total", &[("direction", d)]);
    assert_eq!(ws("in"), 7.0);
    // Out: four welcomes and seven answers at least, plus queue positions and
    // presence events.
    assert!(ws("out") >= 11.0, "{}", ws("out"));
    assert_eq!(v(&s, "throng_queue_length", &[]), 0.0);
    assert_eq!(v(&s, "throng_nodes", &[("state", "serving")]), 2.0);
    for node in ["node-1", "node-2"] {
        let w = [("node", node), ("worker", "0")];
        assert_eq!(v(&s, "throng_worker_capacity_units", &w), 60.0);
        assert_eq!(
            v(&s, "throng_worker_reserved_units", &w),
            26.0,
            "{node}: one participant each"
        );
        assert_eq!(v(&s, "throng_worker_routers", &w), 1.0, "{node}");
    }
    assert_eq!(
        v(
            &s,
            "throng_node_rpc_duration_seconds",
            &[("method", "CreateRouter")]
        ),
        2.0,
        "one router per node"
    );
    assert_eq!(
        v(
            &s,
            "throng_node_rpc_duration_seconds",
            &[("method", "Produce")]
        ),
        1.0
    );
    assert_eq!(sum(&s, "throng_node_rpc_errors_total", &[]), 0.0);
    assert_eq!(sum(&s, "throng_reconnects_total", &[]), 0.0);
    assert_eq!(sum(&s, "throng_registry_errors_total", &[]), 0.0);

    // The internal address serves the same without a key.
    let open = scrape(internal, "").await;
    assert_eq!(
        v(&open, "throng_joins_total", &[("outcome", "admitted")]),
        3.0
    );

    // The nodes: what each holds, and the calls each handled.
    let s1 = scrape_until(n1.http, "", |s| {
        value(s, "throng_media_stats_sweeps_total", &[]).is_some()
    })
    .await;
    let s2 = scrape(n2.http, "").await;
    let w0 = [("worker", "0")];
    assert_eq!(v(&s1, "throng_media_worker_routers", &w0), 1.0);
    assert_eq!(v(&s2, "throng_media_worker_routers", &w0), 1.0);
    assert_eq!(v(&s1, "throng_media_worker_pipe_transports", &w0), 1.0);
    assert_eq!(v(&s2, "throng_media_worker_pipe_transports", &w0), 1.0);
    assert_eq!(v(&s1, "throng_media_worker_piped_producers", &w0), 0.0);
    assert_eq!(
        v(&s2, "throng_media_worker_piped_producers", &w0),
        1.0,
        "a's microphone, piped in"
    );
    assert_eq!(
        v(
            &s1,
            "throng_rpc_server_duration_seconds",
            &[("method", "CreateRouter")]
        ),
        1.0
    );
    assert_eq!(
        v(
            &s2,
            "throng_rpc_server_duration_seconds",
            &[("method", "CreateRouter")]
        ),
        1.0
    );
    assert_eq!(
        v(
            &s1,
            "throng_rpc_server_duration_seconds",
            &[("method", "Produce")]
        ),
        1.0
    );
    assert_eq!(v(&s1, "throng_media_node_draining", &[]), 0.0);
    assert!(value(&s1, "throng_media_worker_cpu_ratio", &w0).is_some());

    // A failed call is counted by method and gRPC code: closing a consumer
    // the node does not have.
    let mut rpc = n1.client().await;
    let gone = rpc
        .close_consumer(throng_proto::media::ConsumerRequest {
            consumer_id: uuid_like(),
        })
        .await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    let s1 = scrape(n1.http, "").await;
    assert_eq!(
        v(
            &s1,
            "throng_rpc_server_errors_total",
            &[("method", "CloseConsumer"), ("code", "NotFound")]
        ),
        1.0
    );

    // Every family the Grafana dashboard queries is one these services export.
    let (_, coord_text) = http_get(coord.http, "/metrics", &admin_header()).await;
    let (_, node_text) = http_get(n1.http, "/metrics", "").await;
    let exported: std::collections::HashSet<&str> = coord_text
        .lines()
        .chain(node_text.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../helm/throng/dashboards/throng.json"),
    )
    .unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for (i, _) in dashboard.match_indices("throng_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        queried.insert(family);
    }
    assert!(queried.len() >= 20, "{queried:?}");
    // Failed node calls by (method, code) have no series before the first
    // failure (the node's own counterpart is checked above).
    let not_yet = ["throng_node_rpc_errors_total"];
    for family in &queried {
        assert!(
            exported.contains(family.as_str()) || not_yet.contains(&family.as_str()),
            "the dashboard queries {family}, which nothing exports"
        );
    }
    drop(a);
    drop(c);
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}
