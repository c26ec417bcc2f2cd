//! The coordinator's HTTP side: the `/ws` signalling endpoint (handed to
//! `signaling::session`), the web client's files, token minting (API key) and
//! the routes of the admin API (`crate::admin`, admin key). Errors carry a
//! JSON body with a message and never internals.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use throng_proto::names;

use crate::admin::AdminState;
use crate::api::{require_key, ApiError};
use crate::auth::TokenKey;
use crate::cluster::Cluster;
use crate::media::client::NodeClients;
use crate::protocol::PROTOCOL_VERSION;
use crate::room::Rooms;
use crate::signaling::SessionDeps;
use crate::signaling::{session, ws};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The rooms hosted here.
    pub rooms: Arc<Rooms>,
    /// The cluster (registry, live nodes).
    pub cluster: Arc<Cluster>,
    /// Media node clients.
    pub clients: Arc<NodeClients>,
    /// Join token key.
    pub tokens: TokenKey,
    /// Key for `/api/token`.
    pub api_key: Arc<str>,
    /// Key for `/admin/*`.
    pub admin_key: Arc<str>,
    /// Admission of joins.
    pub queue: Arc<crate::join::queue::JoinQueue>,
    /// Which coordinator hosts each room.
    pub owners: crate::signaling::owners::RoomOwners,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The web client's files.
    pub web: crate::web::WebAssets,
    /// `/api/join-token` is open to anyone.
    pub open_join: bool,
    /// Tiles per page the web client shows.
    pub tiles_per_page: u32,
    /// Requests per client IP (`/ws`, `/api/*`).
    pub per_ip: Arc<crate::limits::IpLimiter>,
    /// What sessions are held to.
    pub session_limits: Arc<crate::signaling::SessionLimits>,
    /// TURN relays handed to participants with their transports.
    pub turn: Option<Arc<crate::turn::Turn>>,
}

impl axum::extract::FromRef<AppState> for AdminState {
    fn from_ref(s: &AppState) -> Self {
        AdminState {
            queue: s.queue.clone(),
            metrics: s.metrics.clone(),
            rooms: s.rooms.clone(),
            cluster: s.cluster.clone(),
            clients: s.clients.clone(),
            owners: s.owners.clone(),
            admin_key: s.admin_key.clone(),
        }
    }
}

/// Longest `/readyz` waits for the registry.
const READY_LIMIT: std::time::Duration = std::time::Duration::from_millis(800);

/// `/readyz`: 200 when this coordinator can place a participant: the
/// registry (Redis) answers and at least one media node is live and not
/// draining. 503 with the reason otherwise, so that a load balancer sends new
/// browsers to a coordinator that can seat them. `/healthz` only says the
/// process serves HTTP.
async fn readyz(State(state): State<AppState>) -> Response {
    // Bounded: a probe that hangs on an unreachable Redis tells nobody why.
    let nodes = match tokio::time::timeout(READY_LIMIT, state.cluster.live_nodes()).await {
        Ok(Ok(nodes)) => nodes,
        Ok(Err(e)) => return not_ready(format!("registry unreachable: {e}")),
        Err(_) => {
            return not_ready(format!(
                "registry unreachable: no answer within {} ms",
                READY_LIMIT.as_millis()
            ))
        }
    };
    let usable = nodes.iter().filter(|n| n.is_open()).count();
    if usable == 0 {
        not_ready(format!(
            "no media node can take participants ({} known, all draining or dead)",
            nodes.len()
        ))
    } else {
        (StatusCode::OK, format!("ready: {usable} media nodes\n")).into_response()
    }
}

fn not_ready(why: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// The per-IP budget of `/ws` upgrades and `/api/*`: a request over it gets
/// 429 with `Retry-After`, before any handler runs. A coordinator relaying a
/// session to the room's owner is not counted again (it proves itself with the
/// relay key; the session was counted where it arrived).
async fn per_ip(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let relayed = request
        .headers()
        .get(crate::limits::RELAY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| crate::api::same_key(k, &state.session_limits.relay_key));
    if !relayed {
        let ip = state.per_ip.client_ip(peer, request.headers());
        if let Err(after) = state.per_ip.check(ip) {
            state.metrics.refused("ip_rate");
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, secs.to_string())],
                Json(json!({
                    "error": "too many requests from this address; retry later",
                    "retryAfterMs": after.as_millis().max(1) as u64,
                })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The coordinator's routes.
pub fn app(state: AppState) -> Router {
    let limited = Router::new()
        .route("/ws", get(ws))
        .route("/api/config", get(client_config))
        .route("/api/join-token", post(open_join_token))
        .route("/api/token", post(mint_token))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), per_ip));
    Router::new()
        .merge(limited)
        .route("/", get(index))
        .route("/status", get(home))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin", get(crate::admin::page))
        .route("/admin/live", get(crate::admin::live))
        .route("/admin/nodes", get(crate::admin::nodes))
        .route("/admin/rooms", get(crate::admin::rooms))
        .route("/admin/rooms/{room}", get(crate::admin::room))
        .route("/admin/rooms/{room}/relays", get(crate::admin::relays))
        .fallback(get(asset))
        .with_state(state)
}

