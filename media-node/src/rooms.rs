//! Join path on the node: node -> worker -> router. Every media object this
//! node hosts, by id, with who owns it.
//!
//! mediasoup objects close when their last handle is dropped, so "closing"
//! here means removing the handle from these maps. mediasoup's own events
//! (producer closed, transport closed, router closed) remove the dependants,
//! so nothing is left behind when a participant leaves or a producer goes.
//! The lock is a std mutex, never held across an `.await`, and handles that
//! are removed are dropped after it is released (their close handlers may
//! call back into this registry).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU8};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mediasoup::consumer::{ConsumerLayers, ConsumerRtpStreamStat};
use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use mediasoup::types::data_structures::{DtlsState, IceState, TransportTuple};
use mediasoup::types::srtp_parameters::SrtpParameters;
use mediasoup::worker::RequestError;
use throng_proto::media as pb;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, instrument};

use crate::error::MediaError;
use crate::workers::NodeWorker;

/// Codecs every room router offers: Opus, VP8 (simulcast) and H264 baseline.
pub fn media_codecs() -> Vec<RtpCodecCapability> {
    let video_feedback = vec![
        RtcpFeedback::Nack,
        RtcpFeedback::NackPli,
        RtcpFeedback::CcmFir,
        RtcpFeedback::GoogRemb,
        RtcpFeedback::TransportCc,
    ];
    vec![
        RtpCodecCapability::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: Some(100),
            clock_rate: NonZeroU32::new(48000).unwrap(),
            channels: NonZeroU8::new(2).unwrap(),
            parameters: RtpCodecParametersParameters::from([("useinbandfec", 1_u32.into())]),
            rtcp_feedback: vec![RtcpFeedback::TransportCc],
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::Vp8,
            preferred_payload_type: Some(101),
            clock_rate: NonZeroU32::new(90000).unwrap(),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: video_feedback.clone(),
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::H264,
            preferred_payload_type: Some(103),
            clock_rate: NonZeroU32::new(90000).unwrap(),
            parameters: RtpCodecParametersParameters::from([
                ("level-asymmetry-allowed", 1_u32.into()),
                ("packetization-mode", 1_u32.into()),
                ("profile-level-id", "42e01f".into()),
            ]),
            rtcp_feedback: video_feedback,
        },
    ]
}

/// How a participant's WebRTC transport is set up on a worker's WebRtcServer
/// (UDP preferred, TCP as fallback, 1 Mbit/s initial outgoing estimate).
pub fn webrtc_transport_options(server: WebRtcServer) -> WebRtcTransportOptions {
    let mut options = WebRtcTransportOptions::new_with_server(server);
    options.enable_udp = true;
    options.enable_tcp = true;
    options.prefer_udp = true;
    options.initial_available_outgoing_bitrate = 1_000_000;
    options
}

/// Per-worker object counts, for the load report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Routers.
    pub routers: u32,
    /// Transports of every kind.
    pub transports: u32,
    /// Producers, piped ones included.
    pub producers: u32,
    /// Consumers, pipe consumers included.
    pub consumers: u32,
}

/// Any transport this node creates.
#[derive(Clone, Debug)]
pub enum AnyTransport {
    /// Browser transport on the worker's WebRtcServer.
    WebRtc(WebRtcTransport),
    /// Cross-node pipe.
    Pipe(PipeTransport),
    /// RTP ingest.
    Plain(PlainTransport),
}

impl AnyTransport {
    fn id(&self) -> TransportId {
        match self {
            Self::WebRtc(t) => t.id(),
            Self::Pipe(t) => t.id(),
            Self::Plain(t) => t.id(),
        }
    }

    async fn produce(&self, options: ProducerOptions) -> Result<Producer, ProduceError> {
        match self {
            Self::WebRtc(t) => t.produce(options).await,
            Self::Pipe(t) => t.produce(options).await,
            Self::Plain(t) => t.produce(options).await,
        }
    }

    async fn consume(&self, options: ConsumerOptions) -> Result<Consumer, ConsumeError> {
        match self {
            Self::WebRtc(t) => t.consume(options).await,
            Self::Pipe(t) => t.consume(options).await,
            Self::Plain(t) => t.consume(options).await,
        }
    }

    fn on_router_close(&self, callback: Box<dyn FnOnce() + Send + 'static>) {
        match self {
            Self::WebRtc(t) => t.on_router_close(callback).detach(),
            Self::Pipe(t) => t.on_router_close(callback).detach(),
            Self::Plain(t) => t.on_router_close(callback).detach(),
        }
    }

    async fn stats_json(&self) -> Result<serde_json::Value, RequestError> {
        Ok(match self {
            Self::WebRtc(t) => serde_json::to_value(t.get_stats().await?),
            Self::Pipe(t) => serde_json::to_value(t.get_stats().await?),
            Self::Plain(t) => serde_json::to_value(t.get_stats().await?),
        }
        .expect("mediasoup stats serialize"))
    }
}

struct RouterEntry {
    router: Router,
    room_id: String,
    worker_index: usize,
    active_speaker: ActiveSpeakerObserver,
}

struct TransportEntry {
    transport: AnyTransport,
    router_id: RouterId,
    worker_index: usize,
    /// None for pipe transports, which belong to the room, not to a participant.
    participant_id: Option<String>,
}

/// What a producer is on this router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProducerOrigin {
    /// Sent by a participant (or an ingest) to this node.
    Source,
    /// Piped from another router of this node (same id as its source).
    SameNodePipe,
    /// Arrived over a cross-node pipe (same id as its source on the other node).
    RemotePipe,
}

struct ProducerEntry {
    producer: Producer,
    room_id: String,
    worker_index: usize,
    /// Transport the producer receives on; None for same-node piped copies.
    transport_id: Option<TransportId>,
    origin: ProducerOrigin,
    /// The pipe consumer that feeds a same-node piped producer: it must live as
    /// long as the piped producer.
    _feed: Option<Consumer>,
}

struct ConsumerEntry {
    consumer: Consumer,
    worker_index: usize,
    transport_id: TransportId,
}

#[derive(Default)]
struct Inner {
    routers: HashMap<RouterId, RouterEntry>,
    transports: HashMap<TransportId, TransportEntry>,
    /// Keyed by (router, producer): piped producers keep their source's id,
    /// so one id exists once per router of the room.
    producers: HashMap<(RouterId, ProducerId), ProducerEntry>,
    consumers: HashMap<ConsumerId, ConsumerEntry>,
}

