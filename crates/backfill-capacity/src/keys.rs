//! Pacing per partition-key value.
//!
//! DynamoDB stores all items of one partition-key value in one partition,
//! and a partition serves at most 1,000 WCU/s whatever the table is
//! provisioned for. The fleet's [`crate::WriteLimiter`] holds the table's
//! budget; this holds each key under a partition's limit, and slows only
//! the keys DynamoDB names as hot (a key-range throttle, or items it
//! returned unprocessed) instead of cutting the whole fleet's rate for
//! one key.
//!
//! Each key is a small GCRA with its own rate: `cap` times a factor that
//! halves on each throttle of that key and recovers additively, as the
//! table limiter's AIMD does. governor's keyed limiter gives every key the
//! same quota, which cannot slow one key alone; hence this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lowest share of the cap a hot key backs off to.
const MIN_FACTOR: f64 = 0.02;
/// Multiplicative decrease on a throttle of the key.
const DECREASE: f64 = 0.5;
/// Additive increase of the factor per second without a throttle.
const INCREASE_PER_SEC: f64 = 0.1;
/// A key not throttled for this long doubles its rate every second on top
/// (it probes): once the keys that crowded its partition are done, a key
/// slowed to a twentieth of the cap took ten seconds to come back, and the
/// last jobs of a clustered run wrote at a fraction of the budget for
/// that long.
const QUIET: Duration = Duration::from_secs(1);
/// A key may bank this much time of its rate (a short burst).
const TOLERANCE: Duration = Duration::from_millis(100);
/// Keys idle this long with a full factor are forgotten.
const IDLE: Duration = Duration::from_secs(30);
/// Forgetting idle keys runs once per this many reservations.
const PRUNE_EVERY: u64 = 4096;

#[derive(Debug, Clone)]
struct KeyState {
    /// When the key's reservations so far are paid for (GCRA's TAT).
    tat: Instant,
    factor: f64,
    last_change: Instant,
    last_throttle: Instant,
    throttles: u64,
    /// The key as a person reads it, kept once the key was throttled.
    label: Option<String>,
    /// WCU booked since `window_start`, and the rate of the window before:
    /// how fast the key is written, which a throttle halves.
    window_start: Instant,
    window_wcu: f64,
    last_rate: f64,
}

impl KeyState {
    fn new(now: Instant) -> Self {
        KeyState {
            tat: now,
            factor: 1.0,
            last_change: now,
            last_throttle: now,
            throttles: 0,
            label: None,
            window_start: now,
            window_wcu: 0.0,
            last_rate: 0.0,
        }
    }

    fn book(&mut self, wcu: u64, now: Instant) {
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        if secs >= 1.0 {
            self.last_rate = self.window_wcu / secs;
            self.window_start = now;
            self.window_wcu = 0.0;
        }
        self.window_wcu += wcu as f64;
    }

    /// WCU/s the key was written at lately.
    fn observed(&self, now: Instant) -> f64 {
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        self.last_rate.max(self.window_wcu / secs.max(0.25))
    }

    fn recover(&mut self, now: Instant) {
        if self.factor < 1.0 {
            let from = self.last_change;
            let secs = now.saturating_duration_since(from).as_secs_f64();
            // The part of this step after the key had been quiet for QUIET.
            let fast = now
                .saturating_duration_since((self.last_throttle + QUIET).max(from))
                .as_secs_f64();
            self.factor = (self.factor * fast.exp2() + INCREASE_PER_SEC * secs).min(1.0);
            self.last_change = now;
        }
    }
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<u64, KeyState>,
    reservations: u64,
}

/// A key DynamoDB throttled, for metrics and `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    pub label: String,
    /// The WCU/s this worker now writes the key at.
    pub rate: f64,
    pub throttles: u64,
}

/// One worker's pacing of the partition-key values of one target table.
#[derive(Debug)]
pub struct KeyPacer {
    cap: f64,
    keys: Mutex<Keys>,
}

impl KeyPacer {
    /// Each key at most `cap` WCU/s (a partition's 1,000, less a margin).
    /// `cap` must be positive; a pacer is not built for a cap of 0 (off).
    pub fn new(cap: f64) -> Self {
        KeyPacer {
            cap: cap.max(1.0),
            keys: Mutex::new(Keys::default()),
        }
    }

