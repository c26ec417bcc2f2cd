//! `coordinator`: configuration from the environment (see `config::vars`,
//! `coordinator --help`), validated before any port is bound; drains
//! connections on SIGTERM. Exit codes: 0 stopped, 1 failed while serving,
//! 2 bad configuration or command line (a listen address in use included).

use std::collections::HashMap;
use std::process::ExitCode;

use coordinator::config::{vars, CoordinatorConfig};
use coordinator::CoordinatorError;
use throng_ops::{Command, EXIT_CONFIG};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage:
  coordinator                      serve (configuration from THRONG_* variables)
  coordinator --check-config       validate the configuration, print it, exit 0 (ok) or 2
  coordinator --probe PATH         GET PATH (/healthz, /readyz) on THRONG_LISTEN: exit 0 on 200
  coordinator --version            print the version
  coordinator --help               this text
  coordinator token --room ROOM --identity ID [--viewer] [--role host|speaker|audience] [--ttl-secs N]
                                   print a join token signed with THRONG_TOKEN_SECRET";

/// `coordinator token ...`: mints a join token offline.
fn token(args: &[String], env: &HashMap<String, String>) -> ExitCode {
    let (mut room, mut identity, mut publish, mut ttl) = (None, None, true, 6 * 3600u64);
    let mut role = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--room" => room = it.next().cloned(),
            "--identity" => identity = it.next().cloned(),
            "--viewer" => publish = false,
            "--role" => match it.next().map(String::as_str) {
                Some("host") => role = Some(coordinator::protocol::Role::Host),
                Some("speaker") => role = Some(coordinator::protocol::Role::Speaker),
                Some("audience") => role = Some(coordinator::protocol::Role::Audience),
                _ => {
                    eprintln!("--role: host, speaker or audience\n{USAGE}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            },
            "--ttl-secs" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 => ttl = v,
                _ => {
                    eprintln!("--ttl-secs needs a positive number\n{USAGE}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            },
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let (Some(room), Some(identity)) = (room, identity) else {
        eprintln!("--room and --identity are required\n{USAGE}");
        return ExitCode::from(EXIT_CONFIG);
    };
    let secret = env.get(vars::TOKEN_SECRET).cloned().unwrap_or_default();
    if secret.len() < 32 {
        eprintln!(
            "{} must hold the cluster's secret (at least 32 characters)",
            vars::TOKEN_SECRET
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    // The same key the coordinators sign with: its id and audience.
    let set = |var: &str| env.get(var).map(String::as_str).filter(|v| !v.is_empty());
    let key = coordinator::auth::TokenKey::configured(
        &secret,
        set(vars::TOKEN_KID),
        &[],
        set(vars::TOKEN_AUDIENCE),
    );
    let token = match role {
        Some(role) => key.mint_role(&room, &identity, role, ttl),
        None => key.mint(&room, &identity, publish, ttl),
    };
    println!("{token}");
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = throng_ops::command(&args);
    let binary = throng_ops::Binary {
        name: "coordinator",
        version: env!("CARGO_PKG_VERSION"),
        usage: USAGE,
        vars: vars::ALL,
        from_files: vars::FROM_FILES,
        subcommand: "token",
    };
    if let Some(code) = throng_ops::answer(&command, &binary) {
        return code;
    }
    let env = match throng_ops::environment(std::env::vars(), vars::FROM_FILES) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("coordinator: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Other(a) = &command {
        return token(&a[1..], &env);
    }
    let config = CoordinatorConfig::from_env(&env).and_then(|c| {
        throng_ops::log_format(&env)
            .map(|_| c)
            .map_err(|e| coordinator::config::ConfigError {
                var: throng_ops::LOG_FORMAT,
                reason: e.reason,
            })
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coordinator: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Probe(path) = &command {
        return throng_ops::probe("coordinator", config.listen, path).await;
    }
    if command == Command::CheckConfig {
        print!("{}", config.describe());
        eprintln!("coordinator: configuration ok");
        return ExitCode::SUCCESS;
    }
    let tracing = match throng_ops::init_logging(&env, "throng-coordinator") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("coordinator: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Before anything binds: one descriptor per browser socket.
    match throng_ops::nofile::raise() {
        Ok(limit) => limit.log(
            u64::from(config.limits.queue_max) + 1024,
            "one per browser socket: THRONG_QUEUE_MAX waiting plus 1024 connected",
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
    let outcome = coordinator::run(config, shutdown, |addr| {
        println!("coordinator: http://{addr}/")
    })
    .await;
    // Spans of the last requests go out before the exit.
    tracing.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (CoordinatorError::Bind(..) | CoordinatorError::MetricsBind(..))) => {
            tracing::error!(error = %e, "coordinator cannot start");
            eprintln!("coordinator: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "coordinator stopped");
            ExitCode::FAILURE
        }
    }
}
