//! `loadgen`: plays many participants against a running cluster through the
//! coordinator URL, exactly as browsers do (same WebSocket protocol, same
//! tokens). Every run is bounded in count and time and stops by itself.
//!
//! Scenarios: `surge` (loadgen::surge), `capacity`/`direct`
//! (loadgen::capacity), `room`/`rooms`/`churn`/`pipe` (loadgen::scenario),
//! `leave-surge` (loadgen::leave, against a media node directly),
//! `node-kill` (loadgen::failover);
//! each prints a progress line while it runs, a summary at the end, and
//! optionally writes it as JSON.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::auth::TokenKey;
use serde_json::json;

const USAGE: &str = "usage:
  loadgen surge --url ws://HOST:PORT/ws --token-secret SECRET \\
      [--joins 1000] [--rooms 1] [--media 10] [--tiles 12] [--timeout-secs 60] [--hold-secs 0] [--json FILE]
  loadgen capacity --url ws://HOST:PORT/ws --token-secret SECRET --node-pid PID \\
      [--steps 50,100,200] [--window-secs 15] [--settle-secs 3] [--json FILE]
  loadgen direct --port UDP_TCP_PORT [--steps 50,100,200] [--window-secs 15] [--settle-secs 3] [--json FILE]
  loadgen room  --url ws://HOST:PORT/ws --token-secret SECRET [--participants 50] [--senders 12]
      [--tiles 12] [--window-secs 15] [--node-pid PID] [--relay none|receivers] [--json FILE]
      (--relay receivers: receivers only through the TURN relay the coordinator hands out)
  loadgen rooms --url ... --token-secret SECRET --rooms 10 --participants 20 [as room]
  loadgen churn --url ws://HOST:PORT/ws --token-secret SECRET --admin-key KEY
      [--cycles 5] [--participants 20]
  loadgen pipe  --url ws://HOST:PORT/ws --token-secret SECRET --admin-key KEY
      [--node-pids PID,PID] [--window-secs 15] [--senders 1]
      (2 nodes of 1 worker, THRONG_WORKER_CAPACITY = 26 x (senders + 1))
  loadgen node-kill --url ws://HOST:PORT/ws --token-secret SECRET --admin-key KEY \\
      --nodes NODE_ID=PID,NODE_ID=PID [--rooms 10] [--participants 4] [--watch-secs 10] [--json FILE]
      (everyone sends and receives; the node hosting the most participants is SIGKILLed)
  loadgen leave-surge --node HOST:GRPC_PORT [--participants 500] [--consumers 10] [--json FILE]
      (a media node's own gRPC API: everyone leaves one router at once)
  loadgen otlp-sink --listen HOST:PORT
      (an OTLP/gRPC trace receiver counting spans, for benchmarks with export on)

The token secret is the cluster's THRONG_TOKEN_SECRET (tokens are minted here).
capacity: one sender and growing numbers of WebRTC receivers (str0m) through the
coordinator; the media node (PID, one worker) has its worker CPU read from /proc.
direct: the same with mediasoup driven by this process (the baseline).";

/// The `--name value` pairs after the scenario.
struct Flags(std::collections::HashMap<String, String>);

impl Flags {
    fn parse(raw: &[String]) -> Result<Self, String> {
        let mut out = std::collections::HashMap::new();
        let mut it = raw.iter().skip(1);
        while let Some(k) = it.next() {
            let name = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            out.insert(name.to_string(), v.clone());
        }
        Ok(Self(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// A number, or `default` when the flag is absent.
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        self.get(name)
            .map(|v| v.parse::<T>().map_err(|_| format!("--{name}: a number")))
            .unwrap_or(Ok(default))
    }

    /// `--url`, and join tokens `(room, identity)` minted with `--token-secret`.
    fn cluster(&self) -> Result<(String, impl Fn(&str, &str) -> String + Clone), String> {
        let url = self.required("url")?.to_string();
        let key = TokenKey::new(self.required("token-secret")?.as_bytes());
        Ok((url, move |room: &str, id: &str| {
            key.mint(room, id, true, 3600)
        }))
    }

    /// Writes `summary` to `--json FILE`, when given.
    fn write_json(&self, summary: &impl serde::Serialize) -> Result<(), String> {
        match self.get("json") {
            Some(path) => {
                std::fs::write(path, serde_json::to_string_pretty(summary).expect("json"))
                    .map_err(|e| format!("{path}: {e}"))
            }
            None => Ok(()),
        }
    }
}

/// p50, p95, p99 and max, in seconds, on one line.
fn quantiles_line(v: [f64; 4]) -> String {
    format!(
        "p50 {:.3} s   p95 {:.3} s   p99 {:.3} s   max {:.3} s",
        v[0], v[1], v[2], v[3]
    )
}

async fn capacity_main(raw: &[String]) -> Result<(), String> {
    use loadgen::capacity::{self, CapacityArgs};
    let f = Flags::parse(raw)?;
    let num = |k: &str, d: u64| f.num(k, d);
    let steps: Vec<usize> = f
        .get("steps")
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
        let (url, mint) = f.cluster()?;
        let pid = u32::try_from(num("node-pid", 0)?)
            .ok()
            .filter(|p| *p > 0)
            .ok_or("--node-pid is required")?;
        let token = move |id: &str| mint("capacity", id);
        ("cluster", capacity::cluster(&args, &url, token, pid).await?)
    };
    let at85 = loadgen::measure::consumers_at(&steps, 85.0);
    match at85 {
        Some(n) => println!("{mode}: worker at 85 % of a core with about {n:.0} consumers"),
        None => println!("{mode}: the worker stayed below 85 % of a core"),
    }
    f.write_json(&json!({ "scenario": mode, "steps": steps, "consumersAt85Pct": at85 }))
}

async fn media_main(raw: &[String]) -> Result<bool, String> {
    use loadgen::scenario;
    let f = Flags::parse(raw)?;
    let num = |k: &str, d: usize| f.num(k, d);
    let (url, token) = f.cluster()?;
    let bind = std::net::IpAddr::from([127, 0, 0, 1]);
    if raw[0] == "pipe" {
        let admin = f.required("admin-key")?;
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
        let senders = num("senders", 1)?.clamp(1, 12);
        let r = scenario::pipe(
            &url, &http, admin, token, window, bind, &pids, webcam, senders,
        )
        .await?;
        let l = |x: &scenario::Latency| {
            format!(
                "{} packets: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                x.samples, x.ms[0], x.ms[1], x.ms[2], x.ms[3]
            )
        };
        println!(
            "scenario   pipe ({senders} sender(s); one receiver on their worker, one on another node)"
        );
        if senders == 1 {
            println!("same worker   {}", l(&r.same_worker));
            println!("across nodes  {}", l(&r.piped));
        }
        for (name, phase) in ["senders only", "+ near receiver", "+ far receiver"]
            .iter()
            .zip(&r.phases)
        {
            let cpus: Vec<String> = phase
                .iter()
                .map(|(pid, cpu)| format!("node pid {pid} {cpu:.1} %"))
                .collect();
            println!("worker CPU, {name:<16} {}", cpus.join("   "));
        }
        if let Some(c) = &r.per_piped_producer {
            println!(
                "per stream, % of a core: piped producer {:.3} on the senders' node + {:.3} on the far node; \
                 for comparison a WebRTC producer {:.3}, a consumer {:.3}",
                c.sending_node, c.receiving_node, c.webrtc_producer, c.consumer
            );
        }
        f.write_json(&r)?;
        return Ok(senders > 1 || (r.same_worker.samples > 0 && r.piped.samples > 0));
    }
    if raw[0] == "churn" {
        let admin = f.required("admin-key")?;
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
        relay: match f.get("relay") {
            None | Some("none") => false,
            Some("receivers") => true,
            Some(other) => return Err(format!("--relay {other:?}: none or receivers")),
        },
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
    println!(
        "time to admitted     {}",
        quantiles_line(r.time_to_admitted)
    );
    println!(
        "time to first media  {}",
        quantiles_line(r.time_to_first_media)
    );
    let w = &r.window;
    println!(
        "window {:.0} s: {} consumers, {:.0} packets/s in, loss {:.3} %, jitter p50 {:.2} ms p95 {:.2} ms, worker CPU {:.1} %",
        w.seconds, w.consumers, w.packets_per_sec, w.loss_pct, w.jitter_p50_ms, w.jitter_p95_ms, w.worker_cpu_pct
    );
    f.write_json(&json!({ "scenario": raw[0], "report": r }))?;
    Ok(r.errors == 0 && r.without_media == 0)
}

async fn leave_main(raw: &[String]) -> Result<bool, String> {
    use loadgen::leave::{leave_surge, LeaveArgs};
    let f = Flags::parse(raw)?;
    let args = LeaveArgs {
        node: f.required("node")?.to_string(),
        participants: f.num("participants", 500)?.clamp(2, 5000),
        consumers: f.num("consumers", 10)?.min(100),
    };
    let r = leave_surge(&args).await?;
    println!(
        "scenario   leave-surge ({} participants, {} consumers each, one router)",
        r.participants, args.consumers
    );
    println!(
        "before     {} transports, {} producers, {} consumers (set up in {:.2} s)",
        r.before.0, r.before.1, r.before.2, r.setup_secs
    );
    println!(
        "removal    all CloseParticipant answered in {:.3} s (slowest call {:.3} s); counts at zero after {:.3} s",
        r.removal_secs, r.slowest_call_secs, r.to_zero_secs
    );
    println!("after      {:?}", r.after);
    f.write_json(&json!({ "scenario": "leave-surge", "report": r }))?;
    Ok(r.after == (0, 0, 0))
}

async fn surge_main(raw: &[String]) -> Result<bool, String> {
    use loadgen::surge::{self, SurgeArgs};
    if raw.first().map(String::as_str) != Some("surge") {
        return Err(format!("unknown scenario {:?}", raw.first()));
    }
    let f = Flags::parse(raw)?;
    let num = |k: &str, d: usize| f.num(k, d);
    let (url, token) = f.cluster()?;
    let (joins, rooms, timeout) = (
        num("joins", 1000)?,
        num("rooms", 1)?,
        num("timeout-secs", 60)?,
    );
    let media = num("media", 10.min(joins))?;
    if !(1..=20_000).contains(&joins)
        || rooms == 0
        || rooms > joins
        || media > joins
        || !(1..=3600).contains(&timeout)
    {
        return Err(
            "--joins 1..=20000, --rooms 1..=joins, --media 0..=joins, --timeout-secs 1..=3600"
                .into(),
        );
    }
    let args = SurgeArgs {
        joins,
        rooms,
        media,
        tiles: num("tiles", 12)?.clamp(1, 100),
        timeout: Duration::from_secs(timeout as u64),
        hold: Duration::from_secs(num("hold-secs", 0)?.min(600) as u64),
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        source: loadgen::source::SourceSpec::LIGHT,
    };
    let done = Arc::new(AtomicUsize::new(0));
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "[{:>4.0}s] {}/{joins} participants finished joining",
                    t0.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                );
            }
        })
    };
    let r = surge::surge(&args, &url, token, done).await;
    progress.abort();
    let r = r?;
    let q = quantiles_line;
    println!(
        "scenario   surge ({joins} joins into {rooms} room(s), released at once; one presenter per room; {media} media participants)"
    );
    println!("admitted   {}", r.admitted);
    println!("errors     {}", r.error_count());
    for (e, n) in &r.errors {
        println!("  {n:>6} x {e}");
    }
    println!("no position update  {}", r.without_position);
    println!("time to admitted    {}", q(r.time_to_admitted));
    println!(
        "time to consuming   {}   ({} signalling participants)",
        q(r.time_to_consuming),
        r.signalling_ready
    );
    println!(
        "time to first media {}   ({} of {} media participants)",
        q(r.time_to_first_media),
        r.media_received,
        r.media
    );
    f.write_json(&json!({ "scenario": "surge", "report": r }))?;
    Ok(r.ok())
}

