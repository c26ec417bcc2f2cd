//! Client -> server: every request a browser may send.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Direction, MediaKind};

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
    /// Take up a session whose socket closed without a `leave` (network
    /// change, a coordinator that died): same peer, transports, producers and
    /// consumers. Answered by `resumed` (or an error: then join again).
    #[serde(rename_all = "camelCase")]
    Resume {
        /// Correlation id.
        req_id: Option<String>,
        /// The room (must match the token's).
        room: String,
        /// The `resumeToken` of the `joined` or last `resumed`.
        resume_token: String,
    },
    /// A page of the room's roster, in join order, after `cursor` (the
    /// `nextCursor` of `joined`, `resumed` or the previous page). Answered by
    /// a `response` whose data is a [`super::PeerPage`].
    #[serde(rename_all = "camelCase")]
    ListPeers {
        /// Correlation id.
        req_id: Option<String>,
        /// Where the previous page ended (absent: from the start).
        #[serde(default)]
        cursor: Option<String>,
        /// Most peers in the page (default and most: `PEER_PAGE_MAX`).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A page of an event's audience, in join order (like `listPeers`).
    #[serde(rename_all = "camelCase")]
    ListAudience {
        /// Correlation id.
        req_id: Option<String>,
        /// Where the previous page ended.
        #[serde(default)]
        cursor: Option<String>,
        /// Most in the page (default and most 100).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// An audience member raises (or lowers) its hand.
    #[serde(rename_all = "camelCase")]
    RaiseHand {
        /// Correlation id.
        req_id: Option<String>,
        /// Up (false: down).
        raised: bool,
    },
    /// A host brings an audience member on stage: it may publish at once.
    #[serde(rename_all = "camelCase")]
    Promote {
        /// Correlation id.
        req_id: Option<String>,
        /// The audience member.
        peer_id: String,
    },
    /// A host sends a speaker back to the audience: its producers close.
    #[serde(rename_all = "camelCase")]
    Demote {
        /// Correlation id.
        req_id: Option<String>,
        /// The speaker.
        peer_id: String,
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
            | Self::Resume { req_id, .. }
            | Self::ListPeers { req_id, .. }
            | Self::ListAudience { req_id, .. }
            | Self::RaiseHand { req_id, .. }
            | Self::Promote { req_id, .. }
            | Self::Demote { req_id, .. }
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

    /// The message's `type`, as on the wire (names its span).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Resume { .. } => "resume",
            Self::ListPeers { .. } => "listPeers",
            Self::ListAudience { .. } => "listAudience",
            Self::RaiseHand { .. } => "raiseHand",
            Self::Promote { .. } => "promote",
            Self::Demote { .. } => "demote",
            Self::CreateTransport { .. } => "createTransport",
            Self::ConnectTransport { .. } => "connectTransport",
            Self::Produce { .. } => "produce",
            Self::Consume { .. } => "consume",
            Self::ResumeConsumer { .. } => "resumeConsumer",
            Self::PauseConsumer { .. } => "pauseConsumer",
            Self::CloseConsumer { .. } => "closeConsumer",
            Self::SetPreferredLayers { .. } => "setPreferredLayers",
            Self::CloseProducer { .. } => "closeProducer",
            Self::PauseProducer { .. } => "pauseProducer",
            Self::ResumeProducer { .. } => "resumeProducer",
            Self::RestartIce { .. } => "restartIce",
            Self::Leave { .. } => "leave",
        }
    }
}

/// The room of a `join` or `resume`, read without parsing the rest of the
/// message (the signalling edge routes it before anything else reads it).
pub fn join_room(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "type")]
        kind: String,
        room: Option<String>,
    }
    let peek: Peek = serde_json::from_str(text).ok()?;
    (peek.kind == "join" || peek.kind == "resume")
        .then_some(peek.room)
        .flatten()
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
        assert_eq!(
            join_room(r#"{"type":"resume","room":"r","resumeToken":"t"}"#).as_deref(),
            Some("r")
        );
        assert_eq!(join_room("{not json"), None);
    }
}
