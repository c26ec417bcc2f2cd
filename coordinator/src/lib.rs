//! Throng coordinator: the one URL browsers open.
//!
//! Join path: browser -> signalling -> join queue -> placement ->
//! [`registry`] (Redis, or memory on a single machine) -> media RPC -> node.
#![forbid(unsafe_code)]

pub mod auth;
pub mod conference;
pub mod config;
pub mod http;
pub mod join;
pub mod media_rpc;
pub mod registry;
pub mod signaling;
pub mod web;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use throng_proto::media as pb;
use throng_proto::report::NodeReport;
use tracing::{info, warn};

use crate::auth::TokenKey;
use crate::conference::Conference;
use crate::config::CoordinatorConfig;
use crate::join::queue::{JoinQueue, Limiter, LocalLimiter, RedisLimiter};
use crate::registry::memory::MemoryRegistry;
use crate::registry::redis::RedisRegistry;
use crate::registry::Registry;
use crate::signaling::owners::RoomOwners;

/// Why the coordinator could not run.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Redis unreachable at start.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The listener could not bind.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The web client's files could not be read.
    #[error(transparent)]
    Web(#[from] web::WebError),
}

/// Where shared state lives: Redis for a cluster, memory on a single machine.
struct Stores {
    registry: Arc<dyn Registry>,
    /// Set without Redis: nodes are polled into it.
    memory: Option<Arc<MemoryRegistry>>,
    limiter: Arc<dyn Limiter>,
}

async fn stores(config: &CoordinatorConfig) -> Result<Stores, CoordinatorError> {
    Ok(match &config.redis_url {
        Some(url) => Stores {
            registry: Arc::new(RedisRegistry::connect(url).await?),
            memory: None,
            limiter: Arc::new(
                RedisLimiter::connect(url)
                    .await
                    .map_err(registry::RegistryError::from)?,
            ),
        },
        None => {
            let memory = Arc::new(MemoryRegistry::new());
            Stores {
                registry: memory.clone(),
                memory: Some(memory),
                limiter: Arc::new(LocalLimiter::new()),
            }
        }
    })
}

/// How long a stopping coordinator waits for its participants to leave.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// How often node reports are read (and, without Redis, polled).
const NODE_POLL: Duration = Duration::from_secs(1);
/// Longest a stopping coordinator waits for Redis to take its room claims back.
const RELEASE_LIMIT: Duration = Duration::from_secs(5);

/// Runs the coordinator until `shutdown` resolves; `ready` gets the bound address.
pub async fn run(
    config: CoordinatorConfig,
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
        memory,
        limiter,
    } = stores(&config).await?;
    let queue = Arc::new(JoinQueue::new(
        limiter,
        config.join_concurrency as usize,
        config.queue_timeout,
    ));
    let conference = Conference::new(
        config.coordinator_id.clone(),
        registry.clone(),
        config.placement.clone(),
        queue.clone(),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| CoordinatorError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Bind(config.listen, e))?;

    if let Some(memory) = memory {
        tokio::spawn(poll_nodes(memory, config.media_nodes.clone()));
    }
    tokio::spawn(watch_nodes(conference.clone(), queue.clone()));
    tokio::spawn(heartbeat(conference.clone(), config.coordinator_ttl));

    let me = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    let owners = match &config.redis_url {
        Some(url) => RoomOwners::redis(url, &me)
            .await
            .map_err(registry::RegistryError::from)?,
        None => RoomOwners::local(),
    };
    tokio::spawn(owners.clone().refresh_loop(conference.clone()));
    let state = http::AppState {
        conference,
        tokens: TokenKey::new(config.token_secret.as_bytes()),
        api_key: config.api_key.as_str().into(),
        admin_key: config.admin_key.as_str().into(),
        queue,
        owners,
        web,
        open_join: config.open_join,
        tiles_per_page: config.placement.tiles_per_page,
    };
    info!(%addr, redis = config.redis_url.is_some(), "coordinator ready");
    ready(addr);
    let conference = state.conference.clone();
    let owners = state.owners.clone();
    let served = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| CoordinatorError::Bind(addr, e));
    // WebSocket sessions outlive the HTTP server's shutdown: hand the rooms
    // over (claims released first, so that returning clients are not proxied
    // back here), then drain the sessions.
    // Both are bounded: a stop must end even when Redis or a media node is
    // already gone (their calls would otherwise wait for reconnections).
    if tokio::time::timeout(RELEASE_LIMIT, owners.release(&conference.local_rooms()))
        .await
        .is_err()
    {
        warn!("room claims not released in time; they expire by themselves");
    }
    if tokio::time::timeout(DRAIN_GRACE + RELEASE_LIMIT, conference.drain(DRAIN_GRACE))
        .await
        .is_err()
    {
        warn!("drain did not finish in time; stopping anyway");
    }
    info!("coordinator stopped");
    served
}

/// Without Redis, nodes cannot report themselves: ask them (GetNodeInfo).
async fn poll_nodes(memory: Arc<MemoryRegistry>, addresses: Vec<String>) {
    let clients = media_rpc::MediaClients::new();
    let mut ticker = tokio::time::interval(NODE_POLL);
    loop {
        ticker.tick().await;
        for address in &addresses {
            let Ok(mut client) = clients.client(address, address) else {
                continue;
            };
            match client.get_node_info(pb::GetNodeInfoRequest {}).await {
                Ok(info) => {
                    let report: NodeReport = info.into_inner().into();
                    memory.report_node(report, NODE_POLL * 3);
                }
                Err(status) => warn!(%address, %status, "media node not answering"),
            }
        }
    }
}

/// Keeps this coordinator registered and reaps coordinators that died (their
/// heartbeat expired) so that their participants' places are not held forever.
async fn heartbeat(conference: Arc<Conference>, ttl: Duration) {
    let mut ticker = tokio::time::interval(ttl / 4);
    loop {
        ticker.tick().await;
        if let Err(e) = conference.registry().heartbeat(conference.id(), ttl).await {
            warn!(error = %e, "heartbeat not written");
            continue;
        }
        let Ok(dead) = conference.registry().dead_coordinators().await else {
            continue;
        };
        for id in dead.iter().filter(|id| id.as_str() != conference.id()) {
            warn!(coordinator = %id, "coordinator stopped beating");
            conference.reap(id).await;
        }
    }
}

/// Notices nodes that vanished (report expired) or reported themselves dead.
async fn watch_nodes(conference: Arc<Conference>, queue: Arc<JoinQueue>) {
    let mut known: HashSet<String> = HashSet::new();
    let mut ticker = tokio::time::interval(NODE_POLL);
    loop {
        ticker.tick().await;
        let Ok(nodes) = conference.registry().nodes().await else {
            continue;
        };
        let live: HashSet<String> = nodes
            .iter()
            .filter(|n| !n.dead)
            .map(|n| n.node_id.clone())
            .collect();
        queue.set_live_nodes(nodes.iter().filter(|n| !n.dead && !n.draining).count());
        for lost in known.difference(&live) {
            warn!(node = %lost, "media node lost");
            conference.node_lost(lost).await;
        }
        known = live;
    }
}
