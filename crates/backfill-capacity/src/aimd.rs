//! The write limiter's backoff as arithmetic on a clock the caller gives:
//! multiplicative decrease on a throttle, additive increase with time
//! without one (like the AWS SDKs' adaptive retry mode). The limiter runs
//! it on the real clock; the fleet model (`fleet_model` example) runs the
//! same code on a simulated one.

use std::time::Instant;

/// Lowest share of the budget AIMD backs off to.
pub const MIN_FACTOR: f64 = 0.05;
/// Multiplicative decrease on a throttle.
pub const DECREASE: f64 = 0.5;
/// Additive increase per second without throttling.
pub const INCREASE_PER_SEC: f64 = 0.25;
/// Increases are applied at most this often (seconds), so a rate is not
/// rebuilt on every write.
const STEP_SECS: f64 = 0.25;

/// The factor (of a worker's share) its limiter admits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    factor: f64,
    last_step: Instant,
}

impl Aimd {
    /// Starting at `start` (clamped to [`MIN_FACTOR`]..=1) at `now`.
    pub fn new(start: f64, now: Instant) -> Self {
        Aimd {
            factor: start.clamp(MIN_FACTOR, 1.0),
            last_step: now,
        }
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// A throttle: halve (not below [`MIN_FACTOR`]).
    pub fn on_throttle(&mut self, now: Instant) {
        self.factor = (self.factor * DECREASE).max(MIN_FACTOR);
        self.last_step = now;
    }

    /// A write went through: recover in proportion to the time since the
    /// last step. Returns whether the factor changed.
    pub fn on_success(&mut self, now: Instant) -> bool {
        if self.factor >= 1.0 {
            return false;
        }
        let secs = now.saturating_duration_since(self.last_step).as_secs_f64();
        if secs < STEP_SECS {
            return false;
        }
        self.factor = (self.factor + INCREASE_PER_SEC * secs).min(1.0);
        self.last_step = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn halves_then_recovers_with_time() {
        let t0 = Instant::now();
        let mut a = Aimd::new(1.0, t0);
        a.on_throttle(t0);
        a.on_throttle(t0);
        assert_eq!(a.factor(), 0.25);
        assert!(!a.on_success(t0 + Duration::from_millis(100)), "too soon");
        assert!(a.on_success(t0 + Duration::from_secs(1)));
        assert_eq!(a.factor(), 0.5);
        assert!(a.on_success(t0 + Duration::from_secs(10)));
        assert_eq!(a.factor(), 1.0);
        assert!(!a.on_success(t0 + Duration::from_secs(20)), "already full");
        for _ in 0..10 {
            a.on_throttle(t0);
        }
        assert_eq!(a.factor(), MIN_FACTOR);
        assert_eq!(Aimd::new(0.0, t0).factor(), MIN_FACTOR);
        assert_eq!(Aimd::new(7.0, t0).factor(), 1.0);
    }
}
