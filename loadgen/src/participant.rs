//! Participants that join through the coordinator exactly as the web client
//! does: a signalling session, then a send transport (Opus + VP8 from the
//! shared source) and/or a receive transport consuming other peers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::media::MediaKind;
use tokio::sync::broadcast::error::RecvError;

use crate::rtc::{device_capabilities, Payloads, Peer, RecvStats, RtcError};
use crate::signal::{Session, SignalError};
use crate::source::Source;

/// Request timeout for everything but `join` (which may queue).
const REQUEST: Duration = Duration::from_secs(30);

/// Why a participant failed.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// Signalling.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// WebRTC set-up.
    #[error(transparent)]
    Rtc(#[from] RtcError),
    /// ICE/DTLS did not come up.
    #[error("{0} transport did not connect")]
    NotConnected(&'static str),
    /// Relays only were asked for, and the transport came without a
    /// `turn:` server over UDP.
    #[error("{0} transport has no TURN relay (iceServers) to use")]
    NoRelay(&'static str),
}

/// A joined participant.
pub struct Participant {
    /// Its signalling session.
    pub session: Session,
    /// Peer id (the token's identity).
    pub peer_id: String,
    /// The router's RTP capabilities.
    pub caps: Value,
    /// Peers already in the room when it joined.
    pub peers: Vec<Value>,
    /// From sending `join` to `joined`.
    pub admitted_after: Duration,
    bind: IpAddr,
    /// Media only through the TURN relays the coordinator hands out.
    relay_only: bool,
    sender: Option<Arc<Peer>>,
    sender_task: Option<tokio::task::JoinHandle<()>>,
    receiver: Option<Peer>,
}

impl Participant {
    /// Connects and joins (waiting in the queue as long as `queue_limit`).
    pub async fn join(
        url: &str,
        token: &str,
        room: &str,
        name: &str,
        bind: IpAddr,
        queue_limit: Duration,
    ) -> Result<Self, ParticipantError> {
        let mut session = Session::connect(url).await?;
        let started = Instant::now();
        let joined = session
            .request(
                "join",
                json!({ "room": room, "displayName": name, "token": token }),
                queue_limit,
            )
            .await?;
        Ok(Self::joined(session, &joined, started.elapsed(), bind))
    }

    /// A participant whose `session` got the `joined` answer `joined` after
    /// `admitted_after`.
    pub fn joined(
        session: Session,
        joined: &Value,
        admitted_after: Duration,
        bind: IpAddr,
    ) -> Self {
        Self {
            session,
            peer_id: joined["peerId"].as_str().unwrap_or_default().to_string(),
            caps: joined["routerRtpCapabilities"].clone(),
            peers: joined["peers"].as_array().cloned().unwrap_or_default(),
            admitted_after,
            bind,
            relay_only: false,
            sender: None,
            sender_task: None,
            receiver: None,
        }
    }

    /// From now on, media only through the TURN relay each transport comes
    /// with (UDP), as a browser behind a firewall that blocks the media
    /// nodes' ports; a transport without one is an error.
    pub fn relay_only(&mut self) {
        self.relay_only = true;
    }

    async fn transport(
        &mut self,
        direction: &'static str,
    ) -> Result<(String, Peer), ParticipantError> {
        let t = self
            .session
            .request(
                "createTransport",
                json!({ "direction": direction }),
                REQUEST,
            )
            .await?;
        let relay = if self.relay_only {
            Some(
                crate::turn::TurnServer::from_ice_servers(&t["iceServers"])
                    .ok_or(ParticipantError::NoRelay(direction))?,
            )
        } else {
            None
        };
        let mut peer = Peer::start_relayed(&t, &self.caps, self.bind, relay.as_ref()).await?;
        let id = t["id"].as_str().unwrap_or_default().to_string();
        self.session
            .request(
                "connectTransport",
                json!({ "transportId": id, "dtlsParameters": peer.dtls_parameters() }),
                REQUEST,
            )
            .await?;
        if !peer.wait_connected(Duration::from_secs(20)).await {
            return Err(ParticipantError::NotConnected(direction));
        }
        Ok((id, peer))
    }

    /// Starts sending the source's audio and video (its own SSRCs, sequence
    /// numbers and timestamps); returns the producer ids.
    pub async fn send(
        &mut self,
        source: &Source,
        ssrc_base: u32,
    ) -> Result<Vec<String>, ParticipantError> {
        let (transport_id, mut peer) = self.transport("send").await?;
        let payloads = Payloads::from_caps(&self.caps)?;
        let (audio_ssrc, video_ssrc) = (ssrc_base, ssrc_base + 1);
        let mut producers = Vec::new();
        for (kind, ssrc, source_name) in [
            (MediaKind::Audio, audio_ssrc, "mic"),
            (MediaKind::Video, video_ssrc, "camera"),
        ] {
            let rtp = peer.declare_send(kind, ssrc, &self.caps)?;
            let kind_name = if kind == MediaKind::Audio {
                "audio"
            } else {
                "video"
            };
            let p = self
                .session
                .request(
                    "produce",
                    json!({ "transportId": transport_id, "kind": kind_name, "rtpParameters": rtp, "source": source_name }),
                    REQUEST,
                )
                .await?;
            producers.push(p["id"].as_str().unwrap_or_default().to_string());
        }
        let peer = Arc::new(peer);
        self.sender_task = Some(tokio::spawn(forward(
            source.subscribe(),
            peer.clone(),
            (audio_ssrc, video_ssrc),
            payloads,
        )));
        self.sender = Some(peer);
        Ok(producers)
    }

    /// Consumes `producer_id` on the receive transport (created on first use)
    /// and resumes it, as a tile on screen does; returns the consumer's SSRC
    /// (the key of its stream in [`Participant::received`]).
    pub async fn consume(&mut self, producer_id: &str) -> Result<u32, ParticipantError> {
        if self.receiver.is_none() {
            let (_, peer) = self.transport_lazy_recv().await?;
            self.receiver = Some(peer);
        }
        let caps = device_capabilities(&self.caps);
        let c = self
            .session
            .request(
                "consume",
                json!({ "producerId": producer_id, "rtpCapabilities": caps }),
                REQUEST,
            )
            .await?;
        self.receiver.as_mut().expect("created above").expect(&c)?;
        self.session
            .request("resumeConsumer", json!({ "consumerId": c["id"] }), REQUEST)
            .await?;
        Ok(c["rtpParameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .unwrap_or_default() as u32)
    }

    async fn transport_lazy_recv(&mut self) -> Result<(String, Peer), ParticipantError> {
        // A receive transport connects (ICE + DTLS) before its first consumer,
        // which is what a browser does once its first consumer exists.
        self.transport("recv").await
    }

    /// Records send times of what this participant sends (see [`crate::rtc::SentLog`]).
    pub fn log_sends(&self, log: crate::rtc::SentLog) {
        if let Some(p) = &self.sender {
            p.log_sends(log);
        }
    }

    /// Measures the latency of what this participant receives against `log`.
    pub fn log_latency(&self, log: crate::rtc::SentLog) {
        if let Some(p) = &self.receiver {
            p.log_latency(log);
        }
    }

    /// What the receive transport got, per SSRC.
    pub fn received(&self) -> Option<RecvStats> {
        self.receiver.as_ref().map(|p| p.stats.clone())
    }

    /// Leaves (closing the socket is a leave).
    pub fn leave(self) {
        if let Some(t) = &self.sender_task {
            t.abort();
        }
        self.session.close();
    }
}

/// Writes every source packet into `peer`'s audio and video streams, with
/// extended sequence numbers following the source's (so a lagging receiver of
/// the broadcast shows up as loss, not as a silent renumbering).
pub async fn forward(
    mut rx: tokio::sync::broadcast::Receiver<crate::source::SourcePacket>,
    peer: Arc<Peer>,
    (audio_ssrc, video_ssrc): (u32, u32),
    payloads: Payloads,
) {
    let mut ext: [Option<(u16, u64)>; 2] = [None, None];
    loop {
        let p = match rx.recv().await {
            Ok(p) => p,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        };
        let i = usize::from(!p.audio);
        let seq = match ext[i] {
            None => u64::from(p.seq),
            Some((last, e)) => e.wrapping_add_signed(i64::from(p.seq.wrapping_sub(last) as i16)),
        };
        ext[i] = Some((p.seq, seq));
        let (ssrc, pt) = if p.audio {
            (audio_ssrc, payloads.opus)
        } else {
            (video_ssrc, payloads.vp8)
        };
        peer.write(ssrc, pt, seq, p.time, p.marker, p.payload.clone());
    }
}
