//! The node's load: per-worker object counts and CPU, sampled every interval,
//! written to Redis with a TTL (when a Redis URL is configured) and served by
//! GetNodeInfo. A node that stops reporting vanishes from Redis by itself.
//! Reads the node's identity and state from [`crate::node`] and the counts
//! from [`crate::media`]; nothing here calls the gRPC side.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use throng_ops::RedisConn;
use throng_proto::report::{node_key, NodeReport, WorkerReport, NODES_INDEX_KEY};
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

/// Writes the node's report to Redis.
#[derive(Clone)]
pub struct RedisReporter {
    conn: RedisConn,
    ttl: Duration,
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
        Ok(Self { conn, ttl })
    }

    /// Writes one report: the key with its TTL and the index entry.
    pub async fn write(&self, report: &NodeReport) -> Result<(), ReportError> {
        let json = serde_json::to_string(report).expect("report serializes");
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(node_key(&report.node_id))
            .arg(json)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(NODES_INDEX_KEY)
            .arg(report.reported_at_ms)
            .arg(&report.node_id)
            .ignore()
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
                Ok(()) => rooms.node().set_reported(true),
                Err(e) => {
                    rooms.node().set_reported(false);
                    warn!(error = %e, "load report not written");
                }
            }
        }
    }
}
