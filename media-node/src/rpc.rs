//! Join path: coordinator --gRPC--> node. The tonic service validates each
//! request and delegates to [`Rooms`]; errors become gRPC statuses with a
//! clear message, never a panic, and never disturb other rooms.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use throng_proto::media as pb;
use throng_proto::media::media_node_server::MediaNode;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::error::MediaError;
use crate::rooms::{self, Rooms};

/// Facts about the node that do not change while it runs.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node id.
    pub node_id: String,
    /// Address coordinators dial.
    pub grpc_address: String,
    /// Address announced in ICE candidates.
    pub announced_address: String,
}

/// The gRPC service.
pub struct MediaService {
    rooms: Arc<Rooms>,
    identity: NodeIdentity,
    load: crate::load::LoadTracker,
    /// Becomes true when the node stops: event streams end then, or the
    /// server's graceful shutdown would wait for them forever.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl MediaService {
    /// A service over `rooms`.
    pub fn new(
        rooms: Arc<Rooms>,
        identity: NodeIdentity,
        load: crate::load::LoadTracker,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            rooms,
            identity,
            load,
            stopping,
        }
    }
}

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Res<T> {
    Ok(Response::new(value))
}

fn router_info(router: &mediasoup::router::Router, worker: usize) -> pb::RouterInfo {
    pb::RouterInfo {
        router_id: router.id().to_string(),
        worker_index: worker as u32,
        rtp_capabilities_json: serde_json::to_string(&router.rtp_capabilities())
            .expect("serialize"),
    }
}

fn empty(r: Result<(), MediaError>) -> Res<pb::Empty> {
    r.map(|()| Response::new(pb::Empty {}))
        .map_err(Status::from)
}

#[tonic::async_trait]
impl MediaNode for MediaService {
    async fn get_node_info(&self, _: Request<pb::GetNodeInfoRequest>) -> Res<pb::NodeInfo> {
        ok(self.load.node_info(&self.identity, &self.rooms))
    }

    async fn create_router(&self, req: Request<pb::CreateRouterRequest>) -> Res<pb::RouterInfo> {
        let r = req.into_inner();
        let (router, worker) = self
            .rooms
            .create_router(&r.room_id, r.worker_index as usize)
            .await?;
        ok(router_info(&router, worker))
    }

    async fn get_router(&self, req: Request<pb::GetRouterRequest>) -> Res<pb::RouterInfo> {
        let (router, worker) = self.rooms.router(&req.into_inner().router_id)?;
        ok(router_info(&router, worker))
    }

    async fn close_router(&self, req: Request<pb::CloseRouterRequest>) -> Res<pb::Empty> {
        empty(self.rooms.close_router(&req.into_inner().router_id))
    }

    async fn create_web_rtc_transport(
        &self,
        req: Request<pb::CreateWebRtcTransportRequest>,
    ) -> Res<pb::WebRtcTransportInfo> {
        let r = req.into_inner();
        let t = self
            .rooms
            .create_webrtc_transport(&r.router_id, &r.participant_id, r.producing)
            .await?;
        ok(pb::WebRtcTransportInfo {
            transport_id: t.id.to_string(),
            ice_parameters_json: t.ice_parameters_json,
            ice_candidates_json: t.ice_candidates_json,
            dtls_parameters_json: t.dtls_parameters_json,
        })
    }

    async fn connect_web_rtc_transport(
        &self,
        req: Request<pb::ConnectWebRtcTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        empty(
            self.rooms
                .connect_webrtc_transport(&r.transport_id, &r.dtls_parameters_json)
                .await,
        )
    }

    async fn restart_ice(
        &self,
        req: Request<pb::RestartIceRequest>,
    ) -> Res<pb::RestartIceResponse> {
        let ice_parameters_json = self
            .rooms
            .restart_ice(&req.into_inner().transport_id)
            .await?;
        ok(pb::RestartIceResponse {
            ice_parameters_json,
        })
    }

    async fn close_transport(&self, req: Request<pb::CloseTransportRequest>) -> Res<pb::Empty> {
        empty(self.rooms.close_transport(&req.into_inner().transport_id))
    }

    async fn produce(&self, req: Request<pb::ProduceRequest>) -> Res<pb::ProduceResponse> {
        let r = req.into_inner();
        let id = self
            .rooms
            .produce(&r.transport_id, r.kind, &r.rtp_parameters_json, r.paused)
            .await?;
        ok(pb::ProduceResponse {
            producer_id: id.to_string(),
        })
    }

