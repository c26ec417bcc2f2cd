//! `loadgen`: plays many participants against a running cluster through the
//! coordinator URL, exactly as browsers do (same WebSocket protocol, same
//! tokens). Every run is bounded in count and time and stops by itself.
//!
//! The command line is `clap` (derive): an unknown flag or a bad value is an
//! error (exit 2) naming it, and `--help` describes every scenario. The
//! token secret and the admin key come from the environment
//! (`THRONG_TOKEN_SECRET`, `THRONG_ADMIN_KEY`) so that `ps` does not show them;
//! the flags still work.
//!
//! Scenarios: `surge` (loadgen::surge), `capacity`/`direct`
//! (loadgen::capacity), `room`/`rooms`/`churn`/`pipe` (loadgen::scenario),
//! `leave-surge` (loadgen::leave, against a media node directly),
//! `node-kill` (loadgen::failover);
//! each prints a progress line while it runs, a summary at the end, and
//! optionally writes it as JSON.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use coordinator::auth::TokenKey;
use serde_json::json;

/// Plays many participants against a Throng cluster through the coordinator
/// URL, as browsers do. Every run is bounded in count and time.
#[derive(Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// The coordinator and how to mint join tokens for it.
#[derive(Args, Clone)]
struct Cluster {
    /// The coordinator's WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    url: String,
    /// The cluster's THRONG_TOKEN_SECRET: join tokens are minted here.
    #[arg(long, env = "THRONG_TOKEN_SECRET", hide_env_values = true)]
    token_secret: String,
}

impl Cluster {
    /// Join tokens `(room, identity)`.
    fn minter(&self) -> impl Fn(&str, &str) -> String + Clone + use<> {
        let key = TokenKey::new(self.token_secret.as_bytes());
        move |room: &str, id: &str| key.mint(room, id, true, 3600)
    }

    /// The coordinator's HTTP base (for its admin API).
    fn http(&self) -> String {
        self.url
            .replace("ws://", "http://")
            .trim_end_matches("/ws")
            .to_string()
    }
}

/// The coordinator's admin key (the admin API lists nodes and counts).
#[derive(Args, Clone)]
struct Admin {
    /// The cluster's THRONG_ADMIN_KEY.
    #[arg(long, env = "THRONG_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
}

