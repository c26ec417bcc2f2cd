//! Join path: signalling -> **join queue** -> placement. Every join waits
//! its turn in a FIFO, and at most `per_node x live nodes` joins are placed
//! at once across the whole cluster (a Redis lease set shared by every coordinator, or a local
//! counter on a single machine). A surge of a thousand joins is absorbed in
//! order, each client told its place in line and an estimated wait at least
//! once a second. A client that disconnects while queued frees its place.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::limiter::Limiter;

/// How often the head of the line re-checks for a slot freed elsewhere in
/// the cluster (a slot freed here wakes it at once).
const TICK: Duration = Duration::from_millis(250);
/// How often every waiting join reports its position (at least once a second).
const REPORT_EVERY: Duration = Duration::from_millis(900);

/// Why a queued join gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Waited longer than the queue timeout.
    #[error("waited {0:?} without being admitted")]
    TimedOut(Duration),
    /// The line is as long as this coordinator allows: refused at once, with
    /// when a place is likely to be free.
    #[error(
        "{waiting} joins are waiting, the most this coordinator queues; retry in {retry_after:?}"
    )]
    Full {
        /// Joins in line.
        waiting: usize,
        /// Suggested wait before trying again.
        retry_after: Duration,
    },
}

/// Bounds of the retry hint a refused join gets.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

struct Waiter {
    ticket: u64,
    /// When it joined the line.
    since: Instant,
    /// Woken when this join becomes the head of the line or, at the head,
    /// when a slot may have been freed.
    wake: Arc<Notify>,
}

struct State {
    /// In ticket order (tickets only grow), so a position is a binary search.
    waiting: VecDeque<Waiter>,
    next_ticket: u64,
    /// Recent admission times, for the wait estimate.
    admitted: VecDeque<Instant>,
}

/// Wakes whoever is at the head of the line. Only the head takes slots: a
/// change wakes one task, not every waiting one (with 1000 waiting, waking
/// all on every admission was a million wake-ups per surge).
fn wake_head(state: &Mutex<State>) {
    if let Some(w) = lock_state(state).waiting.front() {
        w.wake.notify_one();
    }
}

/// Admissions per second over the last 5 s; before any, assume 50/s.
fn admission_rate(s: &mut State) -> f64 {
    let horizon = Instant::now() - Duration::from_secs(5);
    while s.admitted.front().is_some_and(|t| *t < horizon) {
        s.admitted.pop_front();
    }
    if s.admitted.len() >= 2 {
        s.admitted.len() as f64 / 5.0
    } else {
        50.0
    }
}

/// The line's state (a panic elsewhere while holding it leaves it usable).
fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The coordinator's join queue.
pub struct JoinQueue {
    state: Arc<Mutex<State>>,
    limiter: Arc<dyn Limiter>,
    timeout: Duration,
    /// Joins placed at once per live media node.
    per_node: usize,
    /// Live, serving media nodes (kept current by the node watcher).
    nodes: AtomicUsize,
    /// Longest line; a join beyond it is refused with [`QueueError::Full`].
    max_len: usize,
}

/// A granted admission; dropping it frees the slot.
pub struct Admission {
    limiter: Arc<dyn Limiter>,
    scope: String,
    lease: Option<String>,
    line: Arc<Mutex<State>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let (limiter, line, scope) = (
                self.limiter.clone(),
                self.line.clone(),
                std::mem::take(&mut self.scope),
            );
            tokio::spawn(async move {
                limiter.release(&scope, lease).await;
                // The head of the line re-checks at once rather than at its next tick.
                wake_head(&line);
            });
        }
    }
}

/// Removes a ticket that leaves the queue for any reason (disconnect included).
struct Ticket<'a> {
    queue: &'a JoinQueue,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.queue.lock();
        let was_head = s.waiting.front().is_some_and(|w| w.ticket == self.id);
        if let Ok(i) = s.waiting.binary_search_by_key(&self.id, |w| w.ticket) {
            s.waiting.remove(i);
        }
        drop(s);
        // Someone new is at the head: its turn.
        if was_head {
            wake_head(&self.queue.state);
        }
    }
}

