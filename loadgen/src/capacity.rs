//! Consumers per worker: one sender (VP8 ~500 kbit/s + Opus from the shared
//! source) and a growing number of str0m receivers, each consuming both
//! streams, while the worker's CPU and the receivers' loss are measured at
//! every step. Two ways to drive mediasoup, same receivers, same source:
//!
//! - `cluster`: through the coordinator URL, exactly as browsers do
//!   (signalling over WebSocket, coordinator -> gRPC -> media node);
//! - `direct`: a minimal program driving mediasoup in this process (no
//!   coordinator, no gRPC, no media node), the baseline our layers are
//!   compared with.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mediasoup::prelude::MediaKind as MediaKindMs;
use mediasoup::prelude::*;
use mediasoup::webrtc_server::{WebRtcServerListenInfos, WebRtcServerOptions};
use mediasoup::worker::WorkerLogLevel;
use serde_json::{json, Value};
use str0m::media::MediaKind;

use crate::measure::{self, Window};
use crate::participant::Participant;
use crate::rtc::{device_capabilities, Payloads, Peer, RecvStats};
use crate::source::SourceSpec;

/// What to run.
#[derive(Debug, Clone)]
pub struct CapacityArgs {
    /// Receivers at each step, growing.
    pub steps: Vec<usize>,
    /// Measuring window per step.
    pub window: Duration,
    /// Settling time after adding receivers.
    pub settle: Duration,
    /// Address the str0m endpoints bind.
    pub bind: IpAddr,
    /// The sender's media.
    pub source: SourceSpec,
}

/// Prints one step as a table row.
pub fn print_row(label: &str, w: &Window) {
    println!(
        "{label:<8} {:>6} {:>9} {:>10.1} {:>10.0} {:>8.3} {:>9.2} {:>9.2}",
        w.receivers,
        w.consumers,
        w.worker_cpu_pct,
        w.packets_per_sec,
        w.loss_pct,
        w.jitter_p50_ms,
        w.jitter_p95_ms
    );
}

/// The table's header.
pub fn print_header() {
    println!(
        "{:<8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "mode", "recv", "consumers", "worker%", "pkt/s in", "loss%", "jit50ms", "jit95ms"
    );
}

/// Through the coordinator at `url`; the media node's worker threads are read
/// from `/proc/<node_pid>`.
pub async fn cluster(
    args: &CapacityArgs,
    url: &str,
    token: impl Fn(&str) -> String,
    node_pid: u32,
) -> Result<Vec<Window>, String> {
    let source = args.source.start().await.map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(60);
    let mut sender = Participant::join(
        url,
        &token("sender"),
        "capacity",
        "sender",
        args.bind,
        limit,
    )
    .await
    .map_err(|e| format!("sender: {e}"))?;
    let producers = sender
        .send(&source, 10_000)
        .await
        .map_err(|e| format!("sender: {e}"))?;
    let mut receivers: Vec<Participant> = Vec::new();
    let mut stats: Vec<RecvStats> = Vec::new();
    let mut out = Vec::new();
    for &step in &args.steps {
        while receivers.len() < step {
            // Join in small parallel batches: quicker, and still gentle on the queue.
            let batch = (step - receivers.len()).min(16);
            let joins = (0..batch).map(|i| {
                let name = format!("r{}", receivers.len() + i);
                let tok = token(&name);
                let producers = producers.clone();
                async move {
                    let mut p =
                        Participant::join(url, &tok, "capacity", &name, args.bind, limit).await?;
                    for id in &producers {
                        p.consume(id).await?;
                    }
                    Ok::<_, crate::participant::ParticipantError>(p)
                }
            });
            let mut failed = 0;
            for r in futures::future::join_all(joins).await {
                match r {
                    Ok(p) => {
                        stats.push(p.received().expect("consumed"));
                        receivers.push(p);
                    }
                    Err(e) => {
                        eprintln!("receiver: {e}");
                        failed += 1;
                    }
                }
            }
            if failed == batch {
                // The machine cannot take more receivers: measure what is there.
                eprintln!(
                    "no receiver of a batch of {batch} connected; measuring {} receivers",
                    receivers.len()
                );
                break;
            }
        }
        tokio::time::sleep(args.settle).await;
        let w = measure::window(
            &stats,
            stats.len() * producers.len(),
            || measure::worker_cpu(node_pid).unwrap_or_default(),
            args.window,
        )
        .await;
        print_row("cluster", &w);
        out.push(w);
    }
    for r in receivers {
        r.leave();
    }
    sender.leave();
    Ok(out)
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("mediasoup types serialize")
}

/// A mediasoup WebRtcTransport as a `createTransport` answer.
fn transport_json(t: &WebRtcTransport) -> Value {
    json!({
        "id": t.id().to_string(),
        "iceParameters": to_value(t.ice_parameters()),
        "iceCandidates": to_value(t.ice_candidates()),
        "dtlsParameters": to_value(&t.dtls_parameters()),
    })
}

