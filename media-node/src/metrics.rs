//! The node's Prometheus metrics, one registry per instance, served at
//! `/metrics` by [`crate::http`]:
//! - per worker, read at scrape time from the load report ([`crate::load`])
//!   and the object tree ([`crate::media`]): routers, transports, producers,
//!   consumers, pipes, CPU;
//! - gRPC calls handled, by method, and failures by code (the server layer
//!   of `throng_telemetry::grpc`);
//! - media quality from the workers' own stats, read by [`sweep_loop`] every
//!   interval from every producer browsers send and every consumer they
//!   receive (not pipes): packets, bytes, losses, NACKs and PLIs as counters
//!   (the growth of each stream's figures between sweeps, so that a stream
//!   that closes takes nothing back), RTT as a histogram.
//!
//! Labels: `worker` (an index), `direction` (`in`: browsers to the node;
//! `out`: the node to browsers), `kind` (`audio`, `video`). Nothing per
//! participant or stream.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mediasoup::consumer::ConsumerRtpStreamStat;
use mediasoup::prelude::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use throng_telemetry::metrics::RpcMetrics;

use crate::load::LoadTracker;
use crate::media::Rooms;

/// A worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Worker {
    /// Its index.
    pub worker: String,
}

/// Which way and what media.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Flow {
    /// `in` or `out`.
    pub direction: &'static str,
    /// `audio` or `video`.
    pub kind: &'static str,
}

type PerWorker = Family<Worker, Gauge>;
type PerFlow = Family<Flow, Counter>;

