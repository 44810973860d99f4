//! Liveness and readiness of a worker, as atomics its loops set and the
//! probes read.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Receive failures in a row after which the worker says it is not ready:
/// one or two are the queue's ordinary hiccups, more means this pod cannot
/// reach SQS (credentials, network policy, endpoint).
const RECEIVE_FAILURES_UNREADY: u32 = 3;

/// Whether the worker is alive (its loops keep ticking) and ready (it has
/// its budgets, is in the fleet, takes jobs, and is not shutting down).
///
/// Liveness restarts a pod whose loops stopped turning (a deadlock, a
/// starved runtime); readiness only takes it out of rotation, which is what
/// a rollout waits for and what a pod that cannot reach the queue deserves.
#[derive(Debug)]
pub struct Health {
    /// Ticks are stored as milliseconds since this instant (an `Instant`
    /// does not fit an atomic).
    epoch: Instant,
    last_tick_ms: AtomicU64,
    max_age: Duration,
    budgets_resolved: AtomicBool,
    heartbeat_sent: AtomicBool,
    shutting_down: AtomicBool,
    receive_failures: AtomicU32,
}

impl Health {
    /// Live while the last [`Health::tick`] is younger than `liveness_max_age`;
    /// creation counts as the first tick, so a starting worker is live.
    pub fn new(liveness_max_age: Duration) -> Self {
        Health {
            epoch: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            max_age: liveness_max_age,
            budgets_resolved: AtomicBool::new(false),
            heartbeat_sent: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            receive_failures: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A loop of the worker went round once.
    pub fn tick(&self) {
        self.last_tick_ms
            .fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    /// Time since the last tick.
    pub fn since_last_tick(&self) -> Duration {
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// `Err` with the reason when no loop has ticked for too long.
    pub fn liveness(&self) -> Result<(), String> {
        let age = self.since_last_tick();
        if age >= self.max_age {
            return Err(format!(
                "no worker loop has ticked for {:.1}s (limit {}s)",
                age.as_secs_f64(),
                self.max_age.as_secs()
            ));
        }
        Ok(())
    }

    pub fn is_live(&self) -> bool {
        self.liveness().is_ok()
    }

    /// Every table's write budget is known.
    pub fn set_budgets_resolved(&self) {
        self.budgets_resolved.store(true, Ordering::Relaxed);
    }

    /// A fleet heartbeat reached the control table.
    pub fn set_heartbeat_sent(&self) {
        self.heartbeat_sent.store(true, Ordering::Relaxed);
    }

    /// The worker stopped taking jobs.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn receive_succeeded(&self) {
        self.receive_failures.store(0, Ordering::Relaxed);
    }

    pub fn receive_failed(&self) {
        self.receive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `Err` with the reason while the worker is not (or no longer) taking jobs.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        if !self.budgets_resolved.load(Ordering::Relaxed) {
            return Err("write budgets not resolved yet".into());
        }
        if !self.heartbeat_sent.load(Ordering::Relaxed) {
            return Err("no fleet heartbeat sent yet".into());
        }
        let failures = self.receive_failures.load(Ordering::Relaxed);
        if failures >= RECEIVE_FAILURES_UNREADY {
            return Err(format!(
                "{failures} receives from the job queue failed in a row"
            ));
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_while_ticked_and_dead_after_the_max_age() {
        // Margins of a few hundred milliseconds: a loaded test machine
        // oversleeps, so only the "dead" direction waits on the clock.
        let h = Health::new(Duration::from_millis(400));
        assert!(h.is_live(), "a new worker is live");
        std::thread::sleep(Duration::from_millis(250));
        assert!(h.since_last_tick() >= Duration::from_millis(250));
        h.tick();
        assert!(
            h.since_last_tick() < Duration::from_millis(200),
            "a tick resets the age"
        );
        assert!(h.is_live());
        std::thread::sleep(Duration::from_millis(500));
        let err = h.liveness().unwrap_err();
        assert!(err.contains("no worker loop has ticked"), "{err}");
        h.tick();
        assert!(h.is_live());
    }

    #[test]
    fn ready_after_budgets_and_heartbeat_until_shutdown() {
        let h = Health::new(Duration::from_secs(60));
        assert!(h.readiness().unwrap_err().contains("budgets"));
        h.set_budgets_resolved();
        assert!(h.readiness().unwrap_err().contains("heartbeat"));
        h.set_heartbeat_sent();
        assert_eq!(h.readiness(), Ok(()));
        h.set_shutting_down();
        assert_eq!(h.readiness(), Err("shutting down".into()));
    }

    #[test]
    fn not_ready_after_several_receive_failures_in_a_row() {
        let h = Health::new(Duration::from_secs(60));
        h.set_budgets_resolved();
        h.set_heartbeat_sent();
        h.receive_failed();
        h.receive_failed();
        assert!(h.is_ready(), "two failures are a hiccup");
        h.receive_failed();
        let err = h.readiness().unwrap_err();
        assert!(err.contains("3 receives"), "{err}");
        h.receive_succeeded();
        assert!(h.is_ready());
    }
}