pub async fn connected_peer(
    router: &Router,
    server: &WebRtcServer,
    caps: &Value,
    bind: IpAddr,
) -> Result<(WebRtcTransport, Peer), String> {
    // The media node's own settings: the baseline differs only in who drives mediasoup.
    let transport = router
        .create_webrtc_transport(media_node::media::codecs::webrtc_transport_options(
            server.clone(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut peer = Peer::start(&transport_json(&transport), caps, bind)
        .await
        .map_err(|e| e.to_string())?;
    let dtls: DtlsParameters =
        serde_json::from_value(peer.dtls_parameters()).map_err(|e| e.to_string())?;
    transport
        .connect(WebRtcTransportRemoteParameters {
            dtls_parameters: dtls,
        })
        .await
        .map_err(|e| e.to_string())?;
    if !peer.wait_connected(Duration::from_secs(20)).await {
        return Err("direct transport did not connect".into());
    }
    Ok((transport, peer))
}

/// mediasoup driven directly: one worker with a WebRtcServer on `port`, the
/// media node's codecs, the same source and receivers.
pub async fn direct(args: &CapacityArgs, port: u16) -> Result<Vec<Window>, String> {
    let manager = WorkerManager::new();
    let mut settings = WorkerSettings::default();
    settings.log_level = WorkerLogLevel::Warn;
    let worker = manager
        .create_worker(settings)
        .await
        .map_err(|e| e.to_string())?;
    let listen = |protocol| media_node::workers::listen_info(protocol, args.bind, None, Some(port));
    let server = worker
        .create_webrtc_server(WebRtcServerOptions::new(
            WebRtcServerListenInfos::new(listen(Protocol::Udp)).insert(listen(Protocol::Tcp)),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let router = worker
        .create_router(RouterOptions::new(media_node::media::codecs::media_codecs()))
        .await
        .map_err(|e| e.to_string())?;
    let caps = to_value(&router.rtp_capabilities());
    let payloads = Payloads::from_caps(&caps).map_err(|e| e.to_string())?;
    let source = args.source.start().await.map_err(|e| e.to_string())?;

    // The sender.
    let (send_transport, mut send_peer) =
        connected_peer(&router, &server, &caps, args.bind).await?;
    let mut producers = Vec::new();
    for (kind, ms_kind, ssrc) in [
        (MediaKind::Audio, MediaKindMs::Audio, 20_000u32),
        (MediaKind::Video, MediaKindMs::Video, 20_001u32),
    ] {
        let rtp: RtpParameters = serde_json::from_value(
            send_peer
                .declare_send(kind, ssrc, &caps)
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let producer = send_transport
            .produce(ProducerOptions::new(ms_kind, rtp))
            .await
            .map_err(|e| e.to_string())?;
        producers.push(producer);
    }
    let send_peer = Arc::new(send_peer);
    let forward = tokio::spawn(crate::participant::forward(
        source.subscribe(),
        send_peer.clone(),
        (20_000, 20_001),
        payloads,
    ));

    // Receivers, step by step.
    let device: RtpCapabilities =
        serde_json::from_value(device_capabilities(&caps)).map_err(|e| e.to_string())?;
    let mut keep = Vec::new();
    let mut stats: Vec<RecvStats> = Vec::new();
    let mut out = Vec::new();
    let pid = std::process::id();
    for &step in &args.steps {
        while stats.len() < step {
            let (transport, mut peer) =
                match connected_peer(&router, &server, &caps, args.bind).await {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("receiver: {e}; measuring {} receivers", stats.len());
                        break;
                    }
                };
            let mut consumers = Vec::new();
            for p in &producers {
                let mut options = ConsumerOptions::new(p.id(), device.clone());
                options.paused = true;
                let c = transport
                    .consume(options)
                    .await
                    .map_err(|e| e.to_string())?;
                let kind = if c.kind() == MediaKindMs::Audio {
                    "audio"
                } else {
                    "video"
                };
                peer.expect(
                    &json!({ "kind": kind, "rtpParameters": to_value(c.rtp_parameters()) }),
                )
                .map_err(|e| e.to_string())?;
                c.resume().await.map_err(|e| e.to_string())?;
                consumers.push(c);
            }
            stats.push(peer.stats.clone());
            keep.push((transport, peer, consumers));
        }
        tokio::time::sleep(args.settle).await;
        let w = measure::window(
            &stats,
            stats.len() * producers.len(),
            || measure::worker_cpu(pid).unwrap_or_default(),
            args.window,
        )
        .await;
        print_row("direct", &w);
        out.push(w);
    }
    forward.abort();
    drop(keep);
    Ok(out)
}
