//! `loadgen`: plays many participants against a running cluster through the
//! coordinator URL, exactly as browsers do (same WebSocket protocol, same
//! tokens). Every run is bounded in count and time and stops by itself.
//!
//! Scenario `surge` (signalling only): connect N sockets, release N joins at
//! once into M rooms, and report how many were admitted, the errors, and the
//! time from release to `joined` (p50/p95/p99/max), with a progress line every
//! second and an optional JSON summary.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::auth::TokenKey;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "usage:
  loadgen surge --url ws://HOST:PORT/ws --token-secret SECRET \\
      [--joins 1000] [--rooms 1] [--timeout-secs 60] [--hold-secs 0] [--json FILE]
  loadgen capacity --url ws://HOST:PORT/ws --token-secret SECRET --node-pid PID \\
      [--steps 50,100,200] [--window-secs 15] [--settle-secs 3] [--json FILE]
  loadgen direct --port UDP_TCP_PORT [--steps 50,100,200] [--window-secs 15] [--settle-secs 3] [--json FILE]
  loadgen room  --url ws://HOST:PORT/ws --token-secret SECRET [--participants 50] [--senders 12]
      [--tiles 12] [--window-secs 15] [--node-pid PID] [--json FILE]
  loadgen rooms --url ... --token-secret SECRET --rooms 10 --participants 20 [as room]
  loadgen churn --url ws://HOST:PORT/ws --token-secret SECRET --admin-key KEY
      [--cycles 5] [--participants 20]
  loadgen pipe  --url ws://HOST:PORT/ws --token-secret SECRET --admin-key KEY
      [--node-pids PID,PID] [--window-secs 15]   (2 nodes, THRONG_WORKER_CAPACITY=52)

The token secret is the cluster's THRONG_TOKEN_SECRET (tokens are minted here).
capacity: one sender and growing numbers of WebRTC receivers (str0m) through the
coordinator; the media node (PID, one worker) has its worker CPU read from /proc.
direct: the same with mediasoup driven by this process (the baseline).";

struct Args {
    url: String,
    secret: String,
    joins: usize,
    rooms: usize,
    timeout: Duration,
    json: Option<String>,
    /// How long everyone stays connected once all have finished joining.
    hold: Duration,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("surge") => {}
        other => return Err(format!("unknown scenario {other:?}")),
    }
    let (mut url, mut secret, mut joins, mut rooms, mut timeout, mut json, mut hold) =
        (None, None, 1000, 1, 60, None, 0u64);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--url" => url = Some(value()?),
            "--token-secret" => secret = Some(value()?),
            "--joins" => joins = value()?.parse().map_err(|_| "--joins: a number")?,
            "--rooms" => rooms = value()?.parse().map_err(|_| "--rooms: a number")?,
            "--timeout-secs" => {
                timeout = value()?.parse().map_err(|_| "--timeout-secs: a number")?
            }
            "--json" => json = Some(value()?),
            "--hold-secs" => hold = value()?.parse().map_err(|_| "--hold-secs: a number")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if joins == 0 || joins > 20_000 || rooms == 0 || rooms > joins || timeout == 0 || timeout > 3600
    {
        return Err("--joins 1..=20000, --rooms 1..=joins, --timeout-secs 1..=3600".into());
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        secret: secret.ok_or("--token-secret is required")?,
        joins,
        rooms,
        timeout: Duration::from_secs(timeout),
        json,
        hold: Duration::from_secs(hold.min(600)),
    })
}

#[derive(Debug)]
enum Outcome {
    Admitted {
        after: Duration,
        queued_updates: usize,
    },
    Failed(String),
}

