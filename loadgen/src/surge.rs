//! `surge`: N participants connect, then release their joins at the same
//! moment into M rooms, as a crowd does when an event opens.
//!
//! Each room first gets a presenter (a str0m sender with audio and video,
//! joined before the release). After the release every participant joins
//! (waiting in the queue as long as it takes) and then does what a browser
//! does next:
//! - signalling participants (all but the media ones): create a receive
//!   transport, consume the room's producers (up to a page of tiles), connect
//!   the transport with DTLS parameters of their own and resume the consumers.
//!   No ICE happens, so no media flows to them;
//! - media participants (`media` of them, spread over the rooms): the same with
//!   a real WebRTC endpoint (ICE, DTLS, SRTP), until the first RTP packet.
//!
//! Reported, all measured from the release: time to `joined`, time until a
//! signalling participant's consumers are resumed, time to the first media
//! packet; the errors by kind; who never saw a queue position.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::measure::quantiles;
use crate::participant::{Participant, ParticipantError};
use crate::rtc::device_capabilities;
use crate::signal::{Session, SignalError};
use crate::source::SourceSpec;

/// Request timeout after `joined`.
const REQUEST: Duration = Duration::from_secs(60);

/// Settings of `surge`.
#[derive(Debug, Clone)]
pub struct SurgeArgs {
    /// Participants released at once.
    pub joins: usize,
    /// Rooms they go to (participant i goes to room i mod rooms).
    pub rooms: usize,
    /// How many of them are media participants (the rest signalling only).
    pub media: usize,
    /// Tiles per page: a participant consumes at most this many peers.
    pub tiles: usize,
    /// Whole run limit once released.
    pub timeout: Duration,
    /// How long everyone stays once all are done.
    pub hold: Duration,
    /// Address the WebRTC endpoints bind.
    pub bind: IpAddr,
    /// The presenters' media.
    pub source: SourceSpec,
}

/// What `surge` measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SurgeReport {
    /// Participants released.
    pub joins: usize,
    /// Rooms.
    pub rooms: usize,
    /// Participants admitted (`joined`).
    pub admitted: usize,
    /// Failures, by kind (a participant counts once, at its first failure).
    pub errors: BTreeMap<String, usize>,
    /// Admitted participants that never got a `queued` position update.
    pub without_position: usize,
    /// Release to `joined`, seconds: p50, p95, p99, max.
    pub time_to_admitted: [f64; 4],
    /// Signalling participants whose consumers were all resumed.
    pub signalling_ready: usize,
    /// Release to the last consumer resumed (signalling participants), seconds.
    pub time_to_consuming: [f64; 4],
    /// Media participants.
    pub media: usize,
    /// Media participants that received RTP.
    pub media_received: usize,
    /// Release to the first RTP packet received (media participants), seconds.
    pub time_to_first_media: [f64; 4],
}

impl SurgeReport {
    /// Everyone in, everyone consuming, every media participant with media.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.admitted == self.joins
            && self.signalling_ready + self.media == self.joins
            && self.media_received == self.media
    }

    /// Sum of the errors.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

enum Outcome {
    /// The error, and when it came after `joined`: when that was and whether
    /// a queue position was seen.
    Failed(String, Option<(Duration, bool)>),
    Signalling {
        admitted: Duration,
        positioned: bool,
        ready: Duration,
    },
    Media {
        admitted: Duration,
        positioned: bool,
        first_media: Option<Duration>,
    },
}

