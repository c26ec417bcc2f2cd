//! Throng media node: turns one machine into SFU capacity.
//!
//! Data path on this side: coordinator --gRPC--> [`rpc`] (parse, reply) ->
//! [`media`] (the object tree: routers -> transports -> producers/consumers)
//! -> [`workers`] (one mediasoup worker per core, each with its WebRtcServer
//! port) -> router. [`node`] holds the node's identity and draining/dead
//! state; [`load`] reports counts and CPU to Redis with a TTL; [`http`] serves
//! liveness and status to operators; [`config`] is read and validated before
//! anything is bound. This file only composes them and runs the lifecycle:
//! serve, drain on shutdown, exit non-zero when a worker dies.
#![forbid(unsafe_code)]

pub mod config;
pub mod cpu;
pub mod error;
pub mod http;
pub mod load;
pub mod media;
pub mod metrics;
pub mod node;
pub mod prestop;
pub mod rpc;
pub mod workers;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use throng_hooks::Hooks;
use throng_proto::media::media_node_server::MediaNodeServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::load::{LoadTracker, RedisReporter, Written};
use crate::media::Rooms;
use crate::node::{NodeIdentity, NodeState};
use crate::rpc::MediaService;
use crate::workers::{WorkerDied, WorkerPool, WorkerPoolError};

/// Longest a stopping node waits for each of its last Redis writes (the
/// draining report, the report's removal): a Redis that is away must not hold
/// the stop up; the report then expires with its TTL.
const REDIS_STOP_LIMIT: Duration = Duration::from_secs(2);

/// The error of a bounded Redis write at stop, if it failed or timed out.
fn stop_write_error<T>(
    r: Result<Result<T, crate::load::ReportError>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match r {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {REDIS_STOP_LIMIT:?}")),
    }
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Workers could not start.
    #[error(transparent)]
    Workers(#[from] WorkerPoolError),
    /// A listener could not bind.
    #[error("{var}={addr}: cannot listen: {source}")]
    Bind {
        /// The variable that set the address.
        var: &'static str,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// Redis was configured and cannot be reached.
    #[error(transparent)]
    Redis(#[from] load::ReportError),
    /// `THRONG_PIPE_ADDRESS` does not resolve to an IP address.
    #[error("THRONG_PIPE_ADDRESS={address}: {reason}")]
    PipeAddress {
        /// The configured address.
        address: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A worker died while serving.
    #[error("worker {} died: {}", .0.index, .0.reason)]
    WorkerDied(WorkerDied),
    /// The gRPC TLS settings cannot be used (the configuration's own check
    /// passed: this is the gRPC library refusing them).
    #[error("THRONG_GRPC_TLS_CERT_FILE: {0}")]
    GrpcTls(String),
}

/// Addresses the node ended up listening on (ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// gRPC service.
    pub grpc: SocketAddr,
    /// Health and status.
    pub http: SocketAddr,
}

impl NodeError {
    /// The configuration cannot work on this machine (an address or port in
    /// use): exit 2, like a configuration refused before start, rather than
    /// 1, so that a supervisor does not restart into the same clash.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            NodeError::Bind { .. }
                | NodeError::GrpcTls(_)
                | NodeError::Workers(WorkerPoolError::CreateWebRtcServer { .. })
        )
    }
}

/// The IP other nodes pipe to: `THRONG_PIPE_ADDRESS` resolved (a container
/// name, a pod's DNS name), else the announced address.
async fn pipe_address(config: &NodeConfig) -> Result<Option<String>, NodeError> {
    let Some(address) = &config.pipe_address else {
        return Ok(config.announced_address.clone());
    };
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        return Ok(Some(ip.to_string()));
    }
    let failed = |reason: String| NodeError::PipeAddress {
        address: address.clone(),
        reason,
    };
    let mut found = tokio::net::lookup_host((address.as_str(), 0))
        .await
        .map_err(|e| failed(e.to_string()))?;
    found
        .next()
        .map(|a| Some(a.ip().to_string()))
        .ok_or_else(|| failed("resolves to no address".into()))
}