/// `/metrics` (admin key, as `x-admin-key` or a bearer token).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::api::require_admin(&headers, &state.admin_key) {
        return e.into_response();
    }
    render_metrics(&state).await
}

/// The metrics in the Prometheus text format.
pub async fn render_metrics(state: &AppState) -> Response {
    // Registry failures are counted by the registry's own wrapper.
    let cluster = crate::registry::nodes_with_reserved(state.cluster.registry().as_ref())
        .await
        .ok();
    let body = state.metrics.render(
        cluster.as_deref(),
        state.queue.len(),
        state.rooms.local_rooms().len(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            throng_telemetry::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// The internal metrics address's routes: `/metrics` without a key.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { render_metrics(&state).await }),
        )
        .with_state(state)
}

async fn ws(State(state): State<AppState>, mut req: axum::extract::Request) -> Response {
    let accepted = match ws::handshake(req.method(), req.version(), req.headers()) {
        Ok(response) => response,
        Err(refused) => return refused,
    };
    let Some(upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        // Not a connection hyper can hand over (HTTP/2 has no upgrade).
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    let deps = SessionDeps {
        rooms: state.rooms.clone(),
        tokens: state.tokens.clone(),
        queue: state.queue.clone(),
        owners: state.owners.clone(),
        metrics: state.metrics.clone(),
        limits: state.session_limits.clone(),
        turn: state.turn.clone(),
    };
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => session::serve(hyper_util::rt::TokioIo::new(io), deps).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    accepted
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    room: String,
    identity: String,
    #[serde(default = "default_publish")]
    publish: bool,
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
    /// An event role (`host`, `speaker`, `audience`); absent: a meeting
    /// participant.
    #[serde(default)]
    role: Option<crate::protocol::Role>,
}

fn default_publish() -> bool {
    true
}

fn default_ttl() -> u64 {
    6 * 3600
}

async fn mint_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<TokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_key(&headers, "x-api-key", &state.api_key)?;
    let ok = |s: &str| names::valid(s, names::MAX_ID);
    if !ok(&req.room) || !ok(&req.identity) || req.ttl_secs == 0 || req.ttl_secs > 7 * 24 * 3600 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "room and identity: 1 to 128 printable characters; ttlSecs: 1 to 604800".into(),
        ));
    }
    let token = match req.role {
        Some(role) => state
            .tokens
            .mint_role(&req.room, &req.identity, role, req.ttl_secs),
        None => state
            .tokens
            .mint(&req.room, &req.identity, req.publish, req.ttl_secs),
    };
    Ok(Json(json!({ "token": token })))
}

/// What the web client needs to know before joining.
async fn client_config(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "protocol": PROTOCOL_VERSION,
        "tilesPerPage": state.tiles_per_page,
        "openJoin": state.open_join,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenJoinRequest {
    room: String,
}

/// A token for anyone, when the operator opened the rooms (`THRONG_OPEN_JOIN`).
async fn open_join_token(
    State(state): State<AppState>,
    Json(req): Json<OpenJoinRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.open_join {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "rooms are not open: ask the organiser for a join link".into(),
        ));
    }
    if !names::valid(&req.room, names::MAX_ID) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "room: 1 to 128 printable characters".into(),
        ));
    }
    let identity = format!("guest-{}", uuid::Uuid::new_v4().simple());
    let token = state.tokens.mint(&req.room, &identity, true, default_ttl());
    Ok(Json(json!({ "token": token, "identity": identity })))
}

async fn index(State(state): State<AppState>) -> Response {
    match state.web.get("/") {
        Some(page) => page,
        None => home(State(state)).await,
    }
}

async fn asset(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    state
        .web
        .get(uri.path())
        .unwrap_or_else(|| ApiError(StatusCode::NOT_FOUND, "not found".into()).into_response())
}

/// The root page: what this coordinator sees of the cluster. (The web client
/// is served here once `client-web` is built.)
async fn home(State(state): State<AppState>) -> Response {
    let nodes = state.cluster.registry().nodes().await.unwrap_or_default();
    let workers: usize = nodes.iter().map(|n| n.workers.len()).sum();
    let rows: String = nodes
        .iter()
        .map(|n| {
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.node_id),
                n.workers.len(),
                n.workers.iter().map(|w| w.consumers).sum::<u32>(),
                if n.draining { "draining" } else { "serving" }
            )
        })
        .collect();
    axum::response::Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Throng</title></head><body>\
         <h1>Throng coordinator</h1><p>{} media node(s), {} worker(s). Browsers connect to <code>/ws</code> \
         (protocol: docs/signalling.md).</p><table><thead><tr><th>node</th><th>workers</th><th>consumers</th>\
         <th>state</th></tr></thead><tbody>{}</tbody></table></body></html>",
        nodes.len(),
        workers,
        rows
    ))
    .into_response()
}