/// Where the summary goes, besides standard output.
#[derive(Args, Clone)]
struct Output {
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Output {
    fn write(&self, summary: &impl serde::Serialize) -> Result<(), String> {
        match &self.json {
            Some(path) => {
                std::fs::write(path, serde_json::to_string_pretty(summary).expect("json"))
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
            None => Ok(()),
        }
    }
}

/// The ramp of a capacity run.
#[derive(Args, Clone)]
struct Ramp {
    /// Receivers at each step, growing, at most 3000.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200", value_parser = clap::value_parser!(u64).range(1..=3000))]
    steps: Vec<u64>,
    /// Seconds measured at each step.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    window_secs: u64,
    /// Seconds waited after each step is connected before measuring.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    settle_secs: u64,
}

/// Which receivers go through the TURN relay the coordinator hands out.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// Nobody: every participant connects directly.
    None,
    /// Receivers only through the relay (senders direct).
    Receivers,
}

/// A media room scenario's shape.
#[derive(Args, Clone)]
struct RoomShape {
    /// Participants per room.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=3000))]
    participants: u64,
    /// Of them, how many send audio and video.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=100))]
    senders: u64,
    /// Tiles per page: a receiver consumes at most this many senders.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=100))]
    tiles: u64,
    /// Seconds measured once everyone receives.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    window_secs: u64,
    /// A media node (one worker) whose worker CPU is read from /proc.
    #[arg(long, value_name = "PID")]
    node_pid: Option<u32>,
    /// Who connects through the TURN relay.
    #[arg(long, value_enum, default_value_t = Relay::None)]
    relay: Relay,
}

#[derive(Subcommand)]
enum Scenario {
    /// Joins released at once into one or more rooms (each with a presenter),
    /// then what a browser does next: receive transport, consume, resume; some
    /// with real WebRTC until the first packet. Reports time to admitted.
    Surge {
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        shape: SurgeShape,
        #[command(flatten)]
        output: Output,
    },
    /// One sender and growing numbers of WebRTC receivers through the
    /// coordinator; the media node (one worker) has its worker CPU read from
    /// /proc. Prints the consumers at which the worker reaches 85 % of a core.
    Capacity {
        #[command(flatten)]
        cluster: Cluster,
        /// The media node's process (one worker).
        #[arg(long, value_name = "PID")]
        node_pid: u32,
        #[command(flatten)]
        ramp: Ramp,
        #[command(flatten)]
        output: Output,
    },
    /// The capacity ramp against mediasoup driven by this process (the
    /// baseline without Throng), its WebRTC transport on PORT.
    Direct {
        /// The UDP/TCP port of the WebRTC transport.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        #[command(flatten)]
        ramp: Ramp,
        #[command(flatten)]
        output: Output,
    },
    /// One room with real media: senders send audio and video, everyone
    /// receives up to a page of tiles; loss, jitter and worker CPU measured.
    Room {
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        shape: RoomShape,
        #[command(flatten)]
        output: Output,
    },
    /// Like room, several rooms at once.
    Rooms {
        #[command(flatten)]
        cluster: Cluster,
        /// Rooms.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        rooms: u64,
        #[command(flatten)]
        shape: RoomShape,
        #[command(flatten)]
        output: Output,
    },
    /// Cycles of join, send or consume, leave; the nodes' counts must be back
    /// where they were.
    Churn {
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        admin: Admin,
        /// Cycles.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        cycles: u64,
        /// Participants per cycle.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=500))]
        participants: u64,
    },
    /// Senders with one receiver on their worker and one on another node:
    /// the latency and CPU a pipe adds (2 nodes of 1 worker,
    /// THRONG_WORKER_CAPACITY = 26 x (senders + 1)).
    Pipe {
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        admin: Admin,
        /// The two media nodes' processes.
        #[arg(long, value_delimiter = ',', value_name = "PID,PID")]
        node_pids: Vec<u32>,
        /// Seconds measured per phase.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
        window_secs: u64,
        /// Senders.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=12))]
        senders: u64,
        #[command(flatten)]
        output: Output,
    },
    /// Everyone sends and receives; the node hosting the most participants is
    /// SIGKILLed; how long media stops and whether everyone recovers.
    NodeKill {
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        admin: Admin,
        /// The media nodes, NODE_ID=PID,NODE_ID=PID.
        #[arg(long, value_delimiter = ',', required = true, value_parser = node_and_pid)]
        nodes: Vec<(String, u32)>,
        /// Rooms.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
        rooms: u64,
        /// Participants per room.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=20))]
        participants: u64,
        /// Seconds watched after the kill.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=120))]
        watch_secs: u64,
        #[command(flatten)]
        output: Output,
    },
    /// A media node's own gRPC API: everyone leaves one router at once.
    LeaveSurge {
        /// The node's gRPC address, HOST:PORT.
        #[arg(long)]
        node: String,
        /// Participants.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(2..=5000))]
        participants: u64,
        /// Consumers each.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=100))]
        consumers: u64,
        #[command(flatten)]
        output: Output,
    },
    /// An OTLP/gRPC trace receiver counting spans (for benchmarks with export
    /// on); stops on SIGTERM or Ctrl-C.
    OtlpSink {
        /// Where to listen, HOST:PORT.
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn node_and_pid(s: &str) -> Result<(String, u32), String> {
    let (id, pid) = s.split_once('=').ok_or("NODE_ID=PID, e.g. node-1=4242")?;
    let pid = pid
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((id.trim().to_string(), pid))
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// p50, p95, p99 and max, in seconds, on one line.
fn quantiles_line(v: [f64; 4]) -> String {
    format!(
        "p50 {:.3} s   p95 {:.3} s   p99 {:.3} s   max {:.3} s",
        v[0], v[1], v[2], v[3]
    )
}

/// A usage error: clap's format, exit 2.
fn usage_error(message: String) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

async fn capacity_main(
    cluster: Option<(Cluster, u32)>,
    port: Option<u16>,
    ramp: Ramp,
    output: Output,
) -> Result<bool, String> {
    use loadgen::capacity::{self, CapacityArgs};
    if ramp.steps.windows(2).any(|w| w[0] >= w[1]) {
        usage_error("--steps: growing numbers, e.g. 50,100,200".into());
    }
    let args = CapacityArgs {
        steps: ramp.steps.iter().map(|&s| s as usize).collect(),
        window: Duration::from_secs(ramp.window_secs),
        settle: Duration::from_secs(ramp.settle_secs),
        bind: LOCALHOST,
        source: loadgen::source::SourceSpec::WEBCAM,
    };
    capacity::print_header();
    let (mode, steps) = match (cluster, port) {
        (Some((cluster, pid)), _) => {
            let mint = cluster.minter();
            let token = move |id: &str| mint("capacity", id);
            (
                "cluster",
                capacity::cluster(&args, &cluster.url, token, pid).await?,
            )
        }
        (None, Some(port)) => ("direct", capacity::direct(&args, port).await?),
        (None, None) => unreachable!("clap requires one"),
    };
    let at85 = loadgen::measure::consumers_at(&steps, 85.0);
    match at85 {
        Some(n) => {
            println!("{mode}: worker at 85 % of a core with about {n:.0} consumers");
            // Placement reserves consumer units per participant; on this
            // machine a worker is at the CPU ceiling with this many.
            println!(
                "configure THRONG_WORKER_CAPACITY={:.0} (chart: coordinator.workerCapacity) and THRONG_WORKER_CPU_CEILING=85 for workers on this machine",
                n.floor()
            );
        }
        None => println!("{mode}: the worker stayed below 85 % of a core"),
    }
    output.write(&json!({
        "scenario": mode,
        "steps": steps,
        "consumersAt85Pct": at85,
        "workerCapacity": at85.map(f64::floor),
    }))?;
    Ok(true)
}

async fn pipe_main(
    cluster: Cluster,
    admin: Admin,
    node_pids: Vec<u32>,
    window_secs: u64,
    senders: u64,
    output: Output,
) -> Result<bool, String> {
    use loadgen::scenario;
    let senders = senders as usize;
    let r = scenario::pipe(
        &cluster.url,
        &cluster.http(),
        &admin.admin_key,
        cluster.minter(),
        Duration::from_secs(window_secs),
        LOCALHOST,
        &node_pids,
        loadgen::source::SourceSpec::WEBCAM,
        senders,
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
    output.write(&r)?;
    Ok(senders > 1 || (r.same_worker.samples > 0 && r.piped.samples > 0))
}

async fn churn_main(cluster: Cluster, admin: Admin, cycles: u64, per: u64) -> Result<bool, String> {
    use loadgen::scenario;
    let scenario::ChurnReport {
        before,
        after,
        peak_transports,
        errors,
    } = scenario::churn(
        &cluster.url,
        &cluster.http(),
        &admin.admin_key,
        cluster.minter(),
        cycles as usize,
        per as usize,
        LOCALHOST,
    )
    .await?;
    println!(
        "scenario   churn ({cycles} cycles of {per} participants: join, send or consume, leave)"
    );
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
    Ok(ok)
}

async fn rooms_main(
    name: &str,
    cluster: Cluster,
    rooms: u64,
    shape: RoomShape,
    output: Output,
) -> Result<bool, String> {
    use loadgen::scenario;
    let args = scenario::RoomArgs {
        rooms: rooms as usize,
        per_room: shape.participants as usize,
        senders: shape.senders as usize,
        tiles: shape.tiles as usize,
        window: Duration::from_secs(shape.window_secs),
        bind: LOCALHOST,
        node_pid: shape.node_pid,
        source: loadgen::source::SourceSpec::WEBCAM,
        relay: shape.relay == Relay::Receivers,
    };
    let r = scenario::rooms(&args, &cluster.url, cluster.minter()).await?;
    println!(
        "scenario   {name} ({} room(s) of {} + {} senders, {} tiles per page)",
        args.rooms, args.per_room, args.senders, args.tiles
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
    output.write(&json!({ "scenario": name, "report": r }))?;
    Ok(r.errors == 0 && r.without_media == 0)
}

async fn leave_main(
    node: String,
    participants: u64,
    consumers: u64,
    output: Output,
) -> Result<bool, String> {
    use loadgen::leave::{leave_surge, LeaveArgs};
    let args = LeaveArgs {
        node,
        participants: participants as usize,
        consumers: consumers as usize,
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
    output.write(&json!({ "scenario": "leave-surge", "report": r }))?;
    Ok(r.after == (0, 0, 0))
}

/// `surge`'s flags.
#[derive(Args)]
struct SurgeShape {
    /// Participants released at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    joins: u64,
    /// Rooms they go to (participant i to room i mod rooms), at most --joins.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    rooms: u64,
    /// Of them, participants with a real WebRTC endpoint (at most --joins;
    /// default 10 or --joins if fewer).
    #[arg(long)]
    media: Option<u64>,
    /// Tiles per page: a participant consumes at most this many peers.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=100))]
    tiles: u64,
    /// Whole run limit once released, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
    /// Seconds everyone stays once all are done.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    hold_secs: u64,
    /// Participants more who join in the same release and leave as soon
    /// as they are in (joins and leaves interleave).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=20_000))]
    leavers: u64,
    /// At the end, every signalling participant completes its roster
    /// (listPeers pages and presence events); each must equal the room.
    #[arg(long)]
    check_rosters: bool,
    /// Presenters (str0m senders, audio and video) per room.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    speakers: u64,
    /// An event: presenters join as speakers, everyone else as audience
    /// (they consume the stage; tokens with a role).
    #[arg(long)]
    event: bool,
    /// Release the joins evenly over this many seconds (0: all at once).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600))]
    release_secs: u64,
}

async fn surge_main(cluster: Cluster, shape: SurgeShape, output: Output) -> Result<bool, String> {
    use loadgen::surge::{self, SurgeArgs};
    let SurgeShape {
        speakers,
        event,
        release_secs,
        joins,
        rooms,
        media,
        tiles,
        timeout_secs,
        hold_secs,
        leavers,
        check_rosters,
    } = shape;
    let media = media.unwrap_or(10.min(joins));
    if rooms > joins {
        usage_error(format!("--rooms {rooms}: at most --joins ({joins})"));
    }
    if media > joins {
        usage_error(format!("--media {media}: at most --joins ({joins})"));
    }
    let args = SurgeArgs {
        joins: joins as usize,
        rooms: rooms as usize,
        media: media as usize,
        tiles: tiles as usize,
        timeout: Duration::from_secs(timeout_secs),
        hold: Duration::from_secs(hold_secs),
        bind: LOCALHOST,
        source: loadgen::source::SourceSpec::LIGHT,
        leavers: leavers as usize,
        check_rosters,
        speakers: speakers as usize,
        event,
        spread: Duration::from_secs(release_secs),
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
    // An event's presenters are speakers, everyone else audience.
    let key = TokenKey::new(cluster.token_secret.as_bytes());
    let mint = cluster.minter();
    let token = move |room: &str, id: &str| {
        use coordinator::protocol::Role;
        match (event, id.starts_with("presenter-")) {
            (false, _) => mint(room, id),
            (true, true) => key.mint_role(room, id, Role::Speaker, 3600),
            (true, false) => key.mint_role(room, id, Role::Audience, 3600),
        }
    };
    let r = surge::surge(&args, &cluster.url, token, done).await;
    progress.abort();
    let r = r?;
    let q = quantiles_line;
    let released = match release_secs {
        0 => "at once".to_string(),
        s => format!("over {s} s"),
    };
    let kind = if event {
        "; an event: the presenters on stage, everyone else audience"
    } else {
        ""
    };
    println!(
        "scenario   surge ({joins} joins into {rooms} room(s), released {released}; {speakers} presenter(s) per room{kind}; {media} media participants)"
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
    if leavers > 0 {
        println!("left again  {} of {leavers} leavers", r.left);
    }
    println!(
        "presence per signalling participant: {:.1} messages (max {:.0}), {:.0} bytes (max {:.0}), {:.0} bytes/s (max {:.0})",
        r.presence_messages[0],
        r.presence_messages[1],
        r.presence_bytes[0],
        r.presence_bytes[1],
        r.presence_bytes_per_sec[0],
        r.presence_bytes_per_sec[1]
    );
    if check_rosters {
        println!(
            "rosters    {} checked, {} differ from the room{}",
            r.rosters_checked,
            r.rosters_wrong,
            r.roster_difference
                .as_deref()
                .map(|d| format!(" (first: {d})"))
                .unwrap_or_default()
        );
    }
    output.write(&json!({ "scenario": "surge", "report": r }))?;
    Ok(r.ok())
}

async fn node_kill_main(
    cluster: Cluster,
    admin: Admin,
    args: loadgen::failover::NodeKillArgs,
    output: Output,
) -> Result<bool, String> {
    let r = loadgen::failover::node_kill(
        &args,
        &cluster.url,
        &cluster.http(),
        &admin.admin_key,
        cluster.minter(),
    )
    .await?;
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
    output.write(&json!({ "scenario": "node-kill", "report": r }))?;
    Ok(r.not_recovered == 0)
}

async fn otlp_sink_main(listen: SocketAddr) -> Result<bool, String> {
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let (spans, exports) = loadgen::otlp::sink(listen, stop)
        .await
        .map_err(|e| format!("otlp-sink: {e}"))?;
    println!("otlp-sink: {spans} spans in {exports} exports");
    Ok(true)
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().scenario {
        Scenario::Surge {
            cluster,
            shape,
            output,
        } => surge_main(cluster, shape, output).await,
        Scenario::Capacity {
            cluster,
            node_pid,
            ramp,
            output,
        } => capacity_main(Some((cluster, node_pid)), None, ramp, output).await,
        Scenario::Direct { port, ramp, output } => {
            capacity_main(None, Some(port), ramp, output).await
        }
        Scenario::Room {
            cluster,
            shape,
            output,
        } => rooms_main("room", cluster, 1, shape, output).await,
        Scenario::Rooms {
            cluster,
            rooms,
            shape,
            output,
        } => rooms_main("rooms", cluster, rooms, shape, output).await,
        Scenario::Churn {
            cluster,
            admin,
            cycles,
            participants,
        } => churn_main(cluster, admin, cycles, participants).await,
        Scenario::Pipe {
            cluster,
            admin,
            node_pids,
            window_secs,
            senders,
            output,
        } => pipe_main(cluster, admin, node_pids, window_secs, senders, output).await,
        Scenario::NodeKill {
            cluster,
            admin,
            nodes,
            rooms,
            participants,
            watch_secs,
            output,
        } => {
            let args = loadgen::failover::NodeKillArgs {
                rooms: rooms as usize,
                per_room: participants as usize,
                bind: LOCALHOST,
                source: loadgen::source::SourceSpec::LIGHT,
                nodes,
                watch: Duration::from_secs(watch_secs),
            };
            node_kill_main(cluster, admin, args, output).await
        }
        Scenario::LeaveSurge {
            node,
            participants,
            consumers,
            output,
        } => leave_main(node, participants, consumers, output).await,
        Scenario::OtlpSink { listen } => otlp_sink_main(listen).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // A run that could not be carried out (the cluster refused, a
            // node was unreachable): not a usage error.
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
