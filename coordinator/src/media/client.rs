//! Join path: placement / room -> **media client** -> node. One gRPC channel
//! per media node (HTTP/2 multiplexes every call), dialled lazily at the
//! address the node reports, with a deadline on every call. [`NodeClient`]
//! has one method per RPC, taking typed arguments and returning typed
//! answers or one error type, [`NodeCallError`]; the JSON blobs of the
//! contract are parsed here and nowhere else. Getting a client starts
//! nothing: event streams are the cluster's (`crate::cluster`).
//!
//! About 625 lines: one method per RPC of the contract (thirty of them), each
//! short; splitting them by object kind would spread one type over files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use throng_telemetry::grpc::{Client as Traced, ClientLayer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::metrics::Metrics;
use crate::protocol::{ConsumerCreated, Direction, MediaKind, TransportCreated};

/// Deadline of one media call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A media call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeCallError {
    /// The node's address is unusable.
    #[error("bad address for node {node}: {address}")]
    BadAddress {
        /// Node id.
        node: String,
        /// Address reported.
        address: String,
    },
    /// The node answered with an error status (or could not be reached).
    #[error("node {node}: {status}")]
    Status {
        /// Node id.
        node: String,
        /// gRPC status.
        status: tonic::Status,
    },
    /// The node's answer is not what the contract says.
    #[error("node {node} sent a bad {field}")]
    BadReply {
        /// Node id.
        node: String,
        /// Which field.
        field: &'static str,
    },
}

impl NodeCallError {
    /// The gRPC code, if the node answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status { status, .. } => Some(status.code()),
            Self::BadAddress { .. } | Self::BadReply { .. } => None,
        }
    }

    /// The node answered that the object does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }
}

type Res<T> = Result<T, NodeCallError>;

/// A router of a room, as the coordinator knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterRef {
    /// Router id.
    pub router_id: String,
    /// Its node.
    pub node_id: String,
    /// Its worker on that node.
    pub worker: u32,
    /// The node's gRPC address.
    pub address: String,
    /// The router's RTP capabilities (shared: a reference is cloned per
    /// consume and per join; the JSON is a few hundred values).
    pub caps: std::sync::Arc<Value>,
}

/// One end of a cross-node pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeEnd {
    /// Pipe transport id.
    pub id: String,
    /// Where the other end sends.
    pub ip: String,
    /// Port.
    pub port: u32,
    /// This end's SRTP parameters (JSON).
    pub srtp_parameters_json: String,
}

/// What a pipe consumer carries, for the producer at the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeConsumed {
    /// Kind (as the contract's enum).
    pub kind: i32,
    /// RtpParameters (JSON) of the pipe consumer.
    pub rtp_parameters_json: String,
    /// Whether the source is paused.
    pub producer_paused: bool,
}

/// A router the node created or found.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterFound {
    /// Router id.
    pub router_id: String,
    /// RTP capabilities.
    pub caps: Value,
}

/// Consumer operations that need nothing back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerCall {
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Close.
    Close,
    /// Preferred layers.
    Layers {
        /// Spatial.
        spatial: u32,
        /// Temporal.
        temporal: Option<u32>,
    },
}

/// The channel to a node, with a span and timing per call (the trace
/// context goes to the node in the call's headers) and the node token on
/// every call.
type NodeChannel = InterceptedService<Traced<Channel>, NodeAuth>;

/// Puts the shared node token (`THRONG_NODE_TOKEN`) on every call.
#[derive(Clone)]
pub struct NodeAuth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl NodeAuth {
    /// Sends `token` as `authorization: Bearer <token>`; `None` sends nothing.
    pub fn new(token: Option<&throng_ops::Secret>) -> Self {
        Self(token.map(|t| {
            t.bearer()
                .parse()
                .expect("a node token is printable ASCII (checked by the config)")
        }))
    }
}

impl tonic::service::Interceptor for NodeAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request
                .metadata_mut()
                .insert(throng_ops::NODE_TOKEN_HEADER, v.clone());
        }
        Ok(request)
    }
}

/// A typed client of one media node.
#[derive(Clone)]
pub struct NodeClient {
    node: String,
    inner: MediaNodeClient<NodeChannel>,
}

fn kind_of(kind: i32) -> Option<MediaKind> {
    match pb::MediaKind::try_from(kind) {
        Ok(pb::MediaKind::Audio) => Some(MediaKind::Audio),
        Ok(pb::MediaKind::Video) => Some(MediaKind::Video),
        _ => None,
    }
}

