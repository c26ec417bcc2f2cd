//! Join path: coordinator --gRPC--> **rpc** -> [`crate::media`]. The tonic
//! service: every request's strings are parsed here into typed ids and
//! mediasoup parameters (a bad one is InvalidArgument naming the field), the
//! domain is called, and its result is turned into the reply. Errors become
//! gRPC statuses with a clear message, never a panic, and never disturb other
//! rooms.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use mediasoup::consumer::ConsumerLayers;
use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use mediasoup::types::data_structures::TransportTuple;
use throng_proto::media as pb;
use throng_proto::media::media_node_server::MediaNode;
use throng_proto::names;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::error::MediaError;
use crate::load::LoadTracker;
use crate::media::ingest::{wire, PlainSrtp};
use crate::media::webrtc::StatsTarget;
use crate::media::Rooms;

/// The check every call passes before the service sees it: the shared node
/// token as `authorization: Bearer <token>`, when the node has one. A call
/// without it is `Unauthenticated`, and nothing runs for it.
pub fn authenticate(
    token: Option<throng_ops::Secret>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let Some(token) = &token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(throng_ops::NODE_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok());
        if token.accepts_bearer(given) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(format!(
                "this media node needs its token ({}) as `authorization: Bearer …`",
                throng_ops::NODE_TOKEN
            )))
        }
    }
}

/// The gRPC service.
pub struct MediaService {
    rooms: Arc<Rooms>,
    load: LoadTracker,
    /// Becomes true when the node stops: event streams end then, or the
    /// server's graceful shutdown would wait for them forever.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl MediaService {
    /// A service over `rooms`.
    pub fn new(
        rooms: Arc<Rooms>,
        load: LoadTracker,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            rooms,
            load,
            stopping,
        }
    }
}

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Res<T> {
    Ok(Response::new(value))
}

fn done(r: Result<(), MediaError>) -> Res<pb::Empty> {
    r.map(|()| Response::new(pb::Empty {}))
        .map_err(Status::from)
}

// ----- parsing ------------------------------------------------------------

fn id<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, MediaError> {
    value
        .parse()
        .map_err(|_| MediaError::invalid(field, format!("{value:?} is not a valid id")))
}

fn json<T: serde::de::DeserializeOwned>(field: &'static str, text: &str) -> Result<T, MediaError> {
    serde_json::from_str(text).map_err(|e| MediaError::invalid(field, e))
}

fn name<'a>(field: &'static str, value: &'a str) -> Result<&'a str, MediaError> {
    if names::valid(value, names::MAX_ID) {
        Ok(value)
    } else {
        Err(MediaError::invalid(field, names::RULE))
    }
}

/// An optional label: empty, or a valid name of at most `max` characters.
fn label(field: &'static str, value: &str, max: usize) -> Result<(), MediaError> {
    if value.is_empty() || names::valid(value, max) {
        Ok(())
    } else {
        Err(MediaError::invalid(field, names::RULE))
    }
}

fn kind(value: i32) -> Result<MediaKind, MediaError> {
    match pb::MediaKind::try_from(value) {
        Ok(pb::MediaKind::Audio) => Ok(MediaKind::Audio),
        Ok(pb::MediaKind::Video) => Ok(MediaKind::Video),
        _ => Err(MediaError::invalid(
            "kind",
            "must be MEDIA_KIND_AUDIO or MEDIA_KIND_VIDEO",
        )),
    }
}

/// The far side of a pipe or plain transport, as a coordinator gave it.
fn remote(ip: &str, port: u32) -> Result<(IpAddr, u16), MediaError> {
    let ip: IpAddr = ip.parse().map_err(|e| MediaError::invalid("ip", e))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| MediaError::invalid("port", "1 to 65535"))?;
    Ok((ip, port))
}

fn layer(field: &'static str, value: u32) -> Result<u8, MediaError> {
    u8::try_from(value).map_err(|_| MediaError::invalid(field, "at most 255"))
}

// ----- replies ------------------------------------------------------------

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("mediasoup types serialize")
}

