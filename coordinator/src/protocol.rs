//! Browser signalling, version 1: every message of `/ws`, both directions,
//! with typed fields (direction, kind) and typed reply payloads, and the
//! [`Outbox`] through which everything reaches one client's socket.
//! `docs/signalling.md` documents the same list for client authors; the web
//! client mirrors these types. Depends on nothing else in the crate.
//!
//! Messages are JSON objects tagged by `type`. Requests from the client may
//! carry a `reqId` (any string up to 64 characters); the reply to a request is
//! a `response` with the same `reqId`, holding either `data` or `error`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

/// Protocol version, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest accepted client message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest `reqId`, in bytes.
pub const MAX_REQ_ID: usize = 64;

/// The WebSocket read buffer (both ends). tungstenite zero-fills its whole
/// read buffer before every read: at its default of 128 KiB that memset was
/// 42 % of the coordinator's CPU in a 1000-person surge (BENCHMARKS.md, 1).
/// Signalling messages are small; larger ones still arrive (the buffer grows).
pub const WS_READ_BUFFER_BYTES: usize = 8 * 1024;

/// WebSocket settings for a client of this protocol (a coordinator proxying
/// to a room's owner, the load generator): the small read buffer above.
pub fn client_ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
}

/// A transport's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The browser sends (produces) on it.
    Send,
    /// The browser receives (consumes) on it.
    Recv,
}

impl Direction {
    /// As the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Recv => "recv",
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// Client -> server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Join a room: queued, then placed. Answered by `queued` updates and
    /// `joined` (or an error).
    #[serde(rename_all = "camelCase")]
    Join {
        /// Correlation id.
        req_id: Option<String>,
        /// Room to join (must match the token's).
        room: String,
        /// Name shown to others.
        display_name: String,
        /// Join token (HS256 JWT).
        token: String,
    },
    /// A WebRTC transport.
    #[serde(rename_all = "camelCase")]
    CreateTransport {
        /// Correlation id.
        req_id: Option<String>,
        /// "send" or "recv".
        direction: Direction,
    },
    /// DTLS parameters of the browser's side of a transport.
    #[serde(rename_all = "camelCase")]
    ConnectTransport {
        /// Correlation id.
        req_id: Option<String>,
        /// Transport.
        transport_id: String,
        /// mediasoup-client's DtlsParameters.
        dtls_parameters: Value,
    },
    /// Start sending a track.
    #[serde(rename_all = "camelCase")]
    Produce {
        /// Correlation id.
        req_id: Option<String>,
        /// The send transport.
        transport_id: String,
        /// "audio" or "video".
        kind: MediaKind,
        /// mediasoup-client's RtpParameters.
        rtp_parameters: Value,
        /// "mic", "camera", "screen"...
        #[serde(default)]
        source: String,
    },
    /// Receive a peer's producer; the consumer starts paused.
    #[serde(rename_all = "camelCase")]
    Consume {
        /// Correlation id.
        req_id: Option<String>,
        /// The producer.
        producer_id: String,
        /// The device's RtpCapabilities.
        rtp_capabilities: Value,
    },
    /// The consumer's tile is on screen.
    #[serde(rename_all = "camelCase")]
    ResumeConsumer {
        /// Correlation id.
        req_id: Option<String>,
        /// Consumer.
        consumer_id: String,
    },
    /// The consumer's tile left the screen.
    #[serde(rename_all = "camelCase")]
    PauseConsumer {
        /// Correlation id.
        req_id: Option<String>,
        /// Consumer.
        consumer_id: String,
    },
    /// The consumer is no longer wanted (its tile has been off screen a while).
    #[serde(rename_all = "camelCase")]
    CloseConsumer {
        /// Correlation id.
        req_id: Option<String>,
        /// Consumer.
        consumer_id: String,
    },
    /// Preferred simulcast layers (follows the tile size).
    #[serde(rename_all = "camelCase")]
    SetPreferredLayers {
        /// Correlation id.
        req_id: Option<String>,
        /// Consumer.
        consumer_id: String,
        /// Spatial layer.
        spatial_layer: u32,
        /// Temporal layer.
        temporal_layer: Option<u32>,
    },
    /// Stop sending a track (camera off).
    #[serde(rename_all = "camelCase")]
    CloseProducer {
        /// Correlation id.
        req_id: Option<String>,
        /// Producer.
        producer_id: String,
    },
    /// Pause or resume sending a track (mic mute).
    #[serde(rename_all = "camelCase")]
    PauseProducer {
        /// Correlation id.
        req_id: Option<String>,
        /// Producer.
        producer_id: String,
    },
    /// See `pauseProducer`.
    #[serde(rename_all = "camelCase")]
    ResumeProducer {
        /// Correlation id.
        req_id: Option<String>,
        /// Producer.
        producer_id: String,
    },
    /// New ICE credentials after a connection failure.
    #[serde(rename_all = "camelCase")]
    RestartIce {
        /// Correlation id.
        req_id: Option<String>,
        /// Transport.
        transport_id: String,
    },
    /// Leave the room (closing the socket does the same).
    #[serde(rename_all = "camelCase")]
    Leave {
        /// Correlation id.
        req_id: Option<String>,
    },
}