/// The last figures read of one RTP stream.
#[derive(Default, Clone, Copy)]
struct Seen {
    packets: u64,
    bytes: u64,
    lost: u64,
    nacks: u64,
    plis: u64,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// gRPC calls handled.
    pub rpc: RpcMetrics,
    routers: PerWorker,
    transports: PerWorker,
    producers: PerWorker,
    consumers: PerWorker,
    pipe_transports: PerWorker,
    piped_producers: PerWorker,
    cpu: Family<Worker, Gauge<f64, AtomicU64>>,
    draining: Gauge,
    packets: PerFlow,
    bytes: PerFlow,
    lost: PerFlow,
    nacks: PerFlow,
    plis: PerFlow,
    rtt: Histogram,
    streams: Family<Flow, Gauge>,
    sweeps: Counter,
    seen: Mutex<HashMap<(String, u32), Seen>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new registry.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("throng");
        let rpc = RpcMetrics::register(&mut r, "rpc_server", "gRPC calls handled");
        let m = Self {
            registry: Registry::default(),
            rpc,
            routers: Family::default(),
            transports: Family::default(),
            producers: Family::default(),
            consumers: Family::default(),
            pipe_transports: Family::default(),
            piped_producers: Family::default(),
            cpu: Family::default(),
            draining: Gauge::default(),
            packets: Family::default(),
            bytes: Family::default(),
            lost: Family::default(),
            nacks: Family::default(),
            plis: Family::default(),
            rtt: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]),
            streams: Family::default(),
            sweeps: Counter::default(),
            seen: Mutex::default(),
        };
        let gauges: [(&str, &str, &PerWorker); 6] = [
            ("media_worker_routers", "Routers on each worker", &m.routers),
            (
                "media_worker_transports",
                "Transports on each worker (every kind)",
                &m.transports,
            ),
            (
                "media_worker_producers",
                "Producers on each worker, piped copies included",
                &m.producers,
            ),
            (
                "media_worker_consumers",
                "Consumers on each worker, pipe consumers included",
                &m.consumers,
            ),
            (
                "media_worker_pipe_transports",
                "Cross-node pipe transports on each worker",
                &m.pipe_transports,
            ),
            (
                "media_worker_piped_producers",
                "Producers piped in to each worker (from another worker or node)",
                &m.piped_producers,
            ),
        ];
        for (name, help, family) in gauges {
            r.register(name, help, family.clone());
        }
        r.register(
            "media_worker_cpu_ratio",
            "CPU each worker thread used over the last sample (1 = a core)",
            m.cpu.clone(),
        );
        r.register(
            "media_node_draining",
            "1 while the node drains",
            m.draining.clone(),
        );
        let flows: [(&str, &str, &PerFlow); 5] = [
            (
                "media_packets",
                "RTP packets (in: from browsers; out: to browsers)",
                &m.packets,
            ),
            ("media_bytes", "RTP bytes", &m.bytes),
            (
                "media_packets_lost",
                "Packets lost (in: towards the node; out: as receivers report)",
                &m.lost,
            ),
            (
                "media_nacks",
                "NACKs (in: sent to senders; out: received from receivers)",
                &m.nacks,
            ),
            (
                "media_plis",
                "PLIs (in: sent to senders; out: received from receivers)",
                &m.plis,
            ),
        ];
        for (name, help, family) in flows {
            r.register(name, help, family.clone());
        }
        r.register(
            "media_rtt_seconds",
            "Round-trip time of each stream that reports one, at each stats sweep",
            m.rtt.clone(),
        );
        r.register(
            "media_streams",
            "RTP streams read at the last stats sweep",
            m.streams.clone(),
        );
        r.register("media_stats_sweeps", "Stats sweeps done", m.sweeps.clone());
        // Every flow exists from the start at 0 (rates and alerts work before
        // the first packet).
        for direction in ["in", "out"] {
            for kind in ["audio", "video"] {
                let flow = Flow { direction, kind };
                for family in [&m.packets, &m.bytes, &m.lost, &m.nacks, &m.plis] {
                    let _ = family.get_or_create(&flow);
                }
            }
        }
        Self { registry: r, ..m }
    }

    /// Reads the per-worker gauges and encodes everything.
    pub fn render(&self, rooms: &Rooms, load: &LoadTracker) -> String {
        let report = load.report(rooms);
        let pipes = rooms.pipe_counts();
        for w in &report.workers {
            let labels = Worker {
                worker: w.index.to_string(),
            };
            let set = |f: &PerWorker, v: u32| {
                f.get_or_create(&labels).set(i64::from(v));
            };
            set(&self.routers, w.routers);
            set(&self.transports, w.transports);
            set(&self.producers, w.producers);
            set(&self.consumers, w.consumers);
            if let Some((transports, piped)) = pipes.get(w.index as usize) {
                set(&self.pipe_transports, *transports);
                set(&self.piped_producers, *piped);
            }
            self.cpu.get_or_create(&labels).set(w.cpu_load);
        }
        self.draining.set(i64::from(report.draining));
        throng_telemetry::metrics::encode(&self.registry)
    }

    /// Counts what a stream added since it was last read.
    fn record(&self, flow: &Flow, now: Seen, was: Seen) {
        let grow = |family: &PerFlow, now: u64, was: u64| {
            if now > was {
                family.get_or_create(flow).inc_by(now - was);
            }
        };
        grow(&self.packets, now.packets, was.packets);
        grow(&self.bytes, now.bytes, was.bytes);
        grow(&self.lost, now.lost, was.lost);
        grow(&self.nacks, now.nacks, was.nacks);
        grow(&self.plis, now.plis, was.plis);
    }

    /// Reads the stats of every stream once.
    pub async fn sweep(&self, rooms: &Rooms) {
        let (producers, consumers) = rooms.streams();
        // Objects that closed since the list was taken would only make the
        // worker log a "not found" per request.
        let producers: Vec<_> = producers.into_iter().filter(|p| !p.closed()).collect();
        let consumers: Vec<_> = consumers.into_iter().filter(|c| !c.closed()).collect();
        let kind_of = |k: MediaKind| match k {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        // A worker answers one request at a time; a few in flight keep it busy
        // without queueing thousands behind the media.
        const IN_FLIGHT: usize = 8;
        let produced: Vec<_> = futures::stream::iter(producers)
            .map(|p| async move { (p.id().to_string(), p.get_stats().await) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let consumed: Vec<_> = futures::stream::iter(consumers)
            .map(|c| async move { (c.id().to_string(), c.get_stats().await) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = HashMap::with_capacity(seen.len());
        let mut streams: HashMap<Flow, i64> = HashMap::new();
        let mut rtts = Vec::new();
        for (id, stats) in produced {
            for s in stats.into_iter().flatten() {
                let flow = Flow {
                    direction: "in",
                    kind: kind_of(s.kind),
                };
                *streams.entry(flow.clone()).or_default() += 1;
                let now = Seen {
                    packets: s.packet_count,
                    bytes: s.byte_count,
                    lost: u64::try_from(s.packets_lost).unwrap_or(0),
                    nacks: s.nack_count,
                    plis: s.pli_count,
                };
                let key = (id.clone(), s.ssrc);
                self.record(&flow, now, seen.get(&key).copied().unwrap_or_default());
                fresh.insert(key, now);
            }
        }
        for (id, stats) in consumed {
            for s in stats.into_iter().flatten() {
                let ConsumerRtpStreamStat::Outbound(s) = s else {
                    continue;
                };
                let flow = Flow {
                    direction: "out",
                    kind: kind_of(s.kind),
                };
                *streams.entry(flow.clone()).or_default() += 1;
                if let Some(rtt) = s.round_trip_time.filter(|r| *r > 0.0) {
                    rtts.push(f64::from(rtt) / 1000.0);
                }
                let now = Seen {
                    packets: s.packet_count,
                    bytes: s.byte_count,
                    lost: u64::try_from(s.packets_lost).unwrap_or(0),
                    nacks: s.nack_count,
                    plis: s.pli_count,
                };
                let key = (id.clone(), s.ssrc);
                self.record(&flow, now, seen.get(&key).copied().unwrap_or_default());
                fresh.insert(key, now);
            }
        }
        // Streams that closed are forgotten: what they counted stays counted.
        *seen = fresh;
        drop(seen);
        for rtt in rtts {
            self.rtt.observe(rtt);
        }
        self.streams.clear();
        for (flow, n) in streams {
            self.streams.get_or_create(&flow).set(n);
        }
        self.sweeps.inc();
    }
}

/// Sweeps the stats every `interval` until the task is dropped.
pub async fn sweep_loop(metrics: Arc<Metrics>, rooms: Arc<Rooms>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        metrics.sweep(&rooms).await;
    }
}
