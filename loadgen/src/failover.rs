//! `node-kill`: rooms of participants that all send and receive real media,
//! then a media node SIGKILLed mid-call; measures how long each participant
//! went without media from each sender it was receiving.
//!
//! Every participant behaves as the web client does: it joins, publishes
//! (audio and video), consumes every producer in the room (those listed in
//! `joined` and every `newProducer`), and when the server says `reconnect` or
//! its socket ends it joins again from scratch (new transports, producers and
//! consumers). A sampler reads every participant's packet counts per sender
//! every [`SAMPLE`]; a participant's interruption is its longest time without
//! a new packet from any one of the room's other senders, from 1 s before the
//! kill to the end of the watch (a sender never heard again counts up to the
//! end). Senders are told apart by identity, so a re-joined sender's new
//! streams continue its old ones.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use crate::measure::quantiles;
use crate::participant::{Participant, ParticipantError};
use crate::rtc::RecvStats;
use crate::scenario::http_get;
use crate::source::{Source, SourceSpec};

/// How often packet counts are read.
pub const SAMPLE: Duration = Duration::from_millis(20);
/// What is measured before the kill.
const BEFORE: Duration = Duration::from_secs(1);

/// Settings of `node-kill`.
#[derive(Debug, Clone)]
pub struct NodeKillArgs {
    /// Rooms.
    pub rooms: usize,
    /// Participants per room, every one sending and receiving.
    pub per_room: usize,
    /// Address the endpoints bind.
    pub bind: IpAddr,
    /// The senders' media.
    pub source: SourceSpec,
    /// The media nodes as `(node id, pid)`; the one hosting the most
    /// participants is killed.
    pub nodes: Vec<(String, u32)>,
    /// How long everyone is watched after the kill.
    pub watch: Duration,
}

/// What `node-kill` measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeKillReport {
    /// Participants in the call.
    pub participants: usize,
    /// The node killed (empty under another fault).
    pub killed: String,
    /// Participants placed on it.
    pub on_killed_node: usize,
    /// Participants in rooms with a router on it (the ones measured; all of
    /// them under another fault).
    pub affected: usize,
    /// From the kill to `reconnect` at the participants on it, seconds:
    /// p50, p95, p99, max.
    pub told_after: [f64; 4],
    /// Interruption of the affected participants, seconds: p50, p95, p99, max.
    pub interruption: [f64; 4],
    /// Longest interruption among the participants in rooms the kill did not
    /// touch, seconds.
    pub untouched_max: f64,
    /// Affected participants still missing a sender at the end of the watch.
    pub not_recovered: usize,
    /// Joins made again.
    pub rejoins: usize,
    /// Failed joins, transports or consumes (each retried).
    pub errors: usize,
}

