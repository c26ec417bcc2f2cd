//! Who is in a room, as the room's clients are told: membership changes are
//! not broadcast one by one (a 1000-person surge was 500 000 `peerJoined`
//! messages) but coalesced per room over a short window and per identity:
//! [`Presence`] keeps the identities whose presence changed since the last
//! flush, in the order they changed; a flush (`RoomState::flush_presence`)
//! tells everyone each one's state *now* (`peersJoined` for those present,
//! `peersLeft` for those gone), at most [`FLUSH_MAX`] identities a flush,
//! `peersJoined` in messages of at most `protocol::PEER_PAGE_MAX` peers, so
//! a client receives a bounded number of presence messages a second of
//! bounded size, however fast people join. A publisher's
//! identity is flushed at once, before its `newProducer`
//! (`RoomState::announce_producer`).
//!
//! [`flusher`] is the room's task that flushes, woken when the first change
//! of a window is noted. It takes the room's lock (and nothing else) for one
//! flush at a time.
//!
//! Also here: the identities with a join in flight ([`Joining`]): a join
//! places its participant without the room's lock (`room::ops::Rooms::join`);
//! the room does not close while one is in flight, and one identity has at
//! most one join in flight per room. A std mutex, never held across an
//! `.await`, taken after the room's lock when both are held (lock 1 -> this).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use indexmap::IndexSet;
use tokio::sync::Notify;

use super::state::RoomState;

/// Most identities told in one flush (the rest go in the next window's):
/// one `peersLeft` (ids only) and `peersJoined` split by
/// `protocol::PEER_PAGE_MAX` (about 4 KB of JSON each).
pub const FLUSH_MAX: usize = 100;

/// How often at most an audience of `audience` is told its count: every
/// change goes to every member of the room, so a 10,000-person event that
/// told it each 200 ms window was 50,000 messages a second during its surge
/// (most of its coordinator's CPU went to those writes). At least 1 s apart,
/// 5 s for 10,000, in between one message a second per 2000 members.
pub fn audience_count_interval(audience: usize) -> Duration {
    Duration::from_millis((audience as u64 / 2).clamp(1000, 5000))
}

/// The default coalescing window.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(200);

/// Identities whose presence changed and was not told yet.
#[derive(Default)]
pub struct Presence {
    pending: IndexSet<String>,
    /// The audience's size changed (told as a count, not as lists).
    audience: bool,
    /// When the audience's count last went out.
    audience_told: Option<std::time::Instant>,
    /// The raised hands changed (told to hosts).
    hands: bool,
    /// Wakes the room's [`flusher`] (absent for a room without one: unit
    /// tests, which flush by hand).
    wake: Option<Arc<Notify>>,
}

impl Presence {
    /// A presence whose changes wake `wake`.
    pub fn with_wake(wake: Arc<Notify>) -> Self {
        Self {
            wake: Some(wake),
            ..Self::default()
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            w.notify_one();
        }
    }

    /// The audience grew or shrank: its count goes out with the next flush.
    pub fn note_audience(&mut self) {
        self.audience = true;
        self.wake();
    }

    /// A hand went up or down: the hosts' list goes out with the next flush.
    pub fn note_hands(&mut self) {
        self.hands = true;
        self.wake();
    }

    /// Takes the hands flag, and the audience flag once the count of an
    /// audience of `audience` is due again ([`audience_count_interval`]).
    pub fn take_counts(&mut self, audience: usize) -> (bool, bool) {
        let due = self
            .audience_told
            .is_none_or(|t| t.elapsed() >= audience_count_interval(audience));
        let tell = self.audience && due;
        if tell {
            self.audience = false;
            self.audience_told = Some(std::time::Instant::now());
        }
        (tell, std::mem::take(&mut self.hands))
    }

    /// The audience's count changed and waits for its interval.
    pub fn audience_waiting(&self) -> bool {
        self.audience
    }

    /// `peer_id` joined or left: its state goes out with the next flush.
    pub fn note(&mut self, peer_id: &str) {
        if !self.pending.contains(peer_id) {
            self.pending.insert(peer_id.to_string());
        }
        // Stores one permit if the flusher is not waiting: a change during
        // a flush's window is never lost.
        self.wake();
    }

    /// Takes up to `max` identities, oldest change first.
    pub fn take(&mut self, max: usize) -> Vec<String> {
        let n = max.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Takes `peer_id` if it is pending (to be told now).
    pub fn take_one(&mut self, peer_id: &str) -> bool {
        self.pending.shift_remove(peer_id)
    }

    /// Changes not told yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The room closed: its flusher ends.
    pub fn close(&mut self) {
        self.pending.clear();
        if let Some(w) = self.wake.take() {
            w.notify_one();
        }
    }
}

/// The room's flusher: waits for a change, lets the window pass, flushes;
/// again at once if a flush left changes behind. Ends when the room closes
/// or is dropped.
pub async fn flusher(
    room: Weak<tokio::sync::Mutex<RoomState>>,
    wake: Arc<Notify>,
    window: Duration,
) {
    loop {
        wake.notified().await;
        tokio::time::sleep(window).await;
        let Some(room) = room.upgrade() else { return };
        let mut state = room.lock().await;
        if state.closed {
            return;
        }
        if state.flush_presence(FLUSH_MAX) {
            wake.notify_one();
        }
    }
}

/// Identities with a join in flight in one room.
#[derive(Default, Clone)]
pub struct Joining(Arc<Mutex<HashSet<String>>>);

impl Joining {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `peer_id` joining; false if it already is.
    pub fn enter(&self, peer_id: &str) -> bool {
        self.set().insert(peer_id.to_string())
    }

    /// `peer_id`'s join ended (placed, failed or abandoned).
    pub fn leave(&self, peer_id: &str) {
        self.set().remove(peer_id);
    }

    /// No join in flight.
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_coalesce_per_identity_in_the_order_they_came() {
        let mut p = Presence::default();
        for id in ["a", "b", "a", "c", "b"] {
            p.note(id);
        }
        assert_eq!(p.pending(), 3);
        assert_eq!(p.take(2), ["a", "b"]);
        assert!(p.take_one("c"));
        assert!(!p.take_one("c"));
        assert!(p.take(10).is_empty());
    }

    #[test]
    fn one_join_in_flight_per_identity() {
        let j = Joining::default();
        assert!(j.enter("a"));
        assert!(!j.enter("a"));
        assert!(!j.is_empty());
        j.leave("a");
        assert!(j.is_empty());
        assert!(j.enter("a"));
    }
}
