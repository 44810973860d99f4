//! How many ways a table's write budget is divided: the fleet as its
//! heartbeats show it, and the division policy over it.
//!
//! The control table only counts heartbeats; what the count means for a
//! worker's share is capacity's policy, so it lives here beside the limiter
//! that enforces the share.

/// A worker's limiter starts at this share of its share and ramps up as
/// its writes succeed ([`crate::WriteLimiter::ramping`]): workers started
/// together each see few others at first, and without the ramp the fleet
/// asked for 2 to 2.7 times its budget for the first seconds. Measured
/// with 8 processes at 10,000 WCU/s: from a half, the first second took
/// 1.36 times the budget; from a quarter, 1.01, at full rate in 4 s.
pub const JOIN_START: f64 = 0.25;

/// The fleet as its heartbeats show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCount {
    pub live: usize,
    pub busy: usize,
}

impl FleetCount {
    /// How many ways a budget is divided, seen by a worker that is `busy` or
    /// not, while jobs are `waiting` on the queue or not.
    ///
    /// While jobs wait, every live worker is about to be busy: the budget
    /// is divided among all of them. (Divided among the busy alone, the
    /// first workers of a fleet started together to take a job each took a
    /// large share before the others had theirs: 1.9 times the budget in a
    /// second, measured.) Once nothing waits, among the busy workers
    /// (counting an idle one itself, so the job it may take next starts at
    /// a fair share), or among all when none is busy, so the last jobs use
    /// the budget the finished workers freed.
    pub fn divisor(&self, busy: bool, waiting: bool) -> usize {
        let among_busy = if self.busy == 0 {
            self.live.max(1)
        } else {
            self.busy + usize::from(!busy)
        };
        if waiting {
            among_busy.max(self.live)
        } else {
            among_busy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FleetCount;

    #[test]
    fn budgets_are_divided_among_busy_workers() {
        let f = FleetCount { live: 4, busy: 2 };
        assert_eq!(f.divisor(true, false), 2, "two busy workers share it");
        assert_eq!(f.divisor(false, false), 3, "an idle one counts itself");
        let idle = FleetCount { live: 3, busy: 0 };
        assert_eq!(
            idle.divisor(false, false),
            3,
            "an idle fleet divides among all"
        );
        assert_eq!(FleetCount::default().divisor(false, false), 1);
        // Jobs waiting: every live worker is about to be busy.
        assert_eq!(f.divisor(true, true), 4);
        assert_eq!(f.divisor(false, true), 4);
        assert_eq!(FleetCount { live: 2, busy: 2 }.divisor(false, true), 3);
        assert_eq!(FleetCount::default().divisor(true, true), 1);
    }
}
