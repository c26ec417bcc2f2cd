//! What a media run measures: mediasoup worker CPU (the worker threads'
//! user+system time from /proc, so the figure is the worker's own, whatever
//! else runs on the machine) and, at the receivers, packets, loss and jitter
//! over a window.

use std::time::{Duration, Instant};

use crate::rtc::RecvStats;

/// `/proc` thread times are in USER_HZ, 100 on every Linux ABI we target.
const USER_HZ: f64 = 100.0;

/// Total CPU time of the threads of `pid` whose name starts with
/// "mediasoup-work" (the Rust crate names them `mediasoup-worker-<id>`), from
/// `schedstat` (ns) where present, else `stat` (ticks).
pub fn worker_cpu(pid: u32) -> std::io::Result<Duration> {
    let mut ticks = 0u64;
    let mut nanos = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !comm.starts_with("mediasoup-work") {
            continue;
        }
        // Nanoseconds on CPU (schedstat's first field) when the kernel has it:
        // the 10 ms ticks of `stat` truncate a lightly loaded worker to zero.
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            nanos += ns;
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
            ticks += u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(Duration::from_nanos(nanos) + Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// Totals over all streams of all receivers at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Packets received.
    pub packets: u64,
    /// Packets missing from the sequence numbers seen.
    pub lost: u64,
    /// Streams that received anything.
    pub streams: usize,
}

/// Sums what `receivers` got so far; jitter values (ms) of every stream into `jitter`.
pub fn totals(receivers: &[RecvStats], jitter: Option<&mut Vec<f64>>) -> Totals {
    let mut t = Totals::default();
    let mut j = Vec::new();
    for r in receivers {
        for s in r.lock().expect("stats").values() {
            t.packets += s.packets;
            t.lost += s.lost();
            t.streams += 1;
            j.push(s.jitter_ms());
        }
    }
    if let Some(out) = jitter {
        *out = j;
    }
    t
}

/// One measured window.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Receivers connected.
    pub receivers: usize,
    /// Consumers on the worker (receivers x streams each).
    pub consumers: usize,
    /// Worker CPU, percent of one core.
    pub worker_cpu_pct: f64,
    /// Packets per second arriving at the receivers, all together.
    pub packets_per_sec: f64,
    /// Lost / expected, percent, over the window.
    pub loss_pct: f64,
    /// Median and 95th percentile of per-stream jitter, ms.
    pub jitter_p50_ms: f64,
    /// 95th percentile of per-stream jitter, ms.
    pub jitter_p95_ms: f64,
    /// Window length, seconds.
    pub seconds: f64,
}

/// The nearest-rank quantile `q` (0..=1) of `sorted` (ascending); 0 when empty.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// p50, p95, p99 and max of `v` (zeros when empty).
pub fn quantiles(mut v: Vec<f64>) -> [f64; 4] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| nearest_rank(&v, p);
    [q(0.5), q(0.95), q(0.99), q(1.0)]
}

/// Measures for `window` after the current moment.
pub async fn window(
    receivers: &[RecvStats],
    consumers: usize,
    cpu: impl Fn() -> Duration,
    window: Duration,
) -> Window {
    let (c0, t0, n0) = (cpu(), Instant::now(), totals(receivers, None));
    tokio::time::sleep(window).await;
    let mut jitter = Vec::new();
    let (c1, wall, n1) = (cpu(), t0.elapsed(), totals(receivers, Some(&mut jitter)));
    jitter.sort_by(f64::total_cmp);
    let pick = |q: f64| nearest_rank(&jitter, q);
    let got = n1.packets - n0.packets;
    let lost = n1.lost.saturating_sub(n0.lost);
    Window {
        receivers: receivers.len(),
        consumers,
        worker_cpu_pct: (c1.saturating_sub(c0)).as_secs_f64() / wall.as_secs_f64() * 100.0,
        packets_per_sec: got as f64 / wall.as_secs_f64(),
        loss_pct: if got + lost == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / (got + lost) as f64
        },
        jitter_p50_ms: pick(0.5),
        jitter_p95_ms: pick(0.95),
        seconds: wall.as_secs_f64(),
    }
}

/// Consumers at which the worker reaches `target` percent, interpolated
/// between the two measured steps around it; `None` if never reached.
pub fn consumers_at(steps: &[Window], target: f64) -> Option<f64> {
    let mut prev: Option<&Window> = None;
    for s in steps {
        if s.worker_cpu_pct >= target {
            return Some(match prev {
                Some(p) if s.worker_cpu_pct > p.worker_cpu_pct => {
                    p.consumers as f64
                        + (target - p.worker_cpu_pct) / (s.worker_cpu_pct - p.worker_cpu_pct)
                            * (s.consumers - p.consumers) as f64
                }
                _ => s.consumers as f64,
            });
        }
        prev = Some(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(consumers: usize, cpu: f64) -> Window {
        Window {
            receivers: consumers / 2,
            consumers,
            worker_cpu_pct: cpu,
            packets_per_sec: 0.0,
            loss_pct: 0.0,
            jitter_p50_ms: 0.0,
            jitter_p95_ms: 0.0,
            seconds: 1.0,
        }
    }

    #[test]
    fn interpolates_the_consumers_at_a_cpu_target() {
        let steps = [w(100, 10.0), w(400, 40.0), w(800, 90.0)];
        let at = consumers_at(&steps, 85.0).unwrap();
        assert!((at - 760.0).abs() < 1e-9, "{at}");
        assert_eq!(consumers_at(&steps, 95.0), None);
        assert_eq!(consumers_at(&steps, 5.0), Some(100.0));
    }

    #[test]
    fn reads_this_process_threads() {
        // No worker threads here: zero, not an error.
        assert_eq!(worker_cpu(std::process::id()).unwrap(), Duration::ZERO);
    }
}
