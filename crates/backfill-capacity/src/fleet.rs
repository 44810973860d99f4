//! How many ways a table's write budget is divided: the fleet as its
//! heartbeats show it, and the division policy over it.
//!
//! The control table only counts heartbeats; what the count means for a
//! worker's share is capacity's policy, so it lives here beside the limiter
//! that enforces the share.

/// A worker's limiter starts at this share of its share and ramps up as
/// its writes succeed ([`crate::WriteLimiter::ramping`]): workers started
/// together each see few others at first, and without the ramp the fleet
/// asked for 2 to 2.7 times its budget for the first seconds.
pub const JOIN_START: f64 = 0.1;

/// The fleet as its heartbeats show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCount {
    pub live: usize,
    pub busy: usize,
}

impl FleetCount {
    /// How many ways a budget is divided, seen by a worker that is `busy` or
    /// not: among the busy workers (counting an idle one itself, so the job
    /// it may take next starts at a fair share), or among all when none is
    /// busy, so an idle fleet that gets work all at once never starts at
    /// the whole budget each.
    pub fn divisor(&self, busy: bool) -> usize {
        if self.busy == 0 {
            self.live.max(1)
        } else {
            self.busy + usize::from(!busy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FleetCount;

    #[test]
    fn budgets_are_divided_among_busy_workers() {
        let f = FleetCount { live: 4, busy: 2 };
        assert_eq!(f.divisor(true), 2, "two busy workers share it");
        assert_eq!(f.divisor(false), 3, "an idle one counts itself");
        let idle = FleetCount { live: 3, busy: 0 };
        assert_eq!(idle.divisor(false), 3, "an idle fleet divides among all");
        assert_eq!(FleetCount::default().divisor(false), 1);
    }
}
