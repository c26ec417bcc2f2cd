//! Named points in a service where a test can hold it (a pause) or make one
//! step fail (a fault), to reproduce a race window deterministically: a join
//! waiting at a room's lock while the room closes, a produce failing after its
//! transports exist, a close landing between creating an object and
//! registering it.
//!
//! A service keeps a [`Hooks`] handle and passes its points by name. In
//! production the handle is [`Hooks::none`]: every call is a branch on `None`
//! and nothing else. Tests build the services with [`Hooks::enabled`] and arm
//! points before driving them.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// The hook points of one service instance (cheap to clone).
#[derive(Clone, Default)]
pub struct Hooks(Option<Arc<Points>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hooks(enabled)"
        } else {
            "Hooks(none)"
        })
    }
}

#[derive(Default)]
struct Points {
    armed: Mutex<HashMap<&'static str, Armed>>,
}

#[derive(Clone)]
enum Armed {
    /// Every pass waits until the gate opens.
    Pause(Arc<Gate>),
    /// The next `remaining` checks fail.
    Fail(u32),
    /// Passes are counted (a test waits for the service to get there).
    Signal(Arc<Gate>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hooks {
    /// No hooks: what a production service runs with.
    pub fn none() -> Self {
        Self(None)
    }

    /// Hooks a test may arm.
    pub fn enabled() -> Self {
        Self(Some(Arc::default()))
    }

    fn arm(&self, point: &'static str, armed: Armed) {
        let points = self.0.as_ref().expect("arm hooks on Hooks::enabled()");
        lock(&points.armed).insert(point, armed);
    }

    /// Holds every pass of `point` until the returned gate is opened (or
    /// dropped: a dropped gate opens, so that a failing test cannot leave a
    /// service stuck).
    pub fn pause_at(&self, point: &'static str) -> GateHandle {
        let gate = Arc::new(Gate::default());
        self.arm(point, Armed::Pause(gate.clone()));
        GateHandle(gate)
    }

    /// Counts passes of `point` without holding them.
    pub fn signal_at(&self, point: &'static str) -> GateHandle {
        let gate = Arc::new(Gate::default());
        gate.open();
        self.arm(point, Armed::Signal(gate.clone()));
        GateHandle(gate)
    }

    /// Makes the next `times` checks of `point` fail.
    pub fn fail_at(&self, point: &'static str, times: u32) {
        self.arm(point, Armed::Fail(times));
    }

    /// Disarms `point`.
    pub fn clear(&self, point: &'static str) {
        if let Some(p) = &self.0 {
            if let Some(Armed::Pause(g)) = lock(&p.armed).remove(point) {
                g.open();
            }
        }
    }

    fn armed(&self, point: &str) -> Option<Armed> {
        let points = self.0.as_ref()?;
        lock(&points.armed).get(point).cloned()
    }

    /// Service side: whether the step named `point` must fail now.
    pub fn should_fail(&self, point: &'static str) -> bool {
        let Some(points) = &self.0 else { return false };
        let mut armed = lock(&points.armed);
        match armed.get_mut(point) {
            Some(Armed::Fail(n)) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Service side, in async code: passes `point`, waiting while it is paused.
    pub async fn pass(&self, point: &'static str) {
        if let Some(Armed::Pause(gate) | Armed::Signal(gate)) = self.armed(point) {
            gate.arrive();
            gate.wait_open().await;
        }
    }

    /// Service side, in a synchronous callback on a thread that is not the
    /// runtime's (mediasoup's worker threads): passes `point`, blocking while
    /// it is paused.
    pub fn pass_blocking(&self, point: &'static str) {
        if let Some(Armed::Pause(gate) | Armed::Signal(gate)) = self.armed(point) {
            gate.arrive();
            gate.wait_open_blocking();
        }
    }
}

#[derive(Default)]
struct GateState {
    arrived: u32,
    open: bool,
}

/// Where passes of a paused point wait.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
    changed: Notify,
}

impl Gate {
    fn arrive(&self) {
        lock(&self.state).arrived += 1;
        self.cv.notify_all();
        self.changed.notify_waiters();
    }

    fn open(&self) {
        lock(&self.state).open = true;
        self.cv.notify_all();
        self.changed.notify_waiters();
    }

    async fn until(&self, cond: impl Fn(&GateState) -> bool) {
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            if cond(&lock(&self.state)) {
                return;
            }
            notified.await;
        }
    }

    async fn wait_open(&self) {
        self.until(|s| s.open).await
    }

    fn wait_open_blocking(&self) {
        let mut s = lock(&self.state);
        while !s.open {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A test's handle on a paused or signalled point.
pub struct GateHandle(Arc<Gate>);

impl GateHandle {
    /// Waits until the service has passed (or is held at) the point `n` times,
    /// at most `limit`; false if it did not get there in time.
    pub async fn reached(&self, n: u32, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.0.until(|s| s.arrived >= n))
            .await
            .is_ok()
    }

    /// How often the point was passed so far.
    pub fn passes(&self) -> u32 {
        lock(&self.0.state).arrived
    }

    /// Lets every held pass (and every later one) go on.
    pub fn open(&self) {
        self.0.open();
    }
}

impl Drop for GateHandle {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paused_point_holds_until_opened_and_faults_count_down() {
        let hooks = Hooks::enabled();
        let gate = hooks.pause_at("p");
        let h = hooks.clone();
        let task = tokio::spawn(async move { h.pass("p").await });
        assert!(gate.reached(1, Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "held while the gate is shut");
        gate.open();
        task.await.unwrap();

        hooks.fail_at("f", 2);
        assert!(hooks.should_fail("f"));
        assert!(hooks.should_fail("f"));
        assert!(!hooks.should_fail("f"));
        assert!(!Hooks::none().should_fail("f"));
        Hooks::none().pass("p").await;
    }

    #[tokio::test]
    async fn a_blocking_pass_waits_on_its_own_thread() {
        let hooks = Hooks::enabled();
        let gate = hooks.pause_at("cb");
        let h = hooks.clone();
        let t = std::thread::spawn(move || h.pass_blocking("cb"));
        assert!(gate.reached(1, Duration::from_secs(2)).await);
        drop(gate);
        t.join().unwrap();
    }
}
