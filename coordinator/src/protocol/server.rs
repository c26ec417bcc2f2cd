//! Server -> client: answers, typed reply payloads, events, error codes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MediaKind, Role};

/// A peer as others see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// Peer id (the token's identity).
    pub peer_id: String,
    /// Display name.
    pub display_name: String,
    /// Its role (`member` outside events; hosts and speakers on a stage).
    pub role: Role,
    /// Its producers.
    pub producers: Vec<ProducerInfo>,
}

/// A page of the room's roster (`joined`, `resumed`, `listPeers`): peers
/// in join order, where the next page starts, and how many are in the room.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerPage {
    /// The page, in join order (without the asking peer).
    pub peers: Vec<PeerInfo>,
    /// Pass to `listPeers` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Everyone in the room, the asking peer included.
    pub peer_count: usize,
}

/// One raised hand, as hosts see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hand {
    /// The audience member.
    pub peer_id: String,
    /// Its name.
    pub display_name: String,
}

/// Most peers in one page of the roster (`listPeers`, `listAudience`), and
/// in one `peersJoined`: about 4 KB of JSON, a bounded share of a socket's
/// batch (a socket keeps no write buffer between batches: `signaling::ws`).
pub const PEER_PAGE_MAX: usize = 50;

/// Most audience members in one page of `listAudience`, and raised hands
/// in one `hands` (names without producers, about 6 KB; asked for by hosts
/// and by whoever opens the audience list, not sent to everyone).
pub const AUDIENCE_PAGE_MAX: usize = 100;

/// Peers in the first page of the roster that `joined` and `resumed` carry
/// (with the router's RTP capabilities, 3.5 KB, beside it): enough for a
/// page of tiles; the rest come from `listPeers`.
pub const JOINED_PEERS: usize = 20;

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
    /// TURN relays with credentials for this participant (`iceServers` of
    /// the transport), when the cluster has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<crate::turn::IceServer>>,
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
    /// Fresh TURN credentials (the browser may allocate again), when the
    /// cluster has TURN relays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<crate::turn::IceServer>>,
}

impl IceRestarted {
    /// New ICE parameters, no TURN credentials (the handler adds them).
    pub fn new(ice_parameters: Value) -> Self {
        Self {
            ice_parameters,
            ice_servers: None,
        }
    }
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
    /// `listPeers`.
    Peers(PeerPage),
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
    /// No capacity anywhere, the queue is full (`retryAfterMs` set) or timed out.
    Unavailable,
    /// This session sent more messages than its budget (`retryAfterMs` set);
    /// the message was not processed.
    RateLimited,
    /// This identity already has as many sessions as one coordinator allows.
    TooManySessions,
    /// Media rejected the request (e.g. bad RTP parameters).
    Rejected,
    /// Something failed on our side.
    Internal,
    /// This identity joined the room on another connection, which replaces
    /// this one; the server then closes this socket.
    Replaced,
}

/// One of a resumed participant's consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumedConsumer {
    /// Consumer.
    pub consumer_id: String,
    /// What it consumes.
    pub producer_id: String,
    /// Paused by the client.
    pub paused: bool,
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
        /// Its role (`member` outside events).
        role: super::Role,
        /// Audience members in the room (events).
        audience_count: usize,
        /// RTP capabilities of the participant's router.
        router_rtp_capabilities: Value,
        /// The first page of the others already in the room, in join
        /// order (`nextCursor` for the rest), and the room's count.
        #[serde(flatten)]
        roster: PeerPage,
        /// Takes this session up again on a new socket (`resume`) while the
        /// server keeps it, after the socket closed without a `leave`.
        resume_token: String,
    },
    /// A session taken up again (`resume`): the room as it is now, and what
    /// the server still holds of this participant. Events from here on are
    /// relative to it.
    #[serde(rename_all = "camelCase")]
    Resumed {
        /// Reply to the `resume`.
        req_id: Option<String>,
        /// This participant's id.
        peer_id: String,
        /// May send media.
        can_publish: bool,
        /// The first page of the others in the room, in join order
        /// (`nextCursor` for the rest), and the room's count.
        #[serde(flatten)]
        roster: PeerPage,
        /// Its producers (the client closes those it does not know).
        producers: Vec<ProducerInfo>,
        /// Its consumers (the client closes those it does not know, and
        /// forgets those not listed).
        consumers: Vec<ResumedConsumer>,
        /// Its transports, send and receive.
        transports: Vec<String>,
        /// For the next `resume`.
        resume_token: String,
    },
    /// The event's audience count changed (coalesced like the lists).
    #[serde(rename_all = "camelCase")]
    Audience {
        /// Audience members in the room.
        count: usize,
    },
    /// To hosts: the raised hands, in the order they went up (the first
    /// 100), and how many are up.
    #[serde(rename_all = "camelCase")]
    Hands {
        /// The first hands, oldest first.
        hands: Vec<Hand>,
        /// Hands up.
        count: usize,
    },
    /// This participant's role changed (a host promoted or demoted it):
    /// publish (or stop) without re-joining.
    #[serde(rename_all = "camelCase")]
    RoleChanged {
        /// Its role now.
        role: super::Role,
        /// May send media now.
        can_publish: bool,
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
        /// For a refusal that is only for now (`unavailable` when the queue is
        /// full, `rate_limited`): how long to wait before trying again.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Peers joined (or joined again: the entry replaces what the client
    /// knew of that peer), coalesced over the room's presence window. May
    /// list the receiving peer itself (clients skip their own id).
    #[serde(rename_all = "camelCase")]
    PeersJoined {
        /// The peers, in join order.
        peers: Vec<PeerInfo>,
        /// Everyone in the room now.
        peer_count: usize,
    },
    /// Peers left, coalesced over the room's presence window. May name
    /// peers the client never heard of (joined and left within one window).
    #[serde(rename_all = "camelCase")]
    PeersLeft {
        /// The peers.
        peer_ids: Vec<String>,
        /// Everyone in the room now.
        peer_count: usize,
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
            retry_after_ms: None,
        }
    }

    /// An `error` refusing something for now, with when to try again.
    pub fn retry_later(
        req_id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
        retry_after: std::time::Duration,
    ) -> Self {
        Self::Error {
            req_id,
            code,
            message: message.into(),
            retry_after_ms: Some(retry_after.as_millis().max(1) as u64),
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
            Self::Resumed { .. } => "resumed",
            Self::Response { .. } => "response",
            Self::Error { .. } => "error",
            Self::Audience { .. } => "audience",
            Self::Hands { .. } => "hands",
            Self::RoleChanged { .. } => "roleChanged",
            Self::PeersJoined { .. } => "peersJoined",
            Self::PeersLeft { .. } => "peersLeft",
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
        "peersJoined"
            | "peersLeft"
            | "audience"
            | "hands"
            | "roleChanged"
            | "newProducer"
            | "producerClosed"
            | "producerPaused"
            | "consumerClosed"
            | "consumerLayers"
            | "activeSpeaker"
            | "connectionState"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MediaKind;

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
            ServerMessage::PeersLeft {
                peer_ids: vec!["x".into()],
                peer_count: 1,
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