/// Everything that must be dropped outside the lock.
#[derive(Default)]
#[must_use]
struct Removed {
    transports: Vec<TransportEntry>,
    producers: Vec<ProducerEntry>,
    consumers: Vec<ConsumerEntry>,
}

/// Removals that mediasoup's events ask for. They are applied by a task of
/// their own: a mediasoup handle dropped inside a mediasoup callback
/// deadlocks on the channel's subscription lock that dispatches the callback.
enum Cleanup {
    Router(RouterId),
    Transport(TransportId),
    Producer((RouterId, ProducerId)),
    /// `participant` is set when the consumer closed because its producer did:
    /// that is announced as ConsumerClosed.
    Consumer {
        id: ConsumerId,
        participant: Option<String>,
    },
}

/// The node's media objects and the events they raise.
pub struct Rooms {
    cleanup: mpsc::UnboundedSender<Cleanup>,
    workers: Arc<[NodeWorker]>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<pb::Event>,
    draining: AtomicBool,
    /// Address pipe and ingest transports listen on and announce.
    pipe_listen_ip: IpAddr,
    pipe_announced_address: Option<String>,
}

fn parse_id<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, MediaError> {
    value
        .parse()
        .map_err(|_| MediaError::invalid(field, format!("{value:?} is not a valid id")))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    field: &'static str,
    json: &str,
) -> Result<T, MediaError> {
    serde_json::from_str(json).map_err(|e| MediaError::invalid(field, e))
}

/// The far side of a pipe or plain transport, as a coordinator gave it.
fn remote_address(ip: &str, port: u32) -> Result<(IpAddr, u16), MediaError> {
    let ip: IpAddr = ip.parse().map_err(|e| MediaError::invalid("ip", e))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| MediaError::invalid("port", "1 to 65535"))?;
    Ok((ip, port))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("mediasoup types serialize")
}

/// Room and participant ids come from coordinators; keep them printable and bounded.
pub fn check_name(field: &'static str, value: &str) -> Result<(), MediaError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(|c| c.is_control()) {
        return Err(MediaError::invalid(field, "1 to 128 printable characters"));
    }
    Ok(())
}

fn request_error(worker_index: usize, e: RequestError) -> MediaError {
    match e {
        RequestError::ChannelClosed | RequestError::TimedOut => {
            MediaError::WorkerUnavailable(worker_index)
        }
        other => MediaError::Rejected(other.to_string()),
    }
}

fn kind_to_pb(kind: MediaKind) -> pb::MediaKind {
    match kind {
        MediaKind::Audio => pb::MediaKind::Audio,
        MediaKind::Video => pb::MediaKind::Video,
    }
}

fn kind_from_pb(kind: i32) -> Result<MediaKind, MediaError> {
    match pb::MediaKind::try_from(kind) {
        Ok(pb::MediaKind::Audio) => Ok(MediaKind::Audio),
        Ok(pb::MediaKind::Video) => Ok(MediaKind::Video),
        _ => Err(MediaError::invalid(
            "kind",
            "must be MEDIA_KIND_AUDIO or MEDIA_KIND_VIDEO",
        )),
    }
}

fn ice_state_name(state: IceState) -> &'static str {
    match state {
        IceState::New => "new",
        IceState::Connected => "connected",
        IceState::Completed => "completed",
        IceState::Disconnected => "disconnected",
    }
}

fn dtls_state_name(state: DtlsState) -> &'static str {
    match state {
        DtlsState::New => "new",
        DtlsState::Connecting => "connecting",
        DtlsState::Connected => "connected",
        DtlsState::Failed => "failed",
        DtlsState::Closed => "closed",
    }
}

fn tuple_addr(tuple: &TransportTuple) -> (String, u16) {
    (tuple.local_address().to_string(), tuple.local_port())
}

/// Result of creating a WebRTC transport.
pub struct WebRtcTransportCreated {
    /// Transport id.
    pub id: TransportId,
    /// mediasoup IceParameters (JSON).
    pub ice_parameters_json: String,
    /// mediasoup IceCandidate[] (JSON).
    pub ice_candidates_json: String,
    /// mediasoup DtlsParameters (JSON).
    pub dtls_parameters_json: String,
}

/// Result of a consume.
pub struct Consumed {
    /// Consumer id.
    pub id: ConsumerId,
    /// Producer consumed.
    pub producer_id: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// RtpParameters (JSON) for the client.
    pub rtp_parameters_json: String,
    /// simple / simulcast / svc / pipe.
    pub consumer_type: String,
    /// Whether the producer is paused now.
    pub producer_paused: bool,
}

/// Result of creating a pipe or plain transport.
pub struct UdpTransportCreated {
    /// Transport id.
    pub id: TransportId,
    /// Where the far side sends.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// This side's SRTP parameters (JSON).
    pub srtp_parameters_json: String,
}

/// Ingest transports and producers.
pub struct IngestCreated {
    /// Address to send RTP to.
    pub ip: String,
    /// Opus RTP port.
    pub audio_port: u16,
    /// VP8 RTP port.
    pub video_port: u16,
    /// Opus RTCP port.
    pub audio_rtcp_port: u16,
    /// VP8 RTCP port.
    pub video_rtcp_port: u16,
    /// Audio producer.
    pub audio_producer_id: ProducerId,
    /// Video producer.
    pub video_producer_id: ProducerId,
}

/// Payload types and SSRCs an ingest sender must use.
pub mod ingest {
    /// Opus payload type.
    pub const AUDIO_PT: u8 = 100;
    /// VP8 payload type.
    pub const VIDEO_PT: u8 = 101;
    /// Opus SSRC.
    pub const AUDIO_SSRC: u32 = 11_111_111;
    /// VP8 SSRC.
    pub const VIDEO_SSRC: u32 = 22_222_222;
}

impl Rooms {
    /// An empty registry over the node's workers.
    pub fn new(
        workers: Arc<[NodeWorker]>,
        pipe_listen_ip: IpAddr,
        pipe_announced_address: Option<String>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(8192);
        let (cleanup, cleanup_rx) = mpsc::unbounded_channel();
        let rooms = Arc::new(Self {
            cleanup,
            workers,
            inner: Mutex::default(),
            events,
            draining: AtomicBool::new(false),
            pipe_listen_ip,
            pipe_announced_address,
        });
        tokio::spawn(Self::cleanup_loop(Arc::downgrade(&rooms), cleanup_rx));
        rooms
    }

