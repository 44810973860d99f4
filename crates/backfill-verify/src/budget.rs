//! Read budgets: the read capacity a verification may take from each
//! target, shared by the fleet as the write budget is.
//!
//! A worker holds one limiter per target with a `read_budget_rcu` (its
//! share, re-divided by the live workers at each fleet heartbeat, as
//! writes are); every read a verification makes is charged the capacity
//! units DynamoDB says it consumed, after the call (the size of what a
//! read returns is not known before it), so the next read waits its turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use backfill_capacity::WriteLimiter;

/// The read limiters of a worker, by target table; shared between the
/// fleet heartbeat (which sets their shares) and the verifier.
#[derive(Debug, Clone, Default)]
pub struct ReadBudgets(
    Arc<Mutex<HashMap<String, Arc<WriteLimiter>>>>,
    Arc<Mutex<HashMap<String, f64>>>,
);

impl ReadBudgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WriteLimiter>>> {
        // Only whole inserts: a panic elsewhere cannot leave it half-changed.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds reads of `target` to `limiter` from now on.
    pub fn set(&self, target: &str, limiter: Arc<WriteLimiter>) {
        self.lock().insert(target.to_string(), limiter);
    }

    pub fn get(&self, target: &str) -> Option<Arc<WriteLimiter>> {
        self.lock().get(target).cloned()
    }

    /// Charges `rcu` consumed units to `target`'s budget, if it has one:
    /// waits until they fit the worker's share.
    pub async fn charge(&self, target: &str, rcu: f64) {
        *self
            .1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target.to_string())
            .or_default() += rcu;
        if let Some(l) = self.get(target) {
            if rcu > 0.0 {
                l.acquire(rcu.ceil() as u64).await;
            }
        }
    }
}

impl ReadBudgets {
    /// Read capacity units charged to `target` so far (budgeted or not).
    pub fn charged(&self, target: &str) -> f64 {
        self.1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn reads_wait_for_their_share_and_unbudgeted_targets_do_not() {
        let b = ReadBudgets::default();
        let start = Instant::now();
        b.charge("free", 1_000_000.0).await;
        assert!(start.elapsed() < Duration::from_millis(50));
        b.set("t", Arc::new(WriteLimiter::new("t", 100.0)));
        let start = Instant::now();
        // 300 units at 100 a second: about two seconds past the first.
        for _ in 0..3 {
            b.charge("t", 100.0).await;
        }
        let took = start.elapsed();
        assert_eq!((b.charged("t"), b.charged("free")), (300.0, 1_000_000.0));
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
}
