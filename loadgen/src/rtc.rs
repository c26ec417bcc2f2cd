//! A real WebRTC endpoint without a browser: str0m (sans-IO, DTLS-SRTP,
//! ICE, NACK, RTCP, transport-cc feedback) driven over one UDP socket by a tokio
//! task, configured through str0m's direct API from the parameters mediasoup
//! gives (no SDP), the way mediasoup-client configures a browser.
//!
//! A peer either sends (RTP written into declared streams) or receives
//! (expected streams; every packet is counted and timed per SSRC for loss and
//! interarrival jitter, RFC 3550).
//!
//! About 640 lines: one endpoint, its set-up from mediasoup's parameters and its
//! receive statistics, which change together.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// Why a peer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// The transport parameters from the server are not usable.
    #[error("bad transport parameters: {0}")]
    Params(String),
    /// Socket trouble.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Reception of one stream (SSRC).
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// "audio" or "video".
    pub kind: &'static str,
    /// Packets received (retransmissions included once).
    pub packets: u64,
    /// Lowest and highest extended sequence number seen.
    pub first_seq: Option<u64>,
    /// Highest extended sequence number seen.
    pub last_seq: u64,
    /// RFC 3550 interarrival jitter, in RTP clock units (x16 fixed point avoided: f64).
    pub jitter: f64,
    clock_rate: f64,
    last_transit: Option<f64>,
    /// When the first packet arrived.
    pub first_at: Option<Instant>,
    /// One-way latencies (ms) of packets whose send time is known (see [`SentLog`]).
    pub latency_ms: Vec<f32>,
}

impl StreamStats {
    /// Packets expected from the sequence numbers seen, minus those received.
    pub fn lost(&self) -> u64 {
        match self.first_seq {
            Some(first) => (self.last_seq - first + 1).saturating_sub(self.packets),
            None => 0,
        }
    }

    /// Jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        if self.clock_rate > 0.0 {
            self.jitter * 1000.0 / self.clock_rate
        } else {
            0.0
        }
    }
}

/// What a receiving peer has seen, by SSRC.
pub type RecvStats = Arc<Mutex<HashMap<u32, StreamStats>>>;

/// When the first packet of any of the streams in `stats` arrived.
pub fn first_packet_at(stats: &RecvStats) -> Option<Instant> {
    stats
        .lock()
        .expect("stats")
        .values()
        .filter_map(|s| s.first_at)
        .min()
}

/// When each payload was handed to the sending endpoint, keyed by a hash of
/// the payload (an SFU forwards payloads unchanged, whatever it does to
/// headers): a receiver in the same process finds its packet's send time
/// here, which gives one-way latency through the cluster. Bounded.
#[derive(Default)]
pub struct SentTimes {
    at: HashMap<u64, Instant>,
    order: std::collections::VecDeque<u64>,
}

/// Shared [`SentTimes`].
pub type SentLog = Arc<Mutex<SentTimes>>;

/// Hashes of the payloads that arrived, per SSRC, in arrival order
/// ([`Peer::log_payloads`]).
pub type PayloadLog = Arc<Mutex<HashMap<u32, Vec<u64>>>>;

const SENT_LOG_MAX: usize = 20_000;

/// The hash a payload is known by ([`SentTimes`], [`PayloadLog`]).
pub fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