impl NodeClient {
    /// The node this client calls.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    fn status(&self) -> impl Fn(tonic::Status) -> NodeCallError + '_ {
        move |status| NodeCallError::Status {
            node: self.node.clone(),
            status,
        }
    }

    fn json(&self, field: &'static str, text: &str) -> Res<Value> {
        serde_json::from_str(text).map_err(|_| NodeCallError::BadReply {
            node: self.node.clone(),
            field,
        })
    }

    fn rpc(&self) -> MediaNodeClient<NodeChannel> {
        self.inner.clone()
    }

    /// GetNodeInfo.
    pub async fn node_info(&self) -> Res<pb::NodeInfo> {
        let r = self.rpc().get_node_info(pb::GetNodeInfoRequest {}).await;
        Ok(r.map_err(self.status())?.into_inner())
    }

    fn router_found(&self, info: pb::RouterInfo) -> Res<RouterFound> {
        Ok(RouterFound {
            caps: self.json("rtp capabilities", &info.rtp_capabilities_json)?,
            router_id: info.router_id,
        })
    }

    /// CreateRouter.
    pub async fn create_router(&self, room_id: &str, worker: u32) -> Res<RouterFound> {
        let r = self
            .rpc()
            .create_router(pb::CreateRouterRequest {
                room_id: room_id.into(),
                worker_index: worker,
            })
            .await;
        self.router_found(r.map_err(self.status())?.into_inner())
    }

    /// GetRouter.
    pub async fn get_router(&self, router_id: &str) -> Res<RouterFound> {
        let r = self
            .rpc()
            .get_router(pb::GetRouterRequest {
                router_id: router_id.into(),
            })
            .await;
        self.router_found(r.map_err(self.status())?.into_inner())
    }

    /// CloseRouter.
    pub async fn close_router(&self, router_id: &str) -> Res<()> {
        self.rpc()
            .close_router(pb::CloseRouterRequest {
                router_id: router_id.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// CreateWebRtcTransport.
    pub async fn create_webrtc_transport(
        &self,
        router_id: &str,
        participant: &str,
        direction: Direction,
        display_name: &str,
    ) -> Res<TransportCreated> {
        let t = self
            .rpc()
            .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                router_id: router_id.into(),
                participant_id: participant.into(),
                producing: direction == Direction::Send,
                display_name: display_name.into(),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        Ok(TransportCreated {
            ice_servers: None,
            ice_parameters: self.json("ice parameters", &t.ice_parameters_json)?,
            ice_candidates: self.json("ice candidates", &t.ice_candidates_json)?,
            dtls_parameters: self.json("dtls parameters", &t.dtls_parameters_json)?,
            id: t.transport_id,
        })
    }

    /// ConnectWebRtcTransport.
    pub async fn connect_webrtc_transport(&self, transport_id: &str, dtls: &Value) -> Res<()> {
        self.rpc()
            .connect_web_rtc_transport(pb::ConnectWebRtcTransportRequest {
                transport_id: transport_id.into(),
                dtls_parameters_json: dtls.to_string(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// RestartIce: the new ICE parameters.
    pub async fn restart_ice(&self, transport_id: &str) -> Res<Value> {
        let r = self
            .rpc()
            .restart_ice(pb::RestartIceRequest {
                transport_id: transport_id.into(),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        self.json("ice parameters", &r.ice_parameters_json)
    }

    /// CloseTransport.
    pub async fn close_transport(&self, transport_id: &str) -> Res<()> {
        self.rpc()
            .close_transport(pb::CloseTransportRequest {
                transport_id: transport_id.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// Produce: the producer id.
    pub async fn produce(
        &self,
        transport_id: &str,
        kind: MediaKind,
        rtp_parameters: &Value,
        source: &str,
    ) -> Res<String> {
        let kind = match kind {
            MediaKind::Audio => pb::MediaKind::Audio,
            MediaKind::Video => pb::MediaKind::Video,
        };
        let r = self
            .rpc()
            .produce(pb::ProduceRequest {
                transport_id: transport_id.into(),
                kind: kind as i32,
                rtp_parameters_json: rtp_parameters.to_string(),
                paused: false,
                source: source.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(r.into_inner().producer_id)
    }

    /// PauseProducer or ResumeProducer.
    pub async fn set_producer_paused(&self, producer_id: &str, paused: bool) -> Res<()> {
        let req = pb::ProducerRequest {
            producer_id: producer_id.into(),
        };
        let mut rpc = self.rpc();
        let r = if paused {
            rpc.pause_producer(req).await
        } else {
            rpc.resume_producer(req).await
        };
        r.map_err(self.status())?;
        Ok(())
    }

    /// CloseProducer.
    pub async fn close_producer(&self, producer_id: &str) -> Res<()> {
        self.rpc()
            .close_producer(pb::ProducerRequest {
                producer_id: producer_id.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// Consume (the consumer starts paused).
    pub async fn consume(
        &self,
        transport_id: &str,
        producer_id: &str,
        caps: &Value,
    ) -> Res<ConsumerCreated> {
        let c = self
            .rpc()
            .consume(pb::ConsumeRequest {
                transport_id: transport_id.into(),
                producer_id: producer_id.into(),
                rtp_capabilities_json: caps.to_string(),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        Ok(ConsumerCreated {
            kind: kind_of(c.kind).ok_or_else(|| NodeCallError::BadReply {
                node: self.node.clone(),
                field: "kind",
            })?,
            rtp_parameters: self.json("rtp parameters", &c.rtp_parameters_json)?,
            id: c.consumer_id,
            producer_id: c.producer_id,
            consumer_type: c.consumer_type,
            producer_paused: c.producer_paused,
        })
    }

    /// Pause, resume, close or layer a consumer.
    pub async fn consumer_call(&self, consumer_id: &str, call: ConsumerCall) -> Res<()> {
        let req = pb::ConsumerRequest {
            consumer_id: consumer_id.into(),
        };
        let mut rpc = self.rpc();
        let r = match call {
            ConsumerCall::Pause => rpc.pause_consumer(req).await,
            ConsumerCall::Resume => rpc.resume_consumer(req).await,
            ConsumerCall::Close => rpc.close_consumer(req).await,
            ConsumerCall::Layers { spatial, temporal } => {
                rpc.set_consumer_preferred_layers(pb::SetConsumerPreferredLayersRequest {
                    consumer_id: consumer_id.into(),
                    spatial_layer: spatial,
                    temporal_layer: temporal,
                })
                .await
            }
        };
        r.map_err(self.status())?;
        Ok(())
    }

    /// CloseParticipant.
    pub async fn close_participant(&self, participant: &str) -> Res<()> {
        self.rpc()
            .close_participant(pb::CloseParticipantRequest {
                participant_id: participant.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// CloseAll: the node was evicted; returns the routers it closed.
    pub async fn close_all(&self) -> Res<u32> {
        let r = self
            .rpc()
            .close_all(pb::CloseAllRequest {})
            .await
            .map_err(self.status())?;
        Ok(r.into_inner().routers)
    }

    /// DescribeRoom: everything `room` has on this node.
    pub async fn describe_room(&self, room: &str) -> Res<Vec<pb::RouterDescription>> {
        Ok(self
            .rpc()
            .describe_room(pb::DescribeRoomRequest {
                room_id: room.into(),
            })
            .await
            .map_err(self.status())?
            .into_inner()
            .routers)
    }

    /// Packets the node has sent for a consumer (its outbound RTP stats).
    pub async fn consumer_packets(&self, consumer_id: &str) -> Res<u64> {
        let stats = self
            .rpc()
            .get_stats(pb::GetStatsRequest {
                target: Some(pb::get_stats_request::Target::ConsumerId(
                    consumer_id.into(),
                )),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        let v = self.json("stats", &stats.stats_json)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == "outbound-rtp")
            .filter_map(|s| s["packetCount"].as_u64())
            .sum())
    }

    /// PipeProducerToRouter (another worker of the same node).
    pub async fn pipe_producer_to_router(&self, producer_id: &str, target: &str) -> Res<()> {
        self.rpc()
            .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
                producer_id: producer_id.into(),
                target_router_id: target.into(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// CreatePipeTransport.
    pub async fn create_pipe_transport(&self, router_id: &str) -> Res<PipeEnd> {
        let p = self
            .rpc()
            .create_pipe_transport(pb::CreatePipeTransportRequest {
                router_id: router_id.into(),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        Ok(PipeEnd {
            id: p.pipe_transport_id,
            ip: p.ip,
            port: p.port,
            srtp_parameters_json: p.srtp_parameters_json,
        })
    }

    /// ConnectPipeTransport: `pipe` sends to `far`.
    pub async fn connect_pipe_transport(&self, pipe: &str, far: &PipeEnd) -> Res<()> {
        self.rpc()
            .connect_pipe_transport(pb::ConnectPipeTransportRequest {
                pipe_transport_id: pipe.into(),
                ip: far.ip.clone(),
                port: far.port,
                srtp_parameters_json: far.srtp_parameters_json.clone(),
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// ConsumeToPipe.
    pub async fn consume_to_pipe(&self, pipe: &str, producer_id: &str) -> Res<PipeConsumed> {
        let c = self
            .rpc()
            .consume_to_pipe(pb::ConsumeToPipeRequest {
                pipe_transport_id: pipe.into(),
                producer_id: producer_id.into(),
            })
            .await
            .map_err(self.status())?
            .into_inner();
        Ok(PipeConsumed {
            kind: c.kind,
            rtp_parameters_json: c.rtp_parameters_json,
            producer_paused: c.producer_paused,
        })
    }

    /// ProduceFromPipe.
    pub async fn produce_from_pipe(
        &self,
        pipe: &str,
        producer_id: &str,
        consumed: &PipeConsumed,
    ) -> Res<()> {
        self.rpc()
            .produce_from_pipe(pb::ProduceFromPipeRequest {
                pipe_transport_id: pipe.into(),
                producer_id: producer_id.into(),
                kind: consumed.kind,
                rtp_parameters_json: consumed.rtp_parameters_json.clone(),
                paused: consumed.producer_paused,
            })
            .await
            .map_err(self.status())?;
        Ok(())
    }

    /// The node's event stream.
    pub async fn events(&self) -> Res<tonic::Streaming<pb::Event>> {
        let r = self.rpc().events(pb::EventsRequest {}).await;
        Ok(r.map_err(self.status())?.into_inner())
    }
}

/// Clients of every known media node, by node id.
pub struct NodeClients {
    clients: Mutex<HashMap<String, (String, NodeClient)>>,
    layer: ClientLayer,
    auth: NodeAuth,
    tls: Option<throng_ops::grpc_tls::ClientTls>,
    metrics: Arc<Metrics>,
}

impl NodeClients {
    /// An empty pool; calls are timed into `metrics`, carry `token`, and go
    /// over TLS with `tls`.
    pub fn new(
        metrics: Arc<Metrics>,
        token: Option<&throng_ops::Secret>,
        tls: Option<&throng_ops::grpc_tls::ClientTls>,
    ) -> Self {
        Self {
            clients: Mutex::default(),
            layer: ClientLayer::new(metrics.node_rpc.clone()),
            auth: NodeAuth::new(token),
            tls: tls.cloned(),
            metrics,
        }
    }

    /// The coordinator's metrics (placement, pipes and rooms count into them).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The client of `node_id` at `address` (host:port), dialled on first use.
    pub fn client(&self, node_id: &str, address: &str) -> Res<NodeClient> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, client)) = clients.get(node_id) {
            if addr == address {
                return Ok(client.clone());
            }
        }
        let bad_address = || NodeCallError::BadAddress {
            node: node_id.into(),
            address: address.into(),
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|_| bad_address())?;
        if let Some(tls) = &self.tls {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca));
            if let Some(id) = &tls.identity {
                config = config.identity(Identity::from_pem(&id.cert, &id.key));
            }
            // The name the node's certificate is checked for: the configured
            // one, else the address's host (an IP needs an IP entry in the
            // certificate).
            let host = address
                .rsplit_once(':')
                .map_or(address, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            config = config.domain_name(tls.server_name.as_deref().unwrap_or(host));
            endpoint = endpoint.tls_config(config).map_err(|_| bad_address())?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_while_idle(true);
        let client = NodeClient {
            node: node_id.to_string(),
            inner: MediaNodeClient::with_interceptor(
                tower::Layer::layer(&self.layer, endpoint.connect_lazy()),
                self.auth.clone(),
            ),
        };
        clients.insert(node_id.to_string(), (address.to_string(), client.clone()));
        Ok(client)
    }

    /// The client of the node hosting `router`.
    pub fn of(&self, router: &RouterRef) -> Res<NodeClient> {
        self.client(&router.node_id, &router.address)
    }

    /// Forgets a node (it died).
    pub fn forget(&self, node_id: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id);
    }
}
