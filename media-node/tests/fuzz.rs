//! Fuzzing the node's gRPC request validation on stable Rust (bolero's random
//! engine under the normal test runner), against a real node over gRPC on
//! 127.0.0.1: every string a request carries (ids, the JSON of DTLS and RTP
//! parameters and capabilities, layers) is random, or a real id of the
//! node's objects, or real JSON with random parts. Long run:
//! `BOLERO_RANDOM_TEST_TIME_MS=1800000 cargo nextest run -p media-node -E 'binary(fuzz)'`.
//!
//! Invariants: the node answers every call (no panic, no hang, no `Internal`
//! or `Unknown` status: a bad input is the caller's error, named); other
//! objects are undisturbed (the fixed router and transports keep working);
//! whatever the fuzzer created is gone after CloseParticipant.

mod common;

use std::time::Duration;

use bolero::generator::TypeGenerator;
use common::*;
use throng_proto::media as pb;
use throng_test_support::Cases;
use tonic::Code;

/// A string field: random, a real id, or real JSON with a random part.
#[derive(Debug, Clone, TypeGenerator)]
enum Field {
    Random(String),
    Known(u8),
    Json(u8, String),
    Number(i64),
}

/// One request with fuzzed fields.
#[derive(Debug, Clone, TypeGenerator)]
enum Call {
    CreateTransport(Field, bool),
    Connect(Field, Field),
    RestartIce(Field),
    Produce(Field, bool, Field, bool, String),
    Consume(Field, Field, Field),
    PauseConsumer(Field),
    ResumeConsumer(Field),
    Layers(Field, u32, Option<u32>),
    CloseConsumer(Field),
    CloseProducer(Field),
    GetRouter(Field),
    CreateRouter(String, u32),
    Pipe(Field, Field),
}

struct Known {
    router: String,
    ids: Vec<String>,
}

impl Known {
    fn field(&self, f: &Field) -> String {
        match f {
            Field::Random(s) => s.clone(),
            Field::Known(i) => self.ids[*i as usize % self.ids.len()].clone(),
            Field::Number(n) => n.to_string(),
            Field::Json(shape, s) => {
                let v = match shape % 6 {
                    0 => {
                        serde_json::json!({"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": s}]})
                    }
                    1 => serde_json::json!({"role": s, "fingerprints": []}),
                    2 => {
                        serde_json::json!({"mid": s, "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2}], "encodings": [{"ssrc": 1}]})
                    }
                    3 => {
                        serde_json::json!({"codecs": [{"kind": "audio", "mimeType": s, "clockRate": 48000}], "headerExtensions": []})
                    }
                    4 => serde_json::from_str::<serde_json::Value>(&opus_capabilities_json())
                        .unwrap(),
                    _ => serde_json::json!([s, {"x": s}]),
                };
                v.to_string()
            }
        }
    }
}

fn kind(audio: bool) -> i32 {
    if audio {
        pb::MediaKind::Audio as i32
    } else {
        pb::MediaKind::Video as i32
    }
}

