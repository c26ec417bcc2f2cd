//! Proves the offline worker build's SRTP layer (libsrtp 2.5 behind the 3.x
//! compatibility shim, Debian's OpenSSL) by sending RTP from one worker to
//! another over SRTP and checking that every packet arrives intact.
//!
//! Path of each packet:
//!   UDP socket --RTP--> PlainTransport (worker A, producer)
//!     --SRTP--> [worker-to-worker leg] --> producer on worker B
//!     --> PlainTransport consumer (worker B) --RTP--> UDP socket
//!
//! The worker-to-worker leg is either a pair of PipeTransports (the route
//! Throng uses across nodes; mediasoup's PipeTransport speaks only
//! AEAD_AES_256_GCM) or a pair of SRTP PlainTransports, which accept any
//! crypto suite, used here for AES_CM_128_HMAC_SHA1_80 and AEAD_AES_256_GCM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU8};
use std::time::Duration;

use mediasoup::consumer::{ConsumerRtpStreamStat, ConsumerStat};
use mediasoup::prelude::*;
use mediasoup::producer::ProducerStat;
use mediasoup::types::data_structures::TransportTuple;
use tokio::net::UdpSocket;

const PACKETS: usize = 300;
const INGEST_SSRC: u32 = 0x1122_3344;
const OPUS_PT: u8 = 100;

fn localhost() -> ListenInfo {
    ListenInfo {
        protocol: Protocol::Udp,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        announced_address: None,
        expose_internal_ip: false,
        port: None,
        port_range: None,
        flags: None,
        send_buffer_size: None,
        recv_buffer_size: None,
    }
}

fn opus_capability() -> RtpCodecCapability {
    RtpCodecCapability::Audio {
        mime_type: MimeTypeAudio::Opus,
        preferred_payload_type: None,
        clock_rate: NonZeroU32::new(48000).unwrap(),
        channels: NonZeroU8::new(2).unwrap(),
        parameters: RtpCodecParametersParameters::default(),
        rtcp_feedback: vec![],
    }
}

fn receiver_capabilities() -> RtpCapabilities {
    RtpCapabilities {
        codecs: vec![RtpCodecCapability::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: Some(OPUS_PT),
            clock_rate: NonZeroU32::new(48000).unwrap(),
            channels: NonZeroU8::new(2).unwrap(),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
    }
}

fn ingest_parameters() -> RtpParameters {
    RtpParameters {
        mid: None,
        codecs: vec![RtpCodecParameters::Audio {
            mime_type: MimeTypeAudio::Opus,
            payload_type: OPUS_PT,
            clock_rate: NonZeroU32::new(48000).unwrap(),
            channels: NonZeroU8::new(2).unwrap(),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(INGEST_SSRC),
            ..RtpEncodingParameters::default()
        }],
        rtcp: RtcpParameters {
            cname: Some("srtp-test".to_string()),
            ..RtcpParameters::default()
        },
        msid: None,
    }
}

/// Payload of packet `i`: varied length and content, so truncation, padding
/// or a wrong keystream would all show.
fn payload(i: usize) -> Vec<u8> {
    let len = 40 + (i * 37) % 200;
    (0..len)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
        .collect()
}

fn rtp_packet(i: usize) -> Vec<u8> {
    let seq = (1000 + i) as u16;
    let ts = (i as u32) * 960;
    let mut p = vec![0x80, OPUS_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&INGEST_SSRC.to_be_bytes());
    p.extend_from_slice(&payload(i));
    p
}

/// Payload of an RTP packet (no CSRCs, extensions or padding are sent by
/// mediasoup for this stream, but handle them anyway).
fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let pt = packet[1] & 0x7f;
    if (72..=76).contains(&pt) {
        return None; // RTCP (SR/RR/SDES/BYE/APP) on the muxed port
    }
    let cc = (packet[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if packet[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(off + 2)?, *packet.get(off + 3)?]) as usize;
        off += 4 + 4 * words;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end -= *packet.last()? as usize;
    }
    packet.get(off..end)
}

struct Pair {
    _manager: WorkerManager,
    router_a: Router,
    router_b: Router,
}

async fn two_workers() -> Pair {
    let manager = WorkerManager::new();
    let worker_a = manager
        .create_worker(WorkerSettings::default())
        .await
        .expect("worker A");
    let worker_b = manager
        .create_worker(WorkerSettings::default())
        .await
        .expect("worker B");
    let router_a = worker_a
        .create_router(RouterOptions::new(vec![opus_capability()]))
        .await
        .expect("router A");
    let router_b = worker_b
        .create_router(RouterOptions::new(vec![opus_capability()]))
        .await
        .expect("router B");
    Pair {
        _manager: manager,
        router_a,
        router_b,
    }
}

fn local_addr(tuple: &TransportTuple) -> SocketAddr {
    SocketAddr::new(
        tuple.local_address().parse().expect("tuple ip"),
        tuple.local_port(),
    )
}

