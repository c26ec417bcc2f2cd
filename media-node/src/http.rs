//! The node's HTTP side: liveness and readiness for the orchestrator, a
//! status document for operators, `/metrics` for Prometheus. Not on the
//! media path. This listener is internal (`THRONG_HTTP_LISTEN`, like the
//! gRPC port): nothing here takes a key, so it must not be published.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::workers::NodeWorker;

/// Shared state behind the HTTP endpoints.
#[derive(Clone)]
pub struct HttpState {
    /// The node's workers.
    pub workers: Arc<[NodeWorker]>,
    /// The node's rooms (and through them its state).
    pub rooms: Arc<crate::media::Rooms>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The load samples (CPU per worker).
    pub load: crate::load::LoadTracker,
}

#[derive(Serialize)]
struct WorkerStatus {
    index: usize,
    worker_id: String,
    port: u16,
    /// CPU time (user + system) the worker thread used, in milliseconds.
    cpu_ms: Option<u64>,
}

#[derive(Serialize)]
struct NodeStatus {
    node_id: String,
    healthy: bool,
    draining: bool,
    /// Routers (room parts) still open: a drain is over at 0.
    rooms: usize,
    workers: Vec<WorkerStatus>,
}

/// `/healthz`, `/readyz` and `/status`.
pub fn app(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/", get(status))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.rooms.node().is_dead() {
        (StatusCode::SERVICE_UNAVAILABLE, "worker died\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// `/readyz`: 200 while the node takes new rooms; 503 with the reason while
/// it drains (SIGTERM, a preStop hook), after a worker died, or while its load
/// reports do not reach Redis (coordinators cannot see it then).
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.rooms.node().not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            throng_telemetry::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(&state.rooms, &state.load),
    )
}

async fn status(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let mut workers = Vec::with_capacity(state.workers.len());
    for w in state.workers.iter() {
        let cpu_ms = w.cpu_time().ok().map(|d| d.as_millis() as u64);
        workers.push(WorkerStatus {
            index: w.index,
            worker_id: w.worker.id().to_string(),
            port: w.port,
            cpu_ms,
        });
    }
    let node = state.rooms.node();
    let status = NodeStatus {
        node_id: node.identity.node_id.clone(),
        healthy: !node.is_dead(),
        draining: node.is_draining(),
        rooms: state.rooms.router_count(),
        workers,
    };
    Json(serde_json::to_value(status).expect("status serializes"))
}
