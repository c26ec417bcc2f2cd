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
//! packet; the errors by kind; who never saw a queue position; what presence
//! (`peersJoined` / `peersLeft`) cost each signalling participant.
//!
//! An **event** (`event`): the presenters (`speakers` per room, each a
//! str0m sender) join with a speaker's token and everyone else with an
//! audience token (the token closure decides by id: `presenter-*` and
//! `surge-*`); the audience consumes the stage. `url` may list several
//! coordinators, comma-separated: participant i uses the (i mod n)-th, so
//! the joins go through all of them (the presenters through the first).
//! `spread` releases the joins evenly over that time instead of at once;
//! each participant's times run from its own release.
//!
//! `leavers` more participants join in the same release and leave as soon as
//! they are in, so that joins and leaves interleave. With `check_rosters`,
//! once everyone is done each signalling participant completes its roster
//! (`listPeers` pages, then the events) and it must equal the room as the
//! run left it: the presenter and everyone admitted, but the leavers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::measure::quantiles;
use crate::participant::{Participant, ParticipantError};
use crate::roster::Roster;
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
    /// Participants more who join in the release and leave once in.
    pub leavers: usize,
    /// Check every signalling participant's roster at the end.
    pub check_rosters: bool,
    /// Presenters (speakers) per room, at least 1.
    pub speakers: usize,
    /// An event: everyone but the presenters joins as audience.
    pub event: bool,
    /// Joins released evenly over this time (zero: all at once).
    pub spread: Duration,
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
    /// Leavers that joined and left.
    pub left: usize,
    /// Presence messages (`peersJoined`, `peersLeft`) per signalling
    /// participant, from its join to the end of the run: mean and max.
    pub presence_messages: [f64; 2],
    /// Their bytes: mean and max.
    pub presence_bytes: [f64; 2],
    /// Bytes per second over the same time: mean and max.
    pub presence_bytes_per_sec: [f64; 2],
    /// Rosters checked (`check_rosters`) and how many differed from the room.
    pub rosters_checked: usize,
    /// Rosters that differed.
    pub rosters_wrong: usize,
    /// The first difference seen.
    pub roster_difference: Option<String>,
}

impl SurgeReport {
    /// Everyone in, everyone consuming, every media participant with media.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.rosters_wrong == 0
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
    /// A leaver, in and out.
    Left,
}