impl ClientMessage {
    /// The request's correlation id.
    pub fn req_id(&self) -> Option<&str> {
        match self {
            Self::Join { req_id, .. }
            | Self::CreateTransport { req_id, .. }
            | Self::ConnectTransport { req_id, .. }
            | Self::Produce { req_id, .. }
            | Self::Consume { req_id, .. }
            | Self::ResumeConsumer { req_id, .. }
            | Self::PauseConsumer { req_id, .. }
            | Self::CloseConsumer { req_id, .. }
            | Self::SetPreferredLayers { req_id, .. }
            | Self::CloseProducer { req_id, .. }
            | Self::PauseProducer { req_id, .. }
            | Self::ResumeProducer { req_id, .. }
            | Self::RestartIce { req_id, .. }
            | Self::Leave { req_id } => req_id.as_deref(),
        }
    }
}

/// The room of a `join`, read without parsing the rest of the message (the
/// signalling edge routes a join before anything else reads it).
pub fn join_room(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "type")]
        kind: String,
        room: Option<String>,
    }
    let peek: Peek = serde_json::from_str(text).ok()?;
    (peek.kind == "join").then_some(peek.room).flatten()
}

/// A peer as others see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// Peer id (the token's identity).
    pub peer_id: String,
    /// Display name.
    pub display_name: String,
    /// Its producers.
    pub producers: Vec<ProducerInfo>,
}

/// A producer as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// "mic", "camera", ...
    pub source: String,
    /// Muted by its peer (see `producerPaused`).
    pub paused: bool,
}

/// `createTransport`'s answer: what mediasoup-client's `createSendTransport`
/// and `createRecvTransport` take.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportCreated {
    /// Transport id.
    pub id: String,
    /// mediasoup IceParameters.
    pub ice_parameters: Value,
    /// mediasoup IceCandidate[].
    pub ice_candidates: Value,
    /// mediasoup DtlsParameters.
    pub dtls_parameters: Value,
}

/// `produce`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducerCreated {
    /// Producer id.
    pub id: String,
}

/// `consume`'s answer: what mediasoup-client's `transport.consume` takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerCreated {
    /// Consumer id.
    pub id: String,
    /// The producer consumed.
    pub producer_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// RtpParameters for the client.
    pub rtp_parameters: Value,
    /// "simple", "simulcast", "svc".
    #[serde(rename = "type")]
    pub consumer_type: String,
    /// Whether the producer is paused now.
    pub producer_paused: bool,
}

/// `restartIce`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IceRestarted {
    /// New IceParameters.
    pub ice_parameters: Value,
}

/// The `data` of a `response`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `createTransport`.
    Transport(TransportCreated),
    /// `produce`.
    Producer(ProducerCreated),
    /// `consume`.
    Consumer(ConsumerCreated),
    /// `restartIce`.
    Ice(IceRestarted),
    /// Everything else: `{}`.
    Done(Done),
}

/// An empty answer (`{}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Done {}

/// Error codes sent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, unknown type, missing or extra fields.
    BadRequest,
    /// Larger than `MAX_MESSAGE_BYTES`.
    TooLarge,
    /// Token missing, forged, expired or for another room.
    Unauthorized,
    /// The token does not allow publishing.
    Forbidden,
    /// A request out of order (e.g. produce before join).
    OutOfOrder,
    /// An id that is not the caller's, or no longer exists.
    NotFound,
    /// The room is full.
    RoomFull,
    /// No capacity anywhere, or the queue timed out.
    Unavailable,
    /// Media rejected the request (e.g. bad RTP parameters).
    Rejected,
    /// Something failed on our side.
    Internal,
    /// This identity joined the room on another connection, which replaces
    /// this one; the server then closes this socket.
    Replaced,
}

