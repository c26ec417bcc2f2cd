//! `media-node`: configuration from the environment (see `config::vars`),
//! validated before any port is bound; exits 0 on SIGTERM/SIGINT, 1 when a
//! worker dies, 2 on bad configuration.

use std::process::ExitCode;

use media_node::config::NodeConfig;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // `tracing-log` bridges mediasoup's `log` output into tracing.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let env = std::env::vars().collect();
    let config = match NodeConfig::from_env(&env) {
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
    match media_node::run(config, shutdown, |bound| {
        println!(
            "media node: gRPC {} status http://{}/status",
            bound.grpc, bound.http
        )
    })
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "media node stopped");
            ExitCode::FAILURE
        }
    }
}