impl SentTimes {
    fn record(&mut self, payload: &[u8], at: Instant) {
        let k = payload_hash(payload);
        // A payload seen twice (identical audio frames) is ambiguous: drop it.
        if self.at.insert(k, at).is_some() {
            self.at.remove(&k);
            return;
        }
        self.order.push_back(k);
        while self.order.len() > SENT_LOG_MAX {
            if let Some(old) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
    }

    fn sent_at(&self, payload: &[u8]) -> Option<Instant> {
        self.at.get(&payload_hash(payload)).copied()
    }
}

enum Command {
    Declare {
        mid: Mid,
        kind: MediaKind,
    },
    ExpectRx {
        mid: Mid,
        ssrc: u32,
        rtx: Option<u32>,
        kind: MediaKind,
        clock_rate: u32,
    },
    DeclareTx {
        mid: Mid,
        ssrc: u32,
        rtx: Option<u32>,
    },
    /// Record send times of written payloads into this log.
    LogSends(SentLog),
    /// Record every arriving payload's hash, per SSRC, in arrival order.
    LogPayloads(PayloadLog),
    /// Impair what arrives from now on.
    Impair(crate::link::Impairment),
    /// Look up arrivals in this log and keep their latency.
    LogLatency(SentLog),
    Write {
        ssrc: u32,
        pt: u8,
        seq: u64,
        time: u32,
        marker: bool,
        payload: Arc<[u8]>,
    },
}

/// A running WebRTC endpoint.
pub struct Peer {
    cmd: mpsc::UnboundedSender<Command>,
    /// DTLS fingerprint of this end ("sha-256 AB:CD:...").
    pub fingerprint: String,
    /// Becomes true once ICE and DTLS are up.
    pub connected: watch::Receiver<bool>,
    /// Per-SSRC reception.
    pub stats: RecvStats,
    next_mid: u32,
}

/// str0m's name for a header extension mediasoup announces, if it has one.
fn extension(uri: &str) -> Option<Extension> {
    Some(match uri {
        "urn:ietf:params:rtp-hdrext:sdes:mid" => Extension::RtpMid,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" => Extension::AbsoluteSendTime,
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01" => {
            Extension::TransportSequenceNumber
        }
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level" => Extension::AudioLevel,
        _ => return None,
    })
}

/// Header extensions (id, uri) of the router's capabilities that this end
/// speaks, with the router's ids.
pub fn supported_extensions(router_caps: &Value) -> Vec<(u8, String, String)> {
    router_caps["headerExtensions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let uri = e["uri"].as_str()?;
            extension(uri)?;
            let id = u8::try_from(e["preferredId"].as_u64()?).ok()?;
            Some((id, uri.to_string(), e["kind"].as_str()?.to_string()))
        })
        .collect()
}

/// The router's payload types for Opus, VP8 and VP8's RTX.
#[derive(Debug, Clone, Copy)]
pub struct Payloads {
    /// Opus.
    pub opus: u8,
    /// VP8.
    pub vp8: u8,
    /// RTX of VP8.
    pub vp8_rtx: Option<u8>,
}

impl Payloads {
    /// Reads them from the router's RTP capabilities.
    pub fn from_caps(caps: &Value) -> Result<Self, RtcError> {
        let codecs = caps["codecs"].as_array().cloned().unwrap_or_default();
        let pt_of = |mime: &str| {
            codecs
                .iter()
                .find(|c| {
                    c["mimeType"]
                        .as_str()
                        .is_some_and(|m| m.eq_ignore_ascii_case(mime))
                })
                .and_then(|c| c["preferredPayloadType"].as_u64())
                .map(|p| p as u8)
        };
        let opus = pt_of("audio/opus").ok_or_else(|| RtcError::Params("no opus".into()))?;
        let vp8 = pt_of("video/VP8").ok_or_else(|| RtcError::Params("no VP8".into()))?;
        let vp8_rtx = codecs
            .iter()
            .find(|c| {
                c["mimeType"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case("video/rtx"))
                    && c["parameters"]["apt"].as_u64() == Some(u64::from(vp8))
            })
            .and_then(|c| c["preferredPayloadType"].as_u64())
            .map(|p| p as u8);
        Ok(Self { opus, vp8, vp8_rtx })
    }
}

