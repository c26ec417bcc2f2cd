//! Throng media node: turns one machine into SFU capacity.
//!
//! Data path on this side: coordinator --gRPC--> node -> worker -> router.
//! - [`config`]: environment, validated before anything is bound;
//! - [`workers`]: one mediasoup worker per core, each with its WebRtcServer port;
//! - [`http`]: liveness and status for operators.
#![forbid(unsafe_code)]

pub mod config;
pub mod cpu;
pub mod http;
pub mod workers;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::workers::{WorkerDied, WorkerPool, WorkerPoolError};

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Workers could not start.
    #[error(transparent)]
    Workers(#[from] WorkerPoolError),
    /// The HTTP endpoint could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A worker died while serving.
    #[error("worker {} died: {}", .0.index, .0.reason)]
    WorkerDied(WorkerDied),
}

/// Runs the node until `shutdown` resolves (Ok) or a worker dies (Err).
/// `ready` receives the bound HTTP address once everything listens.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), NodeError> {
    let (died_tx, mut died_rx) = mpsc::unbounded_channel();
    let pool = WorkerPool::start(&config, died_tx).await?;
    let listener = TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.http_listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.http_listen,
        source,
    })?;

    let dead = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    let state = http::HttpState {
        node_id: config.node_id.as_str().into(),
        workers: pool.workers().to_vec().into(),
        dead: dead.clone(),
        draining: draining.clone(),
    };
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::app(state))
            .with_graceful_shutdown(async {
                let _ = stop_http_rx.await;
            })
            .await
    });
    info!(node_id = %config.node_id, http = %http_addr, workers = config.workers, "media node ready");
    ready(http_addr);

    let outcome = tokio::select! {
        () = shutdown => {
            draining.store(true, Ordering::Relaxed);
            info!("shutdown requested");
            Ok(())
        }
        Some(death) = died_rx.recv() => {
            dead.store(true, Ordering::Relaxed);
            Err(NodeError::WorkerDied(death))
        }
    };
    let _ = stop_http_tx.send(());
    if let Err(e) = server.await {
        warn!(error = %e, "http server task failed");
    }
    drop(pool);
    outcome
}
