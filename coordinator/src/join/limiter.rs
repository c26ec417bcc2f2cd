//! Join path: join queue -> **limiter**. Cluster-wide bounds on joins being
//! placed at once: one for the whole cluster (scope "") and one per media node
//! (scope = node id). A Redis lease set shared by every coordinator (leases
//! expire, so a coordinator that dies holding some cannot block the cluster),
//! or a local counter on a single machine.

use std::sync::Mutex;
use std::time::Duration;

use redis::Script;
use throng_ops::RedisConn;
use tracing::warn;

/// A lease not released by then (its coordinator died) expires.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// The bounds' store.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Takes one slot of `scope` if fewer than `limit` are taken; returns its lease id.
    async fn try_acquire(&self, scope: &str, limit: usize) -> Option<String>;
    /// Gives a slot of `scope` back.
    async fn release(&self, scope: &str, lease: String);
}

/// The single-machine limiter.
#[derive(Default)]
pub struct LocalLimiter {
    taken: Mutex<std::collections::HashMap<String, usize>>,
}

impl LocalLimiter {
    /// No slot taken yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Limiter for LocalLimiter {
    async fn try_acquire(&self, scope: &str, limit: usize) -> Option<String> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let n = taken.entry(scope.to_string()).or_default();
        (*n < limit).then(|| {
            *n += 1;
            String::new()
        })
    }

    async fn release(&self, scope: &str, _lease: String) {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = taken.get_mut(scope) {
            *n = n.saturating_sub(1);
        }
    }
}

const ACQUIRE: &str = r#"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  return 1
end
return 0
"#;

/// Leases in a Redis sorted set scored by expiry: shared by every
/// coordinator, and self-healing if one dies holding leases.
pub struct RedisLimiter {
    conn: RedisConn,
    script: Script,
}

/// Key of the cluster-wide lease set; per-node sets append `:{node}`.
pub const LEASES_KEY: &str = "throng:admission:leases";

fn leases_key(scope: &str) -> String {
    if scope.is_empty() {
        LEASES_KEY.to_string()
    } else {
        format!("{LEASES_KEY}:{scope}")
    }
}

impl RedisLimiter {
    /// Leases shared by every coordinator using `url` (`ca` checks a
    /// `rediss://` server).
    pub async fn connect(url: &str, ca: Option<&[u8]>) -> Result<Self, redis::RedisError> {
        let conn = crate::registry::redis::connection(url, ca).await?;
        Ok(Self {
            conn,
            script: Script::new(ACQUIRE),
        })
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn try_acquire(&self, scope: &str, limit: usize) -> Option<String> {
        let lease = format!("{:x}-{:x}", throng_proto::now_ms(), rand_u64());
        let granted: Result<i64, _> = self
            .script
            .key(leases_key(scope))
            .arg(throng_proto::now_ms())
            .arg(limit)
            .arg(LEASE_TTL.as_millis() as u64)
            .arg(&lease)
            .invoke_async(&mut self.conn.clone())
            .await;
        match granted {
            Ok(1) => Some(lease),
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "admission lease not taken");
                None
            }
        }
    }

    async fn release(&self, scope: &str, lease: String) {
        let r: Result<i64, _> = redis::cmd("ZREM")
            .arg(leases_key(scope))
            .arg(&lease)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = r {
            warn!(error = %e, "admission lease not released; it expires");
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(throng_proto::now_ms());
    h.finish()
}