/// The `rtpCapabilities` this end announces for `consume`: the router's Opus,
/// VP8 (+RTX) and the header extensions str0m handles.
pub fn device_capabilities(router_caps: &Value) -> Value {
    let codecs: Vec<Value> = router_caps["codecs"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| {
            let m = c["mimeType"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            m == "audio/opus" || m == "video/vp8" || m == "video/rtx"
        })
        .cloned()
        .collect();
    let exts: Vec<Value> = router_caps["headerExtensions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["uri"].as_str().and_then(extension).is_some())
        .cloned()
        .collect();
    json!({ "codecs": codecs, "headerExtensions": exts })
}

impl Peer {
    /// Sets up ICE (controlling, towards mediasoup's ICE-lite candidates) and
    /// DTLS (client) from a `createTransport` answer, on a socket bound to
    /// `bind`. Call `connectTransport` with [`Peer::dtls_parameters`] next.
    pub async fn start(
        transport: &Value,
        router_caps: &Value,
        bind: IpAddr,
    ) -> Result<Self, RtcError> {
        Self::start_relayed(transport, router_caps, bind, None).await
    }

    /// [`Peer::start`], with `relay`: media only through that TURN server
    /// (its relayed address is the only local candidate), as a browser
    /// behind a firewall that blocks the media nodes' ports.
    pub async fn start_relayed(
        transport: &Value,
        router_caps: &Value,
        bind: IpAddr,
        relay: Option<&crate::turn::TurnServer>,
    ) -> Result<Self, RtcError> {
        let p = |what: &str| RtcError::Params(what.to_string());
        let ufrag = transport["iceParameters"]["usernameFragment"]
            .as_str()
            .ok_or_else(|| p("iceParameters.usernameFragment"))?;
        let pwd = transport["iceParameters"]["password"]
            .as_str()
            .ok_or_else(|| p("iceParameters.password"))?;
        let fp = transport["dtlsParameters"]["fingerprints"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["algorithm"] == "sha-256"))
            .and_then(|f| f["value"].as_str())
            .ok_or_else(|| p("a sha-256 DTLS fingerprint"))?;
        let remote: Vec<SocketAddr> = transport["iceCandidates"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|c| c["protocol"] == "udp")
            .filter_map(|c| {
                let ip: IpAddr = c["address"].as_str().or(c["ip"].as_str())?.parse().ok()?;
                Some(SocketAddr::new(ip, c["port"].as_u64()? as u16))
            })
            .collect();
        if remote.is_empty() {
            return Err(p("a UDP ICE candidate"));
        }
        let payloads = Payloads::from_caps(router_caps)?;

        let mut exts = ExtensionMap::empty();
        for (id, uri, _) in supported_extensions(router_caps) {
            if let Some(e) = extension(&uri) {
                exts.set(id, e);
            }
        }
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(false)
            .clear_codecs()
            .set_extension_map(exts)
            .set_stats_interval(None);
        config.codec_config().add_config(
            Pt::from(payloads.opus),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
        config.codec_config().add_config(
            Pt::from(payloads.vp8),
            payloads.vp8_rtx.map(Pt::from),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = config.build(Instant::now());

        let socket = UdpSocket::bind(SocketAddr::new(bind, 0)).await?;
        let mut local = socket.local_addr()?;
        let relay = match relay {
            Some(turn) => {
                let relay = crate::turn::allocate(&socket, turn, &remote)
                    .await
                    .map_err(|e| p(&format!("TURN relay: {e}")))?;
                let c = Candidate::relayed(relay.relayed, local, "udp")
                    .map_err(|e| p(&format!("relayed candidate: {e}")))?;
                rtc.add_local_candidate(c);
                local = relay.relayed;
                Some(relay)
            }
            None => {
                let host = Candidate::host(local, "udp")
                    .map_err(|e| p(&format!("local candidate: {e}")))?;
                rtc.add_local_candidate(host);
                None
            }
        };
        for r in &remote {
            if let Ok(c) = Candidate::host(*r, "udp") {
                rtc.add_remote_candidate(c);
            }
        }
        let fingerprint = {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(true);
            api.set_remote_ice_credentials(IceCreds {
                ufrag: ufrag.to_string(),
                pass: pwd.to_string(),
            });
            api.set_remote_fingerprint(
                format!("sha-256 {fp}")
                    .parse()
                    .map_err(|e: String| p(&format!("fingerprint: {e}")))?,
            );
            api.enable_twcc_feedback();
            api.start_dtls(true).map_err(|e| p(&format!("dtls: {e}")))?;
            api.local_dtls_fingerprint().to_string()
        };
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (conn_tx, connected) = watch::channel(false);
        let stats = RecvStats::default();
        tokio::spawn(drive(
            rtc,
            socket,
            local,
            relay,
            cmd_rx,
            conn_tx,
            stats.clone(),
        ));
        Ok(Self {
            cmd,
            fingerprint,
            connected,
            stats,
            next_mid: 0,
        })
    }

    /// `dtlsParameters` for `connectTransport`: this end is the DTLS client.
    pub fn dtls_parameters(&self) -> Value {
        let (alg, value) = self.fingerprint.split_once(' ').unwrap_or(("sha-256", ""));
        json!({ "role": "client", "fingerprints": [{ "algorithm": alg, "value": value }] })
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.connected.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Receives what a `consume` answer describes (its mid, SSRC and RTX SSRC).
    pub fn expect(&mut self, consumer: &Value) -> Result<(), RtcError> {
        let params = &consumer["rtpParameters"];
        let mid = params["mid"]
            .as_str()
            .ok_or_else(|| RtcError::Params("consumer without mid".into()))?;
        let enc = &params["encodings"][0];
        let ssrc = enc["ssrc"]
            .as_u64()
            .ok_or_else(|| RtcError::Params("consumer without ssrc".into()))?
            as u32;
        let rtx = enc["rtx"]["ssrc"].as_u64().map(|s| s as u32);
        let kind = if consumer["kind"] == "audio" {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let clock_rate = params["codecs"][0]["clockRate"].as_u64().unwrap_or(90000) as u32;
        let mid = Mid::from(mid);
        let _ = self.cmd.send(Command::Declare { mid, kind });
        let _ = self.cmd.send(Command::ExpectRx {
            mid,
            ssrc,
            rtx,
            kind,
            clock_rate,
        });
        Ok(())
    }

    /// Declares a sending stream and returns the `rtpParameters` for `produce`.
    pub fn declare_send(
        &mut self,
        kind: MediaKind,
        ssrc: u32,
        router_caps: &Value,
    ) -> Result<Value, RtcError> {
        let payloads = Payloads::from_caps(router_caps)?;
        let mid_text = self.next_mid.to_string();
        self.next_mid += 1;
        let mid = Mid::from(mid_text.as_str());
        // Video gets an RTX stream (as browsers send) so that NACKs are answered.
        let rtx = (kind == MediaKind::Video)
            .then_some(payloads.vp8_rtx)
            .flatten()
            .map(|pt| (pt, ssrc.wrapping_add(0x4000_0000)));
        let _ = self.cmd.send(Command::Declare { mid, kind });
        let _ = self.cmd.send(Command::DeclareTx {
            mid,
            ssrc,
            rtx: rtx.map(|(_, s)| s),
        });
        let kind_name = if kind == MediaKind::Audio {
            "audio"
        } else {
            "video"
        };
        let exts: Vec<Value> = supported_extensions(router_caps)
            .into_iter()
            .filter(|(_, uri, k)| k == kind_name && !uri.ends_with("ssrc-audio-level"))
            .map(|(id, uri, _)| json!({ "uri": uri, "id": id, "encrypt": false, "parameters": {} }))
            .collect();
        let encodings = match rtx {
            Some((_, rtx_ssrc)) => json!([{ "ssrc": ssrc, "rtx": { "ssrc": rtx_ssrc } }]),
            None => json!([{ "ssrc": ssrc }]),
        };
        let mut codecs = if kind == MediaKind::Audio {
            json!([{ "mimeType": "audio/opus", "payloadType": payloads.opus, "clockRate": 48000,
                     "channels": 2, "parameters": { "useinbandfec": 1 },
                     "rtcpFeedback": [{ "type": "transport-cc", "parameter": "" }] }])
        } else {
            json!([{ "mimeType": "video/VP8", "payloadType": payloads.vp8, "clockRate": 90000,
                     "parameters": {},
                     "rtcpFeedback": [{ "type": "nack", "parameter": "" }, { "type": "nack", "parameter": "pli" },
                                      { "type": "ccm", "parameter": "fir" }, { "type": "transport-cc", "parameter": "" }] }])
        };
        if let (Some((rtx_pt, _)), Some(list)) = (rtx, codecs.as_array_mut()) {
            list.push(
                json!({ "mimeType": "video/rtx", "payloadType": rtx_pt, "clockRate": 90000,
                              "parameters": { "apt": payloads.vp8 }, "rtcpFeedback": [] }),
            );
        }
        Ok(json!({
            "mid": mid_text,
            "codecs": codecs,
            "headerExtensions": exts,
            "encodings": encodings,
            "rtcp": { "cname": format!("loadgen-{ssrc}"), "reducedSize": true },
        }))
    }

    /// Records the send time of every payload written from now on.
    pub fn log_sends(&self, log: SentLog) {
        let _ = self.cmd.send(Command::LogSends(log));
    }

    /// Measures latency of arriving payloads against `log`.
    pub fn log_latency(&self, log: SentLog) {
        let _ = self.cmd.send(Command::LogLatency(log));
    }

    /// Keeps the hash of every payload arriving from now on ([`payload_hash`]).
    pub fn log_payloads(&self) -> PayloadLog {
        let log = PayloadLog::default();
        let _ = self.cmd.send(Command::LogPayloads(log.clone()));
        log
    }

    /// Impairs what arrives from now on (see [`crate::link`]).
    pub fn impair(&self, imp: crate::link::Impairment) {
        let _ = self.cmd.send(Command::Impair(imp));
    }

    /// Sends one RTP packet on a declared stream (our own sequence numbers and timestamps).
    pub fn write(&self, ssrc: u32, pt: u8, seq: u64, time: u32, marker: bool, payload: Arc<[u8]>) {
        let _ = self.cmd.send(Command::Write {
            ssrc,
            pt,
            seq,
            time,
            marker,
            payload,
        });
    }
}

/// Runs the endpoint until the [`Peer`] is dropped or the connection dies.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    relay: Option<crate::turn::Relay>,
    mut cmd: mpsc::UnboundedReceiver<Command>,
    connected: watch::Sender<bool>,
    stats: RecvStats,
) {
    let mut buf = vec![0u8; 2000];
    let mut clock: HashMap<u32, (&'static str, f64)> = HashMap::new();
    let mut nackable: HashMap<u32, bool> = HashMap::new();
    let mut sends_log: Option<SentLog> = None;
    let mut latency_log: Option<SentLog> = None;
    let mut payload_log: Option<PayloadLog> = None;
    let mut link: Option<crate::link::Link> = None;
    loop {
        // What got through the impaired link by now.
        while let Some((at, source, data)) = link.as_mut().and_then(|l| l.pop_due(Instant::now())) {
            if !hand_over(&mut rtc, at, source, local, &data) {
                return;
            }
        }
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => match &relay {
                    Some(r) => {
                        if let Some(framed) = r.wrap(t.destination, &t.contents) {
                            let _ = socket.send_to(&framed, r.server).await;
                        }
                    }
                    None => {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                },
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        let _ = connected.send(true);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        let _ = connected.send(false);
                    }
                    Event::RtpPacket(pkt) => {
                        let ssrc = *pkt.header.ssrc;
                        if let Some(log) = &payload_log {
                            log.lock()
                                .expect("payload log")
                                .entry(ssrc)
                                .or_default()
                                .push(payload_hash(&pkt.payload));
                        }
                        let sent = latency_log
                            .as_ref()
                            .and_then(|l| l.lock().expect("sent log").sent_at(&pkt.payload));
                        let (kind, rate) = clock.get(&ssrc).copied().unwrap_or(("video", 90000.0));
                        let mut all = stats.lock().expect("stats");
                        let s = all.entry(ssrc).or_insert_with(|| StreamStats {
                            kind,
                            clock_rate: rate,
                            ..Default::default()
                        });
                        let seq = *pkt.seq_no;
                        if let Some(at) = sent {
                            if s.latency_ms.len() < 100_000 {
                                s.latency_ms.push(at.elapsed().as_secs_f32() * 1000.0);
                            }
                        }
                        s.packets += 1;
                        s.first_seq = Some(s.first_seq.map_or(seq, |f| f.min(seq)));
                        s.last_seq = s.last_seq.max(seq);
                        let now = Instant::now();
                        let arrival = now
                            .duration_since(*s.first_at.get_or_insert(now))
                            .as_secs_f64();
                        let transit = arrival * rate - pkt.header.timestamp as f64;
                        if let Some(prev) = s.last_transit {
                            let d = (transit - prev).abs();
                            // Wrapped timestamps would look like huge jumps: skip them.
                            if d < rate * 10.0 {
                                s.jitter += (d - s.jitter) / 16.0;
                            }
                        }
                        s.last_transit = Some(transit);
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing_log(&format!("str0m: {e}"));
                    let _ = connected.send(false);
                    return;
                }
            }
        };
        let deadline = match link.as_ref().and_then(|l| l.next_due()) {
            Some(due) => deadline.min(due),
            None => deadline,
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { return };
                // Through a relay: what the server forwards from a peer.
                let (source, data) = match &relay {
                    Some(r) if source == r.server => match r.unwrap(&buf[..n]) {
                        Some((peer, data)) => (peer, data),
                        None => continue,
                    },
                    Some(_) => continue,
                    None => (source, std::borrow::Cow::Borrowed(&buf[..n])),
                };
                if let Some(l) = link.as_mut() {
                    if l.arrive(Instant::now(), source, &data) != crate::link::Arrival::Now {
                        continue;
                    }
                }
                if !hand_over(&mut rtc, Instant::now(), source, local, &data) {
                    return;
                }
            }
            c = cmd.recv() => {
                let Some(c) = c else { return };
                let mut api = rtc.direct_api();
                match c {
                    Command::Declare { mid, kind } => {
                        if api.stream_rx_by_mid(mid, None).is_none() && api.stream_tx_by_mid(mid, None).is_none() {
                            api.declare_media(mid, kind);
                        }
                    }
                    Command::ExpectRx { mid, ssrc, rtx, kind, clock_rate } => {
                        api.expect_stream_rx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
                        clock.insert(ssrc, (if kind == MediaKind::Audio { "audio" } else { "video" }, f64::from(clock_rate)));
                    }
                    Command::DeclareTx { mid, ssrc, rtx } => {
                        api.declare_stream_tx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
                        nackable.insert(ssrc, rtx.is_some());
                    }
                    Command::LogSends(l) => sends_log = Some(l),
                    Command::LogLatency(l) => latency_log = Some(l),
                    Command::LogPayloads(l) => payload_log = Some(l),
                    Command::Impair(imp) => link = Some(crate::link::Link::new(imp)),
                    Command::Write { ssrc, pt, seq, time, marker, payload } => {
                        if let Some(l) = &sends_log {
                            l.lock().expect("sent log").record(&payload, Instant::now());
                        }
                        if let Some(tx) = api.stream_tx(&Ssrc::from(ssrc)) {
                            // Only streams with RTX can answer NACKs (str0m resends on RTX only).
                            let w = RtpWrite::new(Pt::from(pt), SeqNo::from(seq), time, Instant::now(), payload)
                                .marker(marker)
                                .nackable(nackable.get(&ssrc).copied().unwrap_or(false));
                            tx.write_rtp(w);
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                    return;
                }
            }
        }
    }
}

/// Gives str0m a datagram that arrived at `at`; false when the connection is
/// over (a datagram str0m cannot parse is skipped).
fn hand_over(
    rtc: &mut Rtc,
    at: Instant,
    source: SocketAddr,
    local: SocketAddr,
    data: &[u8],
) -> bool {
    let Ok(contents) = data.try_into() else {
        return true;
    };
    let input = Input::Receive(
        at,
        Receive {
            proto: Protocol::Udp,
            source,
            destination: local,
            contents,
        },
    );
    rtc.handle_input(input).is_ok()
}

fn tracing_log(msg: &str) {
    eprintln!("loadgen: {msg}");
}