/// Runs the surge. `token(room, identity)` mints join tokens; `done` counts
/// participants that have finished (for a progress line).
pub async fn surge(
    args: &SurgeArgs,
    url: &str,
    token: impl Fn(&str, &str) -> String,
    done: Arc<AtomicUsize>,
) -> Result<SurgeReport, String> {
    if args.joins == 0 || args.rooms == 0 || args.rooms > args.joins || args.media > args.joins {
        return Err("surge: 1 <= rooms <= joins, media <= joins".into());
    }
    let source = args.source.start().await.map_err(|e| e.to_string())?;
    // One presenter per room, in before the release.
    let mut presenters = Vec::new();
    for r in 0..args.rooms {
        let room = room_name(r);
        let id = format!("presenter-{r}");
        let mut p = Participant::join(
            url,
            &token(&room, &id),
            &room,
            &id,
            args.bind,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| format!("{id}: {e}"))?;
        p.send(&source, 300_000 + r as u32 * 2)
            .await
            .map_err(|e| format!("{id} producing: {e}"))?;
        presenters.push(p);
    }
    // Every `media_every`-th participant is a media one.
    let media_every = args.joins.checked_div(args.media);
    let barrier = Arc::new(Barrier::new(args.joins));
    let release: Arc<OnceLock<Instant>> = Arc::default();
    let tasks: Vec<_> = (0..args.joins)
        .map(|i| {
            let room = room_name(i % args.rooms);
            let id = format!("surge-{i}");
            let tok = token(&room, &id);
            let media = media_every.is_some_and(|m| i % m == 0 && i / m < args.media);
            let (url, barrier, release, done, a) = (
                url.to_string(),
                barrier.clone(),
                release.clone(),
                done.clone(),
                args.clone(),
            );
            tokio::spawn(async move {
                let session = Session::connect(&url).await;
                // Everyone waits here, connected or not, so that the joins are released together.
                barrier.wait().await;
                let released = *release.get_or_init(Instant::now);
                let outcome = match session {
                    Err(e) => (Outcome::Failed(format!("connect: {e}"), None), None),
                    Ok(s) => one(s, &a, &tok, &room, &id, media, released).await,
                };
                done.fetch_add(1, Ordering::Relaxed);
                // Stay until everyone is done (rooms stay full), and `hold` longer.
                barrier.wait().await;
                tokio::time::sleep(a.hold).await;
                if let Some(p) = outcome.1 {
                    p.leave();
                }
                outcome.0
            })
        })
        .collect();
    let results = tokio::time::timeout(args.timeout, futures::future::join_all(tasks))
        .await
        .map_err(|_| {
            format!(
                "timed out after {:?} with {} of {} finished",
                args.timeout,
                done.load(Ordering::Relaxed),
                args.joins
            )
        })?;
    for p in presenters {
        p.leave();
    }
    let mut report = SurgeReport {
        joins: args.joins,
        rooms: args.rooms,
        ..SurgeReport::default()
    };
    let (mut admitted, mut ready, mut first_media) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = BTreeMap::new();
    for r in results {
        let (admitted_after, positioned) = match r {
            Err(e) => {
                *errors.entry(format!("task: {e}")).or_default() += 1;
                continue;
            }
            Ok(Outcome::Failed(e, joined)) => {
                *errors.entry(e).or_default() += 1;
                match joined {
                    Some(j) => j,
                    None => continue,
                }
            }
            Ok(Outcome::Signalling {
                admitted,
                positioned,
                ready: t,
            }) => {
                ready.push(t.as_secs_f64());
                (admitted, positioned)
            }
            Ok(Outcome::Media {
                admitted,
                positioned,
                first_media: f,
            }) => {
                report.media += 1;
                first_media.extend(f.map(|f| f.as_secs_f64()));
                (admitted, positioned)
            }
        };
        admitted.push(admitted_after.as_secs_f64());
        report.admitted += 1;
        report.without_position += usize::from(!positioned);
    }
    report.errors = errors;
    report.signalling_ready = ready.len();
    report.media_received = first_media.len();
    report.time_to_admitted = quantiles(admitted);
    report.time_to_consuming = quantiles(ready);
    report.time_to_first_media = quantiles(first_media);
    Ok(report)
}

fn room_name(r: usize) -> String {
    format!("surge-{r}")
}