    async fn cleanup_loop(rooms: Weak<Self>, mut rx: mpsc::UnboundedReceiver<Cleanup>) {
        while let Some(cleanup) = rx.recv().await {
            let Some(rooms) = rooms.upgrade() else { break };
            rooms.apply_cleanup(cleanup);
        }
    }

    fn apply_cleanup(&self, cleanup: Cleanup) {
        let mut removed = Removed::default();
        let mut router = None;
        {
            let mut g = self.lock();
            match cleanup {
                Cleanup::Router(id) => {
                    router = g.routers.remove(&id);
                    Self::take_router_dependants(&mut g, id, &mut removed);
                }
                Cleanup::Transport(id) => Self::take_transport(&mut g, id, &mut removed),
                Cleanup::Producer(key) => removed.producers.extend(g.producers.remove(&key)),
                Cleanup::Consumer { id, participant } => {
                    if let Some(entry) = g.consumers.remove(&id) {
                        removed.consumers.push(entry);
                        if let Some(participant_id) = participant {
                            self.emit(pb::event::Event::ConsumerClosed(pb::ConsumerClosed {
                                consumer_id: id.to_string(),
                                participant_id,
                                reason: "producer_closed".into(),
                            }));
                        }
                    }
                }
            }
        }
        self.announce_source_closures(&removed);
        drop(removed);
        drop(router);
    }

