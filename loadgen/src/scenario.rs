//! Media scenarios through the coordinator URL:
//!
//! - `room` / `rooms`: M rooms of K participants; the first S of each room
//!   send audio and video, and everyone consumes the senders a page of
//!   `tiles` would show (up to `tiles` senders, not themselves). Reports the
//!   time to admitted and to first media (first RTP packet on any consumed
//!   stream), loss and jitter at the receivers over a window, and the worker
//!   CPU when the media node's pid is given.
//! - `churn`: cycles of participants that join, send or consume, and leave;
//!   afterwards every count on the nodes (routers excepted: rooms keep none once
//!   empty) must be back to zero, read through the admin API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::measure::{self, quantiles, Window};
use crate::participant::{Participant, ParticipantError};
use crate::rtc::RecvStats;
use crate::source::{Source, SourceSpec};

/// Settings of `room`/`rooms`.
#[derive(Debug, Clone)]
pub struct RoomArgs {
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub per_room: usize,
    /// Senders per room.
    pub senders: usize,
    /// Tiles per page (how many senders each participant consumes at most).
    pub tiles: usize,
    /// Measuring window.
    pub window: Duration,
    /// Address the endpoints bind.
    pub bind: IpAddr,
    /// Media node pid, for worker CPU.
    pub node_pid: Option<u32>,
    /// The senders' media.
    pub source: SourceSpec,
    /// Receivers reach the media node only through the TURN relay their
    /// transports come with (as behind a firewall that blocks its ports).
    pub relay: bool,
}

/// What `room`/`rooms` measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomReport {
    /// Participants admitted.
    pub admitted: usize,
    /// Participants that failed (join, transport, consume).
    pub errors: usize,
    /// Time to `joined`, seconds: p50, p95, p99, max.
    pub time_to_admitted: [f64; 4],
    /// Time from sending `join` to the first RTP packet received, seconds: p50, p95, p99, max.
    pub time_to_first_media: [f64; 4],
    /// Receivers that got no media at all.
    pub without_media: usize,
    /// The measuring window.
    pub window: Window,
}

/// Runs `room`/`rooms`; `token(room, identity)`.
pub async fn rooms(
    args: &RoomArgs,
    url: &str,
    token: impl Fn(&str, &str) -> String,
) -> Result<RoomReport, String> {
    let source = args.source.start().await.map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(120);
    let mut kept: Vec<Participant> = Vec::new();
    let mut admitted_after = Vec::new();
    let mut errors = 0usize;
    let mut receivers: Vec<(Instant, RecvStats)> = Vec::new();
    let mut consumers = 0usize;
    let t0 = Instant::now();
    for r in 0..args.rooms {
        let room = format!("room-{r}");
        // Senders first, so that everyone after them has something to consume.
        let mut producers: Vec<String> = Vec::new();
        for i in 0..args.senders.min(args.per_room) {
            let id = format!("{room}-s{i}");
            let started = Instant::now();
            let res = async {
                let mut p =
                    Participant::join(url, &token(&room, &id), &room, &id, args.bind, limit)
                        .await?;
                let mine = p.send(&source, 100_000 + (r * 1000 + i) as u32 * 2).await?;
                Ok::<_, ParticipantError>((p, mine))
            }
            .await;
            match res {
                Ok((p, mine)) => {
                    admitted_after.push(p.admitted_after.as_secs_f64());
                    producers.extend(mine);
                    kept.push(p);
                }
                Err(e) => {
                    eprintln!("{id}: {e}");
                    errors += 1;
                }
            }
            let _ = started;
        }
        // Everyone consumes up to a page of senders (two streams each).
        let page: Vec<String> = producers.iter().take(args.tiles * 2).cloned().collect();
        let joins = (0..args.per_room).map(|i| {
            let id = format!("{room}-p{i}");
            let tok = token(&room, &id);
            let (room, page) = (room.clone(), page.clone());
            async move {
                let started = Instant::now();
                let mut p = Participant::join(url, &tok, &room, &id, args.bind, limit).await?;
                if args.relay {
                    p.relay_only();
                }
                for prod in &page {
                    p.consume(prod).await?;
                }
                Ok::<_, ParticipantError>((p, started))
            }
        });
        // Receivers join in waves of 32.
        let joins: Vec<_> = joins.collect();
        let mut it = joins.into_iter();
        loop {
            let wave: Vec<_> = it.by_ref().take(32).collect();
            if wave.is_empty() {
                break;
            }
            for res in futures::future::join_all(wave).await {
                match res {
                    Ok((p, started)) => {
                        admitted_after.push(p.admitted_after.as_secs_f64());
                        if let Some(s) = p.received() {
                            receivers.push((started, s));
                        }
                        consumers += page.len();
                        kept.push(p);
                    }
                    Err(e) => {
                        eprintln!("participant: {e}");
                        errors += 1;
                    }
                }
            }
            eprintln!(
                "[{:>4.0}s] room {}/{}: {} participants in, {} errors",
                t0.elapsed().as_secs_f64(),
                r + 1,
                args.rooms,
                kept.len(),
                errors
            );
        }
    }
    // Let media start everywhere, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats: Vec<RecvStats> = receivers.iter().map(|(_, s)| s.clone()).collect();
    let pid = args.node_pid;
    let window = measure::window(
        &stats,
        consumers,
        || {
            pid.and_then(|p| measure::worker_cpu(p).ok())
                .unwrap_or_default()
        },
        args.window,
    )
    .await;
    let mut first_media = Vec::new();
    let mut without_media = 0;
    for (started, s) in &receivers {
        match crate::rtc::first_packet_at(s) {
            Some(at) => first_media.push(at.duration_since(*started).as_secs_f64()),
            None => without_media += 1,
        }
    }
    for p in kept.drain(..) {
        p.leave();
    }
    Ok(RoomReport {
        admitted: admitted_after.len(),
        errors,
        time_to_admitted: quantiles(admitted_after),
        time_to_first_media: quantiles(first_media),
        without_media,
        window,
    })
}