/// One participant from the release on; returns what happened and, for a
/// participant still in, what to close when the run ends.
async fn one(
    mut session: Session,
    a: &SurgeArgs,
    token: &str,
    room: &str,
    id: &str,
    media: bool,
    released: Instant,
) -> (Outcome, Option<Participant>) {
    // The queue may hold a participant as long as the run lasts.
    let joined = session
        .request(
            "join",
            json!({ "room": room, "displayName": id, "token": token }),
            a.timeout,
        )
        .await;
    let joined = match joined {
        Ok(j) => j,
        Err(e) => return (Outcome::Failed(format!("join: {}", kind(&e)), None), None),
    };
    let admitted = released.elapsed();
    let mut positioned = false;
    while let Ok(ev) = session.events.try_recv() {
        positioned |= ev.kind == "queued";
    }
    // What a page of tiles shows: the peers' producers, in join order.
    let producers: Vec<String> = joined["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .take(a.tiles)
        .flat_map(|p| p["producers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["producerId"].as_str().map(str::to_string))
        .collect();
    if media {
        let mut p = Participant::joined(session, &joined, admitted, a.bind);
        for prod in &producers {
            if let Err(e) = p.consume(prod).await {
                let out = Outcome::Failed(
                    format!("media consume: {}", participant_kind(&e)),
                    Some((admitted, positioned)),
                );
                return (out, Some(p));
            }
        }
        let first_media = match p.received() {
            Some(stats) => wait_first_packet(&stats, released, Duration::from_secs(20)).await,
            None => None,
        };
        let out = Outcome::Media {
            admitted,
            positioned,
            first_media,
        };
        return (out, Some(p));
    }
    match consume_signalling(&mut session, &joined, &producers).await {
        Ok(()) => {
            let out = Outcome::Signalling {
                admitted,
                positioned,
                ready: released.elapsed(),
            };
            (
                out,
                Some(Participant::joined(session, &joined, admitted, a.bind)),
            )
        }
        Err(e) => (
            Outcome::Failed(e, Some((admitted, positioned))),
            Some(Participant::joined(session, &joined, admitted, a.bind)),
        ),
    }
}

/// A browser's receive path without the media: transport, consumers,
/// `connectTransport` with DTLS parameters (a certificate fingerprint of its
/// own; ICE never starts, so the DTLS handshake never does), resume.
async fn consume_signalling(
    session: &mut Session,
    joined: &Value,
    producers: &[String],
) -> Result<(), String> {
    if producers.is_empty() {
        return Ok(());
    }
    let step = |what: &'static str| move |e: SignalError| format!("{what}: {}", kind(&e));
    let t = session
        .request("createTransport", json!({ "direction": "recv" }), REQUEST)
        .await
        .map_err(step("createTransport"))?;
    let transport_id = t["id"].clone();
    let caps = device_capabilities(&joined["routerRtpCapabilities"]);
    let mut consumers = Vec::new();
    for prod in producers {
        let c = session
            .request(
                "consume",
                json!({ "producerId": prod, "rtpCapabilities": caps }),
                REQUEST,
            )
            .await
            .map_err(step("consume"))?;
        consumers.push(c["id"].clone());
    }
    session
        .request(
            "connectTransport",
            json!({ "transportId": transport_id, "dtlsParameters": {
                "role": "client",
                "fingerprints": [{ "algorithm": "sha-256", "value": fingerprint_of(transport_id.as_str().unwrap_or_default()) }],
            }}),
            REQUEST,
        )
        .await
        .map_err(step("connectTransport"))?;
    for c in consumers {
        session
            .request("resumeConsumer", json!({ "consumerId": c }), REQUEST)
            .await
            .map_err(step("resumeConsumer"))?;
    }
    Ok(())
}

/// A well-formed SHA-256 fingerprint (32 colon-separated hex bytes) derived
/// from `seed`, the shape a browser's certificate has.
fn fingerprint_of(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..32)
        .map(|i| {
            for b in seed.bytes().chain([i as u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{:02X}", (h >> 56) as u8)
        })
        .collect::<Vec<_>>()
        .join(":")
}

async fn wait_first_packet(
    stats: &crate::rtc::RecvStats,
    released: Instant,
    limit: Duration,
) -> Option<Duration> {
    let until = Instant::now() + limit;
    loop {
        if let Some(at) = crate::rtc::first_packet_at(stats) {
            return Some(at.duration_since(released));
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An error's kind without per-participant details (ids), so that the
/// summary groups them.
fn kind(e: &SignalError) -> String {
    match e {
        SignalError::Server { code, .. } => code.clone(),
        SignalError::Connection(m) => format!("connection {m}"),
        SignalError::Timeout(what) => format!("no answer to {what}"),
    }
}

fn participant_kind(e: &ParticipantError) -> String {
    match e {
        ParticipantError::Signal(s) => kind(s),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_have_the_browser_shape_and_differ_per_seed() {
        let a = fingerprint_of("t1");
        assert_eq!(a.split(':').count(), 32);
        assert!(a
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(a, fingerprint_of("t2"));
    }
}
