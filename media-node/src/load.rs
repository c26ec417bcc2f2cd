//! The node's load: per-worker object counts and CPU, sampled every interval,
//! written to Redis with a TTL (when a Redis URL is configured) and served by
//! GetNodeInfo. A node that stops reporting vanishes from Redis by itself.
//! Reads the node's identity and state from [`crate::node`] and the counts
//! from [`crate::media`]; nothing here calls the gRPC side.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use throng_ops::RedisConn;
use throng_proto::report::{node_evicted_key, node_key, NodeReport, WorkerReport, NODES_INDEX_KEY};
use tracing::warn;

use crate::media::Rooms;
use crate::workers::NodeWorker;

#[derive(Default)]
struct Sample {
    at: Option<Instant>,
    cpu_time: Duration,
    load: f64,
}

/// CPU load per worker, from the change in thread CPU time between samples.
#[derive(Clone)]
pub struct LoadTracker {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl LoadTracker {
    /// A tracker for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            samples: Arc::new(Mutex::new(
                (0..workers).map(|_| Sample::default()).collect(),
            )),
        }
    }

    /// Takes a CPU sample of every worker.
    pub fn sample(&self, workers: &[NodeWorker]) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        for (w, s) in workers.iter().zip(samples.iter_mut()) {
            let Ok(cpu) = w.cpu_time() else { continue };
            if let Some(at) = s.at {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    s.load = (cpu.saturating_sub(s.cpu_time).as_secs_f64() / wall).clamp(0.0, 1.0);
                }
            }
            s.at = Some(now);
            s.cpu_time = cpu;
        }
    }

    /// The report as it stands.
    pub fn report(&self, rooms: &Rooms) -> NodeReport {
        let node = rooms.node();
        let identity = &node.identity;
        let counts = rooms.counts();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let workers = rooms
            .workers()
            .iter()
            .zip(counts)
            .zip(samples.iter())
            .map(|((w, c), s)| WorkerReport {
                index: w.index as u32,
                port: w.port,
                routers: c.routers,
                transports: c.transports,
                producers: c.producers,
                consumers: c.consumers,
                cpu_time_ms: s.cpu_time.as_millis() as u64,
                cpu_load: s.load,
            })
            .collect();
        NodeReport {
            node_id: identity.node_id.clone(),
            grpc_address: identity.grpc_address.clone(),
            announced_address: identity.announced_address.clone(),
            draining: node.is_draining(),
            dead: node.is_dead(),
            workers,
            reported_at_ms: throng_proto::now_ms(),
        }
    }
}

/// Writes the report unless the node's eviction mark is there: a
/// coordinator evicted the node (took it for lost, released what was placed
/// on it and deleted its report) while it was cut off. Atomic with the
/// eviction (`coordinator::registry::redis`'s EVICT_NODE), so that nothing is
/// placed on the node between the two.
const REPORT: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"#;

/// What [`RedisReporter::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The report is in Redis.
    Reported,
    /// The cluster evicted this node: nothing written.
    Evicted,
}

/// Writes the node's report to Redis.
#[derive(Clone)]
pub struct RedisReporter {
    conn: RedisConn,
    ttl: Duration,
    script: Arc<redis::Script>,
}

/// Redis could not be reached or refused a write.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct ReportError(#[from] redis::RedisError);

impl RedisReporter {
    /// Connects (with automatic reconnection) to `url`.
    pub async fn connect(url: &str, ca: Option<&[u8]>, ttl: Duration) -> Result<Self, ReportError> {
        // Fail fast and reconnect at the next report while Redis is away,
        // rather than through the client's default backoff of seconds: the
        // first report after Redis returns is what lets joins in again.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        // A Sentinel URL follows the primary through failovers.
        let conn = RedisConn::connect(url, ca, config).await?;
        Ok(Self {
            conn,
            ttl,
            script: Arc::new(redis::Script::new(REPORT)),
        })
    }

    /// Writes one report (the key with its TTL and the index entry), unless
    /// the cluster evicted this node: then nothing is written and
    /// [`Written::Evicted`] says so (see [`REPORT`]).
    pub async fn write(&self, report: &NodeReport) -> Result<Written, ReportError> {
        let json = serde_json::to_string(report).expect("report serializes");
        let mut conn = self.conn.clone();
        let written: i64 = self
            .script
            .key(node_key(&report.node_id))
            .key(NODES_INDEX_KEY)
            .key(node_evicted_key(&report.node_id))
            .arg(json)
            .arg(self.ttl.as_millis() as u64)
            .arg(report.reported_at_ms)
            .arg(&report.node_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(if written == 1 {
            Written::Reported
        } else {
            Written::Evicted
        })
    }

    /// Clears the eviction mark (the node closed everything it held).
    pub async fn clear_eviction(&self, node_id: &str) -> Result<(), ReportError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(node_evicted_key(node_id))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes the node's report at once (clean exit).
    pub async fn remove(&self, node_id: &str) -> Result<(), ReportError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(node_key(node_id))
            .ignore()
            .cmd("ZREM")
            .arg(NODES_INDEX_KEY)
            .arg(node_id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

/// Samples and reports every `interval` until the task is dropped.
pub async fn report_loop(
    tracker: LoadTracker,
    rooms: Arc<Rooms>,
    reporter: Option<RedisReporter>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        tracker.sample(rooms.workers());
        if let Some(reporter) = &reporter {
            match reporter.write(&tracker.report(&rooms)).await {
                Ok(Written::Reported) => rooms.node().set_reported(true),
                Ok(Written::Evicted) => {
                    rooms.node().set_reported(false);
                    // Everything here was placed before the eviction, and
                    // nothing can have been placed since (no report): it is
                    // nobody's. Closed, then the mark goes, then the next
                    // tick reports the node empty.
                    warn!(
                        routers = rooms.router_count(),
                        "the cluster evicted this node while it was cut off: closing everything it held"
                    );
                    rooms.evicted();
                    tracker.sample(rooms.workers());
                    if let Err(e) = reporter
                        .clear_eviction(&rooms.node().identity.node_id)
                        .await
                    {
                        warn!(error = %e, "eviction mark not cleared");
                    }
                }
                Err(e) => {
                    rooms.node().set_reported(false);
                    warn!(error = %e, "load report not written");
                }
            }
        }
    }
}