async fn one(
    args: Arc<Args>,
    i: usize,
    barrier: Arc<Barrier>,
    start: Arc<std::sync::OnceLock<Instant>>,
    done: Arc<AtomicUsize>,
) -> Outcome {
    let room = format!("surge-{}", i % args.rooms);
    let token = TokenKey::new(args.secret.as_bytes()).mint(&room, &format!("bot-{i}"), true, 3600);
    let connected = tokio_tungstenite::connect_async(&args.url).await;
    // Everyone waits here, connected or not, so that the joins are released together.
    barrier.wait().await;
    let released = *start.get_or_init(Instant::now);
    let (outcome, ws) = match connected {
        Err(e) => (Outcome::Failed(format!("connect: {e}")), None),
        Ok((mut ws, _)) => {
            let join = json!({"type": "join", "reqId": "join", "room": room, "displayName": format!("bot {i}"), "token": token});
            let outcome = if let Err(e) = ws.send(Message::Text(join.to_string().into())).await {
                Outcome::Failed(format!("send: {e}"))
            } else {
                let mut queued_updates = 0;
                loop {
                    let Some(Ok(msg)) = ws.next().await else {
                        break Outcome::Failed("socket closed".into());
                    };
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    match v["type"].as_str() {
                        Some("queued") => queued_updates += 1,
                        Some("joined") => {
                            break Outcome::Admitted {
                                after: released.elapsed(),
                                queued_updates,
                            }
                        }
                        Some("error") => {
                            break Outcome::Failed(format!("{}: {}", v["code"], v["message"]))
                        }
                        _ => {}
                    }
                }
            };
            (outcome, Some(ws))
        }
    };
    done.fetch_add(1, Ordering::Relaxed);
    // Stay joined until every participant is done, so that rooms stay full
    // (and longer with --hold-secs, to measure a full cluster).
    barrier.wait().await;
    tokio::time::sleep(args.hold).await;
    if let Some(mut ws) = ws {
        let _ = ws.close(None).await;
    }
    outcome
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

/// `--name value` pairs after the scenario.
fn flags(raw: &[String]) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    let mut it = raw.iter().skip(1);
    while let Some(k) = it.next() {
        let name = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected {k:?}"))?;
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        out.insert(name.to_string(), v.clone());
    }
    Ok(out)
}