/// What a signalling participant saw of presence, and its roster if checked.
struct Seen {
    room: String,
    id: String,
    messages: usize,
    bytes: usize,
    per_sec: f64,
    roster: Option<std::collections::BTreeSet<String>>,
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
    let urls: Vec<String> = url.split(',').map(|u| u.trim().to_string()).collect();
    let url = urls[0].as_str();
    let source = args.source.start().await.map_err(|e| e.to_string())?;
    // The presenters of each room, in before the release.
    let mut presenters = Vec::new();
    for (r, k) in (0..args.rooms).flat_map(|r| (0..args.speakers.max(1)).map(move |k| (r, k))) {
        let room = room_name(r);
        let id = presenter_name(r, k);
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
        p.send(&source, 300_000 + (r * args.speakers.max(1) + k) as u32 * 2)
            .await
            .map_err(|e| format!("{id} producing: {e}"))?;
        presenters.push(p);
    }
    // Every `media_every`-th participant is a media one.
    let media_every = args.joins.checked_div(args.media);
    let all = args.joins + args.leavers;
    let barrier = Arc::new(Barrier::new(all));
    let release: Arc<OnceLock<Instant>> = Arc::default();
    // Leavers are spread among the others (every `leave_every`-th task).
    let leave_every = all.checked_div(args.leavers.max(1)).unwrap_or(all).max(1);
    let mut regular = 0;
    let mut leaver = 0;
    let tasks: Vec<_> = (0..all)
        .map(|t| {
            let leaves =
                args.leavers > 0 && t % leave_every == leave_every - 1 && leaver < args.leavers
                    || regular == args.joins;
            let (i, id) = if leaves {
                leaver += 1;
                (leaver - 1, format!("surge-leaver-{}", leaver - 1))
            } else {
                regular += 1;
                (regular - 1, format!("surge-{}", regular - 1))
            };
            let room = room_name(i % args.rooms);
            let tok = token(&room, &id);
            let media = !leaves && media_every.is_some_and(|m| i % m == 0 && i / m < args.media);
            let (url, barrier, release, done, a) = (
                urls[t % urls.len()].clone(),
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
                // Spread over `spread`: this participant's own release.
                let offset = a.spread.mul_f64(t as f64 / all as f64);
                tokio::time::sleep_until((released + offset).into()).await;
                let released = released + offset;
                let (outcome, mut kept, roster) = match session {
                    Err(e) => (Outcome::Failed(format!("connect: {e}"), None), None, None),
                    Ok(s) => one(s, &a, &tok, &room, &id, media, leaves, released).await,
                };
                if !leaves {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // Stay until everyone is done (rooms stay full).
                barrier.wait().await;
                let seen = match (&mut kept, roster) {
                    (Some(p), Some((mut roster, cursor, admitted_at))) => {
                        let mut complete = None;
                        if a.check_rosters {
                            // The last leaves' lists go out within a window.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            let paged = roster.complete(&mut p.session, cursor, REQUEST).await;
                            tokio::time::sleep(Duration::from_millis(600)).await;
                            roster.drain(&mut p.session);
                            complete = paged.ok().map(|_| roster.ids());
                        } else {
                            roster.drain(&mut p.session);
                        }
                        let secs = admitted_at.elapsed().as_secs_f64().max(0.001);
                        Some(Seen {
                            room: room.clone(),
                            id: id.clone(),
                            messages: roster.presence_messages,
                            bytes: roster.presence_bytes,
                            per_sec: roster.presence_bytes as f64 / secs,
                            roster: complete,
                        })
                    }
                    _ => None,
                };
                // Nobody leaves while others still check, then `hold` longer.
                barrier.wait().await;
                tokio::time::sleep(a.hold).await;
                if let Some(p) = kept {
                    p.leave();
                }
                (outcome, seen, room, id)
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
    let mut seen = Vec::new();
    // Who the rooms hold at the end: presenters and everyone admitted.
    let mut members: BTreeMap<String, std::collections::BTreeSet<String>> = (0..args.rooms)
        .map(|r| {
            (
                room_name(r),
                (0..args.speakers.max(1))
                    .map(|k| presenter_name(r, k))
                    .collect(),
            )
        })
        .collect();
    for r in results {
        let r = r.map(|(outcome, s, room, id)| {
            seen.extend(s);
            // An event's roster is its stage: the audience is not listed.
            if !args.event && !matches!(outcome, Outcome::Left | Outcome::Failed(_, None)) {
                members.entry(room).or_default().insert(id);
            }
            outcome
        });
        let (admitted_after, positioned) = match r {
            Err(e) => {
                *errors.entry(format!("task: {e}")).or_default() += 1;
                continue;
            }
            Ok(Outcome::Left) => {
                report.left += 1;
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
    let mean_max = |v: Vec<f64>| {
        let n = v.len().max(1) as f64;
        [
            v.iter().sum::<f64>() / n,
            v.iter().copied().fold(0.0, f64::max),
        ]
    };
    report.presence_messages = mean_max(seen.iter().map(|s| s.messages as f64).collect());
    report.presence_bytes = mean_max(seen.iter().map(|s| s.bytes as f64).collect());
    report.presence_bytes_per_sec = mean_max(seen.iter().map(|s| s.per_sec).collect());
    for s in &seen {
        let Some(roster) = &s.roster else {
            if args.check_rosters {
                report.rosters_wrong += 1;
                report
                    .roster_difference
                    .get_or_insert_with(|| format!("{}: roster paging failed", s.id));
            }
            continue;
        };
        report.rosters_checked += 1;
        let mut expected = members.get(&s.room).cloned().unwrap_or_default();
        expected.remove(&s.id);
        if *roster != expected {
            report.rosters_wrong += 1;
            report.roster_difference.get_or_insert_with(|| {
                format!(
                    "{} in {}: missing {:?}, extra {:?}",
                    s.id,
                    s.room,
                    expected.difference(roster).take(5).collect::<Vec<_>>(),
                    roster.difference(&expected).take(5).collect::<Vec<_>>()
                )
            });
        }
    }
    Ok(report)
}

fn room_name(r: usize) -> String {
    format!("surge-{r}")
}

/// The `k`-th presenter of room `r` (`presenter-R`, then `presenter-R-K`).
fn presenter_name(r: usize, k: usize) -> String {
    if k == 0 {
        format!("presenter-{r}")
    } else {
        format!("presenter-{r}-{k}")
    }
}

/// A signalling participant's roster, where its next page starts, and when
/// it was admitted.
type Kept = (Roster, Option<String>, Instant);

/// One participant from the release on; returns what happened and, for a
/// participant still in, what to close when the run ends (and, for a
/// signalling one, its roster so far).
#[allow(clippy::too_many_arguments)]
async fn one(
    mut session: Session,
    a: &SurgeArgs,
    token: &str,
    room: &str,
    id: &str,
    media: bool,
    leaves: bool,
    released: Instant,
) -> (Outcome, Option<Participant>, Option<Kept>) {
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
        Err(e) => {
            return (
                Outcome::Failed(format!("join: {}", kind(&e)), None),
                None,
                None,
            )
        }
    };
    let admitted = released.elapsed();
    if leaves {
        session.close();
        return (Outcome::Left, None, None);
    }
    // The roster from `joined` on: the events queued so far came after it.
    let mut roster = Roster::new(id, &joined);
    let cursor = joined["nextCursor"].as_str().map(str::to_string);
    let positioned = roster
        .drain(&mut session)
        .iter()
        .any(|ev| ev.kind == "queued");
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
                return (out, Some(p), None);
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
        return (out, Some(p), None);
    }
    let kept = Some((roster, cursor, released + admitted));
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
                kept,
            )
        }
        Err(e) => (
            Outcome::Failed(e, Some((admitted, positioned))),
            Some(Participant::joined(session, &joined, admitted, a.bind)),
            kept,
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
