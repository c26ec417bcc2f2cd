//! One join is one trace across both services: the coordinator and a media
//! node run as two processes (the real binaries), exporting over OTLP/gRPC
//! to a receiver this test runs (opentelemetry-proto's TraceService, keeping
//! each span with its resource's `service.name`). After a join, a transport
//! and a leave, both are stopped (SIGTERM flushes their spans) and the trace
//! is checked: one root (the coordinator's `join`), every parent inside the
//! trace, the node's spans parented by the coordinator's client spans, and
//! none of the join's work in another trace.
mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use throng_test_support::{free_port_block, free_tcp_port};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

fn media_node_binary() -> PathBuf {
    let bin = PathBuf::from(COORDINATOR).with_file_name("media-node");
    assert!(
        bin.exists(),
        "{} not built (cargo build --workspace)",
        bin.display()
    );
    bin
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    kept.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A child process stopped (SIGTERM) when the test ends, if still running.
struct Proc(tokio::process::Child);

impl Proc {
    async fn terminate(&mut self) {
        if let Some(pid) = self.0.id() {
            throng_ops::terminate(pid as i32).expect("SIGTERM");
        }
        let status = tokio::time::timeout(Duration::from_secs(20), self.0.wait())
            .await
            .expect("stops after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

fn spawn(bin: &std::path::Path, env: &[(&str, String)]) -> Proc {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Quiet logs: spans are exported whatever RUST_LOG says.
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    Proc(cmd.spawn().expect("spawn"))
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

async fn wait_http_ok(port: u16, path: &str) {
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("127.0.0.1:{port}{path} never answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_join_is_one_trace_from_the_websocket_to_the_worker() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
            ("OTEL_SERVICE_NAME", service.to_string()),
        ]
    };

    let (grpc, node_http, coord_http) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let mut node_env = otel("node-under-test");
    node_env.extend([
        ("THRONG_NODE_ID", "node-1".to_string()),
        ("THRONG_WORKERS", "1".to_string()),
        ("THRONG_RTC_LISTEN_IP", "127.0.0.1".to_string()),
        ("THRONG_RTC_BASE_PORT", free_port_block(1).to_string()),
        ("THRONG_GRPC_LISTEN", format!("127.0.0.1:{grpc}")),
        ("THRONG_HTTP_LISTEN", format!("127.0.0.1:{node_http}")),
        ("THRONG_DRAIN_GRACE_SECS", "1".to_string()),
    ]);
    let mut node = spawn(&media_node_binary(), &node_env);
    wait_http_ok(node_http, "/healthz").await;

    let mut coord_env = otel("coordinator-under-test");
    coord_env.extend([
        ("THRONG_LISTEN", format!("127.0.0.1:{coord_http}")),
        ("THRONG_MEDIA_NODES", format!("127.0.0.1:{grpc}")),
        ("THRONG_TOKEN_SECRET", SECRET.to_string()),
        ("THRONG_API_KEY", API_KEY.to_string()),
        ("THRONG_ADMIN_KEY", ADMIN_KEY.to_string()),
        ("THRONG_DRAIN_GRACE_SECS", "1".to_string()),
    ]);
    let mut coord = spawn(std::path::Path::new(COORDINATOR), &coord_env);
    wait_http_ok(coord_http, "/readyz").await;

    let mut client = Client::connect_url(&format!("ws://127.0.0.1:{coord_http}/ws")).await;
    let joined = client.join("traced", "alice", true).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let t = client
        .request(json!({"type": "createTransport", "direction": "send"}))
        .await;
    assert_eq!(t["type"], "response", "{t}");
    let left = client.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "response", "{left}");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    coord.terminate().await;
    node.terminate().await;
    server.abort();

    let spans = receiver.0.lock().unwrap().clone();
    let named = |name: &str| -> Vec<&(String, Span)> {
        spans.iter().filter(|(_, s)| s.name == name).collect()
    };
    let joins = named("join");
    assert_eq!(joins.len(), 1, "one join span: {:?}", names(&spans));
    let (service, join) = joins[0];
    assert_eq!(service, "coordinator-under-test");
    assert!(join.parent_span_id.is_empty(), "the join is the root");
    assert_eq!(attr(join, "room"), Some("traced"));
    assert_eq!(attr(join, "participant"), Some("alice"));
    assert_eq!(attr(join, "outcome"), Some("admitted"));
    let trace = join.trace_id.clone();

    let in_trace: Vec<&(String, Span)> =
        spans.iter().filter(|(_, s)| s.trace_id == trace).collect();
    let ids: HashSet<&[u8]> = in_trace.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let roots: Vec<_> = in_trace
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one root: {:?}",
        names(&in_trace.iter().map(|x| (*x).clone()).collect::<Vec<_>>())
    );
    for (svc, s) in &in_trace {
        assert!(
            s.parent_span_id.is_empty() || ids.contains(s.parent_span_id.as_slice()),
            "{svc} span {} has a parent outside the trace",
            s.name
        );
    }
    let by_id: HashMap<&[u8], &(String, Span)> = in_trace
        .iter()
        .map(|x| (x.1.span_id.as_slice(), *x))
        .collect();

    // The join's steps, each in this trace.
    let step_names: HashSet<&str> = in_trace.iter().map(|(_, s)| s.name.as_str()).collect();
    for step in [
        "queue.wait",
        "room.join",
        "placement.reserve",
        "router.create",
        "createTransport",
        "leave",
    ] {
        assert!(
            step_names.contains(step),
            "{step} missing from the trace: {step_names:?}"
        );
    }
    // The node's side: its server spans hang off the coordinator's client spans.
    let node_spans: Vec<_> = in_trace
        .iter()
        .filter(|(svc, _)| svc == "node-under-test")
        .collect();
    let node_methods: HashSet<&str> = node_spans.iter().map(|(_, s)| s.name.as_str()).collect();
    for m in [
        "node.CreateRouter",
        "node.CreateWebRtcTransport",
        "node.CloseParticipant",
    ] {
        assert!(
            node_methods.contains(m),
            "{m} missing on the node: {node_methods:?}"
        );
    }
    for (_, s) in &node_spans {
        if attr(s, "rpc.system") != Some("grpc") {
            continue;
        }
        let (parent_svc, parent) = by_id[s.parent_span_id.as_slice()];
        assert_eq!(parent_svc, "coordinator-under-test", "{}", s.name);
        assert_eq!(
            parent.name, s.name,
            "the node's {} is the child of the coordinator's call",
            s.name
        );
        assert_eq!(parent.kind, 3, "client span");
        assert_eq!(s.kind, 2, "server span");
    }
    // Nothing of the join elsewhere.
    for step in [
        "queue.wait",
        "room.join",
        "placement.reserve",
        "router.create",
        "node.CreateRouter",
        "node.CreateWebRtcTransport",
    ] {
        for (svc, s) in named(step) {
            assert_eq!(s.trace_id, trace, "{svc} {step} in another trace");
        }
    }
}

fn names(spans: &[(String, Span)]) -> Vec<String> {
    spans
        .iter()
        .map(|(svc, s)| format!("{svc}:{}", s.name))
        .collect()
}
