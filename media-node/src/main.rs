//! `media-node`: configuration from the environment (see `config::vars`,
//! `media-node --help`), validated before any port is bound; drains on
//! SIGTERM/SIGINT. Exit codes: 0 stopped, 1 a worker died, 2 bad
//! configuration or command line (an address or port in use included).

use std::process::ExitCode;

use media_node::config::{vars, NodeConfig};
use media_node::prestop::{self, Drained};
use throng_ops::{Command, EXIT_CONFIG};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage:
  media-node                  serve (configuration from THRONG_* variables)
  media-node --check-config   validate the configuration, print it, exit 0 (ok) or 2
  media-node --probe PATH     GET PATH (/healthz, /readyz) on THRONG_HTTP_LISTEN: exit 0 on 200
  media-node drain [--pid N]  stop hook: start the drain of the node serving as
                              pid N (default 1, a container's) and wait until its
                              rooms are gone or THRONG_DRAIN_GRACE_SECS passed
  media-node --version        print the version
  media-node --help           this text";

async fn drain(args: &[String], config: &NodeConfig) -> ExitCode {
    let pid = match args {
        [] => 1,
        [flag, pid] if flag == "--pid" => match pid.parse::<i32>() {
            Ok(p) if p > 0 => p,
            _ => {
                eprintln!("--pid needs a process id\n{USAGE}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = prestop::signal_drain(pid) {
        eprintln!("media-node drain: cannot signal pid {pid}: {e}");
        return ExitCode::FAILURE;
    }
    match prestop::wait_drained(config.http_listen, config.drain_grace).await {
        Drained::Empty => eprintln!("media-node drain: no rooms left"),
        Drained::Stopped => eprintln!("media-node drain: node stopped"),
        Drained::TimedOut { rooms } => eprintln!(
            "media-node drain: {rooms} rooms still open after {}s",
            config.drain_grace.as_secs()
        ),
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = throng_ops::command(&args);
    let binary = throng_ops::Binary {
        name: "media-node",
        version: env!("CARGO_PKG_VERSION"),
        usage: USAGE,
        vars: vars::ALL,
        from_files: vars::FROM_FILES,
        subcommand: "drain",
    };
    if let Some(code) = throng_ops::answer(&command, &binary) {
        return code;
    }
    let config = throng_ops::environment(std::env::vars(), vars::FROM_FILES)
        .map_err(|e| e.to_string())
        .and_then(|env| {
            throng_ops::log_format(&env).map_err(|e| e.to_string())?;
            NodeConfig::from_env(&env)
                .map(|c| (c, env))
                .map_err(|e| e.to_string())
        });
    let (config, env) = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("media-node: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match &command {
        Command::CheckConfig => {
            print!("{}", config.describe());
            eprintln!("media-node: configuration ok");
            return ExitCode::SUCCESS;
        }
        Command::Other(a) => return drain(&a[1..], &config).await,
        Command::Probe(path) => {
            return throng_ops::probe("media-node", config.http_listen, path).await
        }
        _ => {}
    }
    // `tracing-log` bridges mediasoup's `log` output into tracing.
    let tracing = match throng_ops::init_logging(&env, "throng-media-node") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("media-node: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Before the workers start (threads of this process, sharing its limit):
    // each ICE-TCP connection is a descriptor (two per participant at most;
    // 3000 per worker of the default 1500 consumers, plus 64).
    match throng_ops::nofile::raise() {
        Ok(limit) => limit.log(
            config.workers as u64 * 3000 + 64,
            "two ICE-TCP connections per participant of each 1500-consumer worker",
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let shutdown = async {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let outcome = media_node::run(config, shutdown, |bound| {
        println!(
            "media node: gRPC {} status http://{}/status",
            bound.grpc, bound.http
        )
    })
    .await;
    // Spans of the last calls go out before the exit.
    tracing.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            tracing::error!(error = %e, "media node cannot start");
            eprintln!("media-node: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "media node stopped");
            ExitCode::FAILURE
        }
    }
}
