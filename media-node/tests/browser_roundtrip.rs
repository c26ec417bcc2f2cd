//! A real DTLS peer for the offline worker build: headless Chromium (fake camera
//! and microphone, mediasoup-client) sends audio and video into a
//! WebRtcTransport and consumes both back through the worker.
//!
//! Worker-to-worker SRTP (tests/srtp_pipe.rs) never runs DTLS; a crash in the
//! first DTLS handshake (the BIO callback fixed by scripts/prepare-mediasoup.sh)
//! only shows with a real peer. Needs node, e2e/node_modules and e2e/dist
//! (`npm ci && npm run build` in e2e/, done by the README's test command) and
//! /usr/bin/chromium (or $CHROMIUM).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as HttpRouter};
use mediasoup::consumer::ConsumerRtpStreamStat;
use mediasoup::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone)]
struct AppState {
    router: Router,
    bundle: Arc<String>,
    transports: Arc<Mutex<HashMap<TransportId, WebRtcTransport>>>,
    producers: Arc<Mutex<HashMap<ProducerId, Producer>>>,
    consumers: Arc<Mutex<HashMap<ConsumerId, Consumer>>>,
}

#[derive(Deserialize)]
struct RpcRequest {
    method: String,
    #[serde(default)]
    params: Value,
}

struct RpcError(String);

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

fn field<T: serde::de::DeserializeOwned>(params: &Value, name: &str) -> Result<T, RpcError> {
    serde_json::from_value(params.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| RpcError(format!("bad `{name}`: {e}")))
}

fn transport(state: &AppState, params: &Value) -> Result<WebRtcTransport, RpcError> {
    let id: TransportId = field(params, "transportId")?;
    state
        .transports
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .ok_or_else(|| RpcError(format!("unknown transport {id}")))
}

