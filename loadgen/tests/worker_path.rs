//! The worker's send path, which Throng's patches change
//! (third_party/mediasoup-patches: the transport-cc send history on a ring, UDP
//! sends batched per loop iteration through sendmmsg), checked end to end on a
//! real mediasoup worker built with them (in this process: a WebRtcServer on
//! 127.0.0.1 and the media node's codecs and transport settings) and real
//! WebRTC receivers (str0m: ICE, DTLS-SRTP, NACK, transport-cc feedback):
//!
//! 1. content and order: a sender writes known payloads (Opus-sized audio every
//!    20 ms, one-packet VP8 frames at 30 fps with a key frame every second);
//!    26 receivers (more than one sendmmsg chunk of 20 per forwarded packet)
//!    each get exactly those payloads, in the order they were sent, from the
//!    first one they got: what upstream's worker delivers (an SFU forwards
//!    payloads untouched; this VP8 carries no picture id to rewrite). The first
//!    version of patch 0002 lost 11-13 % of them and failed here;
//! 2. NACK: a receiver that loses every 7th video packet on its way in asks for
//!    each again and ends with every one of them (retransmitted over RTX);
//! 3. bandwidth estimation: behind a 120 kbit/s bottleneck (200 ms of queue,
//!    then tail drop), a receiver's transport-cc feedback brings the worker's
//!    estimate for it well below the media's rate (about 280 kbit/s) and below
//!    half of what it estimates for an unimpaired receiver at the same time.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::capacity::connected_peer;
use loadgen::link::Impairment;
use loadgen::rtc::{device_capabilities, payload_hash, Payloads, Peer};
use mediasoup::prelude::MediaKind as MsKind;
use mediasoup::prelude::*;
use mediasoup::webrtc_server::{WebRtcServerListenInfos, WebRtcServerOptions};
use serde_json::{json, Value};
use str0m::media::MediaKind;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const AUDIO_SSRC: u32 = 30_000;
const VIDEO_SSRC: u32 = 30_001;
/// Receivers that only check content and order.
const PLAIN_RECEIVERS: usize = 24;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("mediasoup types serialize")
}

/// Payload `n` of a kind: its number, then bytes that depend on it. Video is a
/// VP8 payload descriptor without extensions (S=1, partition 0) and a VP8
/// header: a key frame (640x360) every 30th frame, else an inter frame.
fn payload(video: bool, n: u32) -> Arc<[u8]> {
    let len = if video { 1000 } else { 80 };
    let mut p: Vec<u8> = (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect();
    if video {
        p[0] = 0x10;
        if n.is_multiple_of(30) {
            // Frame tag with the key frame bit clear, start code, 640x360.
            p[1..10].copy_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68]);
            p[10] = 0x01;
        } else {
            p[1] = 0x51;
        }
        p[11..15].copy_from_slice(&n.to_be_bytes());
    } else {
        p[0] = 0x78; // Opus TOC: CELT fullband 20 ms, one frame.
        p[1..5].copy_from_slice(&n.to_be_bytes());
    }
    p.into()
}

/// What the sender wrote, per kind, in order (payload hashes).
#[derive(Default)]
struct Sent {
    audio: Vec<u64>,
    video: Vec<u64>,
}

struct Receiver {
    transport: WebRtcTransport,
    /// Kept alive: it is the receiving end.
    _peer: Peer,
    _consumers: Vec<Consumer>,
    log: loadgen::rtc::PayloadLog,
    audio_ssrc: u32,
    video_ssrc: u32,
}