async fn bind(addr: SocketAddr, var: &'static str) -> Result<(TcpListener, SocketAddr), NodeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { var, addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| NodeError::Bind { var, addr, source })?;
    Ok((listener, local))
}

/// Runs the node until `shutdown` resolves and its rooms drained (Ok), or a
/// worker dies (Err). `ready` receives the bound addresses once serving.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(Bound),
) -> Result<(), NodeError> {
    run_with(config, Hooks::none(), shutdown, ready).await
}

/// [`run`] with test hooks armed (see `throng-hooks`).
pub async fn run_with(
    config: NodeConfig,
    hooks: Hooks,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(Bound),
) -> Result<(), NodeError> {
    // Resolved before anything is bound or started.
    let pipe_announced = pipe_address(&config).await?;
    let (died_tx, mut died_rx) = mpsc::unbounded_channel();
    let pool = WorkerPool::start(&config, died_tx).await?;
    let workers: Arc<[workers::NodeWorker]> = pool.workers().to_vec().into();

    let (grpc_listener, grpc_addr) = bind(config.grpc_listen, config::vars::GRPC_LISTEN).await?;
    let (http_listener, http_addr) = bind(config.http_listen, config::vars::HTTP_LISTEN).await?;
    let grpc_advertise = if config.grpc_listen.port() == 0
        && config.grpc_advertise == config.grpc_listen.to_string()
    {
        grpc_addr.to_string()
    } else {
        config.grpc_advertise.clone()
    };
    let node = Arc::new(NodeState::new(NodeIdentity {
        node_id: config.node_id.clone(),
        grpc_address: grpc_advertise,
        announced_address: config
            .announced_address
            .clone()
            .unwrap_or_else(|| config.rtc_listen_ip.to_string()),
    }));
    let rooms = Rooms::new(
        workers.clone(),
        node.clone(),
        config.rtc_listen_ip,
        pipe_announced,
        config.key_frame_request_delay_ms,
        hooks,
    );

    let tracker = LoadTracker::new(workers.len());
    let reporter = match &config.redis_url {
        Some(url) => {
            let reporter =
                RedisReporter::connect(url, config.redis_ca.as_deref(), config.report_ttl).await?;
            tracker.sample(&workers);
            if reporter.write(&tracker.report(&rooms)).await? == Written::Evicted {
                // An earlier process under this id was evicted; this one
                // holds nothing yet: the mark goes.
                reporter.clear_eviction(&config.node_id).await?;
                reporter.write(&tracker.report(&rooms)).await?;
            }
            Some(reporter)
        }
        None => None,
    };
    let report_task = tokio::spawn(load::report_loop(
        tracker.clone(),
        rooms.clone(),
        reporter.clone(),
        config.report_interval,
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let metrics = Arc::new(metrics::Metrics::new());
    let sweep_task = tokio::spawn(metrics::sweep_loop(
        metrics.clone(),
        rooms.clone(),
        config.stats_interval,
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MediaNodeServer<MediaService>>()
        .await;
    let service = MediaService::new(rooms.clone(), tracker.clone(), stop_rx.clone());
    let mut grpc_server = tonic::transport::Server::builder();
    if let Some(tls) = &config.grpc_tls {
        let mut server_tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.identity.cert, &tls.identity.key),
        );
        if let Some(ca) = &tls.client_ca {
            server_tls = server_tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        // Checked by the configuration already; a failure here is the same
        // refusal, before anything is served.
        grpc_server = grpc_server
            .tls_config(server_tls)
            .map_err(|e| NodeError::GrpcTls(e.to_string()))?;
    }
    let grpc = tokio::spawn(
        grpc_server
            .layer(throng_telemetry::grpc::ServerLayer::new(
                metrics.rpc.clone(),
            ))
            .add_service(health_service)
            .add_service(MediaNodeServer::with_interceptor(
                service,
                rpc::authenticate(config.node_token.clone()),
            ))
            .serve_with_incoming_shutdown(
                // Small request/response frames: without TCP_NODELAY every call
                // waits out Nagle against the peer's delayed ACK (~40 ms).
                TcpIncoming::from(grpc_listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(30))),
                stopped(stop_rx.clone()),
            ),
    );

    let http_state = http::HttpState {
        workers: workers.clone(),
        rooms: rooms.clone(),
        metrics: metrics.clone(),
        load: tracker.clone(),
    };
    let http = tokio::spawn(
        axum::serve(http_listener, http::app(http_state))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    info!(node_id = %config.node_id, grpc = %grpc_addr, http = %http_addr, workers = workers.len(), "media node ready");
    ready(Bound {
        grpc: grpc_addr,
        http: http_addr,
    });

    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        () = &mut shutdown => {
            node.set_draining();
            health_reporter
                .set_not_serving::<MediaNodeServer<MediaService>>()
                .await;
            if let Some(r) = &reporter {
                // Bounded: a stop must not wait for a Redis that is away.
                let written =
                    tokio::time::timeout(REDIS_STOP_LIMIT, r.write(&tracker.report(&rooms))).await;
                if let Some(e) = stop_write_error(written) {
                    warn!(error = %e, "draining report not written");
                }
            }
            info!(rooms = rooms.router_count(), grace = ?config.drain_grace, "draining");
            tokio::select! {
                () = drained(&rooms, config.drain_grace) => Ok(()),
                Some(death) = died_rx.recv() => Err(death),
            }
        }
        Some(death) = died_rx.recv() => Err(death),
    };

    report_task.abort();
    sweep_task.abort();
    let result = match outcome {
        Ok(()) => {
            if let Some(r) = &reporter {
                let removed =
                    tokio::time::timeout(REDIS_STOP_LIMIT, r.remove(&config.node_id)).await;
                if let Some(e) = stop_write_error(removed) {
                    warn!(error = %e, "report not removed; it expires with its TTL");
                }
            }
            Ok(())
        }
        Err(death) => {
            node.set_dead();
            health_reporter
                .set_not_serving::<MediaNodeServer<MediaService>>()
                .await;
            rooms.emit_worker_died(death.index, death.reason.clone());
            if let Some(r) = &reporter {
                if let Err(e) = r.write(&tracker.report(&rooms)).await {
                    warn!(error = %e, "dead report not written");
                }
            }
            // Let event streams carry the death to coordinators.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(NodeError::WorkerDied(death))
        }
    };
    let _ = stop_tx.send(true);
    stop_server("gRPC", grpc).await;
    stop_server("HTTP", http).await;
    // Every media object closes here, in this task (not in a callback), before
    // the workers go.
    rooms.close_all();
    drop(rooms);
    drop(pool);
    result
}

/// Longest the servers may take to finish their requests once stopping: a
/// request stuck on a worker that no longer answers must not keep the node.
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(5);

/// Waits (bounded) for a server task to finish its graceful shutdown.
async fn stop_server<E: std::fmt::Display>(
    name: &str,
    mut task: tokio::task::JoinHandle<Result<(), E>>,
) {
    match tokio::time::timeout(SERVER_STOP_LIMIT, &mut task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(server = name, error = %e, "server stopped with an error"),
        Ok(Err(e)) => warn!(server = name, error = %e, "server task failed"),
        Err(_) => {
            warn!(
                server = name,
                "requests still running; server stopped anyway"
            );
            task.abort();
        }
    }
}

/// Resolves when no router is left or the grace period ended.
async fn drained(rooms: &Rooms, grace: Duration) {
    let deadline = Instant::now() + grace;
    while rooms.router_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = rooms.router_count();
    if left > 0 {
        warn!(
            routers = left,
            "drain grace period over; closing the remaining rooms"
        );
    } else {
        info!("all rooms closed");
    }
}