async fn run(client: &mut Client, known: &mut Known, call: &Call) -> Result<(), tonic::Status> {
    let f = |x: &Field| known.field(x);
    match call {
        Call::CreateTransport(router, producing) => {
            let router_id = match router {
                Field::Known(_) => known.router.clone(),
                other => f(other),
            };
            let t = client
                .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                    router_id,
                    participant_id: "fuzzer".into(),
                    producing: *producing,
                    ..Default::default()
                })
                .await?
                .into_inner();
            known.ids.push(t.transport_id);
        }
        Call::Connect(t, dtls) => {
            client
                .connect_web_rtc_transport(pb::ConnectWebRtcTransportRequest {
                    transport_id: f(t),
                    dtls_parameters_json: f(dtls),
                })
                .await?;
        }
        Call::RestartIce(t) => {
            client
                .restart_ice(pb::RestartIceRequest { transport_id: f(t) })
                .await?;
        }
        Call::Produce(t, audio, rtp, paused, source) => {
            let p = client
                .produce(pb::ProduceRequest {
                    transport_id: f(t),
                    kind: kind(*audio),
                    rtp_parameters_json: f(rtp),
                    paused: *paused,
                    source: source.clone(),
                })
                .await?
                .into_inner();
            known.ids.push(p.producer_id);
        }
        Call::Consume(t, p, caps) => {
            let c = client
                .consume(pb::ConsumeRequest {
                    transport_id: f(t),
                    producer_id: f(p),
                    rtp_capabilities_json: f(caps),
                })
                .await?
                .into_inner();
            known.ids.push(c.consumer_id);
        }
        Call::PauseConsumer(c) => {
            client
                .pause_consumer(pb::ConsumerRequest { consumer_id: f(c) })
                .await?;
        }
        Call::ResumeConsumer(c) => {
            client
                .resume_consumer(pb::ConsumerRequest { consumer_id: f(c) })
                .await?;
        }
        Call::Layers(c, spatial, temporal) => {
            client
                .set_consumer_preferred_layers(pb::SetConsumerPreferredLayersRequest {
                    consumer_id: f(c),
                    spatial_layer: *spatial,
                    temporal_layer: *temporal,
                })
                .await?;
        }
        Call::CloseConsumer(c) => {
            client
                .close_consumer(pb::ConsumerRequest { consumer_id: f(c) })
                .await?;
        }
        Call::CloseProducer(p) => {
            client
                .close_producer(pb::ProducerRequest { producer_id: f(p) })
                .await?;
        }
        Call::GetRouter(r) => {
            client
                .get_router(pb::GetRouterRequest { router_id: f(r) })
                .await?;
        }
        Call::CreateRouter(room, worker) => {
            // Only refusals: a router made here would outlive the participant.
            if *worker < 2 && throng_proto::names::valid(room, throng_proto::names::MAX_ID) {
                return Ok(());
            }
            client
                .create_router(pb::CreateRouterRequest {
                    room_id: room.clone(),
                    worker_index: *worker,
                })
                .await?;
        }
        Call::Pipe(p, r) => {
            client
                .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
                    producer_id: f(p),
                    target_router_id: f(r),
                })
                .await?;
        }
    }
    Ok(())
}

#[test]
fn grpc_request_validation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (node, client, router) = rt.block_on(async {
        let node = InProcessNode::start(node_env("fuzz-node", 2, None)).await;
        let mut client = node.client.clone();
        let router = client
            .create_router(pb::CreateRouterRequest {
                room_id: "fuzz".into(),
                worker_index: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .router_id;
        (node, client, router)
    });
    // The engine catches a panic to report the input: what the closure holds
    // is only read, or cloned per case.
    let shared = std::panic::AssertUnwindSafe((&rt, client, router));
    let cases = Cases::new("node gRPC validation");
    bolero::check!()
        .with_type::<Vec<Call>>()
        .with_iterations(300)
        .for_each(|calls| {
            let (rt, client, router) = &*shared;
            cases.one();
            let mut client = client.clone();
            rt.block_on(async {
                let mut known = Known {
                    router: router.clone(),
                    ids: vec![router.clone()],
                };
                for call in calls.iter().take(30) {
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        run(&mut client, &mut known, call),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("no answer within 5 s to {call:?}"));
                    if let Err(status) = r {
                        assert!(
                            !matches!(
                                status.code(),
                                Code::Internal | Code::Unknown | Code::Unavailable
                            ),
                            "{call:?} -> {status:?}"
                        );
                        assert!(!status.message().is_empty(), "{call:?}: a refusal says why");
                    }
                }
                // The fixed router is undisturbed; the fuzzer's objects go.
                client
                    .get_router(pb::GetRouterRequest {
                        router_id: router.clone(),
                    })
                    .await
                    .expect("the router survived");
                client
                    .close_participant(pb::CloseParticipantRequest {
                        participant_id: "fuzzer".into(),
                    })
                    .await
                    .expect("close participant");
                let info = client
                    .get_node_info(pb::GetNodeInfoRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                let held = throng_test_support::node_totals(&info);
                assert_eq!(held, (1, 0, 0, 0), "left behind after {calls:?}");
            })
        });
    drop(cases);
    rt.block_on(async move {
        let _ = node.stop().await;
    });
}
