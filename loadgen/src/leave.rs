//! `leave-surge`: a media node's registry under a leave surge, driven over
//! its gRPC API (no coordinator). One router; `participants` each with a send
//! and a receive transport, an audio producer and `consumers` consumers of
//! other participants' producers; then every participant leaves at once
//! (CloseParticipant, all in flight together). Reports how long the removals
//! took and when the node's counts were back to zero. The same run against
//! two builds of the node compares their registries.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use tonic::transport::Channel;

/// What to build before everyone leaves.
#[derive(Debug, Clone)]
pub struct LeaveArgs {
    /// The node's gRPC address (host:port).
    pub node: String,
    /// Participants.
    pub participants: usize,
    /// Consumers per participant (of the next participants' producers).
    pub consumers: usize,
}

/// What a leave surge measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaveReport {
    /// Participants that left.
    pub participants: usize,
    /// Objects on the node before: transports, producers, consumers.
    pub before: (u32, u32, u32),
    /// Setting it all up, seconds.
    pub setup_secs: f64,
    /// From the first CloseParticipant sent to the last answered, seconds.
    pub removal_secs: f64,
    /// The slowest single CloseParticipant, seconds.
    pub slowest_call_secs: f64,
    /// From the first CloseParticipant to the node counting zero, seconds.
    pub to_zero_secs: f64,
    /// Objects left at the end (zero unless something leaked).
    pub after: (u32, u32, u32),
}

type Client = MediaNodeClient<Channel>;

fn rtp_parameters(ssrc: u32) -> String {
    serde_json::json!({
        "mid": "0",
        "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": format!("p{ssrc}"), "reducedSize": true}
    })
    .to_string()
}

fn capabilities() -> String {
    serde_json::json!({
        "codecs": [{"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []}],
        "headerExtensions": []
    })
    .to_string()
}

async fn counts(client: &mut Client) -> Result<(u32, u32, u32, u32), String> {
    let info = client
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(info.workers.iter().fold((0, 0, 0, 0), |a, w| {
        (
            a.0 + w.routers,
            a.1 + w.transports,
            a.2 + w.producers,
            a.3 + w.consumers,
        )
    }))
}

/// Calls in flight at once while setting up.
const SETUP_CONCURRENCY: usize = 16;

/// Runs a leave surge.
pub async fn leave_surge(args: &LeaveArgs) -> Result<LeaveReport, String> {
    if args.participants < 2 || args.consumers >= args.participants {
        return Err("participants >= 2 and consumers < participants".into());
    }
    let mut client = MediaNodeClient::connect(format!("http://{}", args.node))
        .await
        .map_err(|e| format!("{}: {e}", args.node))?;
    let start = counts(&mut client).await?;
    let setup = Instant::now();
    let router = client
        .create_router(pb::CreateRouterRequest {
            room_id: "leave-surge".into(),
            worker_index: 0,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .router_id;
    let n = args.participants;
    // Transports and producers of everyone.
    let made: Vec<Result<(String, String), String>> = stream::iter(0..n)
        .map(|i| {
            let (mut c, router) = (client.clone(), router.clone());
            async move {
                let participant = format!("leaver-{i}");
                let mut transports = Vec::with_capacity(2);
                for producing in [true, false] {
                    let t = c
                        .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                            router_id: router.clone(),
                            participant_id: participant.clone(),
                            producing,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    transports.push(t.into_inner().transport_id);
                }
                let (send, recv) = (transports[0].clone(), transports[1].clone());
                let producer = c
                    .produce(pb::ProduceRequest {
                        transport_id: send,
                        kind: pb::MediaKind::Audio as i32,
                        rtp_parameters_json: rtp_parameters(10_000 + i as u32),
                        paused: false,
                        source: "mic".into(),
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .producer_id;
                Ok((recv, producer))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let made: Vec<(String, String)> = made.into_iter().collect::<Result<_, _>>()?;
    // Each consumes the next `consumers` participants' producers.
    let consumes = (0..n).flat_map(|i| (1..=args.consumers).map(move |k| (i, (i + k) % n)));
    let consumed: Vec<Result<(), String>> = stream::iter(consumes)
        .map(|(i, j)| {
            let mut c = client.clone();
            let (recv, producer) = (made[i].0.clone(), made[j].1.clone());
            async move {
                c.consume(pb::ConsumeRequest {
                    transport_id: recv,
                    producer_id: producer,
                    rtp_capabilities_json: capabilities(),
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    consumed.into_iter().collect::<Result<Vec<()>, _>>()?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let full = counts(&mut client).await?;
    let before = (
        full.1.saturating_sub(start.1),
        full.2.saturating_sub(start.2),
        full.3.saturating_sub(start.3),
    );

    // Everyone leaves at once.
    let t0 = Instant::now();
    let calls = (0..n).map(|i| {
        let mut c = client.clone();
        async move {
            let t = Instant::now();
            c.close_participant(pb::CloseParticipantRequest {
                participant_id: format!("leaver-{i}"),
            })
            .await
            .map(|_| t.elapsed())
            .map_err(|e| e.to_string())
        }
    });
    let answered: Vec<Result<Duration, String>> = futures::future::join_all(calls).await;
    let removal_secs = t0.elapsed().as_secs_f64();
    let slowest = answered
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = counts(&mut client).await?;
    while (now.1, now.2, now.3) != (start.1, start.2, start.3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        now = counts(&mut client).await?;
    }
    let to_zero_secs = t0.elapsed().as_secs_f64();
    client
        .close_router(pb::CloseRouterRequest { router_id: router })
        .await
        .map_err(|e| e.to_string())?;
    Ok(LeaveReport {
        participants: n,
        before,
        setup_secs,
        removal_secs,
        slowest_call_secs: slowest.as_secs_f64(),
        to_zero_secs,
        after: (
            now.1.saturating_sub(start.1),
            now.2.saturating_sub(start.2),
            now.3.saturating_sub(start.3),
        ),
    })
}