    pub fn cap(&self) -> f64 {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        // Only numbers, left consistent between statements: a panic
        // elsewhere while holding the lock cannot have broken them.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Books `wcu` on each `(key, wcu)` and returns how long to wait until
    /// all of them are within their keys' rates (zero when they are now).
    pub fn reserve(&self, costs: &[(u64, u64)], now: Instant) -> Duration {
        let mut keys = self.lock();
        keys.reservations += 1;
        if keys.reservations.is_multiple_of(PRUNE_EVERY) {
            keys.map
                .retain(|_, k| k.factor < 1.0 || now.saturating_duration_since(k.tat) < IDLE);
        }
        let mut wait = Duration::ZERO;
        for &(key, wcu) in costs {
            let k = keys.map.entry(key).or_insert_with(|| KeyState::new(now));
            k.recover(now);
            k.book(wcu, now);
            let rate = self.cap * k.factor;
            let start = k.tat.max(now);
            k.tat = start + Duration::from_secs_f64(wcu as f64 / rate);
            let ahead = k.tat.saturating_duration_since(now);
            wait = wait.max(ahead.saturating_sub(TOLERANCE));
        }
        wait
    }

    /// Waits until `costs` may be written (see [`KeyPacer::reserve`]).
    pub async fn acquire(&self, costs: &[(u64, u64)]) {
        let wait = self.reserve(costs, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// DynamoDB throttled `key`: halve the rate it was written at (not
    /// its ceiling: a key written at a tenth of the cap and halved from the
    /// cap would not slow at all).
    pub fn on_throttle(&self, key: u64, now: Instant) {
        self.slow(key, DECREASE, now);
    }

    /// DynamoDB took only `accepted` (0 to 1) of what was sent of `key`
    /// and left the rest unprocessed: the key's partition let through that
    /// share of the rate the key was written at, so the key goes on at
    /// that share (at most halved). Halving on every partial answer cut
    /// the keys of a partition that was a few percent over its limit to
    /// half, all of them within the same second, and the partition idled
    /// while they recovered.
    pub fn on_partial(&self, key: u64, accepted: f64, now: Instant) {
        let by = if accepted.is_finite() {
            accepted.clamp(DECREASE, 1.0)
        } else {
            DECREASE
        };
        self.slow(key, by, now);
    }

    fn slow(&self, key: u64, by: f64, now: Instant) {
        let cap = self.cap;
        let mut keys = self.lock();
        let k = keys.map.entry(key).or_insert_with(|| KeyState::new(now));
        k.recover(now);
        let observed = k.observed(now) / cap;
        let from = if observed > 0.0 {
            k.factor.min(observed)
        } else {
            k.factor
        };
        k.factor = (from * by).max(MIN_FACTOR);
        k.last_change = now;
        k.last_throttle = now;
        k.throttles += 1;
    }

    /// Names a key seen throttled, for [`KeyPacer::hot_keys`] (made only
    /// when the key has no name yet: most callers have only its hash).
    pub fn name(&self, key: u64, label: impl FnOnce() -> String) {
        if let Some(k) = self.lock().map.get_mut(&key) {
            if k.label.is_none() {
                k.label = Some(label());
            }
        }
    }

    /// The rate `key` is written at now (WCU/s).
    pub fn rate(&self, key: u64, now: Instant) -> f64 {
        let mut keys = self.lock();
        match keys.map.get_mut(&key) {
            Some(k) => {
                k.recover(now);
                self.cap * k.factor
            }
            None => self.cap,
        }
    }

    /// The `n` keys with the most throttles that are still slowed.
    pub fn hot_keys(&self, n: usize, now: Instant) -> Vec<HotKey> {
        let mut keys = self.lock();
        let mut hot: Vec<HotKey> = keys
            .map
            .iter_mut()
            .filter_map(|(key, k)| {
                k.recover(now);
                (k.factor < 1.0).then(|| HotKey {
                    label: k.label.clone().unwrap_or_else(|| format!("#{key:016x}")),
                    rate: self.cap * k.factor,
                    throttles: k.throttles,
                })
            })
            .collect();
        hot.sort_by(|a, b| b.throttles.cmp(&a.throttles).then(a.label.cmp(&b.label)));
        hot.truncate(n);
        hot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds, rounded: float rates give durations a nanosecond off.
    fn ms(d: Duration) -> u128 {
        (d.as_micros() + 500) / 1000
    }

    #[test]
    fn one_key_is_paced_to_the_cap_and_others_are_not_held_by_it() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        // 25 WCU at 1,000 WCU/s is 25 ms each: within the 100 ms
        // tolerance four batches go at once, the fifth waits.
        for _ in 0..4 {
            assert_eq!(p.reserve(&[(7, 25)], t0), Duration::ZERO);
        }
        assert_eq!(ms(p.reserve(&[(7, 25)], t0)), 25);
        // Another key is free, and a batch waits for its slowest key.
        assert_eq!(p.reserve(&[(8, 25)], t0), Duration::ZERO);
        assert_eq!(ms(p.reserve(&[(8, 1), (7, 25)], t0)), 50);
        // A second later the first key has paid off its bookings.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(p.reserve(&[(7, 25)], t1), Duration::ZERO);
    }

    #[test]
    fn a_throttle_slows_that_key_alone_and_it_recovers() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        p.on_throttle(7, t0);
        assert_eq!(p.hot_keys(1, t0)[0].label, "#0000000000000007");
        p.name(7, || "tenant=acme".into());
        assert_eq!(p.rate(7, t0), 500.0);
        assert_eq!(p.rate(8, t0), 1000.0);
        for _ in 0..20 {
            p.on_throttle(7, t0);
            p.name(7, || unreachable!("the name is kept"));
        }
        assert_eq!(p.rate(7, t0), 20.0, "never below 2% of the cap");
        let hot = p.hot_keys(3, t0);
        assert_eq!(hot.len(), 1);
        assert_eq!(hot[0].label, "tenant=acme");
        assert_eq!(hot[0].throttles, 21);
        // 0.1 of the cap per second, and after a quiet second twice the
        // rate every second on top: 0.02 * 2^4 + 0.5 five seconds later.
        assert!((p.rate(7, t0 + Duration::from_secs(5)) - 820.0).abs() < 1.0);
        assert_eq!(p.rate(7, t0 + Duration::from_secs(6)), 1000.0);
        assert!(p.hot_keys(3, t0 + Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn a_throttle_halves_the_rate_the_key_was_written_at() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        // 100 WCU/s for two seconds: far below the cap.
        for i in 0..20 {
            p.reserve(&[(5, 10)], t0 + Duration::from_millis(100 * i));
        }
        let t1 = t0 + Duration::from_secs(2);
        p.on_throttle(5, t1);
        let r = p.rate(5, t1);
        assert!(
            (40.0..=60.0).contains(&r),
            "halved from ~100, not from 1000: {r}"
        );
        // A key never booked is halved from its cap.
        p.on_throttle(6, t1);
        assert_eq!(p.rate(6, t1), 500.0);
    }

    #[test]
    fn a_key_throttled_again_recovers_additively_only() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        for _ in 0..6 {
            p.on_throttle(3, t0);
        }
        // 0.02 (the floor), then +0.1 a second while throttled each 0.8 s.
        let mut t = t0;
        for _ in 0..5 {
            t += Duration::from_millis(800);
            let before = p.rate(3, t);
            p.on_throttle(3, t);
            assert!(
                before < 200.0,
                "probed fast while still throttled: {before}"
            );
        }
        // Quiet from t: additive for a second, then doubling on top.
        let halved = p.rate(3, t);
        let r = p.rate(3, t + Duration::from_secs(1));
        assert!((r - (halved + 100.0)).abs() < 1.0, "{halved} -> {r}");
        assert!(p.rate(3, t + Duration::from_secs(3)) > 4.0 * halved + 200.0);
    }

    #[test]
    fn a_partial_answer_slows_the_key_to_the_share_accepted() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        // 200 WCU/s for two seconds, then 80% of a batch taken.
        for i in 0..20 {
            p.reserve(&[(5, 20)], t0 + Duration::from_millis(100 * i));
        }
        let t1 = t0 + Duration::from_secs(2);
        p.on_partial(5, 0.8, t1);
        let r = p.rate(5, t1);
        assert!((150.0..=170.0).contains(&r), "0.8 of ~200: {r}");
        // Little taken: halved, not cut to nothing; nonsense is halved.
        p.on_partial(6, 0.05, t1);
        assert_eq!(p.rate(6, t1), 500.0);
        p.on_partial(7, f64::NAN, t1);
        assert_eq!(p.rate(7, t1), 500.0);
        p.on_partial(8, 1.5, t1);
        assert_eq!(p.rate(8, t1), 1000.0, "all taken: not slowed");
        assert_eq!(p.hot_keys(10, t1).len(), 3, "5, 6 and 7");
    }

    #[test]
    fn a_slowed_key_waits_in_proportion() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        p.on_throttle(1, t0);
        p.on_throttle(1, t0);
        // 250 WCU/s: 100 WCU is 400 ms, less the 100 ms tolerance.
        assert_eq!(ms(p.reserve(&[(1, 100)], t0)), 300);
    }

    #[test]
    fn idle_keys_are_forgotten_but_hot_ones_kept() {
        let p = KeyPacer::new(1000.0);
        let t0 = Instant::now();
        p.on_throttle(1, t0);
        for k in 2..100 {
            p.reserve(&[(k, 1)], t0);
        }
        let later = t0 + IDLE + Duration::from_secs(1);
        for _ in 0..PRUNE_EVERY {
            p.reserve(&[(0, 0)], later);
        }
        let keys = p.lock();
        assert!(keys.map.contains_key(&1), "a slowed key is kept");
        assert!(!keys.map.contains_key(&2));
        assert!(keys.map.len() <= 3, "{}", keys.map.len());
    }
}
