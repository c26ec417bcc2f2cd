//! `coordinator`: configuration from the environment (see `config::vars`),
//! validated before any port is bound; drains connections on SIGTERM.

use std::process::ExitCode;

use coordinator::config::CoordinatorConfig;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
