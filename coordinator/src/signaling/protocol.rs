//! Browser signalling, version 1: every message of `/ws`, both directions.
//! `docs/signalling.md` documents the same list for client authors; the
//! web client mirrors these types.
//!
//! Messages are JSON objects tagged by `type`. Requests from the client may
//! carry a `reqId` (any string up to 64 characters); the reply to a request is
//! a `response` with the same `reqId`, holding either `data` or `error`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Protocol version, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest accepted client message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

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
    /// A WebRTC transport: `direction` is "send" or "recv".
    #[serde(rename_all = "camelCase")]
    CreateTransport {
        /// Correlation id.
        req_id: Option<String>,
        /// "send" or "recv".
        direction: String,
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
        kind: String,
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

/// A peer as others see it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: String,
    /// "audio" or "video".
    pub kind: String,
    /// "mic", "camera", ...
    pub source: String,
    /// Muted by its peer (see `producerPaused`).
    #[serde(default)]
    pub paused: bool,
}

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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
        /// Peers already in the room.
        peers: Vec<PeerInfo>,
    },
    /// Reply to a request.
    #[serde(rename_all = "camelCase")]
    Response {
        /// The request's id.
        req_id: Option<String>,
        /// Result data.
        data: Value,
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
    /// Whether this is an event (something happened in the room), rather
    /// than an answer or something the client waits for.
    pub fn is_event(&self) -> bool {
        matches!(
            self,
            ServerMessage::PeerJoined { .. }
                | ServerMessage::PeerLeft { .. }
                | ServerMessage::NewProducer { .. }
                | ServerMessage::ProducerClosed { .. }
                | ServerMessage::ProducerPaused { .. }
                | ServerMessage::ConsumerClosed { .. }
                | ServerMessage::ActiveSpeaker { .. }
                | ServerMessage::ConnectionState { .. }
        )
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
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"join","room":"r"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"hack"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"leave","extra":1}"#).is_err());
    }

    #[test]
    fn server_messages_serialize_with_their_tag() {
        let v = serde_json::to_value(ServerMessage::Queued {
            position: 3,
            estimated_wait_ms: 1200,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"queued","position":3,"estimatedWaitMs":1200})
        );
        let v = serde_json::to_value(ServerMessage::Error {
            req_id: None,
            code: ErrorCode::OutOfOrder,
            message: "join first".into(),
        })
        .unwrap();
        assert_eq!(v["code"], "out_of_order");
    }
}