async fn capacity_main(raw: &[String]) -> Result<(), String> {
    use loadgen::capacity::{self, CapacityArgs};
    let f = flags(raw)?;
    let num = |k: &str, d: u64| -> Result<u64, String> {
        f.get(k)
            .map(|v| v.parse::<u64>().map_err(|_| format!("--{k}: a number")))
            .unwrap_or(Ok(d))
    };
    let steps: Vec<usize> = f
        .get("steps")
        .map(String::as_str)
        .unwrap_or("50,100,200")
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| "--steps: numbers, e.g. 50,100,200".to_string())
        })
        .collect::<Result<_, _>>()?;
    if steps.is_empty() || steps.windows(2).any(|w| w[0] >= w[1]) || steps[steps.len() - 1] > 3000 {
        return Err("--steps: growing, at most 3000".into());
    }
    let args = CapacityArgs {
        steps,
        window: Duration::from_secs(num("window-secs", 15)?.clamp(1, 600)),
        settle: Duration::from_secs(num("settle-secs", 3)?.min(60)),
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        source: loadgen::source::SourceSpec::WEBCAM,
    };
    capacity::print_header();
    let (mode, steps) = if raw[0] == "direct" {
        let port = num("port", 0)?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or("--port is required")?;
        ("direct", capacity::direct(&args, port).await?)
    } else {
        let url = f.get("url").ok_or("--url is required")?.clone();
        let secret = f
            .get("token-secret")
            .ok_or("--token-secret is required")?
            .clone();
        let pid = u32::try_from(num("node-pid", 0)?)
            .ok()
            .filter(|p| *p > 0)
            .ok_or("--node-pid is required")?;
        let key = TokenKey::new(secret.as_bytes());
        let token = move |id: &str| key.mint("capacity", id, true, 3600);
        ("cluster", capacity::cluster(&args, &url, token, pid).await?)
    };
    let at85 = loadgen::measure::consumers_at(&steps, 85.0);
    match at85 {
        Some(n) => println!("{mode}: worker at 85 % of a core with about {n:.0} consumers"),
        None => println!("{mode}: the worker stayed below 85 % of a core"),
    }
    if let Some(path) = f.get("json") {
        let summary = json!({ "scenario": mode, "steps": steps, "consumersAt85Pct": at85 });
        std::fs::write(path, serde_json::to_string_pretty(&summary).expect("json"))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

async fn media_main(raw: &[String]) -> Result<bool, String> {
    use loadgen::scenario;
    let f = flags(raw)?;
    let num = |k: &str, d: usize| -> Result<usize, String> {
        f.get(k)
            .map(|v| v.parse::<usize>().map_err(|_| format!("--{k}: a number")))
            .unwrap_or(Ok(d))
    };
    let url = f.get("url").ok_or("--url is required")?.clone();
    let secret = f
        .get("token-secret")
        .ok_or("--token-secret is required")?
        .clone();
    let key = TokenKey::new(secret.as_bytes());
    let token = move |room: &str, id: &str| key.mint(room, id, true, 3600);
    let bind = std::net::IpAddr::from([127, 0, 0, 1]);
    if raw[0] == "pipe" {
        let admin = f.get("admin-key").ok_or("--admin-key is required")?;
        let http = url
            .replace("ws://", "http://")
            .trim_end_matches("/ws")
            .to_string();
        let pids: Vec<u32> = f
            .get("node-pids")
            .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
            .unwrap_or_default();
        let window = Duration::from_secs(num("window-secs", 15)?.clamp(1, 600) as u64);
        let webcam = loadgen::source::SourceSpec::WEBCAM;
        let r = scenario::pipe(&url, &http, admin, token, window, bind, &pids, webcam).await?;
        let l = |x: &scenario::Latency| {
            format!(
                "{} packets: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                x.samples, x.ms[0], x.ms[1], x.ms[2], x.ms[3]
            )
        };
        println!("scenario   pipe (one sender; one receiver on its worker, one on another node)");
        println!("same worker   {}", l(&r.same_worker));
        println!("across nodes  {}", l(&r.piped));
        for (pid, cpu) in &r.worker_cpu_pct {
            println!("node pid {pid}: worker CPU {cpu:.1} %");
        }
        if let Some(path) = f.get("json") {
            std::fs::write(path, serde_json::to_string_pretty(&r).expect("json"))
                .map_err(|e| format!("{path}: {e}"))?;
        }
        return Ok(r.same_worker.samples > 0 && r.piped.samples > 0);
    }
    if raw[0] == "churn" {
        let admin = f.get("admin-key").ok_or("--admin-key is required")?;
        let http = url
            .replace("ws://", "http://")
            .trim_end_matches("/ws")
            .to_string();
        let (cycles, per) = (
            num("cycles", 5)?.clamp(1, 100),
            num("participants", 20)?.clamp(2, 500),
        );
        let scenario::ChurnReport {
            before,
            after,
            peak_transports,
            errors,
        } = scenario::churn(&url, &http, admin, token, cycles, per, bind).await?;
        println!("scenario   churn ({cycles} cycles of {per} participants: join, send or consume, leave)");
        println!("errors     {errors}");
        println!("node counts before {before}");
        println!("transports seen during a cycle (peak) {peak_transports}");
        println!("node counts after  {after}");
        let ok = errors == 0 && before == after && peak_transports > 0;
        println!(
            "{}",
            if ok {
                "every count is back where it was"
            } else {
                "COUNTS DIFFER"
            }
        );
        return Ok(ok);
    }
    let args = scenario::RoomArgs {
        rooms: if raw[0] == "rooms" {
            num("rooms", 10)?.clamp(1, 1000)
        } else {
            1
        },
        per_room: num("participants", 50)?.clamp(1, 3000),
        senders: num("senders", 12)?.clamp(1, 100),
        tiles: num("tiles", 12)?.clamp(1, 100),
        window: Duration::from_secs(num("window-secs", 15)?.clamp(1, 600) as u64),
        bind,
        node_pid: f.get("node-pid").and_then(|p| p.parse().ok()),
        source: loadgen::source::SourceSpec::WEBCAM,
    };
    let r = scenario::rooms(&args, &url, token).await?;
    println!(
        "scenario   {} ({} room(s) of {} + {} senders, {} tiles per page)",
        raw[0], args.rooms, args.per_room, args.senders, args.tiles
    );
    println!(
        "admitted   {}   errors {}   receivers without media {}",
        r.admitted, r.errors, r.without_media
    );
    let q = |v: [f64; 4]| {
        format!(
            "p50 {:.3} s  p95 {:.3} s  p99 {:.3} s  max {:.3} s",
            v[0], v[1], v[2], v[3]
        )
    };
    println!("time to admitted     {}", q(r.time_to_admitted));
    println!("time to first media  {}", q(r.time_to_first_media));
    let w = &r.window;
    println!(
        "window {:.0} s: {} consumers, {:.0} packets/s in, loss {:.3} %, jitter p50 {:.2} ms p95 {:.2} ms, worker CPU {:.1} %",
        w.seconds, w.consumers, w.packets_per_sec, w.loss_pct, w.jitter_p50_ms, w.jitter_p95_ms, w.worker_cpu_pct
    );
    if let Some(path) = f.get("json") {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({ "scenario": raw[0], "report": r }))
                .expect("json"),
        )
        .map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(r.errors == 0 && r.without_media == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if matches!(
        raw.first().map(String::as_str),
        Some("room" | "rooms" | "churn" | "pipe")
    ) {
        return match media_main(&raw).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(raw.first().map(String::as_str), Some("capacity" | "direct")) {
        return match capacity_main(&raw).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse(&raw) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let barrier = Arc::new(Barrier::new(args.joins));
    let start = Arc::new(std::sync::OnceLock::new());
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..args.joins)
        .map(|i| {
            let (args, barrier, start, done) =
                (args.clone(), barrier.clone(), start.clone(), done.clone());
            tokio::spawn(one(args, i, barrier, start, done))
        })
        .collect();
    let progress = {
        let (done, n) = (done.clone(), args.joins);
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "[{:>4.0}s] {}/{} participants finished joining",
                    t0.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    n
                );
            }
        })
    };
    let all = tokio::time::timeout(args.timeout, futures::future::join_all(tasks)).await;
    progress.abort();
    let Ok(results) = all else {
        eprintln!(
            "timed out after {:?} with {} of {} finished",
            args.timeout,
            done.load(Ordering::Relaxed),
            args.joins
        );
        return ExitCode::FAILURE;
    };
    let mut times = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut without_position = 0;
    for r in results {
        match r {
            Ok(Outcome::Admitted {
                after,
                queued_updates,
            }) => {
                times.push(after);
                if queued_updates == 0 {
                    without_position += 1;
                }
            }
            Ok(Outcome::Failed(e)) => *errors.entry(e).or_default() += 1,
            Err(e) => *errors.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    times.sort();
    let (p50, p95, p99, max) = (
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default(),
    );
    let error_count: usize = errors.values().sum();
    println!(
        "scenario   surge ({} joins into {} room(s), released at once)",
        args.joins, args.rooms
    );
    println!("admitted   {}", times.len());
    println!("errors     {error_count}");
    for (e, n) in &errors {
        println!("  {n:>6} x {e}");
    }
    println!("no position update  {without_position}");
    println!(
        "time to admitted    p50 {:.3} s   p95 {:.3} s   p99 {:.3} s   max {:.3} s",
        p50.as_secs_f64(),
        p95.as_secs_f64(),
        p99.as_secs_f64(),
        max.as_secs_f64()
    );
    if let Some(path) = &args.json {
        let summary = json!({
            "scenario": "surge", "joins": args.joins, "rooms": args.rooms,
            "admitted": times.len(), "errors": error_count, "errorKinds": errors,
            "withoutPositionUpdate": without_position,
            "timeToAdmittedSecs": {"p50": p50.as_secs_f64(), "p95": p95.as_secs_f64(), "p99": p99.as_secs_f64(), "max": max.as_secs_f64()},
        });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&summary).expect("json"))
        {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if error_count == 0 && times.len() == args.joins {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