async fn rpc(
    State(state): State<AppState>,
    Json(req): Json<RpcRequest>,
) -> Result<Json<Value>, RpcError> {
    let p = &req.params;
    let reply = match req.method.as_str() {
        "routerRtpCapabilities" => json!(state.router.rtp_capabilities()),
        "createTransport" => {
            let listen = WebRtcTransportListenInfos::new(ListenInfo {
                protocol: Protocol::Udp,
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                announced_address: None,
                expose_internal_ip: false,
                port: None,
                port_range: None,
                flags: None,
                send_buffer_size: None,
                recv_buffer_size: None,
            });
            let t = state
                .router
                .create_webrtc_transport(WebRtcTransportOptions::new(listen))
                .await
                .map_err(|e| RpcError(e.to_string()))?;
            let reply = json!({
                "id": t.id(),
                "iceParameters": t.ice_parameters(),
                "iceCandidates": t.ice_candidates(),
                "dtlsParameters": t.dtls_parameters(),
            });
            state.transports.lock().unwrap().insert(t.id(), t);
            reply
        }
        "connect" => {
            let t = transport(&state, p)?;
            let dtls_parameters: DtlsParameters = field(p, "dtlsParameters")?;
            t.connect(WebRtcTransportRemoteParameters { dtls_parameters })
                .await
                .map_err(|e| RpcError(e.to_string()))?;
            json!({})
        }
        "produce" => {
            let t = transport(&state, p)?;
            let kind: MediaKind = field(p, "kind")?;
            let rtp_parameters: RtpParameters = field(p, "rtpParameters")?;
            let producer = t
                .produce(ProducerOptions::new(kind, rtp_parameters))
                .await
                .map_err(|e| RpcError(e.to_string()))?;
            let id = producer.id();
            state.producers.lock().unwrap().insert(id, producer);
            json!({ "id": id })
        }
        "consume" => {
            let t = transport(&state, p)?;
            let producer_id: ProducerId = field(p, "producerId")?;
            let rtp_capabilities: RtpCapabilities = field(p, "rtpCapabilities")?;
            let mut options = ConsumerOptions::new(producer_id, rtp_capabilities);
            options.paused = true;
            let consumer = t
                .consume(options)
                .await
                .map_err(|e| RpcError(e.to_string()))?;
            let reply = json!({
                "id": consumer.id(),
                "producerId": producer_id,
                "kind": consumer.kind(),
                "rtpParameters": consumer.rtp_parameters(),
            });
            state
                .consumers
                .lock()
                .unwrap()
                .insert(consumer.id(), consumer);
            reply
        }
        "resume" => {
            let id: ConsumerId = field(p, "consumerId")?;
            let consumer = state.consumers.lock().unwrap().get(&id).cloned();
            let consumer = consumer.ok_or_else(|| RpcError(format!("unknown consumer {id}")))?;
            consumer
                .resume()
                .await
                .map_err(|e| RpcError(e.to_string()))?;
            json!({})
        }
        other => return Err(RpcError(format!("unknown method {other}"))),
    };
    Ok(Json(reply))
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>worker round trip</title></head>
<body><script type="module" src="/worker-roundtrip.js"></script></body></html>"#;

async fn bundle(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        state.bundle.as_str().to_owned(),
    )
}

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_and_receives_audio_and_video_through_the_worker() {
    let e2e = e2e_dir();
    let bundle_path = e2e.join("dist/worker-roundtrip.js");
    let bundle_js = std::fs::read_to_string(&bundle_path).unwrap_or_else(|e| {
        panic!("{}: {e}; build it with `npm ci && npm run build` in e2e/ (the README's test command does)", bundle_path.display())
    });

    let manager = WorkerManager::new();
    let worker = manager
        .create_worker(WorkerSettings::default())
        .await
        .expect("worker");
    let router = worker
        .create_router(RouterOptions::new(media_node::media::codecs::media_codecs()))
        .await
        .expect("router");
    let state = AppState {
        router,
        bundle: Arc::new(bundle_js),
        transports: Arc::default(),
        producers: Arc::default(),
        consumers: Arc::default(),
    };
    let app = HttpRouter::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/worker-roundtrip.js", get(bundle))
        .route("/rpc", post(rpc))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let seconds = 3;
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg("worker-roundtrip/run.mjs")
            .arg(&url)
            .arg(seconds.to_string())
            .current_dir(&e2e)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("browser run timed out")
    .expect("failed to start node (is Node.js installed?)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser run failed: {}\n{stderr}",
        output.status
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "bad result from browser ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    eprintln!("browser result: {result}");
    if std::env::var_os("THRONG_CHROMIUM_LOG").is_some() {
        eprintln!("browser stderr:\n{stderr}");
    }
    // The worker's side, printed before any check so that a failure shows
    // where media stopped (producer in, consumer out, score, paused).
    let producers: Vec<Producer> = state.producers.lock().unwrap().values().cloned().collect();
    for p in producers {
        let stats = p.get_stats().await.map(|s| {
            s.iter()
                .map(|s| (s.packet_count, s.score, s.nack_count, s.pli_count))
                .collect::<Vec<_>>()
        });
        eprintln!(
            "producer {:?} paused={} (packets, score, nacks, plis): {stats:?}",
            p.kind(),
            p.paused()
        );
    }
    let consumers: Vec<Consumer> = state.consumers.lock().unwrap().values().cloned().collect();
    for c in consumers {
        let stats = c.get_stats().await.map(|s| {
            s.iter()
                .filter_map(|s| match s {
                    ConsumerRtpStreamStat::Outbound(o) => {
                        Some((o.packet_count, o.score, o.nack_count, o.pli_count))
                    }
                    ConsumerRtpStreamStat::Inbound(_) => None,
                })
                .collect::<Vec<_>>()
        });
        eprintln!(
            "consumer {:?} paused={} producer_paused={} score={:?} (packets, score, nacks, plis): {stats:?}",
            c.kind(),
            c.paused(),
            c.producer_paused(),
            c.score()
        );
    }

    let num = |path: &str| -> f64 {
        result
            .pointer(path)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {result}"))
    };
    // Both transports completed ICE + DTLS.
    assert_eq!(result["sendConnectionState"], "connected");
    assert_eq!(result["recvConnectionState"], "connected");
    assert_eq!(
        result.pointer("/last/dtlsState").and_then(Value::as_str),
        Some("connected")
    );
    let cipher = result
        .pointer("/last/srtpCipher")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        // Chromium's names for the DTLS-SRTP profiles mediasoup offers.
        [
            "SRTP_AEAD_AES_256_GCM",
            "SRTP_AEAD_AES_128_GCM",
            "SRTP_AES128_CM_SHA1_80"
        ]
        .contains(&cipher),
        "unexpected SRTP cipher {cipher:?}"
    );
    // Video came back and was decoded, and kept being decoded during the window.
    let frames_first = num("/first/inbound/video/framesDecoded");
    let frames_last = num("/last/inbound/video/framesDecoded");
    assert!(
        frames_last >= 30.0,
        "only {frames_last} video frames decoded"
    );
    assert!(
        frames_last > frames_first,
        "video frames stopped: {frames_first} -> {frames_last}"
    );
    // Audio packets came back, kept coming, and carried the fake device's beep.
    let audio_first = num("/first/inbound/audio/packetsReceived");
    let audio_last = num("/last/inbound/audio/packetsReceived");
    assert!(
        audio_last >= 100.0,
        "only {audio_last} audio packets received"
    );
    assert!(
        audio_last > audio_first,
        "audio stopped: {audio_first} -> {audio_last}"
    );
    assert!(
        num("/audioPeak") > 0.1,
        "received audio is silent: peak {}",
        num("/audioPeak")
    );
    assert_eq!(
        num("/last/inbound/audio/packetsLost"),
        0.0,
        "audio packets lost on loopback"
    );

    // The worker's own view: producers received and consumers forwarded RTP.
    let producers: Vec<Producer> = state.producers.lock().unwrap().values().cloned().collect();
    assert_eq!(producers.len(), 2);
    for producer in producers {
        let stats = producer.get_stats().await.expect("producer stats");
        let packets: u64 = stats.iter().map(|s| s.packet_count).sum();
        assert!(
            packets > 50,
            "{:?} producer received only {packets} packets",
            producer.kind()
        );
    }
    let consumers: Vec<Consumer> = state.consumers.lock().unwrap().values().cloned().collect();
    assert_eq!(consumers.len(), 2);
    for consumer in consumers {
        let sent: u64 = consumer
            .get_stats()
            .await
            .expect("consumer stats")
            .iter()
            .filter_map(|s| match s {
                ConsumerRtpStreamStat::Outbound(o) => Some(o.packet_count),
                ConsumerRtpStreamStat::Inbound(_) => None,
            })
            .sum();
        assert!(
            sent > 50,
            "{:?} consumer sent only {sent} packets",
            consumer.kind()
        );
    }
    server.abort();
}
