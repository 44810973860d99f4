//! The table's write capacity as a token bucket of write capacity units.
//!
//! Tokens accrue at the provisioned rate up to `rate * burst_secs` (DynamoDB
//! keeps up to 300 seconds of unused capacity as burst). The bucket starts
//! with `min(capacity, rate * 1 s)`, not full: a new table has no unused
//! capacity to burst from, and tests see throttling after about a second of
//! writing rather than after the whole burst.
//!
//! A write is admitted when the bucket holds its whole cost. A write that
//! costs more than the whole bucket can ever hold (a large item against a
//! small burst) is admitted when the bucket is full and drives it into
//! debt, so it is slowed down, never refused for ever.

use std::sync::Mutex;
use std::time::Instant;

/// Provisioned write capacity, in write capacity units.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket filling at `rate` units per second up to `rate * burst_secs`.
    pub fn new(rate: f64, burst_secs: f64) -> Self {
        let capacity = rate * burst_secs;
        TokenBucket {
            rate,
            capacity,
            state: Mutex::new(State {
                tokens: capacity.min(rate),
                last: Instant::now(),
            }),
        }
    }

    /// The units admitted right after creation.
    pub fn initial(&self) -> f64 {
        self.capacity.min(self.rate)
    }

    /// Most units the bucket can hold.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Admits the longest prefix of `costs` the bucket can pay for, debits
    /// it, and returns its length. All or nothing per element: once one does
    /// not fit, the rest wait (they are not skipped for smaller ones).
    pub fn take_prefix(&self, costs: &[u64]) -> usize {
        let mut s = self.lock();
        self.refill(&mut s);
        let mut admitted = 0;
        for &c in costs {
            let c = c as f64;
            let full = self.capacity > 0.0 && s.tokens >= self.capacity;
            if s.tokens >= c || full {
                s.tokens -= c;
                admitted += 1;
            } else {
                break;
            }
        }
        admitted
    }

    /// Admits one write of `cost` units or none.
    pub fn try_take(&self, cost: u64) -> bool {
        self.take_prefix(&[cost]) == 1
    }

    /// Gives back units debited for writes that were not made after all.
    pub fn refund(&self, units: u64) {
        if units == 0 {
            return;
        }
        let mut s = self.lock();
        self.refill(&mut s);
        s.tokens = (s.tokens + units as f64).min(self.capacity);
    }

    fn refill(&self, s: &mut State) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        if s.tokens < self.capacity {
            s.tokens = (s.tokens + elapsed * self.rate).min(self.capacity);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two numbers always left consistent: a panic elsewhere
        // while holding the lock cannot have broken it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_with_one_second_of_capacity() {
        let b = TokenBucket::new(10.0, 300.0);
        assert_eq!(b.initial(), 10.0);
        assert_eq!(b.take_prefix(&[1; 20]), 10);
        assert!(!b.try_take(1));
    }

    #[test]
    fn small_burst_caps_the_start() {
        let b = TokenBucket::new(10.0, 0.5);
        assert_eq!(b.initial(), 5.0);
        assert_eq!(b.take_prefix(&[1; 20]), 5);
    }

    #[test]
    fn prefix_stops_at_the_first_that_does_not_fit() {
        let b = TokenBucket::new(10.0, 1.0);
        assert_eq!(b.take_prefix(&[4, 4, 4, 1]), 2);
    }

    #[test]
    fn refills_at_the_rate() {
        let b = TokenBucket::new(100.0, 1.0);
        assert_eq!(b.take_prefix(&[1; 100]), 100);
        std::thread::sleep(Duration::from_millis(200));
        let n = b.take_prefix(&[1; 100]);
        assert!((15..=40).contains(&n), "{n}");
    }

    #[test]
    fn an_item_larger_than_the_bucket_goes_through_a_full_bucket_into_debt() {
        let b = TokenBucket::new(10.0, 1.0);
        assert!(b.try_take(400));
        assert!(!b.try_take(1));
    }

    #[test]
    fn zero_rate_admits_nothing() {
        let b = TokenBucket::new(0.0, 300.0);
        assert!(!b.try_take(1));
    }

    #[test]
    fn refund_is_capped_at_capacity() {
        let b = TokenBucket::new(10.0, 1.0);
        b.refund(100);
        assert_eq!(b.take_prefix(&[1; 20]), 10);
    }
}
