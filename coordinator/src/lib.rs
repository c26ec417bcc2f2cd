//! Throng coordinator: the one URL browsers open.
//!
//! One join, hop by hop (each module's header says what it owns and may call):
//! 1. [`http`] upgrades `/ws` and hands the socket to [`signaling::session`],
//!    the only code touching it;
//! 2. the session hands each message to [`signaling::handler`] (or, for a
//!    room another coordinator hosts, as [`signaling::owners`] says, to
//!    [`signaling::proxy`]); wire types are [`protocol`];
//! 3. the handler checks the token ([`auth`]) and waits in [`join::queue`]
//!    (bounded by [`join::limiter`]);
//! 4. [`room::ops`] takes the room's lock and asks [`placement`] for a seat:
//!    capacity reserved in the [`registry`] (Redis, or memory on a single
//!    machine), the room's router found or created on the node;
//! 5. node calls go through [`media::client`], pipes between routers through
//!    [`media::pipes`]; the node's worker/router does the rest.
//!
//! Transports come with TURN relays and fresh credentials for them when
//! configured ([`turn`]).
//!
//! Around it: [`cluster`] watches the live nodes, follows their events
//! ([`media::events`]) and reaps dead coordinators; [`room::events`] applies
//! what the nodes report to the rooms; [`admin`] is the admin API. This file
//! only composes them: stores, the background tasks (one `JoinSet`, stopped on
//! shutdown), the HTTP server, then the drain.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod http;
pub mod join;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod placement;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod signaling;
pub mod turn;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use throng_hooks::Hooks;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::cluster::{Cluster, Polled};
use crate::config::CoordinatorConfig;
use crate::join::limiter::{Limiter, LocalLimiter, RedisLimiter};
use crate::join::queue::JoinQueue;
use crate::media::client::NodeClients;
use crate::placement::Placement;
use crate::registry::memory::MemoryRegistry;
use crate::registry::redis::RedisRegistry;
use crate::registry::Registry;
use crate::room::Rooms;
use crate::signaling::owners::RoomOwners;

/// Why the coordinator could not run.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Redis unreachable at start.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The listener could not bind (a configuration error: exit 2).
    #[error("THRONG_LISTEN={0}: cannot listen: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The internal metrics listener could not bind (exit 2).
    #[error("THRONG_METRICS_LISTEN={0}: cannot listen: {1}")]
    MetricsBind(SocketAddr, std::io::Error),
    /// The HTTP server failed while serving.
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    /// The web client's files could not be read.
    #[error(transparent)]
    Web(#[from] web::WebError),
}

/// Where shared state lives: Redis for a cluster, memory on a single machine.
struct Stores {
    registry: Arc<dyn Registry>,
    /// Set without Redis: nodes are polled into it.
    polled: Option<Polled>,
    limiter: Arc<dyn Limiter>,
}

async fn stores(config: &CoordinatorConfig) -> Result<Stores, CoordinatorError> {
    Ok(match &config.redis_url {
        Some(url) => Stores {
            registry: Arc::new(RedisRegistry::connect_with(url, config.redis_ca.as_deref()).await?),
            polled: None,
            limiter: Arc::new(
                RedisLimiter::connect(url, config.redis_ca.as_deref())
                    .await
                    .map_err(registry::RegistryError::from)?,
            ),
        },
        None => {
            let memory = Arc::new(MemoryRegistry::new());
            Stores {
                registry: memory.clone(),
                polled: Some(Polled {
                    memory,
                    addresses: config.media_nodes.clone(),
                }),
                limiter: Arc::new(LocalLimiter::new()),
            }
        }
    })
}

/// Longest a stopping coordinator waits for Redis to take its room claims back.
const RELEASE_LIMIT: Duration = Duration::from_secs(5);

/// Runs the coordinator until `shutdown` resolves; `ready` gets the bound address.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), CoordinatorError> {
    run_with(config, Hooks::none(), shutdown, ready).await
}