    /// Subscribes to the node's events.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.events.subscribe()
    }

    fn emit(&self, event: pb::event::Event) {
        // No subscriber is fine: nobody to tell.
        let _ = self.events.send(pb::Event { event: Some(event) });
    }

    /// Publishes a worker death to every subscriber.
    pub fn emit_worker_died(&self, worker_index: usize, reason: String) {
        self.emit(pb::event::Event::WorkerDied(pb::WorkerDied {
            worker_index: worker_index as u32,
            reason,
        }));
    }

    /// Marks the node draining: no new routers.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The node's workers.
    pub fn workers(&self) -> &[NodeWorker] {
        &self.workers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Object counts per worker index.
    pub fn counts(&self) -> Vec<WorkerCounts> {
        let mut counts = vec![WorkerCounts::default(); self.workers.len()];
        let g = self.lock();
        for r in g.routers.values() {
            counts[r.worker_index].routers += 1;
        }
        for t in g.transports.values() {
            counts[t.worker_index].transports += 1;
        }
        for p in g.producers.values() {
            counts[p.worker_index].producers += 1;
        }
        for c in g.consumers.values() {
            counts[c.worker_index].consumers += 1;
        }
        counts
    }

    /// Number of routers (rooms on workers) still open.
    pub fn router_count(&self) -> usize {
        self.lock().routers.len()
    }

    // ----- routers ---------------------------------------------------------

    /// A router for `room_id` on worker `worker_index`, with its active speaker observer.
    #[instrument(skip(self), fields(room = %room_id, worker = worker_index))]
    pub async fn create_router(
        self: &Arc<Self>,
        room_id: &str,
        worker_index: usize,
    ) -> Result<(Router, usize), MediaError> {
        check_name("room_id", room_id)?;
        if self.is_draining() {
            return Err(MediaError::FailedPrecondition(
                "node is draining: no new routers".into(),
            ));
        }
        let worker = self.workers.get(worker_index).ok_or_else(|| {
            MediaError::invalid(
                "worker_index",
                format!("{worker_index} >= {} workers", self.workers.len()),
            )
        })?;
        if worker.worker.closed() {
            return Err(MediaError::WorkerUnavailable(worker_index));
        }
        let router = worker
            .worker
            .create_router(RouterOptions::new(media_codecs()))
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create router: {e}")))?;
        let mut observer_options = ActiveSpeakerObserverOptions::default();
        observer_options.interval = 300;
        let active_speaker = router
            .create_active_speaker_observer(observer_options)
            .await
            .map_err(|e| request_error(worker_index, e))?;
        {
            let weak = Arc::downgrade(self);
            let room = room_id.to_string();
            active_speaker
                .on_dominant_speaker(move |speaker| {
                    if let Some(rooms) = weak.upgrade() {
                        rooms.emit(pb::event::Event::ActiveSpeaker(pb::ActiveSpeaker {
                            room_id: room.clone(),
                            producer_id: speaker.producer.id().to_string(),
                        }));
                    }
                })
                .detach();
        }
        {
            let cleanup = self.cleanup.clone();
            let id = router.id();
            router
                .on_worker_close(move || {
                    let _ = cleanup.send(Cleanup::Router(id));
                })
                .detach();
        }
        info!(router_id = %router.id(), "router created");
        self.lock().routers.insert(
            router.id(),
            RouterEntry {
                router: router.clone(),
                room_id: room_id.to_string(),
                worker_index,
                active_speaker,
            },
        );
        Ok((router, worker_index))
    }

    fn router_entry(&self, router_id: &str) -> Result<(Router, String, usize), MediaError> {
        let id: RouterId = parse_id("router_id", router_id)?;
        let g = self.lock();
        let r = g
            .routers
            .get(&id)
            .ok_or_else(|| MediaError::not_found("router", id))?;
        Ok((r.router.clone(), r.room_id.clone(), r.worker_index))
    }

    /// An existing router and its worker index.
    pub fn router(&self, router_id: &str) -> Result<(Router, usize), MediaError> {
        let (router, _, worker) = self.router_entry(router_id)?;
        Ok((router, worker))
    }

    /// Closes a router and, with it, everything on it.
    pub fn close_router(&self, router_id: &str) -> Result<(), MediaError> {
        let id: RouterId = parse_id("router_id", router_id)?;
        let (router, removed) = {
            let mut g = self.lock();
            let entry = g
                .routers
                .remove(&id)
                .ok_or_else(|| MediaError::not_found("router", id))?;
            let mut removed = Removed::default();
            Self::take_router_dependants(&mut g, id, &mut removed);
            (entry, removed)
        };
        self.announce_source_closures(&removed);
        drop(removed);
        drop(router);
        Ok(())
    }

    fn take_router_dependants(g: &mut Inner, router_id: RouterId, removed: &mut Removed) {
        let transports: Vec<TransportId> = g
            .transports
            .iter()
            .filter(|(_, t)| t.router_id == router_id)
            .map(|(id, _)| *id)
            .collect();
        for t in transports {
            Self::take_transport(g, t, removed);
        }
        let producers: Vec<_> = g
            .producers
            .keys()
            .filter(|(r, _)| *r == router_id)
            .copied()
            .collect();
        for key in producers {
            removed.producers.extend(g.producers.remove(&key));
        }
    }

    fn take_transport(g: &mut Inner, transport_id: TransportId, removed: &mut Removed) {
        if let Some(entry) = g.transports.remove(&transport_id) {
            let producers: Vec<_> = g
                .producers
                .iter()
                .filter(|(_, p)| p.transport_id == Some(transport_id))
                .map(|(k, _)| *k)
                .collect();
            for key in producers {
                removed.producers.extend(g.producers.remove(&key));
            }
            let consumers: Vec<_> = g
                .consumers
                .iter()
                .filter(|(_, c)| c.transport_id == transport_id)
                .map(|(k, _)| *k)
                .collect();
            for key in consumers {
                removed.consumers.extend(g.consumers.remove(&key));
            }
            removed.transports.push(entry);
        }
    }

    fn register_transport(
        self: &Arc<Self>,
        transport: AnyTransport,
        router_id: RouterId,
        worker_index: usize,
        participant_id: Option<String>,
    ) {
        let id = transport.id();
        let cleanup = self.cleanup.clone();
        transport.on_router_close(Box::new(move || {
            let _ = cleanup.send(Cleanup::Transport(id));
        }));
        self.lock().transports.insert(
            id,
            TransportEntry {
                transport,
                router_id,
                worker_index,
                participant_id,
            },
        );
    }

    fn transport(
        &self,
        transport_id: &str,
    ) -> Result<(AnyTransport, RouterId, usize, Option<String>), MediaError> {
        let id: TransportId = parse_id("transport_id", transport_id)?;
        let g = self.lock();
        let t = g
            .transports
            .get(&id)
            .ok_or_else(|| MediaError::not_found("transport", id))?;
        Ok((
            t.transport.clone(),
            t.router_id,
            t.worker_index,
            t.participant_id.clone(),
        ))
    }

    fn webrtc_transport(&self, transport_id: &str) -> Result<(WebRtcTransport, usize), MediaError> {
        match self.transport(transport_id)? {
            (AnyTransport::WebRtc(t), _, worker, _) => Ok((t, worker)),
            _ => Err(MediaError::FailedPrecondition(format!(
                "transport {transport_id} is not a WebRTC transport"
            ))),
        }
    }

    // ----- WebRTC transports ----------------------------------------------

    /// A WebRTC transport for `participant_id` on the router's worker's WebRtcServer.
    #[instrument(skip(self), fields(router = %router_id, participant = %participant_id))]
    pub async fn create_webrtc_transport(
        self: &Arc<Self>,
        router_id: &str,
        participant_id: &str,
        producing: bool,
    ) -> Result<WebRtcTransportCreated, MediaError> {
        check_name("participant_id", participant_id)?;
        let (router, _room, worker_index) = self.router_entry(router_id)?;
        let server = self.workers[worker_index].webrtc_server.clone();
        let transport = router
            .create_webrtc_transport(webrtc_transport_options(server))
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create transport: {e}")))?;
        if producing {
            // A sender's camera and microphone: bound what one browser may push.
            transport
                .set_max_incoming_bitrate(3_000_000)
                .await
                .map_err(|e| request_error(worker_index, e))?;
        }
        let created = WebRtcTransportCreated {
            id: transport.id(),
            ice_parameters_json: to_json(transport.ice_parameters()),
            ice_candidates_json: to_json(transport.ice_candidates()),
            dtls_parameters_json: to_json(&transport.dtls_parameters()),
        };
        self.watch_webrtc_states(&transport, participant_id);
        self.register_transport(
            AnyTransport::WebRtc(transport),
            router.id(),
            worker_index,
            Some(participant_id.to_string()),
        );
        debug!(transport_id = %created.id, "webrtc transport created");
        Ok(created)
    }

    fn watch_webrtc_states(self: &Arc<Self>, transport: &WebRtcTransport, participant_id: &str) {
        let id = transport.id().to_string();
        let participant = participant_id.to_string();
        let weak = Arc::downgrade(self);
        // (ICE state, DTLS state): each change updates one half and reports both.
        let state = Mutex::new(("new", "new"));
        let record = Arc::new(move |update: &dyn Fn(&mut (&'static str, &'static str))| {
            let (ice_state, dtls_state) = {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                update(&mut st);
                *st
            };
            if let Some(rooms) = weak.upgrade() {
                rooms.emit(pb::event::Event::TransportState(pb::TransportState {
                    transport_id: id.clone(),
                    participant_id: participant.clone(),
                    ice_state: ice_state.into(),
                    dtls_state: dtls_state.into(),
                }));
            }
        });
        {
            let record = record.clone();
            transport
                .on_ice_state_change(move |s| record(&|st| st.0 = ice_state_name(s)))
                .detach();
        }
        transport
            .on_dtls_state_change(move |s| record(&|st| st.1 = dtls_state_name(s)))
            .detach();
    }

    /// DTLS connect with the browser's parameters.
    pub async fn connect_webrtc_transport(
        &self,
        transport_id: &str,
        dtls_parameters_json: &str,
    ) -> Result<(), MediaError> {
        let (transport, worker) = self.webrtc_transport(transport_id)?;
        let dtls_parameters: DtlsParameters =
            parse_json("dtls_parameters_json", dtls_parameters_json)?;
        transport
            .connect(WebRtcTransportRemoteParameters { dtls_parameters })
            .await
            .map_err(|e| request_error(worker, e))
    }

    /// New ICE credentials for a transport whose connection failed.
    pub async fn restart_ice(&self, transport_id: &str) -> Result<String, MediaError> {
        let (transport, worker) = self.webrtc_transport(transport_id)?;
        let params = transport
            .restart_ice()
            .await
            .map_err(|e| request_error(worker, e))?;
        Ok(to_json(&params))
    }

    /// Closes a transport and its producers and consumers.
    pub fn close_transport(&self, transport_id: &str) -> Result<(), MediaError> {
        let id: TransportId = parse_id("transport_id", transport_id)?;
        let removed = {
            let mut g = self.lock();
            if !g.transports.contains_key(&id) {
                return Err(MediaError::not_found("transport", id));
            }
            let mut removed = Removed::default();
            Self::take_transport(&mut g, id, &mut removed);
            removed
        };
        self.announce_source_closures(&removed);
        drop(removed);
        Ok(())
    }

    /// Closes everything `participant_id` owns on this node.
    pub fn close_participant(&self, participant_id: &str) -> Result<usize, MediaError> {
        check_name("participant_id", participant_id)?;
        let removed = {
            let mut g = self.lock();
            let mine: Vec<TransportId> = g
                .transports
                .iter()
                .filter(|(_, t)| t.participant_id.as_deref() == Some(participant_id))
                .map(|(id, _)| *id)
                .collect();
            let mut removed = Removed::default();
            for id in mine {
                Self::take_transport(&mut g, id, &mut removed);
            }
            removed
        };
        let n = removed.transports.len();
        self.announce_source_closures(&removed);
        drop(removed);
        Ok(n)
    }

    /// Source producers that go away are announced: the coordinator closes
    /// their copies on other nodes (same-node copies close by themselves).
    fn announce_source_closures(&self, removed: &Removed) {
        for p in &removed.producers {
            if p.origin == ProducerOrigin::Source {
                self.emit(pb::event::Event::ProducerClosed(pb::ProducerClosed {
                    producer_id: p.producer.id().to_string(),
                    room_id: p.room_id.clone(),
                }));
            }
        }
    }

    // ----- producers -------------------------------------------------------

    fn register_producer(
        self: &Arc<Self>,
        producer: Producer,
        router_id: RouterId,
        worker_index: usize,
        transport_id: Option<TransportId>,
        origin: ProducerOrigin,
        feed: Option<Consumer>,
    ) -> Result<(), MediaError> {
        let room_id = {
            let g = self.lock();
            g.routers
                .get(&router_id)
                .map(|r| r.room_id.clone())
                .ok_or_else(|| MediaError::not_found("router", router_id))?
        };
        let key = (router_id, producer.id());
        let cleanup = self.cleanup.clone();
        producer
            .on_close(move || {
                let _ = cleanup.send(Cleanup::Producer(key));
            })
            .detach();
        if producer.kind() == MediaKind::Audio {
            let observer = self
                .lock()
                .routers
                .get(&router_id)
                .map(|r| r.active_speaker.clone());
            if let Some(observer) = observer {
                let id = producer.id();
                tokio::spawn(async move {
                    if let Err(e) = observer
                        .add_producer(RtpObserverAddProducerOptions::new(id))
                        .await
                    {
                        debug!(producer_id = %id, error = %e, "not added to the active speaker observer");
                    }
                });
            }
        }
        self.lock().producers.insert(
            key,
            ProducerEntry {
                producer,
                room_id,
                worker_index,
                transport_id,
                origin,
                _feed: feed,
            },
        );
        Ok(())
    }

    /// A producer on a participant's transport.
    #[instrument(skip(self, rtp_parameters_json))]
    pub async fn produce(
        self: &Arc<Self>,
        transport_id: &str,
        kind: i32,
        rtp_parameters_json: &str,
        paused: bool,
    ) -> Result<ProducerId, MediaError> {
        let kind = kind_from_pb(kind)?;
        let rtp_parameters: RtpParameters = parse_json("rtp_parameters_json", rtp_parameters_json)?;
        let (transport, router_id, worker_index, _) = self.transport(transport_id)?;
        if matches!(transport, AnyTransport::Pipe(_)) {
            return Err(MediaError::FailedPrecondition(
                "use ProduceFromPipe on pipe transports".into(),
            ));
        }
        let mut options = ProducerOptions::new(kind, rtp_parameters);
        options.paused = paused;
        let producer = transport
            .produce(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot produce: {e}")))?;
        let id = producer.id();
        self.register_producer(
            producer,
            router_id,
            worker_index,
            Some(transport.id()),
            ProducerOrigin::Source,
            None,
        )?;
        Ok(id)
    }

    fn producers_with_id(
        &self,
        producer_id: &str,
    ) -> Result<(ProducerId, Vec<(Producer, usize)>), MediaError> {
        let id: ProducerId = parse_id("producer_id", producer_id)?;
        let g = self.lock();
        let found: Vec<_> = g
            .producers
            .iter()
            .filter(|((_, p), _)| *p == id)
            .map(|(_, e)| (e.producer.clone(), e.worker_index))
            .collect();
        if found.is_empty() {
            return Err(MediaError::not_found("producer", id));
        }
        Ok((id, found))
    }

    /// Pauses a producer (every copy of it on this node).
    pub async fn pause_producer(&self, producer_id: &str) -> Result<(), MediaError> {
        for (p, worker) in self.producers_with_id(producer_id)?.1 {
            p.pause().await.map_err(|e| request_error(worker, e))?;
        }
        Ok(())
    }

    /// Resumes a producer (every copy of it on this node).
    pub async fn resume_producer(&self, producer_id: &str) -> Result<(), MediaError> {
        for (p, worker) in self.producers_with_id(producer_id)?.1 {
            p.resume().await.map_err(|e| request_error(worker, e))?;
        }
        Ok(())
    }

    /// Closes a producer: its copies on this node, their consumers, and the
    /// pipe consumers feeding other nodes (announced as ProducerClosed).
    pub fn close_producer(&self, producer_id: &str) -> Result<(), MediaError> {
        let id: ProducerId = parse_id("producer_id", producer_id)?;
        let removed = {
            let mut g = self.lock();
            let keys: Vec<_> = g
                .producers
                .keys()
                .filter(|(_, p)| *p == id)
                .copied()
                .collect();
            if keys.is_empty() {
                return Err(MediaError::not_found("producer", id));
            }
            let mut removed = Removed::default();
            for key in keys {
                removed.producers.extend(g.producers.remove(&key));
            }
            removed
        };
        self.announce_source_closures(&removed);
        drop(removed);
        Ok(())
    }

    // ----- consumers -------------------------------------------------------

    fn register_consumer(
        self: &Arc<Self>,
        consumer: Consumer,
        transport_id: TransportId,
        worker_index: usize,
        participant_id: Option<String>,
    ) {
        let id = consumer.id();
        let participant = participant_id.clone().unwrap_or_default();
        let weak = Arc::downgrade(self);
        {
            let (cleanup, participant) = (self.cleanup.clone(), participant.clone());
            consumer
                .on_producer_close(move || {
                    let _ = cleanup.send(Cleanup::Consumer {
                        id,
                        participant: Some(participant),
                    });
                })
                .detach();
        }
        {
            let cleanup = self.cleanup.clone();
            consumer
                .on_close(move || {
                    let _ = cleanup.send(Cleanup::Consumer {
                        id,
                        participant: None,
                    });
                })
                .detach();
        }
        {
            let (weak, participant) = (weak.clone(), participant.clone());
            consumer
                .on_layers_change(move |layers: &Option<ConsumerLayers>| {
                    if let Some(rooms) = weak.upgrade() {
                        rooms.emit(pb::event::Event::ConsumerLayersChanged(
                            pb::ConsumerLayersChanged {
                                consumer_id: id.to_string(),
                                participant_id: participant.clone(),
                                spatial_layer: layers.as_ref().map(|l| u32::from(l.spatial_layer)),
                                temporal_layer: layers
                                    .as_ref()
                                    .and_then(|l| l.temporal_layer.map(u32::from)),
                            },
                        ));
                    }
                })
                .detach();
        }
        let paused_event = |make: fn(pb::ConsumerPaused) -> pb::event::Event| {
            let (weak, participant) = (weak.clone(), participant.clone());
            move || {
                if let Some(rooms) = weak.upgrade() {
                    rooms.emit(make(pb::ConsumerPaused {
                        consumer_id: id.to_string(),
                        participant_id: participant.clone(),
                    }));
                }
            }
        };
        consumer
            .on_producer_pause(paused_event(pb::event::Event::ConsumerProducerPaused))
            .detach();
        consumer
            .on_producer_resume(paused_event(pb::event::Event::ConsumerProducerResumed))
            .detach();
        self.lock().consumers.insert(
            id,
            ConsumerEntry {
                consumer,
                worker_index,
                transport_id,
            },
        );
    }

    /// A consumer of `producer_id` on a participant's transport, created paused.
    #[instrument(skip(self, rtp_capabilities_json))]
    pub async fn consume(
        self: &Arc<Self>,
        transport_id: &str,
        producer_id: &str,
        rtp_capabilities_json: &str,
    ) -> Result<Consumed, MediaError> {
        let producer_id: ProducerId = parse_id("producer_id", producer_id)?;
        let rtp_capabilities: RtpCapabilities =
            parse_json("rtp_capabilities_json", rtp_capabilities_json)?;
        let (transport, router_id, worker_index, participant_id) = self.transport(transport_id)?;
        if matches!(transport, AnyTransport::Pipe(_)) {
            return Err(MediaError::FailedPrecondition(
                "use ConsumeToPipe on pipe transports".into(),
            ));
        }
        let router = self.router_entry(&router_id.to_string())?.0;
        if !self
            .lock()
            .producers
            .contains_key(&(router_id, producer_id))
        {
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
        let consumer = transport
            .consume(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot consume: {e}")))?;
        let consumed = Consumed {
            id: consumer.id(),
            producer_id,
            kind: consumer.kind(),
            rtp_parameters_json: to_json(consumer.rtp_parameters()),
            consumer_type: serde_json::to_value(consumer.r#type())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            producer_paused: consumer.producer_paused(),
        };
        self.register_consumer(consumer, transport.id(), worker_index, participant_id);
        Ok(consumed)
    }

    fn consumer(&self, consumer_id: &str) -> Result<(Consumer, usize), MediaError> {
        let id: ConsumerId = parse_id("consumer_id", consumer_id)?;
        let g = self.lock();
        let c = g
            .consumers
            .get(&id)
            .ok_or_else(|| MediaError::not_found("consumer", id))?;
        Ok((c.consumer.clone(), c.worker_index))
    }

    /// Pauses a consumer (its tile left the screen).
    pub async fn pause_consumer(&self, consumer_id: &str) -> Result<(), MediaError> {
        let (c, worker) = self.consumer(consumer_id)?;
        c.pause().await.map_err(|e| request_error(worker, e))
    }

    /// Resumes a consumer.
    pub async fn resume_consumer(&self, consumer_id: &str) -> Result<(), MediaError> {
        let (c, worker) = self.consumer(consumer_id)?;
        c.resume().await.map_err(|e| request_error(worker, e))
    }

    /// Preferred simulcast/SVC layers of a consumer.
    pub async fn set_preferred_layers(
        &self,
        consumer_id: &str,
        spatial: u32,
        temporal: Option<u32>,
    ) -> Result<(), MediaError> {
        let (c, worker) = self.consumer(consumer_id)?;
        let spatial_layer = u8::try_from(spatial)
            .map_err(|_| MediaError::invalid("spatial_layer", "at most 255"))?;
        let temporal_layer = temporal
            .map(u8::try_from)
            .transpose()
            .map_err(|_| MediaError::invalid("temporal_layer", "at most 255"))?;
        c.set_preferred_layers(ConsumerLayers {
            spatial_layer,
            temporal_layer,
        })
        .await
        .map_err(|e| request_error(worker, e))
    }

    /// Closes a consumer.
    pub fn close_consumer(&self, consumer_id: &str) -> Result<(), MediaError> {
        let id: ConsumerId = parse_id("consumer_id", consumer_id)?;
        let removed = self
            .lock()
            .consumers
            .remove(&id)
            .ok_or_else(|| MediaError::not_found("consumer", id))?;
        drop(removed);
        Ok(())
    }

    // ----- stats -----------------------------------------------------------

    /// mediasoup stats of one object, as JSON.
    pub async fn stats(
        &self,
        target: &pb::get_stats_request::Target,
    ) -> Result<String, MediaError> {
        use pb::get_stats_request::Target;
        let value = match target {
            Target::TransportId(id) => {
                let (t, _, worker, _) = self.transport(id)?;
                t.stats_json().await.map_err(|e| request_error(worker, e))?
            }
            Target::ProducerId(id) => {
                let (_, copies) = self.producers_with_id(id)?;
                let (p, worker) = copies.into_iter().next().expect("non-empty");
                serde_json::to_value(p.get_stats().await.map_err(|e| request_error(worker, e))?)
                    .expect("stats serialize")
            }
            Target::ConsumerId(id) => {
                let (c, worker) = self.consumer(id)?;
                let stats = c.get_stats().await.map_err(|e| request_error(worker, e))?;
                // Name each entry's direction, as mediasoup's worker does.
                serde_json::Value::Array(
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
                            let mut v = v.expect("stats serialize");
                            v["type"] = direction.into();
                            v
                        })
                        .collect(),
                )
            }
        };
        Ok(value.to_string())
    }

    // ----- pipes -----------------------------------------------------------

    /// Makes `producer_id` available on `target_router_id` (another worker of
    /// this node); the piped producer keeps the id.
    #[instrument(skip(self))]
    pub async fn pipe_producer_to_router(
        self: &Arc<Self>,
        producer_id: &str,
        target_router_id: &str,
    ) -> Result<(), MediaError> {
        let (target, _, target_worker) = self.router_entry(target_router_id)?;
        let pid: ProducerId = parse_id("producer_id", producer_id)?;
        let source = {
            let g = self.lock();
            if g.producers.contains_key(&(target.id(), pid)) {
                return Err(MediaError::FailedPrecondition(format!(
                    "producer {pid} is already on router {target_router_id}"
                )));
            }
            let mut candidates: Vec<_> = g
                .producers
                .iter()
                .filter(|((_, p), e)| *p == pid && e.worker_index != target_worker)
                .map(|((r, _), e)| (*r, e.origin))
                .collect();
            // Prefer the original over copies: the chain then closes with it.
            candidates.sort_by_key(|(_, origin)| *origin != ProducerOrigin::Source);
            candidates.first().map(|(r, _)| *r)
        };
        let source_router_id = match source {
            Some(r) => r,
            None => {
                let exists = self.lock().producers.keys().any(|(_, p)| *p == pid);
                return Err(if exists {
                    MediaError::FailedPrecondition(format!(
                        "producer {pid} lives only on worker {target_worker}: mediasoup cannot pipe between two routers of one worker"
                    ))
                } else {
                    MediaError::not_found("producer", pid)
                });
            }
        };
        let source_router = self.router_entry(&source_router_id.to_string())?.0;
        let pair = source_router
            .pipe_producer_to_router(pid, PipeToRouterOptions::new(target.clone()))
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot pipe producer: {e}")))?;
        let pipe_producer = pair.pipe_producer.into_inner();
        self.register_producer(
            pipe_producer,
            target.id(),
            target_worker,
            None,
            ProducerOrigin::SameNodePipe,
            Some(pair.pipe_consumer),
        )?;
        Ok(())
    }

    fn pipe_listen_info(&self) -> ListenInfo {
        crate::workers::listen_info(
            Protocol::Udp,
            self.pipe_listen_ip,
            self.pipe_announced_address.clone(),
            None,
        )
    }

    /// An SRTP pipe transport on a router, for a cross-node pipe.
    pub async fn create_pipe_transport(
        self: &Arc<Self>,
        router_id: &str,
    ) -> Result<UdpTransportCreated, MediaError> {
        let (router, _, worker) = self.router_entry(router_id)?;
        let mut options = PipeTransportOptions::new(self.pipe_listen_info());
        options.enable_srtp = true;
        options.enable_rtx = true;
        let pipe = router
            .create_pipe_transport(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create pipe transport: {e}")))?;
        let (ip, port) = tuple_addr(&pipe.tuple());
        let created = UdpTransportCreated {
            id: pipe.id(),
            ip,
            port,
            srtp_parameters_json: to_json(&pipe.srtp_parameters().expect("SRTP enabled")),
        };
        self.register_transport(AnyTransport::Pipe(pipe), router.id(), worker, None);
        Ok(created)
    }

    fn pipe_transport(
        &self,
        transport_id: &str,
    ) -> Result<(PipeTransport, RouterId, usize), MediaError> {
        match self.transport(transport_id)? {
            (AnyTransport::Pipe(t), router, worker, _) => Ok((t, router, worker)),
            _ => Err(MediaError::FailedPrecondition(format!(
                "transport {transport_id} is not a pipe transport"
            ))),
        }
    }

    /// Connects a pipe transport to its far side.
    pub async fn connect_pipe_transport(
        &self,
        transport_id: &str,
        ip: &str,
        port: u32,
        srtp_parameters_json: &str,
    ) -> Result<(), MediaError> {
        let (pipe, _, worker) = self.pipe_transport(transport_id)?;
        let (ip, port) = remote_address(ip, port)?;
        let srtp: SrtpParameters = parse_json("srtp_parameters_json", srtp_parameters_json)?;
        pipe.connect(PipeTransportRemoteParameters {
            ip,
            port,
            srtp_parameters: Some(srtp),
        })
        .await
        .map_err(|e| request_error(worker, e))
    }

    /// Source side of a cross-node pipe: a pipe consumer of `producer_id`.
    pub async fn consume_to_pipe(
        self: &Arc<Self>,
        transport_id: &str,
        producer_id: &str,
    ) -> Result<Consumed, MediaError> {
        let (pipe, router_id, worker) = self.pipe_transport(transport_id)?;
        let pid: ProducerId = parse_id("producer_id", producer_id)?;
        if !self.lock().producers.contains_key(&(router_id, pid)) {
            return Err(MediaError::not_found(
                "producer",
                format!("{pid} on router {router_id}"),
            ));
        }
        let consumer = pipe
            .consume(ConsumerOptions::new(pid, RtpCapabilities::default()))
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot consume into pipe: {e}")))?;
        let consumed = Consumed {
            id: consumer.id(),
            producer_id: pid,
            kind: consumer.kind(),
            rtp_parameters_json: to_json(consumer.rtp_parameters()),
            consumer_type: "pipe".into(),
            producer_paused: consumer.producer_paused(),
        };
        self.register_consumer(consumer, pipe.id(), worker, None);
        Ok(consumed)
    }

    /// Far side of a cross-node pipe: a producer with the source's id.
    pub async fn produce_from_pipe(
        self: &Arc<Self>,
        transport_id: &str,
        producer_id: &str,
        kind: i32,
        rtp_parameters_json: &str,
        paused: bool,
    ) -> Result<ProducerId, MediaError> {
        let (pipe, router_id, worker) = self.pipe_transport(transport_id)?;
        let pid: ProducerId = parse_id("producer_id", producer_id)?;
        let kind = kind_from_pb(kind)?;
        let rtp_parameters: RtpParameters = parse_json("rtp_parameters_json", rtp_parameters_json)?;
        if self.lock().producers.contains_key(&(router_id, pid)) {
            return Err(MediaError::FailedPrecondition(format!(
                "producer {pid} already exists on router {router_id}"
            )));
        }
        let mut options = ProducerOptions::new_pipe_transport(pid, kind, rtp_parameters);
        options.paused = paused;
        let producer = pipe
            .produce(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot produce from pipe: {e}")))?;
        self.register_producer(
            producer,
            router_id,
            worker,
            Some(pipe.id()),
            ProducerOrigin::RemotePipe,
            None,
        )?;
        Ok(pid)
    }

    // ----- plain transports -------------------------------------------------

    /// A plain RTP transport (optionally SRTP) for a non-browser participant.
    pub async fn create_plain_transport(
        self: &Arc<Self>,
        router_id: &str,
        participant_id: &str,
        comedia: bool,
        srtp_crypto_suite: Option<&str>,
    ) -> Result<UdpTransportCreated, MediaError> {
        check_name("participant_id", participant_id)?;
        let (router, _, worker) = self.router_entry(router_id)?;
        let mut options = PlainTransportOptions::new(self.pipe_listen_info());
        options.comedia = comedia;
        options.rtcp_mux = true;
        if let Some(suite) = srtp_crypto_suite {
            options.enable_srtp = true;
            if !suite.is_empty() {
                options.srtp_crypto_suite = serde_json::from_value(serde_json::Value::String(
                    suite.to_string(),
                ))
                .map_err(|_| {
                    MediaError::invalid("srtp_crypto_suite", format!("unknown suite {suite:?}"))
                })?;
            }
        }
        let t = router
            .create_plain_transport(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create plain transport: {e}")))?;
        let (ip, port) = tuple_addr(&t.tuple());
        let created = UdpTransportCreated {
            id: t.id(),
            ip,
            port,
            srtp_parameters_json: t.srtp_parameters().map(|p| to_json(&p)).unwrap_or_default(),
        };
        self.register_transport(
            AnyTransport::Plain(t),
            router.id(),
            worker,
            Some(participant_id.to_string()),
        );
        Ok(created)
    }

    /// Tells a plain transport where to send.
    pub async fn connect_plain_transport(
        &self,
        transport_id: &str,
        ip: &str,
        port: u32,
        srtp_parameters_json: &str,
    ) -> Result<(), MediaError> {
        let (t, worker) = match self.transport(transport_id)? {
            (AnyTransport::Plain(t), _, worker, _) => (t, worker),
            _ => {
                return Err(MediaError::FailedPrecondition(format!(
                    "transport {transport_id} is not a plain transport"
                )))
            }
        };
        let (ip, port) = remote_address(ip, port)?;
        let srtp_parameters = if srtp_parameters_json.is_empty() {
            None
        } else {
            Some(parse_json::<SrtpParameters>(
                "srtp_parameters_json",
                srtp_parameters_json,
            )?)
        };
        t.connect(PlainTransportRemoteParameters {
            ip: Some(ip),
            port: Some(port),
            rtcp_port: None,
            srtp_parameters,
        })
        .await
        .map_err(|e| request_error(worker, e))
    }

    // ----- ingest ----------------------------------------------------------

    /// Two PlainTransports (comedia, RTCP-mux) and an Opus + VP8 producer pair
    /// fed by an external RTP sender.
    pub async fn create_ingest(
        self: &Arc<Self>,
        router_id: &str,
        participant_id: &str,
    ) -> Result<IngestCreated, MediaError> {
        check_name("participant_id", participant_id)?;
        let (router, _, worker) = self.router_entry(router_id)?;
        // RTCP not muxed: ffmpeg sends RTCP from a second socket, and with comedia
        // a muxed transport would lock onto whichever source spoke first.
        let mut options = PlainTransportOptions::new(self.pipe_listen_info());
        options.comedia = true;
        options.rtcp_mux = false;
        let audio_t = router
            .create_plain_transport(options.clone())
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create ingest transport: {e}")))?;
        let video_t = router
            .create_plain_transport(options)
            .await
            .map_err(|e| MediaError::Rejected(format!("cannot create ingest transport: {e}")))?;
        let (ip, audio_port) = tuple_addr(&audio_t.tuple());
        let (_, video_port) = tuple_addr(&video_t.tuple());
        let rtcp_port = |t: &PlainTransport| t.rtcp_tuple().map(|tuple| tuple_addr(&tuple).1);
        let (Some(audio_rtcp_port), Some(video_rtcp_port)) =
            (rtcp_port(&audio_t), rtcp_port(&video_t))
        else {
            return Err(MediaError::Rejected(
                "ingest transport has no RTCP port".into(),
            ));
        };
        let participant = Some(participant_id.to_string());
        self.register_transport(
            AnyTransport::Plain(audio_t.clone()),
            router.id(),
            worker,
            participant.clone(),
        );
        self.register_transport(
            AnyTransport::Plain(video_t.clone()),
            router.id(),
            worker,
            participant.clone(),
        );

        let audio = RtpParameters {
            codecs: vec![RtpCodecParameters::Audio {
                mime_type: MimeTypeAudio::Opus,
                payload_type: ingest::AUDIO_PT,
                clock_rate: NonZeroU32::new(48000).unwrap(),
                channels: NonZeroU8::new(2).unwrap(),
                parameters: RtpCodecParametersParameters::default(),
                rtcp_feedback: vec![],
            }],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ingest::AUDIO_SSRC),
                ..Default::default()
            }],
            ..Default::default()
        };
        let video = RtpParameters {
            codecs: vec![RtpCodecParameters::Video {
                mime_type: MimeTypeVideo::Vp8,
                payload_type: ingest::VIDEO_PT,
                clock_rate: NonZeroU32::new(90000).unwrap(),
                parameters: RtpCodecParametersParameters::default(),
                rtcp_feedback: vec![],
            }],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ingest::VIDEO_SSRC),
                ..Default::default()
            }],
            ..Default::default()
        };
        let audio_p = audio_t
            .produce(ProducerOptions::new(MediaKind::Audio, audio))
            .await
            .map_err(|e| {
                MediaError::Rejected(format!("cannot create ingest audio producer: {e}"))
            })?;
        let video_p = video_t
            .produce(ProducerOptions::new(MediaKind::Video, video))
            .await
            .map_err(|e| {
                MediaError::Rejected(format!("cannot create ingest video producer: {e}"))
            })?;
        let created = IngestCreated {
            ip,
            audio_port,
            video_port,
            audio_rtcp_port,
            video_rtcp_port,
            audio_producer_id: audio_p.id(),
            video_producer_id: video_p.id(),
        };
        self.register_producer(
            audio_p,
            router.id(),
            worker,
            Some(audio_t.id()),
            ProducerOrigin::Source,
            None,
        )?;
        self.register_producer(
            video_p,
            router.id(),
            worker,
            Some(video_t.id()),
            ProducerOrigin::Source,
            None,
        )?;
        Ok(created)
    }
}

/// Conversions used by the gRPC layer.
pub(crate) fn kind_pb(kind: MediaKind) -> i32 {
    kind_to_pb(kind) as i32
}