    async fn pause_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        empty(
            self.rooms
                .pause_producer(&req.into_inner().producer_id)
                .await,
        )
    }

    async fn resume_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        empty(
            self.rooms
                .resume_producer(&req.into_inner().producer_id)
                .await,
        )
    }

    async fn close_producer(&self, req: Request<pb::ProducerRequest>) -> Res<pb::Empty> {
        empty(self.rooms.close_producer(&req.into_inner().producer_id))
    }

    async fn consume(&self, req: Request<pb::ConsumeRequest>) -> Res<pb::ConsumeResponse> {
        let r = req.into_inner();
        let c = self
            .rooms
            .consume(&r.transport_id, &r.producer_id, &r.rtp_capabilities_json)
            .await?;
        ok(pb::ConsumeResponse {
            consumer_id: c.id.to_string(),
            producer_id: c.producer_id.to_string(),
            kind: rooms::kind_pb(c.kind),
            rtp_parameters_json: c.rtp_parameters_json,
            consumer_type: c.consumer_type,
            producer_paused: c.producer_paused,
        })
    }

    async fn pause_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        empty(
            self.rooms
                .pause_consumer(&req.into_inner().consumer_id)
                .await,
        )
    }

    async fn resume_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        empty(
            self.rooms
                .resume_consumer(&req.into_inner().consumer_id)
                .await,
        )
    }

    async fn set_consumer_preferred_layers(
        &self,
        req: Request<pb::SetConsumerPreferredLayersRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        empty(
            self.rooms
                .set_preferred_layers(&r.consumer_id, r.spatial_layer, r.temporal_layer)
                .await,
        )
    }

    async fn close_consumer(&self, req: Request<pb::ConsumerRequest>) -> Res<pb::Empty> {
        empty(self.rooms.close_consumer(&req.into_inner().consumer_id))
    }

    async fn close_participant(&self, req: Request<pb::CloseParticipantRequest>) -> Res<pb::Empty> {
        empty(
            self.rooms
                .close_participant(&req.into_inner().participant_id)
                .map(|_| ()),
        )
    }

    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Res<pb::GetStatsResponse> {
        let target = req.into_inner().target.ok_or_else(|| {
            Status::invalid_argument("one of transport_id, producer_id, consumer_id is required")
        })?;
        ok(pb::GetStatsResponse {
            stats_json: self.rooms.stats(&target).await?,
        })
    }

    async fn pipe_producer_to_router(
        &self,
        req: Request<pb::PipeProducerToRouterRequest>,
    ) -> Res<pb::PipeProducerToRouterResponse> {
        let r = req.into_inner();
        self.rooms
            .pipe_producer_to_router(&r.producer_id, &r.target_router_id)
            .await?;
        ok(pb::PipeProducerToRouterResponse {
            pipe_producer_id: r.producer_id,
        })
    }

    async fn create_pipe_transport(
        &self,
        req: Request<pb::CreatePipeTransportRequest>,
    ) -> Res<pb::PipeTransportInfo> {
        let p = self
            .rooms
            .create_pipe_transport(&req.into_inner().router_id)
            .await?;
        ok(pb::PipeTransportInfo {
            pipe_transport_id: p.id.to_string(),
            ip: p.ip,
            port: u32::from(p.port),
            srtp_parameters_json: p.srtp_parameters_json,
        })
    }

    async fn connect_pipe_transport(
        &self,
        req: Request<pb::ConnectPipeTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        empty(
            self.rooms
                .connect_pipe_transport(
                    &r.pipe_transport_id,
                    &r.ip,
                    r.port,
                    &r.srtp_parameters_json,
                )
                .await,
        )
    }

    async fn consume_to_pipe(
        &self,
        req: Request<pb::ConsumeToPipeRequest>,
    ) -> Res<pb::ConsumeToPipeResponse> {
        let r = req.into_inner();
        let c = self
            .rooms
            .consume_to_pipe(&r.pipe_transport_id, &r.producer_id)
            .await?;
        ok(pb::ConsumeToPipeResponse {
            pipe_consumer_id: c.id.to_string(),
            kind: rooms::kind_pb(c.kind),
            rtp_parameters_json: c.rtp_parameters_json,
            producer_paused: c.producer_paused,
        })
    }

    async fn produce_from_pipe(
        &self,
        req: Request<pb::ProduceFromPipeRequest>,
    ) -> Res<pb::ProduceResponse> {
        let r = req.into_inner();
        let id = self
            .rooms
            .produce_from_pipe(
                &r.pipe_transport_id,
                &r.producer_id,
                r.kind,
                &r.rtp_parameters_json,
                r.paused,
            )
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
        let suite = r.enable_srtp.then_some(r.srtp_crypto_suite.as_str());
        let t = self
            .rooms
            .create_plain_transport(&r.router_id, &r.participant_id, r.comedia, suite)
            .await?;
        ok(pb::PlainTransportInfo {
            transport_id: t.id.to_string(),
            ip: t.ip,
            port: u32::from(t.port),
            srtp_parameters_json: t.srtp_parameters_json,
        })
    }

    async fn connect_plain_transport(
        &self,
        req: Request<pb::ConnectPlainTransportRequest>,
    ) -> Res<pb::Empty> {
        let r = req.into_inner();
        empty(
            self.rooms
                .connect_plain_transport(&r.transport_id, &r.ip, r.port, &r.srtp_parameters_json)
                .await,
        )
    }

    async fn create_ingest(&self, req: Request<pb::CreateIngestRequest>) -> Res<pb::IngestInfo> {
        let r = req.into_inner();
        let i = self
            .rooms
            .create_ingest(&r.router_id, &r.participant_id)
            .await?;
        ok(pb::IngestInfo {
            ip: i.ip,
            audio_port: u32::from(i.audio_port),
            video_port: u32::from(i.video_port),
            audio_payload_type: u32::from(rooms::ingest::AUDIO_PT),
            video_payload_type: u32::from(rooms::ingest::VIDEO_PT),
            audio_ssrc: rooms::ingest::AUDIO_SSRC,
            video_ssrc: rooms::ingest::VIDEO_SSRC,
            audio_producer_id: i.audio_producer_id.to_string(),
            video_producer_id: i.video_producer_id.to_string(),
            audio_rtcp_port: u32::from(i.audio_rtcp_port),
            video_rtcp_port: u32::from(i.video_rtcp_port),
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