async fn receiver(
    router: &Router,
    server: &WebRtcServer,
    caps: &Value,
    device: &RtpCapabilities,
    producers: &[Producer],
    impairment: Option<Impairment>,
) -> Receiver {
    let (transport, mut peer) = connected_peer(router, server, caps, LOOPBACK)
        .await
        .expect("receiver connects");
    if let Some(imp) = impairment {
        peer.impair(imp);
    }
    let log = peer.log_payloads();
    let (mut audio_ssrc, mut video_ssrc) = (0, 0);
    let mut consumers = Vec::new();
    for p in producers {
        let mut options = ConsumerOptions::new(p.id(), device.clone());
        options.paused = true;
        let c = transport.consume(options).await.expect("consume");
        let kind = if c.kind() == MsKind::Audio {
            "audio"
        } else {
            "video"
        };
        let ssrc = c.rtp_parameters().encodings[0].ssrc.expect("consumer ssrc");
        if c.kind() == MsKind::Audio {
            audio_ssrc = ssrc;
        } else {
            video_ssrc = ssrc;
        }
        peer.expect(&json!({ "kind": kind, "rtpParameters": to_value(c.rtp_parameters()) }))
            .expect("expect stream");
        c.resume().await.expect("resume");
        consumers.push(c);
    }
    Receiver {
        transport,
        _peer: peer,
        _consumers: consumers,
        log,
        audio_ssrc,
        video_ssrc,
    }
}

