//! Browser participants' objects: WebRTC transports on the worker's
//! WebRtcServer, their producers and consumers, and the stats of any object.

use mediasoup::consumer::{ConsumerLayers, ConsumerRtpStreamStat};
use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use serde_json::Value;

use super::codecs::{webrtc_transport_options, MAX_INCOMING_BITRATE};
use super::tree::Origin;
use super::{events, AnyTransport, Rooms};
use crate::error::MediaError;

/// Hook point just before a new WebRTC transport is registered (tests close
/// its router there).
pub const HOOK_BEFORE_REGISTER: &str = "media.transport_before_register";

/// What a stats request is about.
#[derive(Debug, Clone, Copy)]
pub enum StatsTarget {
    /// A transport.
    Transport(TransportId),
    /// A producer (its first copy on this node).
    Producer(ProducerId),
    /// A consumer.
    Consumer(ConsumerId),
}

impl Rooms {
    /// A WebRTC transport for `participant` on the router's worker's WebRtcServer.
    #[tracing::instrument(skip(self), fields(router = %router_id))]
    pub async fn create_webrtc_transport(
        &self,
        router_id: RouterId,
        participant: &str,
        producing: bool,
        display_name: &str,
    ) -> Result<WebRtcTransport, MediaError> {
        let (router, worker) = self.router(router_id)?;
        let server = self.workers[worker].webrtc_server.clone();
        let mut options = webrtc_transport_options(server);
        options.app_data = mediasoup::prelude::AppData::new(super::TransportLabel {
            producing,
            display_name: display_name.to_string(),
        });
        let transport = router
            .create_webrtc_transport(options)
            .await
            .map_err(MediaError::request("create transport"))?;
        if producing {
            transport
                .set_max_incoming_bitrate(MAX_INCOMING_BITRATE)
                .await
                .map_err(MediaError::request("set max incoming bitrate"))?;
        }
        events::watch_webrtc_states(&transport, participant, &self.events);
        self.hooks.pass(HOOK_BEFORE_REGISTER).await;
        self.register_transport(
            AnyTransport::WebRtc(transport.clone()),
            router_id,
            Some(participant.to_string()),
        )?;
        tracing::debug!(transport_id = %transport.id(), "webrtc transport created");
        Ok(transport)
    }

    fn webrtc_transport(&self, id: TransportId) -> Result<WebRtcTransport, MediaError> {
        match self.transport(id)?.0 {
            AnyTransport::WebRtc(t) => Ok(t),
            _ => Err(MediaError::FailedPrecondition(format!(
                "transport {id} is not a WebRTC transport"
            ))),
        }
    }