/// Server -> client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// First message on a new socket.
    #[serde(rename_all = "camelCase")]
    Welcome {
        /// Protocol version.
        protocol: u32,
    },
    /// Waiting for admission: position (1 = next) and estimated wait.
    #[serde(rename_all = "camelCase")]
    Queued {
        /// Place in line, 1-based.
        position: u64,
        /// Estimated wait, ms.
        estimated_wait_ms: u64,
    },
    /// Admitted and placed.
    #[serde(rename_all = "camelCase")]
    Joined {
        /// Reply to the `join`.
        req_id: Option<String>,
        /// This participant's id.
        peer_id: String,
        /// May send media.
        can_publish: bool,
        /// RTP capabilities of the participant's router.
        router_rtp_capabilities: Value,
        /// Peers already in the room, in join order.
        peers: Vec<PeerInfo>,
    },
    /// Reply to a request.
    #[serde(rename_all = "camelCase")]
    Response {
        /// The request's id.
        req_id: Option<String>,
        /// Result data.
        data: Reply,
    },
    /// A request failed, or a message could not be understood.
    #[serde(rename_all = "camelCase")]
    Error {
        /// The request's id, if it had one.
        req_id: Option<String>,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
    /// Someone joined.
    #[serde(rename_all = "camelCase")]
    PeerJoined {
        /// The peer.
        peer: PeerInfo,
    },
    /// Someone left.
    #[serde(rename_all = "camelCase")]
    PeerLeft {
        /// The peer.
        peer_id: String,
    },
    /// A peer started sending.
    #[serde(rename_all = "camelCase")]
    NewProducer {
        /// The peer.
        peer_id: String,
        /// The producer.
        producer: ProducerInfo,
    },
    /// A peer stopped sending.
    #[serde(rename_all = "camelCase")]
    ProducerClosed {
        /// The peer.
        peer_id: String,
        /// The producer.
        producer_id: String,
    },
    /// A peer paused (muted) or resumed one of its producers.
    #[serde(rename_all = "camelCase")]
    ProducerPaused {
        /// The peer.
        peer_id: String,
        /// The producer.
        producer_id: String,
        /// Paused now (false: resumed).
        paused: bool,
    },
    /// One of this client's consumers closed (its producer went away).
    #[serde(rename_all = "camelCase")]
    ConsumerClosed {
        /// The consumer.
        consumer_id: String,
    },
    /// The layers one of this client's simulcast consumers now receives
    /// (absent: none, e.g. the sender's bandwidth dropped every layer).
    #[serde(rename_all = "camelCase")]
    ConsumerLayers {
        /// The consumer.
        consumer_id: String,
        /// Spatial layer.
        spatial_layer: Option<u32>,
        /// Temporal layer.
        temporal_layer: Option<u32>,
    },
    /// The dominant speaker of the room changed.
    #[serde(rename_all = "camelCase")]
    ActiveSpeaker {
        /// The peer speaking.
        peer_id: String,
    },
    /// State of one of this client's transports, as the server sees it.
    #[serde(rename_all = "camelCase")]
    ConnectionState {
        /// Transport.
        transport_id: String,
        /// ICE state.
        ice_state: String,
        /// DTLS state.
        dtls_state: String,
    },
    /// Re-join now (the media node died or is going away).
    #[serde(rename_all = "camelCase")]
    Reconnect {
        /// Why.
        reason: String,
    },
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(req_id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            req_id,
            code,
            message: message.into(),
        }
    }

    /// Whether this is an event (something happened in the room), rather
    /// than an answer or something the client waits for.
    pub fn is_event(&self) -> bool {
        is_event_type(self.type_name())
    }

    /// Whether the session ends once this is sent: its placement is gone and
    /// the client re-joins on a new socket, or already did (replaced).
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            ServerMessage::Reconnect { .. }
                | ServerMessage::Error {
                    code: ErrorCode::Replaced,
                    ..
                }
        )
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Welcome { .. } => "welcome",
            Self::Queued { .. } => "queued",
            Self::Joined { .. } => "joined",
            Self::Response { .. } => "response",
            Self::Error { .. } => "error",
            Self::PeerJoined { .. } => "peerJoined",
            Self::PeerLeft { .. } => "peerLeft",
            Self::NewProducer { .. } => "newProducer",
            Self::ProducerClosed { .. } => "producerClosed",
            Self::ProducerPaused { .. } => "producerPaused",
            Self::ConsumerClosed { .. } => "consumerClosed",
            Self::ConsumerLayers { .. } => "consumerLayers",
            Self::ActiveSpeaker { .. } => "activeSpeaker",
            Self::ConnectionState { .. } => "connectionState",
            Self::Reconnect { .. } => "reconnect",
        }
    }
}

/// Whether a server message of this `type` is an event (see [`ServerMessage::is_event`]).
pub fn is_event_type(t: &str) -> bool {
    matches!(
        t,
        "peerJoined"
            | "peerLeft"
            | "newProducer"
            | "producerClosed"
            | "producerPaused"
            | "consumerClosed"
            | "consumerLayers"
            | "activeSpeaker"
            | "connectionState"
    )
}