/// Sums routers, transports, producers, consumers and the consumer units
/// reserved by placement over every node's workers (admin API `/admin/nodes`).
pub async fn node_counts(http: &str, admin_key: &str) -> Result<Value, String> {
    let (host, path) = (
        http.trim_start_matches("http://").trim_end_matches('/'),
        "/admin/nodes",
    );
    let body = http_get(host, path, admin_key).await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))?;
    let mut sum =
        json!({ "routers": 0, "transports": 0, "producers": 0, "consumers": 0, "reserved": 0 });
    for n in v["nodes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        for w in n["workers"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
        {
            for k in [
                "routers",
                "transports",
                "producers",
                "consumers",
                "reserved",
            ] {
                sum[k] = json!(sum[k].as_u64().unwrap_or(0) + w[k].as_u64().unwrap_or(0));
            }
        }
    }
    Ok(sum)
}

/// A minimal HTTP/1.1 GET with the admin key (no client dependency).
pub(crate) async fn http_get(host: &str, path: &str, admin_key: &str) -> Result<String, String> {
    // Bounded: a coordinator that does not answer is an error, not a hang.
    tokio::time::timeout(
        Duration::from_secs(10),
        http_get_once(host, path, admin_key),
    )
    .await
    .map_err(|_| format!("GET {path} on {host}: no answer within 10 s"))?
}