impl JoinQueue {
    /// A queue over `limiter` admitting `per_node` joins at once per live
    /// media node, giving up after `timeout`.
    pub fn new(limiter: Arc<dyn Limiter>, per_node: usize, timeout: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                waiting: VecDeque::new(),
                next_ticket: 0,
                admitted: VecDeque::new(),
            })),
            limiter,
            timeout,
            per_node,
            nodes: AtomicUsize::new(1),
            max_len: usize::MAX,
        }
    }

    /// At most `max_len` joins wait at once; more are refused at once.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// After placement: one of the `per_node` slots of the chosen node, so
    /// that no node receives more than that many joins at once however the
    /// placements fall. Waits (briefly) for one.
    pub async fn node_slot(&self, node_id: &str) -> Result<Admission, QueueError> {
        let started = Instant::now();
        loop {
            if let Some(lease) = self.limiter.try_acquire(node_id, self.per_node).await {
                return Ok(Admission {
                    limiter: self.limiter.clone(),
                    scope: node_id.to_string(),
                    lease: Some(lease),
                    line: self.state.clone(),
                });
            }
            if started.elapsed() > self.timeout {
                return Err(QueueError::TimedOut(self.timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records how many media nodes serve now: the bound follows them.
    pub fn set_live_nodes(&self, nodes: usize) {
        self.nodes.store(nodes.max(1), Ordering::Relaxed);
    }

    fn limit(&self) -> usize {
        self.per_node * self.nodes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Joins waiting on this coordinator.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// How long the head of the line has waited (zero when nobody waits).
    pub fn oldest_wait(&self) -> Duration {
        self.lock()
            .waiting
            .front()
            .map_or(Duration::ZERO, |w| w.since.elapsed())
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position (1-based) and estimated wait of a ticket.
    fn position(&self, id: u64) -> Option<(u64, u64)> {
        let mut s = self.lock();
        let pos = s.waiting.binary_search_by_key(&id, |w| w.ticket).ok()? as u64 + 1;
        let rate = admission_rate(&mut s);
        Some((pos, (pos as f64 / rate * 1000.0) as u64))
    }

    /// Waits for this join's turn and a cluster-wide slot. `report` receives
    /// (position, estimated wait in ms) at once and then at least every second.
    pub async fn admit(&self, mut report: impl FnMut(u64, u64)) -> Result<Admission, QueueError> {
        let wake = Arc::new(Notify::new());
        let ticket = {
            let mut s = self.lock();
            if s.waiting.len() >= self.max_len {
                // A place frees when a tenth of the line has been admitted:
                // retries spread over that time rather than all at once.
                let waiting = s.waiting.len();
                let tenth = (waiting / 10).max(1) as f64;
                let after = Duration::from_secs_f64(tenth / admission_rate(&mut s));
                return Err(QueueError::Full {
                    waiting,
                    retry_after: after.clamp(RETRY_MIN, RETRY_MAX),
                });
            }
            let id = s.next_ticket;
            s.next_ticket += 1;
            s.waiting.push_back(Waiter {
                ticket: id,
                since: Instant::now(),
                wake: wake.clone(),
            });
            Ticket { queue: self, id }
        };
        let started = Instant::now();
        let mut last_report: Option<Instant> = None;
        loop {
            let (pos, wait) = self
                .position(ticket.id)
                .expect("a ticket stays queued until dropped");
            if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                report(pos, wait);
                last_report = Some(Instant::now());
            }
            if pos == 1 {
                if let Some(lease) = self.limiter.try_acquire("", self.limit()).await {
                    self.lock().admitted.push_back(Instant::now());
                    drop(ticket);
                    return Ok(Admission {
                        limiter: self.limiter.clone(),
                        scope: String::new(),
                        lease: Some(lease),
                        line: self.state.clone(),
                    });
                }
            }
            if started.elapsed() > self.timeout {
                return Err(QueueError::TimedOut(self.timeout));
            }
            // The head is woken by a freed slot or re-checks every TICK (a slot
            // freed elsewhere in the cluster); the others when they reach the
            // head, or when their next position report is due.
            let nap = if pos == 1 {
                TICK
            } else {
                REPORT_EVERY.saturating_sub(last_report.map_or(REPORT_EVERY, |t| t.elapsed()))
            };
            let _ = tokio::time::timeout(nap.max(Duration::from_millis(10)), wake.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::limiter::LocalLimiter;

    #[tokio::test]
    async fn joins_are_admitted_in_order_within_the_limit_and_a_leaver_frees_its_place() {
        let queue = Arc::new(JoinQueue::new(
            Arc::new(LocalLimiter::new()),
            1,
            Duration::from_secs(10),
        ));
        let first = queue.admit(|_, _| {}).await.unwrap();
        // The second waits: the only slot is taken.
        let q = queue.clone();
        let positions = Arc::new(Mutex::new(Vec::new()));
        let seen = positions.clone();
        let second = tokio::spawn(async move {
            q.admit(move |p, _| seen.lock().unwrap().push(p))
                .await
                .map(|_| ())
        });
        // A third gives up (disconnects) while queued.
        let q = queue.clone();
        let third = tokio::spawn(async move { q.admit(|_, _| {}).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(queue.len(), 2);
        third.abort();
        let _ = third.await;
        assert_eq!(queue.len(), 1, "an abandoned join leaves the line");
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(positions.lock().unwrap().first(), Some(&1));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_join_beyond_the_longest_line_is_refused_at_once_with_a_retry_hint() {
        let queue = Arc::new(
            JoinQueue::new(Arc::new(LocalLimiter::new()), 0, Duration::from_secs(10))
                .with_max_len(3),
        );
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let q = queue.clone();
            waiting.push(tokio::spawn(
                async move { q.admit(|_, _| {}).await.map(|_| ()) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(queue.len(), 3);
        let refused = tokio::time::timeout(Duration::from_millis(100), queue.admit(|_, _| {}))
            .await
            .expect("a full queue answers at once");
        match refused {
            Err(QueueError::Full {
                waiting,
                retry_after,
            }) => {
                assert_eq!(waiting, 3);
                assert!(
                    (RETRY_MIN..=RETRY_MAX).contains(&retry_after),
                    "{retry_after:?}"
                );
            }
            other => panic!("expected Full, got {:?}", other.map(|_| ())),
        }
        assert_eq!(queue.len(), 3, "the refused join took no place");
        // One leaves: there is room again.
        waiting.pop().unwrap().abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let q = queue.clone();
        let fourth = tokio::spawn(async move { q.admit(|_, _| {}).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!fourth.is_finished(), "the fourth waits in line instead");
        assert_eq!(queue.len(), 3);
        fourth.abort();
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_join_that_waits_too_long_times_out() {
        let queue = JoinQueue::new(Arc::new(LocalLimiter::new()), 0, Duration::from_millis(300));
        assert!(matches!(
            queue.admit(|_, _| {}).await,
            Err(QueueError::TimedOut(_))
        ));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn each_node_gets_at_most_its_share_of_joins_at_once() {
        let queue = Arc::new(JoinQueue::new(
            Arc::new(LocalLimiter::new()),
            1,
            Duration::from_secs(5),
        ));
        let a1 = queue.node_slot("node-a").await.unwrap();
        // Another node is not held up by node-a's slot.
        let b1 = tokio::time::timeout(Duration::from_millis(200), queue.node_slot("node-b")).await;
        assert!(b1.is_ok(), "node-b waited for node-a");
        let q = queue.clone();
        let a2 = tokio::spawn(async move { q.node_slot("node-a").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!a2.is_finished(), "a second join reached node-a at once");
        drop(a1);
        tokio::time::timeout(Duration::from_secs(2), a2)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