/// What goes to a client's socket.
#[derive(Debug)]
pub enum Outgoing {
    /// A message of this coordinator's.
    Message(ServerMessage),
    /// A message the room's owner (another coordinator) sent, passed on as it
    /// came, with what the writer needs to know of it.
    Relayed {
        /// The JSON text.
        text: String,
        /// An event (may wait a little to share a write).
        event: bool,
        /// The session ends after it.
        ends_session: bool,
    },
}

impl Outgoing {
    /// The text to write.
    pub fn into_text(self) -> String {
        match self {
            Self::Message(m) => serde_json::to_string(&m).expect("server messages serialize"),
            Self::Relayed { text, .. } => text,
        }
    }

    /// An event (rather than an answer).
    pub fn is_event(&self) -> bool {
        match self {
            Self::Message(m) => m.is_event(),
            Self::Relayed { event, .. } => *event,
        }
    }

    /// The session ends after it.
    pub fn ends_session(&self) -> bool {
        match self {
            Self::Message(m) => m.ends_session(),
            Self::Relayed { ends_session, .. } => *ends_session,
        }
    }
}

/// One client's queue of outgoing messages: every part of the coordinator
/// that talks to a client (its session's answers, its room's events, node
/// events about its transports) sends here; the session's writer drains it.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::UnboundedSender<Outgoing>);

impl Outbox {
    /// An outbox and the receiving end its session's writer reads.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Queues a message (a client already gone is not an error).
    pub fn send(&self, msg: ServerMessage) {
        let _ = self.0.send(Outgoing::Message(msg));
    }

    /// Queues a relayed message; false once the client is gone.
    pub fn relay(&self, text: String, event: bool, ends_session: bool) -> bool {
        self.0
            .send(Outgoing::Relayed {
                text,
                event,
                ends_session,
            })
            .is_ok()
    }

    /// Whether both are the same client's (a session replaced by a re-join
    /// has another outbox).
    pub fn same(&self, other: &Outbox) -> bool {
        self.0.same_channel(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_from_the_documented_json() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"join","reqId":"1","room":"lobby","displayName":"Ann","token":"t"}"#,
        )
        .unwrap();
        assert_eq!(m.req_id(), Some("1"));
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"setPreferredLayers","consumerId":"c","spatialLayer":1}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::SetPreferredLayers {
                temporal_layer: None,
                ..
            }
        ));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"createTransport","direction":"recv"}"#).unwrap();
        assert!(matches!(
            m,
            ClientMessage::CreateTransport {
                direction: Direction::Recv,
                ..
            }
        ));
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"createTransport","direction":"sideways"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"join","room":"r"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"hack"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"leave","extra":1}"#).is_err());
        assert_eq!(
            join_room(r#"{"type":"join","room":"a\"b","token":"x"}"#).as_deref(),
            Some("a\"b")
        );
        assert_eq!(join_room(r#"{"type":"leave"}"#), None);
        assert_eq!(join_room("{not json"), None);
    }

    #[test]
    fn server_messages_serialize_with_their_tag_and_typed_replies_as_documented() {
        let v = serde_json::to_value(ServerMessage::Queued {
            position: 3,
            estimated_wait_ms: 1200,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"queued","position":3,"estimatedWaitMs":1200})
        );
        let v = serde_json::to_value(ServerMessage::error(
            None,
            ErrorCode::OutOfOrder,
            "join first",
        ))
        .unwrap();
        assert_eq!(v["code"], "out_of_order");
        let v = serde_json::to_value(ServerMessage::Response {
            req_id: Some("7".into()),
            data: Reply::Consumer(ConsumerCreated {
                id: "c".into(),
                producer_id: "p".into(),
                kind: MediaKind::Video,
                rtp_parameters: serde_json::json!({}),
                consumer_type: "simulcast".into(),
                producer_paused: false,
            }),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"response","reqId":"7","data":{"id":"c","producerId":"p",
                "kind":"video","rtpParameters":{},"type":"simulcast","producerPaused":false}})
        );
        let v = serde_json::to_value(Reply::Done(Done {})).unwrap();
        assert_eq!(v, serde_json::json!({}));
        for m in [
            ServerMessage::PeerLeft {
                peer_id: "x".into(),
            },
            ServerMessage::ActiveSpeaker {
                peer_id: "x".into(),
            },
        ] {
            let v = serde_json::to_value(&m).unwrap();
            assert_eq!(m.type_name(), v["type"]);
            assert!(m.is_event());
        }
        assert!(!ServerMessage::Welcome { protocol: 1 }.is_event());
    }
}
