//! The media node's gRPC API against real mediasoup workers, real gRPC on
//! 127.0.0.1 and a real redis-server: pipes within and across nodes, ingest,
//! churn back to zero, bad input, death and drain.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::AsyncCommands;
use throng_proto::media as pb;
use throng_proto::report::{node_key, NodeReport};
use tonic::Code;

async fn router(client: &mut Client, room: &str, worker: u32) -> pb::RouterInfo {
    client
        .create_router(pb::CreateRouterRequest {
            room_id: room.into(),
            worker_index: worker,
        })
        .await
        .expect("create router")
        .into_inner()
}

fn addr(ip: &str, port: u32) -> std::net::SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

async fn node_info(client: &mut Client) -> pb::NodeInfo {
    client
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn totals(info: &pb::NodeInfo) -> (u32, u32, u32, u32) {
    throng_test_support::node_totals(info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_audio_and_video_reach_a_consumer_on_another_worker_through_a_pipe() {
    let node = InProcessNode::start(node_env("pipe-node", 2, None)).await;
    let mut client = node.client.clone();
    let r0 = router(&mut client, "room-1", 0).await;
    let r1 = router(&mut client, "room-1", 1).await;

    let ingest = client
        .create_ingest(pb::CreateIngestRequest {
            router_id: r0.router_id.clone(),
            participant_id: "recording".into(),
        })
        .await
        .expect("ingest")
        .into_inner();
    for producer in [&ingest.audio_producer_id, &ingest.video_producer_id] {
        client
            .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
                producer_id: producer.clone(),
                target_router_id: r1.router_id.clone(),
            })
            .await
            .expect("pipe to worker 1");
    }
    let audio_sink = RtpSink::bind().await;
    let video_sink = RtpSink::bind().await;
    let audio_consumer = plain_consumer(
        &mut client,
        &r1.router_id,
        "viewer",
        &ingest.audio_producer_id,
        audio_sink.addr(),
    )
    .await;
    let video_consumer = plain_consumer(
        &mut client,
        &r1.router_id,
        "viewer",
        &ingest.video_producer_id,
        video_sink.addr(),
    )
    .await;

    let n = 100;
    let send_audio = send_rtp(
        addr(&ingest.ip, ingest.audio_port),
        ingest.audio_payload_type as u8,
        ingest.audio_ssrc,
        false,
        n,
    );
    let send_video = send_rtp(
        addr(&ingest.ip, ingest.video_port),
        ingest.video_payload_type as u8,
        ingest.video_ssrc,
        true,
        n,
    );
    let (_, _, audio_got, video_got) = tokio::join!(
        send_audio,
        send_video,
        audio_sink.count(n, Duration::from_secs(3)),
        video_sink.count(n, Duration::from_secs(3))
    );
    assert_eq!(
        audio_got, n,
        "audio packets through the worker-to-worker pipe"
    );
    assert_eq!(
        video_got, n,
        "video packets through the worker-to-worker pipe"
    );
    assert_eq!(
        consumer_packets(&mut client, &audio_consumer).await,
        n as u64
    );
    assert_eq!(
        consumer_packets(&mut client, &video_consumer).await,
        n as u64
    );

    // Both workers carry objects: the source on 0, the piped copy on 1.
    let info = node_info(&mut client).await;
    assert!(
        info.workers[0].producers >= 2 && info.workers[1].producers >= 2,
        "{info:?}"
    );

    // Closing the source closes the piped copy and the consumers behind it.
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();
    client
        .close_producer(pb::ProducerRequest {
            producer_id: ingest.audio_producer_id.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut consumer_closed = false;
    while !consumer_closed && Instant::now() < deadline {
        if let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(1), events.message())
            .await
            .map(|r| r.transpose())
        {
            if let Some(pb::event::Event::ConsumerClosed(c)) = ev.event {
                consumer_closed = c.consumer_id == audio_consumer && c.reason == "producer_closed";
            }
        }
    }
    assert!(
        consumer_closed,
        "consumer of the piped producer was not closed"
    );
    let err = client
        .resume_consumer(pb::ConsumerRequest {
            consumer_id: audio_consumer,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_on_node_a_reaches_a_consumer_on_node_b_and_closing_it_closes_the_consumer() {
    let a = NodeProcess::spawn(node_env("node-a", 1, None)).await;
    let b = NodeProcess::spawn(node_env("node-b", 1, None)).await;
    let mut ca = connect(a.grpc).await;
    let mut cb = connect(b.grpc).await;
    let ra = router(&mut ca, "big-room", 0).await;
    let rb = router(&mut cb, "big-room", 0).await;

    let ingest = ca
        .create_ingest(pb::CreateIngestRequest {
            router_id: ra.router_id.clone(),
            participant_id: "speaker".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // The pipe: each side's address and SRTP key go to the other (the
    // coordinator's job in production).
    let pa = ca
        .create_pipe_transport(pb::CreatePipeTransportRequest {
            router_id: ra.router_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let pb_ = cb
        .create_pipe_transport(pb::CreatePipeTransportRequest {
            router_id: rb.router_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        pa.srtp_parameters_json.contains("AEAD_AES_256_GCM"),
        "pipe is SRTP: {}",
        pa.srtp_parameters_json
    );
    ca.connect_pipe_transport(pb::ConnectPipeTransportRequest {
        pipe_transport_id: pa.pipe_transport_id.clone(),
        ip: pb_.ip.clone(),
        port: pb_.port,
        srtp_parameters_json: pb_.srtp_parameters_json.clone(),
    })
    .await
    .unwrap();
    cb.connect_pipe_transport(pb::ConnectPipeTransportRequest {
        pipe_transport_id: pb_.pipe_transport_id.clone(),
        ip: pa.ip.clone(),
        port: pa.port,
        srtp_parameters_json: pa.srtp_parameters_json.clone(),
    })
    .await
    .unwrap();
    let piped = ca
        .consume_to_pipe(pb::ConsumeToPipeRequest {
            pipe_transport_id: pa.pipe_transport_id.clone(),
            producer_id: ingest.audio_producer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let far = cb
        .produce_from_pipe(pb::ProduceFromPipeRequest {
            pipe_transport_id: pb_.pipe_transport_id.clone(),
            producer_id: ingest.audio_producer_id.clone(),
            kind: piped.kind,
            rtp_parameters_json: piped.rtp_parameters_json,
            paused: piped.producer_paused,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        far.producer_id, ingest.audio_producer_id,
        "the piped producer keeps the source id"
    );

    let sink = RtpSink::bind().await;
    let consumer = plain_consumer(
        &mut cb,
        &rb.router_id,
        "listener",
        &far.producer_id,
        sink.addr(),
    )
    .await;
    let n = 100;
    let (_, got) = tokio::join!(
        send_rtp(
            addr(&ingest.ip, ingest.audio_port),
            ingest.audio_payload_type as u8,
            ingest.audio_ssrc,
            false,
            n
        ),
        sink.count(n, Duration::from_secs(3))
    );
    assert_eq!(got, n, "RTP across the node-to-node SRTP pipe");
    assert_eq!(consumer_packets(&mut cb, &consumer).await, n as u64);

    // Close on A; A announces it; relaying that to B closes B's copy and its consumer.
    let mut events_a = ca.events(pb::EventsRequest {}).await.unwrap().into_inner();
    let mut events_b = cb.events(pb::EventsRequest {}).await.unwrap().into_inner();
    ca.close_producer(pb::ProducerRequest {
        producer_id: ingest.audio_producer_id.clone(),
    })
    .await
    .unwrap();
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = events_a.message().await.unwrap().unwrap();
            if let Some(pb::event::Event::ProducerClosed(p)) = ev.event {
                break p;
            }
        }
    })
    .await
    .expect("ProducerClosed on node A");
    assert_eq!(announced.producer_id, ingest.audio_producer_id);
    assert_eq!(announced.room_id, "big-room");
    cb.close_producer(pb::ProducerRequest {
        producer_id: announced.producer_id,
    })
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = events_b.message().await.unwrap().unwrap();
            if let Some(pb::event::Event::ConsumerClosed(c)) = ev.event {
                break c;
            }
        }
    })
    .await
    .expect("ConsumerClosed on node B");
    assert_eq!(closed.consumer_id, consumer);
    assert_eq!(closed.reason, "producer_closed");
    let (_, _, producers_b, consumers_b) = totals(&node_info(&mut cb).await);
    assert_eq!(
        (producers_b, consumers_b),
        (0, 0),
        "node B keeps nothing of the closed producer"
    );
}

fn webrtc_audio_rtp_parameters(ssrc: u32) -> String {
    serde_json::json!({
        "mid": "0",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": format!("p{ssrc}"), "reducedSize": true}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_participants_join_and_leave_and_every_count_returns_to_zero() {
    let redis = Redis::start();
    let node = InProcessNode::start(node_env("churn-node", 2, Some(&redis))).await;
    let mut client = node.client.clone();
    let rooms = [
        router(&mut client, "churn-a", 0).await,
        router(&mut client, "churn-b", 1).await,
    ];

    let participants = 200;
    let mut producers: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for i in 0..participants {
        let room = &rooms[i % 2];
        let pid = format!("p{i}");
        let send = client
            .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                router_id: room.router_id.clone(),
                participant_id: pid.clone(),
                producing: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let recv = client
            .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                router_id: room.router_id.clone(),
                participant_id: pid.clone(),
                producing: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let produced = client
            .produce(pb::ProduceRequest {
                transport_id: send.transport_id,
                kind: pb::MediaKind::Audio as i32,
                rtp_parameters_json: webrtc_audio_rtp_parameters(1000 + i as u32),
                paused: false,
                source: "mic".into(),
            })
            .await
            .unwrap()
            .into_inner();
        // Consume up to 3 earlier participants of the same room.
        for other in producers[i % 2].iter().rev().take(3) {
            client
                .consume(pb::ConsumeRequest {
                    transport_id: recv.transport_id.clone(),
                    producer_id: other.clone(),
                    rtp_capabilities_json: opus_capabilities_json(),
                })
                .await
                .unwrap();
        }
        producers[i % 2].push(produced.producer_id);
    }
    let (routers, transports, producer_count, consumers) = totals(&node_info(&mut client).await);
    assert_eq!((routers, transports, producer_count), (2, 400, 200));
    // In each room of 100, the k-th participant consumes min(k, 3) earlier ones.
    let per_room: u32 = (0..100).map(|k: u32| k.min(3)).sum();
    assert_eq!(consumers, 2 * per_room);

    for i in 0..participants {
        client
            .close_participant(pb::CloseParticipantRequest {
                participant_id: format!("p{i}"),
            })
            .await
            .unwrap();
    }
    for room in &rooms {
        client
            .close_router(pb::CloseRouterRequest {
                router_id: room.router_id.clone(),
            })
            .await
            .unwrap();
    }
    // mediasoup's close events run asynchronously: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = totals(&node_info(&mut client).await);
        if t == (0, 0, 0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts did not return to zero: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and so does the report in Redis, within a report interval or two.
    let mut conn = redis.conn().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let json: Option<String> = conn.get(node_key("churn-node")).await.unwrap();
        let report: NodeReport =
            serde_json::from_str(&json.expect("node report in redis")).unwrap();
        let zero = report
            .workers
            .iter()
            .all(|w| (w.routers, w.transports, w.producers, w.consumers) == (0, 0, 0, 0));
        if zero {
            assert_eq!(report.workers.len(), 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis report not back to zero: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await.expect("clean stop");
    let gone: Option<String> = conn.get(node_key("churn-node")).await.unwrap();
    assert!(gone.is_none(), "a cleanly stopped node removes its report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_statuses_and_other_rooms_keep_working() {
    let node = InProcessNode::start(node_env("strict-node", 1, None)).await;
    let mut client = node.client.clone();
    let healthy = router(&mut client, "healthy-room", 0).await;
    let ingest = client
        .create_ingest(pb::CreateIngestRequest {
            router_id: healthy.router_id.clone(),
            participant_id: "feed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sink = RtpSink::bind().await;
    plain_consumer(
        &mut client,
        &healthy.router_id,
        "viewer",
        &ingest.audio_producer_id,
        sink.addr(),
    )
    .await;

    let healthy_recv = client
        .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
            router_id: healthy.router_id.clone(),
            participant_id: "picky".into(),
            producing: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let victim = router(&mut client, "victim-room", 0).await;
    let t = client
        .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
            router_id: victim.router_id.clone(),
            participant_id: "mallory".into(),
            producing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let unknown = "3f1c2a9e-0000-4000-8000-000000000000";

    let cases: Vec<(&str, Code, tonic::Status)> = vec![
        ("router on a missing worker", Code::InvalidArgument, client.create_router(pb::CreateRouterRequest { room_id: "x".into(), worker_index: 7 }).await.unwrap_err()),
        ("empty room id", Code::InvalidArgument, client.create_router(pb::CreateRouterRequest { room_id: String::new(), worker_index: 0 }).await.unwrap_err()),
        ("malformed router id", Code::InvalidArgument, client.close_router(pb::CloseRouterRequest { router_id: "not-an-id".into() }).await.unwrap_err()),
        ("unknown router", Code::NotFound, client.close_router(pb::CloseRouterRequest { router_id: unknown.into() }).await.unwrap_err()),
        ("unknown transport", Code::NotFound, client.connect_web_rtc_transport(pb::ConnectWebRtcTransportRequest { transport_id: unknown.into(), dtls_parameters_json: "{}".into() }).await.unwrap_err()),
        ("bad DTLS JSON", Code::InvalidArgument, client.connect_web_rtc_transport(pb::ConnectWebRtcTransportRequest { transport_id: t.transport_id.clone(), dtls_parameters_json: "{\"role\": 5}".into() }).await.unwrap_err()),
        ("bad RTP parameters", Code::InvalidArgument, client.produce(pb::ProduceRequest { transport_id: t.transport_id.clone(), kind: pb::MediaKind::Audio as i32, rtp_parameters_json: "[]".into(), paused: false, source: String::new() }).await.unwrap_err()),
        ("RTP parameters the router cannot take", Code::InvalidArgument, client.produce(pb::ProduceRequest { transport_id: t.transport_id.clone(), kind: pb::MediaKind::Audio as i32, rtp_parameters_json: serde_json::json!({"codecs": [{"mimeType": "audio/G722", "payloadType": 9, "clockRate": 8000, "parameters": {}, "rtcpFeedback": []}], "encodings": [{"ssrc": 5}], "headerExtensions": [], "rtcp": {}}).to_string(), paused: false, source: String::new() }).await.unwrap_err()),
        ("unspecified kind", Code::InvalidArgument, client.produce(pb::ProduceRequest { transport_id: t.transport_id.clone(), kind: 0, rtp_parameters_json: webrtc_audio_rtp_parameters(9), paused: false, source: String::new() }).await.unwrap_err()),
        ("consume with capabilities that cannot", Code::FailedPrecondition, client.consume(pb::ConsumeRequest { transport_id: healthy_recv.transport_id.clone(), producer_id: ingest.audio_producer_id.clone(), rtp_capabilities_json: serde_json::json!({"codecs": [], "headerExtensions": []}).to_string() }).await.unwrap_err()),
        ("consume a producer of another room", Code::NotFound, client.consume(pb::ConsumeRequest { transport_id: t.transport_id.clone(), producer_id: ingest.audio_producer_id.clone(), rtp_capabilities_json: opus_capabilities_json() }).await.unwrap_err()),
        ("unknown consumer", Code::NotFound, client.resume_consumer(pb::ConsumerRequest { consumer_id: unknown.into() }).await.unwrap_err()),
        ("stats without a target", Code::InvalidArgument, client.get_stats(pb::GetStatsRequest { target: None }).await.unwrap_err()),
        ("pipe between two routers of one worker", Code::FailedPrecondition, client.pipe_producer_to_router(pb::PipeProducerToRouterRequest { producer_id: ingest.audio_producer_id.clone(), target_router_id: victim.router_id.clone() }).await.unwrap_err()),
        ("consume on a pipe-only call", Code::FailedPrecondition, client.consume_to_pipe(pb::ConsumeToPipeRequest { pipe_transport_id: t.transport_id.clone(), producer_id: ingest.audio_producer_id.clone() }).await.unwrap_err()),
    ];
    for (what, code, status) in cases {
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}: empty message");
    }
    // Calls for a closed object.
    client
        .close_transport(pb::CloseTransportRequest {
            transport_id: t.transport_id.clone(),
        })
        .await
        .unwrap();
    let again = client
        .close_transport(pb::CloseTransportRequest {
            transport_id: t.transport_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // The healthy room still forwards media.
    let n = 50;
    let (_, got) = tokio::join!(
        send_rtp(
            addr(&ingest.ip, ingest.audio_port),
            ingest.audio_payload_type as u8,
            ingest.audio_ssrc,
            false,
            n
        ),
        sink.count(n, Duration::from_secs(3))
    );
    assert_eq!(got, n, "the healthy room was disturbed");
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_vanishes_from_redis_within_its_ttl_and_a_drained_node_exits_zero() {
    let redis = Redis::start();
    let mut conn = redis.conn().await;

    // SIGKILL: no goodbye; the TTL (1.5 s here) removes the report.
    let mut killed = NodeProcess::spawn(node_env("doomed", 1, Some(&redis))).await;
    let present: Option<String> = conn.get(node_key("doomed")).await.unwrap();
    assert!(present.is_some(), "a running node reports itself");
    killed.signal("KILL");
    let killed_at = Instant::now();
    let _ = killed.child.wait().await;
    loop {
        let v: Option<String> = conn.get(node_key("doomed")).await.unwrap();
        if v.is_none() {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_millis(1500 + 1000),
            "report outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The stop hook (`media-node drain`, the chart's preStop) with a room
    // open: it starts the drain, draining is reported, readiness goes false
    // while health stays true, new rooms are refused, and the hook and the
    // node both end once the last room closes.
    let mut env = node_env("retiring", 1, Some(&redis));
    env.insert(
        media_node::config::vars::DRAIN_GRACE_SECS.into(),
        "30".into(),
    );
    let mut drained = NodeProcess::spawn(env.clone()).await;
    let mut client = connect(drained.grpc).await;
    let room = router(&mut client, "last-room", 0).await;
    let ready = |http| async move {
        throng_ops::http_get(http, "/readyz", Duration::from_secs(2))
            .await
            .unwrap()
            .0
    };
    assert_eq!(ready(drained.http).await, 200);
    env.insert(
        media_node::config::vars::HTTP_LISTEN.into(),
        drained.http.to_string(),
    );
    let mut hook = tokio::process::Command::new(env!("CARGO_BIN_EXE_media-node"))
        .args(["drain", "--pid", &drained.child.id().unwrap().to_string()])
        .env_clear()
        .envs(&env)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let json: Option<String> = conn.get(node_key("retiring")).await.unwrap();
        let report: NodeReport =
            serde_json::from_str(&json.expect("report while draining")).unwrap();
        if report.draining {
            break;
        }
        assert!(Instant::now() < deadline, "draining flag never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = client
        .create_router(pb::CreateRouterRequest {
            room_id: "late".into(),
            worker_index: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        drained.child.try_wait().unwrap().is_none(),
        "node left while a room was open"
    );
    assert_eq!(ready(drained.http).await, 503, "draining node still ready");
    let (health, _) = throng_ops::http_get(drained.http, "/healthz", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(health, 200, "a draining node is healthy");
    assert!(
        hook.try_wait().unwrap().is_none(),
        "the stop hook returned while a room was open"
    );
    client
        .close_router(pb::CloseRouterRequest {
            router_id: room.router_id,
        })
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), drained.child.wait())
        .await
        .expect("node exits")
        .unwrap();
    assert!(status.success(), "drained node exit status: {status}");
    let hook_status = tokio::time::timeout(Duration::from_secs(10), hook.wait())
        .await
        .expect("stop hook returns")
        .unwrap();
    assert!(hook_status.success(), "stop hook: {hook_status}");
    let gone: Option<String> = conn.get(node_key("retiring")).await.unwrap();
    assert!(gone.is_none());
}

/// The ingest command documented in the README, run for real: ffmpeg loops a
/// recording into a room and a consumer receives both audio and video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_loops_a_recording_into_a_room_with_the_documented_command() {
    let node = InProcessNode::start(node_env("ingest-node", 1, None)).await;
    let mut client = node.client.clone();
    let room = router(&mut client, "screening", 0).await;
    let ingest = client
        .create_ingest(pb::CreateIngestRequest {
            router_id: room.router_id.clone(),
            participant_id: "projector".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let audio_sink = RtpSink::bind().await;
    let video_sink = RtpSink::bind().await;
    let audio_consumer = plain_consumer(
        &mut client,
        &room.router_id,
        "audience",
        &ingest.audio_producer_id,
        audio_sink.addr(),
    )
    .await;
    let video_consumer = plain_consumer(
        &mut client,
        &room.router_id,
        "audience",
        &ingest.video_producer_id,
        video_sink.addr(),
    )
    .await;

    // A 2-second "recording" to loop.
    let dir = std::env::temp_dir().join(format!("throng-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("recording.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
        ])
        .args([
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
        ])
        .arg(&recording)
        .status()
        .expect("ffmpeg must be installed (scripts/install-deps.sh installs it)");
    assert!(made.success());

    // The README's command, with the ingest's address and ports filled in.
    let (ip, a, ar, v, vr) = (
        &ingest.ip,
        ingest.audio_port,
        ingest.audio_rtcp_port,
        ingest.video_port,
        ingest.video_rtcp_port,
    );
    let tee = format!(
        "[select=a:f=rtp:ssrc={}:payload_type={}]rtp://{ip}:{a}?rtcpport={ar}&pkt_size=1200|[select=v:f=rtp:ssrc={}:payload_type={}]rtp://{ip}:{v}?rtcpport={vr}&pkt_size=1200",
        ingest.audio_ssrc, ingest.audio_payload_type, ingest.video_ssrc, ingest.video_payload_type
    );
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(&recording)
        .args([
            "-map", "0:a:0", "-c:a", "libopus", "-b:a", "96k", "-ac", "2", "-ar", "48000",
        ])
        .args([
            "-map",
            "0:v:0",
            "-c:v",
            "libvpx",
            "-b:v",
            "800k",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ])
        .args(["-g", "60", "-pix_fmt", "yuv420p", "-f", "tee", &tee])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Longer than the recording: the loop must keep feeding.
    let (audio_got, video_got) = tokio::join!(
        audio_sink.count(200, Duration::from_secs(3)),
        video_sink.count(150, Duration::from_secs(3))
    );
    let _ = ffmpeg.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    // 20 ms Opus frames: 200 packets is 4 s of audio, past the 2 s recording.
    assert_eq!(audio_got, 200, "audio packets from ffmpeg");
    assert_eq!(video_got, 150, "video packets from ffmpeg");
    assert!(consumer_packets(&mut client, &audio_consumer).await >= 200);
    assert!(consumer_packets(&mut client, &video_consumer).await >= 150);
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_described_with_its_participants_objects_and_labels() {
    let node = InProcessNode::start(node_env("describe-node", 2, None)).await;
    let mut client = node.client.clone();
    let r0 = router(&mut client, "described", 0).await;
    let r1 = router(&mut client, "described", 1).await;
    let other = router(&mut client, "elsewhere", 0).await;
    let transport = |router_id: &str, pid: &str, producing: bool, name: &str| {
        pb::CreateWebRtcTransportRequest {
            router_id: router_id.into(),
            participant_id: pid.into(),
            producing,
            display_name: name.into(),
        }
    };
    let send = client
        .create_web_rtc_transport(transport(&r0.router_id, "ann", true, "Ann Example"))
        .await
        .unwrap()
        .into_inner();
    let mic = client
        .produce(pb::ProduceRequest {
            transport_id: send.transport_id.clone(),
            kind: pb::MediaKind::Audio as i32,
            rtp_parameters_json: webrtc_audio_rtp_parameters(4242),
            paused: true,
            source: "mic".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    // Bob on the other worker's router consumes Ann's copy piped there.
    client
        .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
            producer_id: mic.clone(),
            target_router_id: r1.router_id.clone(),
        })
        .await
        .unwrap();
    let recv = client
        .create_web_rtc_transport(transport(&r1.router_id, "bob", false, "Bob"))
        .await
        .unwrap()
        .into_inner();
    let consumer = client
        .consume(pb::ConsumeRequest {
            transport_id: recv.transport_id.clone(),
            producer_id: mic.clone(),
            rtp_capabilities_json: opus_capabilities_json(),
        })
        .await
        .unwrap()
        .into_inner()
        .consumer_id;
    client
        .create_web_rtc_transport(transport(&other.router_id, "cy", false, "Cy"))
        .await
        .unwrap();

    let mut d = client
        .describe_room(pb::DescribeRoomRequest {
            room_id: "described".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .routers;
    d.sort_by_key(|r| r.router.as_ref().unwrap().worker_index);
    assert_eq!(d.len(), 2, "the other room's router is not listed");
    let on0 = &d[0];
    assert_eq!(on0.router.as_ref().unwrap().router_id, r0.router_id);
    assert_eq!(on0.transports.len(), 1);
    let t = &on0.transports[0];
    assert_eq!(
        (
            t.transport_id.as_str(),
            t.participant_id.as_str(),
            t.producing,
            t.display_name.as_str()
        ),
        (send.transport_id.as_str(), "ann", true, "Ann Example")
    );
    assert_eq!(on0.producers.len(), 1);
    let p = &on0.producers[0];
    assert_eq!(
        (
            p.producer_id.as_str(),
            p.transport_id.as_str(),
            p.kind,
            p.paused,
            p.source.as_str()
        ),
        (
            mic.as_str(),
            send.transport_id.as_str(),
            pb::MediaKind::Audio as i32,
            true,
            "mic"
        )
    );
    let on1 = &d[1];
    assert_eq!(on1.transports[0].participant_id, "bob");
    assert!(!on1.transports[0].producing);
    // The piped copy: same id, no transport.
    assert_eq!(on1.producers.len(), 1);
    assert_eq!(on1.producers[0].producer_id, mic);
    assert!(on1.producers[0].transport_id.is_empty());
    assert_eq!(on1.consumers.len(), 1);
    let c = &on1.consumers[0];
    assert_eq!(
        (
            c.consumer_id.as_str(),
            c.transport_id.as_str(),
            c.producer_id.as_str(),
            c.paused
        ),
        (
            consumer.as_str(),
            recv.transport_id.as_str(),
            mic.as_str(),
            true
        )
    );
    // A room with nothing here, and bad input.
    let none = client
        .describe_room(pb::DescribeRoomRequest {
            room_id: "nowhere".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.routers.is_empty());
    let e = client
        .describe_room(pb::DescribeRoomRequest {
            room_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client
        .create_web_rtc_transport(transport(&r0.router_id, "eve", false, "bad\nname"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_finds_itself_evicted_says_so_closes_everything_and_reports_again() {
    let redis = Redis::start();
    let mut conn = redis.conn().await;
    let node = InProcessNode::start(node_env("evicted-node", 1, Some(&redis))).await;
    let mut client = node.client.clone();
    let r = router(&mut client, "left-behind", 0).await;
    assert!(!r.router_id.is_empty());
    assert_eq!(node_info(&mut client).await.workers[0].routers, 1);
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();
    // A coordinator evicted it (as `evict_node` does: the report goes, the
    // mark is set).
    let _: () = redis::pipe()
        .del(node_key("evicted-node"))
        .set(throng_proto::report::node_evicted_key("evicted-node"), "1")
        .query_async(&mut conn)
        .await
        .unwrap();
    // It tells whoever follows it, closes what it held, clears the mark and
    // reports again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let told = node_evicted(&mut events).await;
    assert_eq!(told, Some(1), "NodeEvicted with the routers it held");
    loop {
        let report: Option<String> = conn.get(node_key("evicted-node")).await.unwrap();
        let marked: bool = conn
            .exists(throng_proto::report::node_evicted_key("evicted-node"))
            .await
            .unwrap();
        if let (Some(report), false) = (report, marked) {
            let report: NodeReport = serde_json::from_str(&report).unwrap();
            assert_eq!(report.workers[0].routers, 0, "reported empty");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fresh report after the eviction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node_info(&mut client).await.workers[0].routers, 0);
    // The node serves on.
    router(&mut client, "after", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_says_node_evicted_and_closes_every_router_with_what_it_holds() {
    // Without Redis, the coordinator that evicted the node calls CloseAll
    // when it answers again.
    let node = InProcessNode::start(node_env("close-all-node", 2, None)).await;
    let mut client = node.client.clone();
    router(&mut client, "one", 0).await;
    let r = router(&mut client, "two", 1).await;
    client
        .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
            router_id: r.router_id.clone(),
            participant_id: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let closed = client
        .close_all(pb::CloseAllRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.routers, 2);
    let told = node_evicted(&mut events).await;
    assert_eq!(told, Some(2), "NodeEvicted with the routers it held");
    let info = node_info(&mut client).await;
    let left: Vec<(u32, u32)> = info
        .workers
        .iter()
        .map(|w| (w.routers, w.transports))
        .collect();
    assert_eq!(left, vec![(0, 0), (0, 0)]);
    // Nothing to close a second time; the node serves on.
    let again = client.close_all(pb::CloseAllRequest {}).await.unwrap();
    assert_eq!(again.into_inner().routers, 0);
    router(&mut client, "after", 0).await;
}

/// The routers a `NodeEvicted` on `events` counts, if one comes within 5 s.
async fn node_evicted(events: &mut tonic::Streaming<pb::Event>) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(1), events.message())
            .await
            .map(|r| r.transpose())
        {
            if let Some(pb::event::Event::NodeEvicted(e)) = ev.event {
                return Some(e.routers);
            }
        }
    }
    None
}

/// Keyframe requests (PLI, FIR) in an RTCP compound packet.
fn key_frame_requests(rtcp: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at + 4 <= rtcp.len() {
        let (fmt, pt) = (rtcp[at] & 0x1f, rtcp[at + 1]);
        if pt == 206 && (fmt == 1 || fmt == 4) {
            n += 1;
        }
        at += 4 * (1 + usize::from(u16::from_be_bytes([rtcp[at + 2], rtcp[at + 3]])));
    }
    n
}

/// A camera on a comedia plain transport of `router_id` (VP8 answering PLI)
/// and `viewers` consumers of it on `viewer_routers` in turn, each sending a
/// PLI every 100 ms while the camera sends a keyframe every 20 ms for
/// `secs`: how many keyframe requests reached the camera, and how many the
/// viewers sent.
async fn key_frame_requests_at_the_camera(
    client: &mut Client,
    router_id: &str,
    viewer_routers: &[String],
    viewers: usize,
    secs: u64,
) -> (usize, usize) {
    let t = client
        .create_plain_transport(pb::CreatePlainTransportRequest {
            router_id: router_id.into(),
            participant_id: "camera".into(),
            comedia: true,
            enable_srtp: false,
            srtp_crypto_suite: String::new(),
        })
        .await
        .expect("camera transport")
        .into_inner();
    let ssrc = 4242;
    let rtp = serde_json::json!({
        "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "parameters": {},
                    "rtcpFeedback": [{"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"}]}],
        "encodings": [{"ssrc": ssrc}],
        "headerExtensions": [],
        "rtcp": {"cname": "camera", "reducedSize": true}
    });
    let producer = client
        .produce(pb::ProduceRequest {
            transport_id: t.transport_id.clone(),
            kind: pb::MediaKind::Video as i32,
            rtp_parameters_json: rtp.to_string(),
            paused: false,
            source: "camera".into(),
        })
        .await
        .expect("produce")
        .into_inner();
    for r in viewer_routers.iter().filter(|r| *r != router_id) {
        client
            .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
                producer_id: producer.producer_id.clone(),
                target_router_id: r.clone(),
            })
            .await
            .expect("pipe to the viewers' router");
    }
    let mut sinks = Vec::new();
    for i in 0..viewers {
        let sink = RtpSink::bind().await;
        let router = &viewer_routers[i % viewer_routers.len()];
        plain_consumer(
            client,
            router,
            &format!("viewer-{i}"),
            &producer.producer_id,
            sink.addr(),
        )
        .await;
        sinks.push(sink);
    }
    let camera = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let to = addr(&t.ip, t.port);
    let stop = Instant::now() + Duration::from_secs(secs);

    // The camera: a keyframe every 20 ms, counting what comes back.
    let sender = {
        let camera = camera.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while Instant::now() < stop {
                let p = rtp_packet(
                    101,
                    ssrc,
                    i as u16,
                    (i as u32) * 1800,
                    &vp8_keyframe_payload(i),
                );
                camera.send_to(&p, to).await.unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let counter = {
        let camera = camera.clone();
        tokio::spawn(async move {
            let mut n = 0;
            let mut buf = [0u8; 2048];
            let until = tokio::time::Instant::from_std(stop + Duration::from_millis(300));
            while let Ok(Ok(len)) = tokio::time::timeout_at(until, camera.recv(&mut buf)).await {
                if len >= 8 && (192..=223).contains(&buf[1]) {
                    n += key_frame_requests(&buf[..len]);
                }
            }
            n
        })
    };
    // The viewers: each learns its stream's SSRC from its first packet, then
    // asks for a keyframe every 100 ms from the socket the consumer sends to.
    let mut askers = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        askers.push(tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let (len, from) =
                tokio::time::timeout(Duration::from_secs(5), sink.socket.recv_from(&mut buf))
                    .await
                    .expect("the viewer gets media")
                    .unwrap();
            assert!(len >= 12);
            let media_ssrc = [buf[8], buf[9], buf[10], buf[11]];
            let mut pli = vec![0x81, 206, 0, 2];
            pli.extend_from_slice(&(9000 + i as u32).to_be_bytes());
            pli.extend_from_slice(&media_ssrc);
            let mut sent = 0;
            while Instant::now() < stop {
                sink.socket.send_to(&pli, from).await.unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Keep the socket's queue short.
                while sink.socket.try_recv(&mut buf).is_ok() {}
            }
            sent
        }));
    }
    let mut sent = 0;
    for a in askers {
        sent += a.await.unwrap();
    }
    sender.await.unwrap();
    (counter.await.unwrap(), sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_from_many_viewers_reach_the_camera_about_once_a_second() {
    // Two nodes, one throttled (the default) and one not, the same camera
    // and the same 40 viewers asking 10 times a second each, half of them on
    // a router of the other worker (through a pipe).
    let secs = 4;
    let throttled = node_env("kf-throttled", 2, None);
    let mut eager = node_env("kf-eager", 2, None);
    eager.insert("THRONG_KEY_FRAME_REQUEST_DELAY_MS".into(), "0".into());
    let mut counts = Vec::new();
    for env in [throttled, eager] {
        let node = InProcessNode::start(env).await;
        let mut client = node.client.clone();
        let r0 = router(&mut client, "event", 0).await.router_id;
        let r1 = router(&mut client, "event", 1).await.router_id;
        let (reached, sent) =
            key_frame_requests_at_the_camera(&mut client, &r0, &[r0.clone(), r1], 40, secs).await;
        counts.push((reached, sent));
        node.stop().await.expect("clean stop");
    }
    let ((throttled, sent), (eager, _)) = (counts[0], counts[1]);
    eprintln!("keyframe requests at the camera in {secs} s, {sent} asked: throttled {throttled}, unthrottled {eager}");
    assert!(
        sent >= 40 * 10 * secs as usize / 2,
        "the viewers asked {sent} times"
    );
    // One as the first viewer resumes, then at most one per second (the
    // delay ends and the requests held back go out as one).
    assert!(
        (2..=secs as usize + 2).contains(&throttled),
        "{throttled} keyframe requests reached the camera in {secs} s from {sent} asked"
    );
    // Without the delay every request that finds no keyframe pending goes
    // through: the camera answers each within 20 ms, so most of them do.
    assert!(
        eager >= 5 * throttled,
        "unthrottled {eager} vs throttled {throttled}: the delay made no difference"
    );
}