/// `got` must be `sent` from `got`'s first payload on, whole and in order
/// (the last few may still be on their way: `got` may end early).
fn assert_in_order(what: &str, sent: &[u64], got: &[u64]) {
    assert!(
        got.len() > 20,
        "{what}: only {} payloads arrived",
        got.len()
    );
    let start = sent
        .iter()
        .position(|h| *h == got[0])
        .unwrap_or_else(|| panic!("{what}: its first payload was never sent"));
    let expected = &sent[start..];
    let differ = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        differ.is_none() && got.len() <= expected.len(),
        "{what}: payload {} of {} differs from what was sent (sent {} from there)",
        differ.unwrap_or(got.len()),
        got.len(),
        expected.len()
    );
    assert!(
        expected.len() - got.len() <= 10,
        "{what}: {} of the last payloads missing",
        expected.len() - got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_forwards_every_payload_in_order_answers_nacks_and_estimates_a_bottleneck() {
    let manager = WorkerManager::new();
    let worker = manager
        .create_worker(WorkerSettings::default())
        .await
        .expect("worker");
    let port = throng_test_support::free_port_block(1);
    let listen = |protocol| media_node::workers::listen_info(protocol, LOOPBACK, None, Some(port));
    let server = worker
        .create_webrtc_server(WebRtcServerOptions::new(WebRtcServerListenInfos::new(
            listen(Protocol::Udp),
        )))
        .await
        .expect("WebRtcServer");
    let router = worker
        .create_router(RouterOptions::new(media_node::media::codecs::media_codecs()))
        .await
        .expect("router");
    let caps = to_value(&router.rtp_capabilities());
    let payloads = Payloads::from_caps(&caps).expect("payload types");
    let device: RtpCapabilities =
        serde_json::from_value(device_capabilities(&caps)).expect("device capabilities");

    // The sender: one audio and one video producer.
    let (send_transport, mut send_peer) = connected_peer(&router, &server, &caps, LOOPBACK)
        .await
        .expect("sender connects");
    let mut producers = Vec::new();
    for (kind, ms_kind, ssrc) in [
        (MediaKind::Audio, MsKind::Audio, AUDIO_SSRC),
        (MediaKind::Video, MsKind::Video, VIDEO_SSRC),
    ] {
        let rtp: RtpParameters =
            serde_json::from_value(send_peer.declare_send(kind, ssrc, &caps).expect("declare"))
                .expect("rtp parameters");
        producers.push(
            send_transport
                .produce(ProducerOptions::new(ms_kind, rtp))
                .await
                .expect("produce"),
        );
    }
    let send_peer = Arc::new(send_peer);
    let sent = Arc::new(Mutex::new(Sent::default()));
    let writer = {
        let (peer, sent) = (send_peer.clone(), sent.clone());
        tokio::spawn(async move {
            // 20 ms ticks: audio every tick, video on two ticks of three (30 fps).
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let (mut a, mut v) = (0u32, 0u32);
            // Payload `n` of a kind, noted as sent and written (one packet a frame).
            let send = |video: bool, n: u32| {
                let p = payload(video, n);
                let mut sent = sent.lock().unwrap();
                let (list, ssrc, pt, ticks) = if video {
                    (&mut sent.video, VIDEO_SSRC, payloads.vp8, 3000)
                } else {
                    (&mut sent.audio, AUDIO_SSRC, payloads.opus, 960)
                };
                list.push(payload_hash(&p));
                peer.write(ssrc, pt, u64::from(n) + 1, n * ticks, true, p);
            };
            for t in 0u64.. {
                tick.tick().await;
                send(false, a);
                a += 1;
                if t % 3 != 2 {
                    send(true, v);
                    v += 1;
                }
            }
        })
    };

    // The receivers: plain ones, one losing every 7th video packet, one
    // behind a bottleneck, and one more plain one to compare estimates with.
    let mut plain = Vec::new();
    for _ in 0..PLAIN_RECEIVERS {
        plain.push(receiver(&router, &server, &caps, &device, &producers, None).await);
    }
    let lossy = receiver(
        &router,
        &server,
        &caps,
        &device,
        &producers,
        Some(Impairment {
            drop_every: Some((payloads.vp8, 7)),
            ..Default::default()
        }),
    )
    .await;
    let narrow = receiver(
        &router,
        &server,
        &caps,
        &device,
        &producers,
        Some(Impairment {
            bottleneck_bps: Some(120_000),
            max_queue: Duration::from_millis(200),
            ..Default::default()
        }),
    )
    .await;

    // Media for a while; the estimate is read through it.
    let mut estimates = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let est = |r: &Receiver| {
            let t = r.transport.clone();
            async move {
                t.get_stats().await.expect("stats")[0]
                    .available_outgoing_bitrate
                    .unwrap_or(0)
            }
        };
        estimates.push((est(&narrow).await, est(&plain[0]).await));
    }
    writer.abort();
    // What is on its way arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = sent.lock().unwrap();
    eprintln!(
        "sent {} audio, {} video payloads; estimates (narrow, plain) per second: {estimates:?}",
        sent.audio.len(),
        sent.video.len()
    );

    // 1. Every plain receiver: every payload, in order.
    for (i, r) in plain.iter().enumerate() {
        let log = r.log.lock().unwrap();
        let none = Vec::new();
        assert_in_order(
            &format!("receiver {i} audio"),
            &sent.audio,
            log.get(&r.audio_ssrc).unwrap_or(&none),
        );
        assert_in_order(
            &format!("receiver {i} video"),
            &sent.video,
            log.get(&r.video_ssrc).unwrap_or(&none),
        );
    }

    // 2. The lossy receiver got every video payload back (not in order).
    {
        let log = lossy.log.lock().unwrap();
        let got = log.get(&lossy.video_ssrc).cloned().unwrap_or_default();
        assert!(
            got.len() > 100,
            "lossy receiver: {} video payloads",
            got.len()
        );
        let start = sent
            .video
            .iter()
            .position(|h| got.contains(h))
            .expect("lossy receiver: a payload that was sent");
        let end = sent.video.len() - 10;
        let got: std::collections::HashSet<u64> = got.into_iter().collect();
        let missing = sent.video[start..end]
            .iter()
            .filter(|h| !got.contains(h))
            .count();
        assert_eq!(
            missing,
            0,
            "lossy receiver: {missing} of {} video payloads never arrived (NACK/RTX)",
            end - start
        );
    }

    // 3. The estimate for the receiver behind the bottleneck came down.
    let (narrow_bps, plain_bps) = estimates[estimates.len() - 1];
    assert!(
        narrow_bps > 0 && narrow_bps < 250_000,
        "estimate behind a 120 kbit/s bottleneck: {narrow_bps} bit/s ({estimates:?})"
    );
    assert!(
        narrow_bps * 2 < plain_bps,
        "estimates: narrow {narrow_bps}, plain {plain_bps} ({estimates:?})"
    );
    drop((plain, lossy, narrow));
}
