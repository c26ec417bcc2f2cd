//! `media-node drain`: what an orchestrator's stop hook runs (the chart's
//! `preStop`, `docker compose` needs none: SIGTERM alone drains). It starts the
//! node's drain (SIGTERM to the serving process, pid 1 in a container) and
//! waits until the node's rooms are gone or `limit` passed, so that the
//! orchestrator's own SIGTERM afterwards finds nothing left to move.
//!
//! Owns nothing; reads the node's `/status` over plain HTTP
//! (`throng_ops::http_get`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// The node reported no rooms left.
    Empty,
    /// The node stopped answering: it exited.
    Stopped,
    /// `limit` passed with rooms still open.
    TimedOut {
        /// Rooms (routers) still open.
        rooms: usize,
    },
}

/// Sends SIGTERM to `pid` (the node; pid 1 in its container).
pub fn signal_drain(pid: i32) -> std::io::Result<()> {
    throng_ops::terminate(pid)
}

/// Rooms the node at `http` still has, from `/status`; `None` when it does
/// not answer (stopped).
pub async fn open_rooms(http: SocketAddr) -> Option<usize> {
    let (code, body) = throng_ops::http_get(http, "/status", Duration::from_secs(2))
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    status["rooms"].as_u64().map(|n| n as usize)
}

/// Waits until the node at `http` has no rooms, has stopped, or `limit` passed.
pub async fn wait_drained(http: SocketAddr, limit: Duration) -> Drained {
    let deadline = Instant::now() + limit;
    loop {
        match open_rooms(http).await {
            None => return Drained::Stopped,
            Some(0) => return Drained::Empty,
            Some(rooms) if Instant::now() >= deadline => return Drained::TimedOut { rooms },
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