async fn node_kill_main(raw: &[String]) -> Result<bool, String> {
    use loadgen::failover::{node_kill, NodeKillArgs};
    let f = Flags::parse(raw)?;
    let (url, token) = f.cluster()?;
    let admin = f.required("admin-key")?;
    let http = url
        .replace("ws://", "http://")
        .trim_end_matches("/ws")
        .to_string();
    let nodes = f
        .required("nodes")?
        .split(',')
        .map(|n| {
            let (id, pid) = n
                .split_once('=')
                .ok_or("--nodes: NODE_ID=PID,NODE_ID=PID")?;
            let pid = pid.trim().parse::<u32>().map_err(|_| "--nodes: a pid")?;
            Ok::<_, &str>((id.trim().to_string(), pid))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let args = NodeKillArgs {
        rooms: f.num("rooms", 10usize)?.clamp(1, 100),
        per_room: f.num("participants", 4usize)?.clamp(2, 20),
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        source: loadgen::source::SourceSpec::LIGHT,
        nodes,
        watch: Duration::from_secs(f.num("watch-secs", 10u64)?.clamp(2, 120)),
    };
    let r = node_kill(&args, &url, &http, admin, token).await?;
    println!(
        "scenario   node-kill ({} rooms of {}, everyone sends and receives)",
        args.rooms, args.per_room
    );
    println!(
        "killed     {} with {} participants on it; {} participants in rooms it served",
        r.killed, r.on_killed_node, r.affected
    );
    println!(
        "told to reconnect after the kill   {}",
        quantiles_line(r.told_after)
    );
    println!(
        "longest time without media from a sender, affected participants   {}",
        quantiles_line(r.interruption)
    );
    println!(
        "untouched rooms: longest gap {:.3} s   re-joins {}   errors {}   not recovered {}",
        r.untouched_max, r.rejoins, r.errors, r.not_recovered
    );
    f.write_json(&json!({ "scenario": "node-kill", "report": r }))?;
    Ok(r.not_recovered == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("node-kill") {
        return match node_kill_main(&raw).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::from(2)
            }
        };
    }
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
    if raw.first().map(String::as_str) == Some("otlp-sink") {
        let listen = match raw.get(1..) {
            Some([flag, addr]) if flag == "--listen" => addr.parse::<std::net::SocketAddr>().ok(),
            _ => None,
        };
        let Some(listen) = listen else {
            eprintln!("otlp-sink needs --listen HOST:PORT\n{USAGE}");
            return ExitCode::from(2);
        };
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        return match loadgen::otlp::sink(listen, stop).await {
            Ok((spans, exports)) => {
                println!("otlp-sink: {spans} spans in {exports} exports");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otlp-sink: {e}");
                ExitCode::from(2)
            }
        };
    }
    if raw.first().map(String::as_str) == Some("leave-surge") {
        return match leave_main(&raw).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    match surge_main(&raw).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