async fn http_get_once(host: &str, path: &str, admin_key: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nx-admin-key: {admin_key}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{path}: {}",
            body.lines().next().unwrap_or_default()
        ));
    }
    Ok(body
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

/// What `churn` saw.
#[derive(Debug, Clone)]
pub struct ChurnReport {
    /// Node counts before the first cycle.
    pub before: Value,
    /// Node counts once everyone left (must equal `before`).
    pub after: Value,
    /// Most transports the nodes reported while a cycle's participants were in.
    pub peak_transports: u64,
    /// Participants that failed.
    pub errors: usize,
}

/// `churn`: `cycles` times, `per_cycle` participants join one room, half of
/// them send and the others consume them, then all leave.
pub async fn churn(
    url: &str,
    http: &str,
    admin_key: &str,
    token: impl Fn(&str, &str) -> String,
    cycles: usize,
    per_cycle: usize,
    bind: IpAddr,
) -> Result<ChurnReport, String> {
    let before = node_counts(http, admin_key).await?;
    let mut peak_transports = 0;
    let source: Source = SourceSpec::LIGHT.start().await.map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(60);
    let mut errors = 0;
    for c in 0..cycles {
        let room = format!("churn-{c}");
        let mut in_room = Vec::new();
        let mut producers = Vec::new();
        for i in 0..per_cycle {
            let id = format!("c{c}-{i}");
            let res = async {
                let mut p =
                    Participant::join(url, &token(&room, &id), &room, &id, bind, limit).await?;
                if i % 2 == 0 {
                    producers.extend(p.send(&source, 200_000 + (c * 1000 + i) as u32 * 2).await?);
                } else {
                    for prod in producers.clone() {
                        p.consume(&prod).await?;
                    }
                }
                Ok::<_, ParticipantError>(p)
            }
            .await;
            match res {
                Ok(p) => in_room.push(p),
                Err(e) => {
                    eprintln!("{id}: {e}");
                    errors += 1;
                }
            }
        }
        // The nodes report every second: see the cycle's objects before they go.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let during = node_counts(http, admin_key).await?;
        peak_transports = peak_transports.max(during["transports"].as_u64().unwrap_or(0));
        for p in in_room {
            p.leave();
        }
        eprintln!("cycle {}/{cycles}: {per_cycle} joined and left", c + 1);
    }
    // Node reports come every second: wait for the counts to settle.
    let mut after = before.clone();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = node_counts(http, admin_key).await?;
        if after == before {
            break;
        }
    }
    Ok(ChurnReport {
        before,
        after,
        peak_transports,
        errors,
    })
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Packets with a known send time.
    pub samples: usize,
    /// p50, p95, p99, max.
    pub ms: [f64; 4],
}

fn latency_since(stats: &RecvStats, from: &HashMap<u32, usize>) -> Latency {
    let all = stats.lock().expect("stats");
    let v: Vec<f64> = all
        .iter()
        .flat_map(|(ssrc, s)| {
            s.latency_ms[from.get(ssrc).copied().unwrap_or(0)..]
                .iter()
                .map(|x| f64::from(*x))
        })
        .collect();
    Latency {
        samples: v.len(),
        ms: quantiles(v),
    }
}

fn latency_marks(stats: &RecvStats) -> HashMap<u32, usize> {
    stats
        .lock()
        .expect("stats")
        .iter()
        .map(|(k, s)| (*k, s.latency_ms.len()))
        .collect()
}

/// What `pipe` measured.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipeReport {
    /// Senders (each audio + video).
    pub senders: usize,
    /// Sender -> receiver on the sender's worker (one sender only).
    pub same_worker: Latency,
    /// Sender -> receiver on another node, through the SRTP pipe (one sender only).
    pub piped: Latency,
    /// Worker CPU (% of a core) of each node pid given, over the last window.
    pub worker_cpu_pct: Vec<(u32, f64)>,
    /// Worker CPU of each node pid in the three windows: senders only; with
    /// the receiver on their worker; with the receiver on the other node too.
    pub phases: [Vec<(u32, f64)>; 3],
    /// Per piped producer, % of a core: on the senders' node (its pipe
    /// consumer), and on the far node (the piped producer, its consumer's
    /// share taken out as measured on the senders' node). Then, for
    /// comparison, a WebRTC producer's ingress and a consumer.
    pub per_piped_producer: Option<PipeCosts>,
}

/// `pipe`'s per-stream costs, % of a core each.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipeCosts {
    /// On the senders' node, per pipe consumer.
    pub sending_node: f64,
    /// On the far node, per piped producer (without its consumer).
    pub receiving_node: f64,
    /// A WebRTC producer's ingress (senders' node, senders-only window).
    pub webrtc_producer: f64,
    /// A consumer (senders' node: the near receiver's consumers).
    pub consumer: f64,
}