fn kind_pb(kind: MediaKind) -> i32 {
    match kind {
        MediaKind::Audio => pb::MediaKind::Audio as i32,
        MediaKind::Video => pb::MediaKind::Video as i32,
    }
}

fn router_info(router: &Router, worker: usize) -> pb::RouterInfo {
    pb::RouterInfo {
        router_id: router.id().to_string(),
        worker_index: worker as u32,
        rtp_capabilities_json: to_json(&router.rtp_capabilities()),
    }
}

fn tuple_addr(tuple: &TransportTuple) -> (String, u32) {
    (
        tuple.local_address().to_string(),
        u32::from(tuple.local_port()),
    )
}

fn consumer_type(consumer: &Consumer) -> String {
    serde_json::to_value(consumer.r#type())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl MediaNode for MediaService {
    async fn get_node_info(&self, _: Request<pb::GetNodeInfoRequest>) -> Res<pb::NodeInfo> {
        ok(self.load.report(&self.rooms).into())
    }

    async fn create_router(&self, req: Request<pb::CreateRouterRequest>) -> Res<pb::RouterInfo> {
        let r = req.into_inner();
        let room = name("room_id", &r.room_id)?;
        let worker = r.worker_index as usize;
        let router = self.rooms.create_router(room, worker).await?;
        ok(router_info(&router, worker))
    }

    async fn get_router(&self, req: Request<pb::GetRouterRequest>) -> Res<pb::RouterInfo> {
        let router_id: RouterId = id("router_id", &req.into_inner().router_id)?;
        let (router, worker) = self.rooms.router(router_id)?;
        ok(router_info(&router, worker))
    }

    async fn close_router(&self, req: Request<pb::CloseRouterRequest>) -> Res<pb::Empty> {
        let router_id = id("router_id", &req.into_inner().router_id)?;
        done(self.rooms.close_router(router_id))
    }

    async fn create_web_rtc_transport(
        &self,
        req: Request<pb::CreateWebRtcTransportRequest>,
    ) -> Res<pb::WebRtcTransportInfo> {
        let r = req.into_inner();
        let router_id = id("router_id", &r.router_id)?;
        let participant = name("participant_id", &r.participant_id)?;
        label("display_name", &r.display_name, names::MAX_DISPLAY_NAME)?;
        let t = self
            .rooms
            .create_webrtc_transport(router_id, participant, r.producing, &r.display_name)
            .await?;
        ok(pb::WebRtcTransportInfo {
            transport_id: t.id().to_string(),
            ice_parameters_json: to_json(t.ice_parameters()),
            ice_candidates_json: to_json(t.ice_candidates()),
            dtls_parameters_json: to_json(&t.dtls_parameters()),
        })
    }

    async fn connect_web_rtc_transport(
        &self,
        req: Request<pb::ConnectWebRtcTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        let transport_id = id("transport_id", &r.transport_id)?;
        self.rooms.check_transport(transport_id)?;
        let dtls = json("dtls_parameters_json", &r.dtls_parameters_json)?;
        done(
            self.rooms
                .connect_webrtc_transport(transport_id, dtls)
                .await,
        )
    }

    async fn restart_ice(
        &self,
        req: Request<pb::RestartIceRequest>,
    ) -> Res<pb::RestartIceResponse> {
        let transport_id = id("transport_id", &req.into_inner().transport_id)?;
        let params = self.rooms.restart_ice(transport_id).await?;
        ok(pb::RestartIceResponse {
            ice_parameters_json: to_json(&params),
        })
    }

    async fn close_transport(&self, req: Request<pb::CloseTransportRequest>) -> Res<pb::Empty> {
        let transport_id = id("transport_id", &req.into_inner().transport_id)?;
        done(self.rooms.close_transport(transport_id))
    }

    async fn produce(&self, req: Request<pb::ProduceRequest>) -> Res<pb::ProduceResponse> {
        let r = req.into_inner();
        let kind = kind(r.kind)?;
        let rtp = json("rtp_parameters_json", &r.rtp_parameters_json)?;
        let transport_id = id("transport_id", &r.transport_id)?;
        label("source", &r.source, names::MAX_SOURCE)?;
        let producer = self
            .rooms
            .produce(transport_id, kind, rtp, r.paused, &r.source)
            .await?;
        ok(pb::ProduceResponse {
            producer_id: producer.to_string(),
        })
    }

    async fn pause_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        let producer = id("producer_id", &req.into_inner().producer_id)?;
        done(self.rooms.pause_producer(producer).await)
    }

    async fn resume_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        let producer = id("producer_id", &req.into_inner().producer_id)?;
        done(self.rooms.resume_producer(producer).await)
    }

    async fn close_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        let producer = id("producer_id", &req.into_inner().producer_id)?;
        done(self.rooms.close_producer(producer))
    }

    async fn consume(&self, req: Request<pb::ConsumeRequest>) -> Res<pb::ConsumeResponse> {
        let r = req.into_inner();
        let producer_id: ProducerId = id("producer_id", &r.producer_id)?;
        let caps = json("rtp_capabilities_json", &r.rtp_capabilities_json)?;
        let transport_id = id("transport_id", &r.transport_id)?;
        let c = self.rooms.consume(transport_id, producer_id, caps).await?;
        ok(pb::ConsumeResponse {
            consumer_id: c.id().to_string(),
            producer_id: producer_id.to_string(),
            kind: kind_pb(c.kind()),
            rtp_parameters_json: to_json(c.rtp_parameters()),
            consumer_type: consumer_type(&c),
            producer_paused: c.producer_paused(),
        })
    }

    async fn pause_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        let consumer = id("consumer_id", &req.into_inner().consumer_id)?;
        done(self.rooms.pause_consumer(consumer).await)
    }

    async fn resume_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        let consumer = id("consumer_id", &req.into_inner().consumer_id)?;
        done(self.rooms.resume_consumer(consumer).await)
    }

    async fn set_consumer_preferred_layers(
        &self,
        req: Request<pb::SetConsumerPreferredLayersRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        let consumer = id("consumer_id", &r.consumer_id)?;
        let layers = ConsumerLayers {
            spatial_layer: layer("spatial_layer", r.spatial_layer)?,
            temporal_layer: r
                .temporal_layer
                .map(|t| layer("temporal_layer", t))
                .transpose()?,
        };
        done(self.rooms.set_preferred_layers(consumer, layers).await)
    }

    async fn close_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        let consumer = id("consumer_id", &req.into_inner().consumer_id)?;
        done(self.rooms.close_consumer(consumer))
    }

    async fn close_participant(&self, req: Request<pb::CloseParticipantRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        let participant = name("participant_id", &r.participant_id)?;
        self.rooms.close_participant(participant);
        ok(pb::Empty {})
    }

    async fn close_all(&self, _: Request<pb::CloseAllRequest>) -> Res<pb::CloseAllResponse> {
        warn!(
            routers = self.rooms.router_count(),
            "the coordinator evicted this node while it could not reach it: closing everything it held"
        );
        let routers = self.rooms.evicted() as u32;
        ok(pb::CloseAllResponse { routers })
    }

    async fn describe_room(
        &self,
        req: Request<pb::DescribeRoomRequest>,
    ) -> Res<pb::RoomDescription> {
        let r = req.into_inner();
        let room = name("room_id", &r.room_id)?;
        let routers = self
            .rooms
            .describe_room(room)
            .into_iter()
            .map(|d| pb::RouterDescription {
                router: Some(router_info(&d.router, d.worker)),
                transports: d
                    .transports
                    .into_iter()
                    .map(|t| pb::TransportDescription {
                        transport_id: t.id.to_string(),
                        participant_id: t.participant,
                        producing: t.producing,
                        display_name: t.display_name,
                    })
                    .collect(),
                producers: d
                    .producers
                    .into_iter()
                    .map(|p| pb::ProducerDescription {
                        producer_id: p.id.to_string(),
                        transport_id: p.transport.map(|t| t.to_string()).unwrap_or_default(),
                        kind: kind_pb(p.kind),
                        paused: p.paused,
                        source: p.source,
                    })
                    .collect(),
                consumers: d
                    .consumers
                    .into_iter()
                    .map(|c| pb::ConsumerDescription {
                        consumer_id: c.id.to_string(),
                        transport_id: c.transport.to_string(),
                        producer_id: c.producer.to_string(),
                        paused: c.paused,
                    })
                    .collect(),
            })
            .collect();
        ok(pb::RoomDescription { routers })
    }

    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Res<pb::GetStatsResponse> {
        use pb::get_stats_request::Target;
        let target = match req.into_inner().target {
            Some(Target::TransportId(t)) => StatsTarget::Transport(id("transport_id", &t)?),
            Some(Target::ProducerId(p)) => StatsTarget::Producer(id("producer_id", &p)?),
            Some(Target::ConsumerId(c)) => StatsTarget::Consumer(id("consumer_id", &c)?),
            None => {
                return Err(Status::invalid_argument(
                    "one of transport_id, producer_id, consumer_id is required",
                ))
            }
        };
        ok(pb::GetStatsResponse {
            stats_json: self.rooms.stats(target).await?.to_string(),
        })
    }

    async fn pipe_producer_to_router(
        &self,
        req: Request<pb::PipeProducerToRouterRequest>,
    ) -> Res<pb::PipeProducerToRouterResponse> {
        let r = req.into_inner();
        let target = id("target_router_id", &r.target_router_id)?;
        let producer = id("producer_id", &r.producer_id)?;
        self.rooms.pipe_producer_to_router(producer, target).await?;
        ok(pb::PipeProducerToRouterResponse {
            pipe_producer_id: r.producer_id,
        })
    }

    async fn create_pipe_transport(
        &self,
        req: Request<pb::CreatePipeTransportRequest>,
    ) -> Res<pb::PipeTransportInfo> {
        let router_id = id("router_id", &req.into_inner().router_id)?;
        let pipe = self.rooms.create_pipe_transport(router_id).await?;
        let (ip, port) = tuple_addr(&pipe.tuple());
        ok(pb::PipeTransportInfo {
            pipe_transport_id: pipe.id().to_string(),
            ip,
            port,
            srtp_parameters_json: to_json(&pipe.srtp_parameters().expect("SRTP enabled")),
        })
    }

    async fn connect_pipe_transport(
        &self,
        req: Request<pb::ConnectPipeTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        let pipe = id("pipe_transport_id", &r.pipe_transport_id)?;
        self.rooms.check_transport(pipe)?;
        let (ip, port) = remote(&r.ip, r.port)?;
        let srtp = json("srtp_parameters_json", &r.srtp_parameters_json)?;
        done(
            self.rooms
                .connect_pipe_transport(pipe, ip, port, srtp)
                .await,
        )
    }

    async fn consume_to_pipe(
        &self,
        req: Request<pb::ConsumeToPipeRequest>,
    ) -> Res<pb::ConsumeToPipeResponse> {
        let r = req.into_inner();
        let pipe = id("pipe_transport_id", &r.pipe_transport_id)?;
        let producer = id("producer_id", &r.producer_id)?;
        let c = self.rooms.consume_to_pipe(pipe, producer).await?;
        ok(pb::ConsumeToPipeResponse {
            pipe_consumer_id: c.id().to_string(),
            kind: kind_pb(c.kind()),
            rtp_parameters_json: to_json(c.rtp_parameters()),
            producer_paused: c.producer_paused(),
        })
    }

    async fn produce_from_pipe(
        &self,
        req: Request<pb::ProduceFromPipeRequest>,
    ) -> Res<pb::ProduceResponse> {
        let r = req.into_inner();
        let pipe = id("pipe_transport_id", &r.pipe_transport_id)?;
        let producer = id("producer_id", &r.producer_id)?;
        let kind = kind(r.kind)?;
        let rtp = json("rtp_parameters_json", &r.rtp_parameters_json)?;
        let id = self
            .rooms
            .produce_from_pipe(pipe, producer, kind, rtp, r.paused)
            .await?;
        ok(pb::ProduceResponse {
            producer_id: id.to_string(),
        })
    }

    async fn create_plain_transport(
        &self,
        req: Request<pb::CreatePlainTransportRequest>,
    ) -> Res<pb::PlainTransportInfo> {
        let r = req.into_inner();
        let router_id = id("router_id", &r.router_id)?;
        let participant = name("participant_id", &r.participant_id)?;
        let srtp = match (r.enable_srtp, r.srtp_crypto_suite.as_str()) {
            (false, _) => PlainSrtp::Off,
            (true, "") => PlainSrtp::Default,
            (true, suite) => PlainSrtp::Suite(
                serde_json::from_value(serde_json::Value::String(suite.to_string())).map_err(
                    |_| {
                        MediaError::invalid("srtp_crypto_suite", format!("unknown suite {suite:?}"))
                    },
                )?,
            ),
        };
        let t = self
            .rooms
            .create_plain_transport(router_id, participant, r.comedia, srtp)
            .await?;
        let (ip, port) = tuple_addr(&t.tuple());
        ok(pb::PlainTransportInfo {
            transport_id: t.id().to_string(),
            ip,
            port,
            srtp_parameters_json: t.srtp_parameters().map(|p| to_json(&p)).unwrap_or_default(),
        })
    }

    async fn connect_plain_transport(
        &self,
        req: Request<pb::ConnectPlainTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        let transport_id = id("transport_id", &r.transport_id)?;
        self.rooms.check_transport(transport_id)?;
        let (ip, port) = remote(&r.ip, r.port)?;
        let srtp = if r.srtp_parameters_json.is_empty() {
            None
        } else {
            Some(json("srtp_parameters_json", &r.srtp_parameters_json)?)
        };
        done(
            self.rooms
                .connect_plain_transport(transport_id, ip, port, srtp)
                .await,
        )
    }

    async fn create_ingest(&self, req: Request<pb::CreateIngestRequest>) -> Res<pb::IngestInfo> {
        let r = req.into_inner();
        let router_id = id("router_id", &r.router_id)?;
        let participant = name("participant_id", &r.participant_id)?;
        let i = self.rooms.create_ingest(router_id, participant).await?;
        let (ip, audio_port) = tuple_addr(&i.audio.tuple());
        let (_, video_port) = tuple_addr(&i.video.tuple());
        let rtcp = |t: &PlainTransport| t.rtcp_tuple().map_or(0, |tuple| tuple_addr(&tuple).1);
        ok(pb::IngestInfo {
            ip,
            audio_port,
            video_port,
            audio_payload_type: u32::from(wire::AUDIO_PT),
            video_payload_type: u32::from(wire::VIDEO_PT),
            audio_ssrc: wire::AUDIO_SSRC,
            video_ssrc: wire::VIDEO_SSRC,
            audio_producer_id: i.audio_producer.to_string(),
            video_producer_id: i.video_producer.to_string(),
            audio_rtcp_port: rtcp(&i.audio),
            video_rtcp_port: rtcp(&i.video),
        })
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

    async fn events(&self, _: Request<pb::EventsRequest>) -> Res<Self::EventsStream> {
        let rx = self.rooms.subscribe();
        // Ends after the first error: a coordinator that fell so far behind
        // that events were dropped must reconnect and resynchronise.
        let stream = futures::stream::unfold(Some(rx), |state| async move {
            let mut rx = state?;
            match rx.recv().await {
                Ok(event) => Some((Ok(event), Some(rx))),
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "events subscriber lagged; closing its stream");
                    Some((
                        Err(Status::data_loss(format!(
                            "{n} events were dropped; resubscribe"
                        ))),
                        None,
                    ))
                }
                Err(RecvError::Closed) => None,
            }
        });
        let mut stopping = self.stopping.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        ok(Box::pin(stream.take_until(stopped)))
    }
}