/// [`run`] with test hooks armed (see `throng-hooks`).
pub async fn run_with(
    config: CoordinatorConfig,
    hooks: Hooks,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), CoordinatorError> {
    let web = match &config.web_root {
        Some(dir) => web::WebAssets::load(dir)?,
        None => {
            warn!(
                "web client not built (no {}/index.html): / shows the cluster status; \
                 build it with `npm ci && npm run build` in client-web/",
                config::DEFAULT_WEB_ROOT
            );
            web::WebAssets::default()
        }
    };
    let Stores {
        registry,
        polled,
        limiter,
    } = stores(&config).await?;
    let metrics = Arc::new(metrics::Metrics::new(config.placement.worker_capacity));
    let registry: Arc<dyn Registry> =
        Arc::new(registry::counted::Counted::new(registry, metrics.clone()));
    let queue = Arc::new(
        JoinQueue::new(
            limiter,
            config.join_concurrency as usize,
            config.queue_timeout,
        )
        .with_max_len(config.limits.queue_max as usize),
    );
    let clients = Arc::new(NodeClients::new(
        metrics.clone(),
        config.node_token.as_ref(),
        config.node_tls.as_ref(),
    ));
    let (to_rooms, cluster_events) = mpsc::unbounded_channel();
    let (cluster, node_events) = Cluster::new(
        config.coordinator_id.clone(),
        registry,
        clients.clone(),
        queue.clone(),
        to_rooms,
    );
    let placement = Placement::new(
        cluster.clone(),
        clients.clone(),
        queue.clone(),
        config.placement.clone(),
    );
    let rooms = Rooms::new(
        placement,
        clients.clone(),
        hooks,
        config.presence_window,
        config.pipe_fanout,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
    let metrics_listener = match config.metrics_listen {
        None => None,
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| CoordinatorError::MetricsBind(at, e))?,
        ),
    };
    let me = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    let owners = match &config.redis_url {
        Some(url) => RoomOwners::redis(url, config.redis_ca.as_deref(), &me)
            .await
            .map_err(registry::RegistryError::from)?,
        None => RoomOwners::local(),
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(cluster.clone().watch(polled));
    tasks.spawn(cluster.clone().dispatch(node_events));
    tasks.spawn(
        cluster
            .clone()
            .heartbeat(config.coordinator_ttl, config.resume_grace),
    );
    tasks.spawn(room::events::apply_all(rooms.clone(), cluster_events));
    tasks.spawn(owners.clone().refresh_loop(rooms.clone()));
    tasks.spawn(rooms.clone().reassert_loop(cluster.registry().clone()));

    let state = http::AppState {
        rooms: rooms.clone(),
        cluster: cluster.clone(),
        clients,
        tokens: config.token_key(),
        api_key: config.api_key.as_str().into(),
        admin_key: config.admin_key.as_str().into(),
        queue,
        owners: owners.clone(),
        metrics: metrics.clone(),
        web,
        open_join: config.open_join,
        tiles_per_page: config.placement.tiles_per_page,
        per_ip: Arc::new(limits::IpLimiter::new(
            config.limits.per_ip,
            config.limits.trusted_proxies.clone(),
        )),
        session_limits: Arc::new(signaling::SessionLimits {
            per_session: config.limits.per_session,
            identities: limits::Identities::new(config.limits.sessions_per_identity),
            relay_key: limits::relay_key(config.token_secret.as_bytes()),
            resume_grace: config.resume_grace,
        }),
        turn: config.turn.clone().map(Arc::new),
    };
    if let Some(listener) = metrics_listener {
        let metrics_addr = listener.local_addr().ok();
        info!(addr = ?metrics_addr, "metrics served without a key");
        let app = http::metrics_app(state.clone());
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "metrics server stopped");
            }
        });
    }
    info!(%addr, redis = config.redis_url.is_some(), "coordinator ready");
    ready(addr);
    let served = axum::serve(
        listener,
        http::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(CoordinatorError::Serve);
    // WebSocket sessions outlive the HTTP server's shutdown: hand the rooms
    // over (claims released first, so that returning clients are not proxied
    // back here), then drain the sessions.
    // Both are bounded: a stop must end even when Redis or a media node is
    // already gone (their calls would otherwise wait for reconnections).
    if tokio::time::timeout(RELEASE_LIMIT, owners.release(&rooms.local_rooms()))
        .await
        .is_err()
    {
        warn!("room claims not released in time; they expire by themselves");
    }
    let grace = config.drain_grace;
    if tokio::time::timeout(grace + RELEASE_LIMIT, rooms.drain(grace))
        .await
        .is_err()
    {
        warn!("drain did not finish in time; stopping anyway");
    }
    tasks.shutdown().await;
    cluster.stop();
    info!("coordinator stopped");
    served
}