/// One participant as the sampler sees it.
#[derive(Default)]
struct Seen {
    /// Each incarnation's receive stats and its streams' senders by SSRC.
    incarnations: Vec<(Option<RecvStats>, HashMap<u32, String>)>,
    /// When `reconnect` came, per incarnation ended that way.
    told: Vec<Instant>,
    rejoins: usize,
    errors: usize,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one incarnation ended.
enum Ended {
    Stop,
    Again,
}

struct Bot {
    url: String,
    token: String,
    room: String,
    id: String,
    bind: IpAddr,
    ssrc_base: u32,
}

impl Bot {
    /// Joins, sends, consumes, and joins again until `stop`.
    async fn run(self, source: Arc<Source>, seen: Shared, mut stop: watch::Receiver<bool>) {
        let mut first = true;
        loop {
            if *stop.borrow() {
                return;
            }
            if !first {
                lock(&seen).rejoins += 1;
            }
            first = false;
            match self.incarnation(&source, &seen, &mut stop).await {
                Ok(Ended::Stop) => return,
                Ok(Ended::Again) => {}
                Err(e) => {
                    eprintln!("{}: {e}", self.id);
                    lock(&seen).errors += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn incarnation(
        &self,
        source: &Source,
        seen: &Shared,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Ended, ParticipantError> {
        let limit = Duration::from_secs(60);
        let mut p = Participant::join(
            &self.url,
            &self.token,
            &self.room,
            &self.id,
            self.bind,
            limit,
        )
        .await?;
        let slot = {
            let mut s = lock(seen);
            s.incarnations.push((None, HashMap::new()));
            s.incarnations.len() - 1
        };
        p.send(source, self.ssrc_base).await?;
        let mut consumed: HashSet<String> = HashSet::new();
        let listed: Vec<(String, String)> = p
            .peers
            .iter()
            .flat_map(|peer| {
                let id = peer["peerId"].as_str().unwrap_or_default().to_string();
                peer["producers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |pr| {
                        (
                            pr["producerId"].as_str().unwrap_or_default().to_string(),
                            id.clone(),
                        )
                    })
            })
            .collect();
        for (producer, peer) in listed {
            self.consume(&mut p, &producer, &peer, slot, seen, &mut consumed)
                .await?;
        }
        loop {
            let event = tokio::select! {
                _ = stop.changed() => None,
                e = p.session.events.recv() => Some(e),
            };
            let Some(event) = event else {
                p.leave();
                return Ok(Ended::Stop);
            };
            let Some(event) = event else {
                // The socket ended (the server closes it after `reconnect`).
                p.leave();
                return Ok(Ended::Again);
            };
            match event.kind.as_str() {
                "reconnect" => {
                    lock(seen).told.push(Instant::now());
                    p.leave();
                    return Ok(Ended::Again);
                }
                "newProducer" => {
                    let v: Value = serde_json::from_str(&event.text).unwrap_or_default();
                    let producer = v["producer"]["producerId"].as_str().unwrap_or_default();
                    let peer = v["peerId"].as_str().unwrap_or_default();
                    if !producer.is_empty() && peer != self.id {
                        self.consume(&mut p, producer, peer, slot, seen, &mut consumed)
                            .await?;
                    }
                }
                _ => {}
            }
        }
    }

    async fn consume(
        &self,
        p: &mut Participant,
        producer: &str,
        peer: &str,
        slot: usize,
        seen: &Shared,
        consumed: &mut HashSet<String>,
    ) -> Result<(), ParticipantError> {
        if !consumed.insert(producer.to_string()) {
            return Ok(());
        }
        match p.consume(producer).await {
            Ok(ssrc) => {
                let mut s = lock(seen);
                let inc = &mut s.incarnations[slot];
                inc.0 = p.received();
                inc.1.insert(ssrc, peer.to_string());
                Ok(())
            }
            // The producer closed meanwhile (its sender is re-joining).
            Err(ParticipantError::Signal(crate::signal::SignalError::Server { code, .. }))
                if code == "not_found" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Packets received so far from each sender, over every incarnation.
fn counts(seen: &Shared) -> HashMap<String, u64> {
    let s = lock(seen);
    let mut out: HashMap<String, u64> = HashMap::new();
    for (stats, senders) in &s.incarnations {
        let Some(stats) = stats else { continue };
        let stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        for (ssrc, sender) in senders {
            if let Some(st) = stats.get(ssrc) {
                *out.entry(sender.clone()).or_default() += st.packets;
            }
        }
    }
    out
}

/// Per participant and sender: packets, when they last grew, the longest
/// time they did not since `from`.
#[derive(Default, Clone)]
struct Gap {
    packets: u64,
    last: Option<Instant>,
    longest: Duration,
}

impl Gap {
    fn sample(&mut self, packets: u64, now: Instant, from: Option<Instant>) {
        if packets > self.packets {
            if let (Some(from), Some(last)) = (from, self.last) {
                if now > from {
                    self.longest = self.longest.max(now - last.max(from));
                }
            }
            self.packets = packets;
            self.last = Some(now);
        }
    }

    fn close(&mut self, now: Instant, from: Instant) {
        let last = self.last.unwrap_or(from).max(from);
        self.longest = self.longest.max(now - last);
    }
}

/// The fault [`under_fault`] injects once everyone hears everyone.
pub enum Fault<'a> {
    /// SIGKILL the node hosting the most participants (`node-kill`).
    KillBusiestNode,
    /// Anything the caller does (Redis killed and restarted, say), awaited
    /// from the moment of the fault; every participant counts as affected.
    Other(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>),
}

/// Runs `node-kill`; `token(room, identity)`, `http` the coordinator's base
/// URL (admin API, to see where everyone landed).
pub async fn node_kill(
    args: &NodeKillArgs,
    url: &str,
    http: &str,
    admin_key: &str,
    token: impl Fn(&str, &str) -> String,
) -> Result<NodeKillReport, String> {
    under_fault(args, url, http, admin_key, token, Fault::KillBusiestNode).await
}

/// The call of `node-kill` under any [`Fault`]: the same participants and
/// measures; `killed` is empty unless a node was killed.
pub async fn under_fault(
    args: &NodeKillArgs,
    url: &str,
    http: &str,
    admin_key: &str,
    token: impl Fn(&str, &str) -> String,
    fault: Fault<'_>,
) -> Result<NodeKillReport, String> {
    if matches!(fault, Fault::KillBusiestNode) && args.nodes.len() < 2 {
        return Err("node-kill needs at least two media nodes (one survives)".into());
    }
    let source = Arc::new(args.source.start().await.map_err(|e| e.to_string())?);
    let (stop_tx, stop) = watch::channel(false);
    let mut bots = Vec::new();
    let mut people: Vec<(String, String, Shared)> = Vec::new();
    for r in 0..args.rooms {
        let room = format!("kill-{r}");
        for i in 0..args.per_room {
            let id = format!("{room}-p{i}");
            let seen = Shared::default();
            people.push((room.clone(), id.clone(), seen.clone()));
            let bot = Bot {
                url: url.to_string(),
                token: token(&room, &id),
                room: room.clone(),
                id,
                bind: args.bind,
                ssrc_base: 200_000 + (r * 100 + i) as u32 * 2,
            };
            bots.push(tokio::spawn(bot.run(source.clone(), seen, stop.clone())));
            // Joins a little apart, as people arrive.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let expected = |room: &str, me: &str| -> Vec<String> {
        (0..args.per_room)
            .map(|i| format!("{room}-p{i}"))
            .filter(|id| id != me)
            .collect()
    };

    // Sample until the end; the gaps count from `from` once it is set.
    let from: Arc<Mutex<Option<Instant>>> = Arc::default();
    let gaps: Arc<Mutex<Vec<HashMap<String, Gap>>>> =
        Arc::new(Mutex::new(vec![HashMap::new(); people.len()]));
    let sampler = {
        let (people, from, gaps) = (
            people.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
            from.clone(),
            gaps.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let from = *from.lock().expect("from");
                let mut gaps = gaps.lock().expect("gaps");
                for (i, seen) in people.iter().enumerate() {
                    for (sender, n) in counts(seen) {
                        gaps[i].entry(sender).or_default().sample(n, now, from);
                    }
                }
            }
        })
    };

    // Everyone hears everyone before the kill.
    let steady = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        let all = {
            let gaps = gaps.lock().expect("gaps");
            people.iter().enumerate().all(|(i, (room, id, _))| {
                expected(room, id).iter().all(|s| {
                    gaps[i]
                        .get(s)
                        .and_then(|g| g.last)
                        .is_some_and(|t| now - t < Duration::from_millis(500))
                })
            })
        };
        if all {
            break;
        }
        if steady.elapsed() > Duration::from_secs(90) {
            sampler.abort();
            let _ = stop_tx.send(true);
            return Err("not everyone received everyone within 90 s before the kill".into());
        }
    }
    tokio::time::sleep(BEFORE + Duration::from_millis(500)).await;

    // Where everyone is: the node with the most participants is killed.
    let host = http.trim_start_matches("http://").trim_end_matches('/');
    let mut node_of: HashMap<String, String> = HashMap::new();
    let mut room_nodes: HashMap<String, HashSet<String>> = HashMap::new();
    for r in 0..args.rooms {
        let room = format!("kill-{r}");
        let body = http_get(host, &format!("/admin/rooms/{room}"), admin_key).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let routers: HashMap<String, String> = v["routers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["routerId"].as_str().unwrap_or_default().to_string(),
                    r["nodeId"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        room_nodes.insert(room.clone(), routers.values().cloned().collect());
        for p in v["peers"].as_array().cloned().unwrap_or_default() {
            if let Some(node) = p["routerId"].as_str().and_then(|r| routers.get(r)) {
                node_of.insert(
                    p["peerId"].as_str().unwrap_or_default().to_string(),
                    node.clone(),
                );
            }
        }
    }
    let busiest = args
        .nodes
        .iter()
        .max_by_key(|(id, _)| node_of.values().filter(|n| *n == id).count())
        .cloned();
    let killed = match (&fault, busiest) {
        (Fault::KillBusiestNode, Some((id, _))) => id,
        _ => String::new(),
    };
    let on_killed: HashSet<&String> = node_of
        .iter()
        .filter(|(_, n)| **n == killed)
        .map(|(p, _)| p)
        .collect();

    let kill_at = Instant::now();
    *from.lock().expect("from") = Some(kill_at - BEFORE);
    match fault {
        Fault::KillBusiestNode => {
            let pid = args
                .nodes
                .iter()
                .find(|(id, _)| *id == killed)
                .map(|(_, pid)| *pid)
                .expect("two nodes");
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .map_err(|e| format!("kill: {e}"))?;
            if !status.success() {
                return Err(format!("kill -KILL {pid} failed"));
            }
        }
        Fault::Other(f) => f.await,
    }
    tokio::time::sleep(args.watch).await;
    let end = Instant::now();
    sampler.abort();
    let _ = stop_tx.send(true);

    let mut gaps = gaps.lock().expect("gaps").clone();
    let (mut affected, mut untouched) = (Vec::new(), Vec::new());
    let mut not_recovered = 0;
    let mut told = Vec::new();
    let (mut rejoins, mut errors) = (0, 0);
    for (i, (room, id, seen)) in people.iter().enumerate() {
        let touched =
            killed.is_empty() || room_nodes.get(room).is_some_and(|n| n.contains(&killed));
        let mut worst = Duration::ZERO;
        let mut missing = false;
        for sender in expected(room, id) {
            let g = gaps[i].entry(sender).or_default();
            let stale = g.last.is_none_or(|t| end - t > Duration::from_millis(500));
            missing |= stale;
            g.close(end, kill_at - BEFORE);
            worst = worst.max(g.longest);
        }
        let s = lock(seen);
        rejoins += s.rejoins;
        errors += s.errors;
        if on_killed.contains(id) {
            if let Some(t) = s.told.iter().find(|t| **t >= kill_at) {
                told.push((*t - kill_at).as_secs_f64());
            }
        }
        if touched {
            affected.push(worst.as_secs_f64());
            not_recovered += usize::from(missing);
        } else {
            untouched.push(worst.as_secs_f64());
        }
    }
    for b in bots {
        let _ = tokio::time::timeout(Duration::from_secs(5), b).await;
    }
    Ok(NodeKillReport {
        participants: people.len(),
        killed,
        on_killed_node: on_killed.len(),
        affected: affected.len(),
        told_after: quantiles(told),
        interruption: quantiles(affected),
        untouched_max: untouched.into_iter().fold(0.0, f64::max),
        not_recovered,
        rejoins,
        errors,
    })
}