/// `pipe`: `senders` senders and one receiver placed on their worker, and one
/// receiver on another node (the cluster must be configured so that exactly
/// the last one spills: 2 nodes of 1 worker, `THRONG_WORKER_CAPACITY` =
/// 26 x (senders + 1)). Each receiver consumes every sender's audio and
/// video. Worker CPU in three windows (senders only; + near receiver; + far
/// receiver, whose streams come through the SRTP pipe) gives the cost per
/// piped producer on both nodes. With one sender, also the one-way latency
/// of the same packets on both paths (with several, identical payloads from
/// the shared source would be ambiguous).
#[allow(clippy::too_many_arguments)]
pub async fn pipe(
    url: &str,
    http: &str,
    admin_key: &str,
    token: impl Fn(&str, &str) -> String,
    window: Duration,
    bind: IpAddr,
    node_pids: &[u32],
    source: SourceSpec,
    senders: usize,
) -> Result<PipeReport, String> {
    let room = "pipe";
    let senders_n = senders.clamp(1, 12);
    let source = source.start().await.map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(60);
    let log = crate::rtc::SentLog::default();
    let err = |e: ParticipantError| e.to_string();
    let cpu_window = || async {
        let cpu0: Vec<Duration> = node_pids
            .iter()
            .map(|p| measure::worker_cpu(*p).unwrap_or_default())
            .collect();
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let wall = t0.elapsed().as_secs_f64();
        node_pids
            .iter()
            .zip(cpu0)
            .map(|(p, c0)| {
                let c1 = measure::worker_cpu(*p).unwrap_or_default();
                (*p, c1.saturating_sub(c0).as_secs_f64() / wall * 100.0)
            })
            .collect::<Vec<(u32, f64)>>()
    };
    let mut sending = Vec::new();
    let mut producers = Vec::new();
    for i in 0..senders_n {
        let name = if i == 0 {
            "sender".to_string()
        } else {
            format!("sender-{i}")
        };
        let mut p = Participant::join(url, &token(room, &name), room, &name, bind, limit)
            .await
            .map_err(err)?;
        producers.extend(p.send(&source, 300_000 + i as u32 * 2).await.map_err(err)?);
        if senders_n == 1 {
            p.log_sends(log.clone());
        }
        sending.push(p);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let senders_only = cpu_window().await;
    let mut receivers = Vec::new();
    let mut with_near = Vec::new();
    for name in ["near", "far"] {
        let mut p = Participant::join(url, &token(room, name), room, name, bind, limit)
            .await
            .map_err(err)?;
        for id in &producers {
            p.consume(id).await.map_err(err)?;
        }
        if senders_n == 1 {
            p.log_latency(log.clone());
        }
        receivers.push(p);
        if name == "near" {
            tokio::time::sleep(Duration::from_secs(3)).await;
            with_near = cpu_window().await;
        }
    }
    // Where did everyone land?
    let body = http_get(
        http.trim_start_matches("http://").trim_end_matches('/'),
        &format!("/admin/rooms/{room}"),
        admin_key,
    )
    .await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let node_of_router: HashMap<String, String> = v["routers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["routerId"].as_str().unwrap_or_default().to_string(),
                r["nodeId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let node_of = |peer: &str| -> Option<String> {
        v["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peerId"] == peer)
            .and_then(|p| node_of_router.get(p["routerId"].as_str()?).cloned())
    };
    let (s, n, f) = (node_of("sender"), node_of("near"), node_of("far"));
    let senders_together = (1..senders_n).all(|i| node_of(&format!("sender-{i}")) == s);
    if s.is_none() || s != n || s == f || !senders_together {
        return Err(format!(
            "placement did not split the room as needed (sender {s:?}, near {n:?}, far {f:?}, \
             senders together: {senders_together}): run 2 nodes of 1 worker with \
             THRONG_WORKER_CAPACITY={}",
            26 * (senders_n + 1)
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats: Vec<RecvStats> = receivers.iter().filter_map(|p| p.received()).collect();
    let marks: Vec<HashMap<u32, usize>> = stats.iter().map(latency_marks).collect();
    let with_far = cpu_window().await;
    // The senders' node is the busy one while only they send.
    let per_piped_producer = (node_pids.len() == 2).then(|| {
        let a = usize::from(senders_only[1].1 > senders_only[0].1);
        let b = 1 - a;
        let streams = (2 * senders_n) as f64;
        let consumer = (with_near[a].1 - senders_only[a].1) / streams;
        PipeCosts {
            sending_node: (with_far[a].1 - with_near[a].1) / streams,
            receiving_node: (with_far[b].1 - with_near[b].1) / streams - consumer,
            webrtc_producer: senders_only[a].1 / streams,
            consumer,
        }
    });
    let report = PipeReport {
        senders: senders_n,
        same_worker: latency_since(&stats[0], &marks[0]),
        piped: latency_since(&stats[1], &marks[1]),
        worker_cpu_pct: with_far.clone(),
        phases: [senders_only, with_near, with_far],
        per_piped_producer,
    };
    for p in receivers {
        p.leave();
    }
    for p in sending {
        p.leave();
    }
    Ok(report)
}