    /// DTLS connect with the browser's parameters.
    pub async fn connect_webrtc_transport(
        &self,
        id: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<(), MediaError> {
        self.webrtc_transport(id)?
            .connect(WebRtcTransportRemoteParameters { dtls_parameters })
            .await
            .map_err(MediaError::request("connect transport"))
    }

    /// New ICE credentials for a transport whose connection failed.
    pub async fn restart_ice(&self, id: TransportId) -> Result<IceParameters, MediaError> {
        self.webrtc_transport(id)?
            .restart_ice()
            .await
            .map_err(MediaError::request("restart ICE"))
    }

    /// A producer on a participant's (WebRTC or plain) transport.
    #[tracing::instrument(skip(self, rtp_parameters))]
    pub async fn produce(
        &self,
        transport_id: TransportId,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
        paused: bool,
        source: &str,
    ) -> Result<ProducerId, MediaError> {
        let (transport, router_id, _) = self.transport(transport_id)?;
        let mut options = ProducerOptions::new(kind, rtp_parameters);
        options.paused = paused;
        // Thousands of viewers joining ask for keyframes together; the
        // sender gets about one per delay (mediasoup's KeyFrameRequestManager
        // holds the rest and sends one when the delay ends).
        options.key_frame_request_delay = self.key_frame_request_delay_ms;
        options.app_data = mediasoup::prelude::AppData::new(super::ProducerLabel {
            source: source.to_string(),
        });
        let producer = match &transport {
            AnyTransport::WebRtc(t) => t.produce(options).await?,
            AnyTransport::Plain(t) => t.produce(options).await?,
            AnyTransport::Pipe(_) => {
                return Err(MediaError::FailedPrecondition(
                    "use ProduceFromPipe on pipe transports".into(),
                ))
            }
        };
        let id = producer.id();
        self.register_producer(
            producer,
            router_id,
            Some(transport_id),
            Origin::Source,
            None,
        )?;
        Ok(id)
    }

    /// Every copy of a producer on this node, with its worker.
    fn producer_copies(&self, id: ProducerId) -> Result<Vec<(Producer, usize)>, MediaError> {
        let tree = self.lock();
        let copies: Vec<_> = tree
            .producer_copies(&id)
            .into_iter()
            .map(|(_, worker, p)| (p.handle.producer.clone(), worker))
            .collect();
        if copies.is_empty() {
            return Err(MediaError::not_found("producer", id));
        }
        Ok(copies)
    }

    /// Pauses a producer (every copy of it on this node).
    pub async fn pause_producer(&self, id: ProducerId) -> Result<(), MediaError> {
        for (p, _) in self.producer_copies(id)? {
            p.pause()
                .await
                .map_err(MediaError::request("pause producer"))?;
        }
        Ok(())
    }

    /// Resumes a producer (every copy of it on this node).
    pub async fn resume_producer(&self, id: ProducerId) -> Result<(), MediaError> {
        for (p, _) in self.producer_copies(id)? {
            p.resume()
                .await
                .map_err(MediaError::request("resume producer"))?;
        }
        Ok(())
    }

    /// Closes a producer: its copies on this node, their consumers, and the
    /// pipe consumers feeding other nodes (announced as ProducerClosed).
    pub fn close_producer(&self, id: ProducerId) -> Result<(), MediaError> {
        let removed = self.lock().remove_producer_everywhere(&id);
        if removed.producers.is_empty() {
            return Err(MediaError::not_found("producer", id));
        }
        self.finish_removal(removed);
        Ok(())
    }

    /// A consumer of `producer_id` on a participant's transport, created paused.
    #[tracing::instrument(skip(self, rtp_capabilities))]
    pub async fn consume(
        &self,
        transport_id: TransportId,
        producer_id: ProducerId,
        rtp_capabilities: RtpCapabilities,
    ) -> Result<Consumer, MediaError> {
        let (transport, router_id, _) = self.transport(transport_id)?;
        let router = self.router(router_id)?.0;
        if self.lock().producer(&(router_id, producer_id)).is_none() {
            return Err(MediaError::not_found(
                "producer",
                format!("{producer_id} on router {router_id}"),
            ));
        }
        if !router.can_consume(&producer_id, &rtp_capabilities) {
            return Err(MediaError::FailedPrecondition(format!(
                "the given RTP capabilities cannot consume producer {producer_id}"
            )));
        }
        let mut options = ConsumerOptions::new(producer_id, rtp_capabilities);
        options.paused = true;
        let consumer = match &transport {
            AnyTransport::WebRtc(t) => t.consume(options).await?,
            AnyTransport::Plain(t) => t.consume(options).await?,
            AnyTransport::Pipe(_) => {
                return Err(MediaError::FailedPrecondition(
                    "use ConsumeToPipe on pipe transports".into(),
                ))
            }
        };
        let participant = self.transport_participant(transport_id);
        self.register_consumer(consumer.clone(), transport_id, participant)?;
        Ok(consumer)
    }

    fn consumer(&self, id: ConsumerId) -> Result<Consumer, MediaError> {
        let tree = self.lock();
        let (c, _) = tree
            .consumer(&id)
            .ok_or_else(|| MediaError::not_found("consumer", id))?;
        Ok(c.handle.clone())
    }

    /// Pauses a consumer (its tile left the screen).
    pub async fn pause_consumer(&self, id: ConsumerId) -> Result<(), MediaError> {
        self.consumer(id)?
            .pause()
            .await
            .map_err(MediaError::request("pause consumer"))
    }

    /// Resumes a consumer.
    pub async fn resume_consumer(&self, id: ConsumerId) -> Result<(), MediaError> {
        self.consumer(id)?
            .resume()
            .await
            .map_err(MediaError::request("resume consumer"))
    }

    /// Preferred simulcast/SVC layers of a consumer.
    pub async fn set_preferred_layers(
        &self,
        id: ConsumerId,
        layers: ConsumerLayers,
    ) -> Result<(), MediaError> {
        self.consumer(id)?
            .set_preferred_layers(layers)
            .await
            .map_err(MediaError::request("set preferred layers"))
    }

    /// Closes a consumer.
    pub fn close_consumer(&self, id: ConsumerId) -> Result<(), MediaError> {
        let removed = self.lock().remove_consumer(&id);
        if removed.consumers.is_empty() {
            return Err(MediaError::not_found("consumer", id));
        }
        self.finish_removal(removed);
        Ok(())
    }

    /// mediasoup stats of one object, as JSON (consumer entries carry their
    /// direction in `type`, as mediasoup's worker names them).
    pub async fn stats(&self, target: StatsTarget) -> Result<Value, MediaError> {
        let to_value = |v: Result<Value, serde_json::Error>| v.expect("mediasoup stats serialize");
        let request = MediaError::request("get stats");
        Ok(match target {
            StatsTarget::Transport(id) => match self.transport(id)?.0 {
                AnyTransport::WebRtc(t) => {
                    to_value(serde_json::to_value(t.get_stats().await.map_err(request)?))
                }
                AnyTransport::Pipe(t) => {
                    to_value(serde_json::to_value(t.get_stats().await.map_err(request)?))
                }
                AnyTransport::Plain(t) => {
                    to_value(serde_json::to_value(t.get_stats().await.map_err(request)?))
                }
            },
            StatsTarget::Producer(id) => {
                let (p, _) = self
                    .producer_copies(id)?
                    .into_iter()
                    .next()
                    .expect("non-empty");
                to_value(serde_json::to_value(p.get_stats().await.map_err(request)?))
            }
            StatsTarget::Consumer(id) => {
                let stats = self.consumer(id)?.get_stats().await.map_err(request)?;
                Value::Array(
                    stats
                        .into_iter()
                        .map(|s| {
                            let (direction, v) = match s {
                                ConsumerRtpStreamStat::Inbound(p) => {
                                    ("inbound-rtp", serde_json::to_value(p))
                                }
                                ConsumerRtpStreamStat::Outbound(o) => {
                                    ("outbound-rtp", serde_json::to_value(o))
                                }
                            };
                            let mut v = to_value(v);
                            v["type"] = direction.into();
                            v
                        })
                        .collect(),
                )
            }
        })
    }
}
