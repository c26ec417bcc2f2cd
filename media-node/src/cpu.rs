//! CPU time of one thread, from `/proc/self/task/<tid>/stat`.
//!
//! mediasoup workers are threads of this process and the Rust crate exposes no
//! per-worker resource usage; the worker records its thread id when it starts
//! (WorkerSettings::thread_initializer) and the load report reads it here.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `/proc` reports thread times in USER_HZ, 100 on every Linux ABI we target.
const USER_HZ: u64 = 100;

/// Thread id of a worker thread, filled in when the thread starts.
#[derive(Clone, Default, Debug)]
pub struct ThreadId(Arc<OnceLock<u32>>);

impl ThreadId {
    /// Records the calling thread's id (call it on the thread itself).
    pub fn record_current(&self) {
        if let Some(tid) = current_tid() {
            let _ = self.0.set(tid);
        }
    }

    /// The recorded id, once the thread ran.
    pub fn get(&self) -> Option<u32> {
        self.0.get().copied()
    }

    /// User + system CPU time of the thread so far.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        let tid = self.get().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "worker thread id not recorded yet")
        })?;
        thread_cpu_time(tid)
    }
}

/// `/proc/thread-self` links to `<pid>/task/<tid>`.
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

fn thread_cpu_time(tid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    parse_stat_cpu(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc stat line: {stat}"),
        )
    })
}

/// utime and stime are fields 14 and 15; the command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // after_comm starts at field 3 (state); utime is field 14 -> index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (mediasoup (w) 1) S 1 4242 4242 0 -1 4194368 100 0 0 0 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_cpu(line), Some(Duration::from_millis(3250)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn measures_the_calling_thread() {
        let id = ThreadId::default();
        let seen = id.clone();
        std::thread::spawn(move || {
            seen.record_current();
            // Burn a little CPU so the count can move; the assertion below
            // only relies on the read succeeding for a live thread.
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(30) {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
            seen.cpu_time().expect("live thread's cpu time")
        })
        .join()
        .unwrap();
        assert!(id.get().is_some());
    }
}