/// Which worker-to-worker leg carries the SRTP.
enum Leg {
    Pipe,
    Plain(SrtpCryptoSuite),
    /// As `Plain`, but worker B is told a wrong key for worker A's stream:
    /// nothing may get through if SRTP really authenticates.
    PlainWrongKey(SrtpCryptoSuite),
}

struct Outcome {
    received: Vec<Vec<u8>>,
    far_producer: Vec<ProducerStat>,
    receiver_consumer: Vec<ConsumerStat>,
    suite_a: SrtpCryptoSuite,
    suite_b: SrtpCryptoSuite,
}

async fn run(leg: Leg) -> Outcome {
    let Pair {
        _manager,
        router_a,
        router_b,
    } = two_workers().await;

    // Ingest on worker A: plain RTP from a local socket (comedia).
    let mut ingest_opts = PlainTransportOptions::new(localhost());
    ingest_opts.comedia = true;
    let ingest = router_a
        .create_plain_transport(ingest_opts)
        .await
        .expect("ingest transport");
    let producer = ingest
        .produce(ProducerOptions::new(MediaKind::Audio, ingest_parameters()))
        .await
        .expect("ingest producer");

    // Worker-to-worker leg, SRTP on both sides.
    let (far_producer, suite_a, suite_b, _keep): (Producer, _, _, Vec<Box<dyn std::any::Any>>) =
        match leg {
            Leg::Pipe => {
                let mut opts = PipeTransportOptions::new(localhost());
                opts.enable_srtp = true;
                let pipe_a = router_a
                    .create_pipe_transport(opts.clone())
                    .await
                    .expect("pipe A");
                let pipe_b = router_b.create_pipe_transport(opts).await.expect("pipe B");
                let (a, b) = (local_addr(&pipe_a.tuple()), local_addr(&pipe_b.tuple()));
                pipe_a
                    .connect(PipeTransportRemoteParameters {
                        ip: b.ip(),
                        port: b.port(),
                        srtp_parameters: pipe_b.srtp_parameters(),
                    })
                    .await
                    .expect("connect pipe A");
                pipe_b
                    .connect(PipeTransportRemoteParameters {
                        ip: a.ip(),
                        port: a.port(),
                        srtp_parameters: pipe_a.srtp_parameters(),
                    })
                    .await
                    .expect("connect pipe B");
                let pipe_consumer = pipe_a
                    .consume(ConsumerOptions::new(
                        producer.id(),
                        RtpCapabilities::default(),
                    ))
                    .await
                    .expect("pipe consumer");
                let pipe_producer = pipe_b
                    .produce(ProducerOptions::new_pipe_transport(
                        producer.id(),
                        pipe_consumer.kind(),
                        pipe_consumer.rtp_parameters().clone(),
                    ))
                    .await
                    .expect("pipe producer");
                let sa = pipe_a.srtp_parameters().expect("pipe A srtp").crypto_suite;
                let sb = pipe_b.srtp_parameters().expect("pipe B srtp").crypto_suite;
                (
                    pipe_producer,
                    sa,
                    sb,
                    vec![Box::new((pipe_a, pipe_b, pipe_consumer))],
                )
            }
            Leg::Plain(suite) | Leg::PlainWrongKey(suite) => {
                let wrong_key = matches!(leg, Leg::PlainWrongKey(_));
                let mut opts = PlainTransportOptions::new(localhost());
                opts.enable_srtp = true;
                opts.srtp_crypto_suite = suite;
                let plain_a = router_a
                    .create_plain_transport(opts.clone())
                    .await
                    .expect("plain A");
                let plain_b = router_b
                    .create_plain_transport(opts)
                    .await
                    .expect("plain B");
                let (a, b) = (local_addr(&plain_a.tuple()), local_addr(&plain_b.tuple()));
                plain_a
                    .connect(PlainTransportRemoteParameters {
                        ip: Some(b.ip()),
                        port: Some(b.port()),
                        rtcp_port: None,
                        srtp_parameters: plain_b.srtp_parameters(),
                    })
                    .await
                    .expect("connect plain A");
                plain_b
                    .connect(PlainTransportRemoteParameters {
                        ip: Some(a.ip()),
                        port: Some(a.port()),
                        rtcp_port: None,
                        srtp_parameters: plain_a.srtp_parameters().map(|mut p| {
                            if wrong_key {
                                // Same length, different key: flip the first base64 character.
                                let first = if p.key_base64.starts_with('A') {
                                    "B"
                                } else {
                                    "A"
                                };
                                p.key_base64.replace_range(0..1, first);
                            }
                            p
                        }),
                    })
                    .await
                    .expect("connect plain B");
                let consumer_a = plain_a
                    .consume(ConsumerOptions::new(producer.id(), receiver_capabilities()))
                    .await
                    .expect("leg consumer");
                let producer_b = plain_b
                    .produce(ProducerOptions::new(
                        MediaKind::Audio,
                        consumer_a.rtp_parameters().clone(),
                    ))
                    .await
                    .expect("leg producer");
                let sa = plain_a
                    .srtp_parameters()
                    .expect("plain A srtp")
                    .crypto_suite;
                let sb = plain_b
                    .srtp_parameters()
                    .expect("plain B srtp")
                    .crypto_suite;
                (
                    producer_b,
                    sa,
                    sb,
                    vec![Box::new((plain_a, plain_b, consumer_a))],
                )
            }
        };

    // Receiver on worker B: a plain consumer sending RTP to a local socket.
    let receiver_socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("receiver socket");
    let receiver_addr = receiver_socket.local_addr().unwrap();
    let receiver = router_b
        .create_plain_transport(PlainTransportOptions::new(localhost()))
        .await
        .expect("receiver transport");
    receiver
        .connect(PlainTransportRemoteParameters {
            ip: Some(receiver_addr.ip()),
            port: Some(receiver_addr.port()),
            rtcp_port: None,
            srtp_parameters: None,
        })
        .await
        .expect("connect receiver");
    let consumer = receiver
        .consume(ConsumerOptions::new(
            far_producer.id(),
            receiver_capabilities(),
        ))
        .await
        .expect("receiver consumer");

    // Send, paced so that no socket buffer on loopback can overflow.
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("sender socket");
    let ingest_addr = local_addr(&ingest.tuple());
    let send = async {
        for i in 0..PACKETS {
            sender
                .send_to(&rtp_packet(i), ingest_addr)
                .await
                .expect("send rtp");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let receive = async {
        let mut received = Vec::with_capacity(PACKETS);
        let mut buf = vec![0u8; 2048];
        while received.len() < PACKETS {
            let n =
                match tokio::time::timeout(Duration::from_secs(5), receiver_socket.recv(&mut buf))
                    .await
                {
                    Ok(r) => r.expect("recv"),
                    Err(_) => break, // nothing for 5 s: report what arrived
                };
            if let Some(p) = rtp_payload(&buf[..n]) {
                received.push(p.to_vec());
            }
        }
        received
    };
    let ((), received) = tokio::join!(send, receive);

    let far_producer_stats = far_producer.get_stats().await.expect("far producer stats");
    let receiver_consumer = consumer
        .get_stats()
        .await
        .expect("consumer stats")
        .into_iter()
        .filter_map(|s| match s {
            ConsumerRtpStreamStat::Outbound(stat) => Some(stat),
            ConsumerRtpStreamStat::Inbound(_) => None,
        })
        .collect();
    Outcome {
        received,
        far_producer: far_producer_stats,
        receiver_consumer,
        suite_a,
        suite_b,
    }
}

fn assert_intact(outcome: &Outcome, suite: SrtpCryptoSuite) {
    assert_eq!(outcome.suite_a, suite, "worker A SRTP crypto suite");
    assert_eq!(outcome.suite_b, suite, "worker B SRTP crypto suite");
    assert_eq!(
        outcome.received.len(),
        PACKETS,
        "packets received at the far end"
    );
    for (i, got) in outcome.received.iter().enumerate() {
        assert_eq!(
            got,
            &payload(i),
            "payload of packet {i} differs after the SRTP leg"
        );
    }
    // The producer on worker B decrypted every packet and saw no gap.
    assert_eq!(
        outcome.far_producer.len(),
        1,
        "one stream on the far producer"
    );
    let far = &outcome.far_producer[0];
    assert_eq!(
        far.packet_count, PACKETS as u64,
        "packets counted by the far producer"
    );
    assert_eq!(far.packets_lost, 0, "packets lost on the SRTP leg");
    assert_eq!(
        outcome.receiver_consumer.len(),
        1,
        "one stream on the receiving consumer"
    );
    assert_eq!(
        outcome.receiver_consumer[0].packet_count, PACKETS as u64,
        "packets sent by the consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_pipe_transport_aead_aes_256_gcm() {
    let outcome = run(Leg::Pipe).await;
    assert_intact(&outcome, SrtpCryptoSuite::AeadAes256Gcm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_plain_transport_aes_cm_128_hmac_sha1_80() {
    let outcome = run(Leg::Plain(SrtpCryptoSuite::AesCm128HmacSha180)).await;
    assert_intact(&outcome, SrtpCryptoSuite::AesCm128HmacSha180);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_plain_transport_aead_aes_256_gcm() {
    let outcome = run(Leg::Plain(SrtpCryptoSuite::AeadAes256Gcm)).await;
    assert_intact(&outcome, SrtpCryptoSuite::AeadAes256Gcm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_with_a_wrong_key_delivers_nothing() {
    let outcome = run(Leg::PlainWrongKey(SrtpCryptoSuite::AesCm128HmacSha180)).await;
    assert!(
        outcome.received.is_empty(),
        "{} packets passed a wrong SRTP key",
        outcome.received.len()
    );
    let far: u64 = outcome.far_producer.iter().map(|s| s.packet_count).sum();
    assert_eq!(
        far, 0,
        "far producer accepted packets authenticated with another key"
    );
}
