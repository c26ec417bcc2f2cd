//! `coordinator`: configuration from the environment (see `config::vars`),
//! validated before any port is bound; drains connections on SIGTERM.

use std::process::ExitCode;

use coordinator::config::CoordinatorConfig;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage:
  coordinator                      serve (configuration from THRONG_* variables)
  coordinator token --room ROOM --identity ID [--viewer] [--ttl-secs N]
                                   print a join token signed with THRONG_TOKEN_SECRET";

/// `coordinator token ...`: mints a join token offline.
fn token(args: &[String]) -> ExitCode {
    let (mut room, mut identity, mut publish, mut ttl) = (None, None, true, 6 * 3600u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--room" => room = it.next().cloned(),
            "--identity" => identity = it.next().cloned(),
            "--viewer" => publish = false,
            "--ttl-secs" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 => ttl = v,
                _ => {
                    eprintln!("--ttl-secs needs a positive number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(room), Some(identity)) = (room, identity) else {
        eprintln!("--room and --identity are required\n{USAGE}");
        return ExitCode::from(2);
    };
    let secret = std::env::var(coordinator::config::vars::TOKEN_SECRET).unwrap_or_default();
    if secret.len() < 32 {
        eprintln!(
            "{} must hold the cluster's secret (at least 32 characters)",
            coordinator::config::vars::TOKEN_SECRET
        );
        return ExitCode::from(2);
    }
    println!(
        "{}",
        coordinator::auth::TokenKey::new(secret).mint(&room, &identity, publish, ttl)
    );
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("token") => return token(&args[1..]),
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let env = std::env::vars().collect();
    let config = match CoordinatorConfig::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match coordinator::run(config, shutdown, |addr| {
        println!("coordinator: http://{addr}/")
    })
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "coordinator stopped");
            ExitCode::FAILURE
        }
    }
}
