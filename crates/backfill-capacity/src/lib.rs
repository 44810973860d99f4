//! The write budget: use the capacity given, all of it, never more.
//!
//! The fleet's budget (WCU per second per target table) is divided by the
//! live workers (registered with a heartbeat in the control table); each
//! worker's [`WriteLimiter`] admits writes at its share. The limiter is a
//! GCRA (governor) debited by write capacity units, not by items: a batch's
//! WCU is estimated from item sizes by DynamoDB's rules before it is sent,
//! and corrected with the capacity DynamoDB reports as consumed. On
//! throttling the rate backs off multiplicatively and recovers additively
//! (AIMD), like the AWS SDKs' adaptive retry mode.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backfill_item::size::{item_size_upper_bound, write_capacity_units};
use backfill_item::Item;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

mod aimd;
pub mod cost;
mod fleet;
mod keys;
pub use aimd::{Aimd, DECREASE, INCREASE_PER_SEC, MIN_FACTOR};
pub use fleet::{FleetCount, JOIN_START};
pub use keys::{HotKey, KeyPacer};

/// WCU one standard write of this item costs (its size rounded up to KB),
/// estimated before sending; numbers are counted at their largest size.
pub fn estimate_wcu(item: &Item) -> u64 {
    write_capacity_units(item_size_upper_bound(item))
}

/// Whether a table's budget is a fraction of its provisioned write
/// capacity, which the caller must read (DescribeTable) for
/// [`resolve_budget`]. This crate reads nothing itself.
pub fn needs_provisioned(t: &backfill_config::TableConfig) -> bool {
    t.write_budget_wcu.is_none() && t.write_budget_fraction.is_some()
}

/// A table's fleet write budget in WCU/s: `write_budget_wcu`, or
/// `write_budget_fraction` of `provisioned_wcu` (the table's provisioned
/// write capacity; `None` or 0 for an on-demand table); `None` when the
/// table has no budget.
pub fn resolve_budget(
    t: &backfill_config::TableConfig,
    provisioned_wcu: Option<i64>,
) -> Result<Option<f64>, String> {
    match (t.write_budget_wcu, t.write_budget_fraction) {
        (Some(w), _) => Ok(Some(w)),
        (None, Some(f)) => match provisioned_wcu {
            Some(p) if p > 0 => Ok(Some(p as f64 * f)),
            _ => Err(format!(
                "table {}: write_budget_fraction needs provisioned capacity, and the table is on demand; set write_budget_wcu",
                t.target
            )),
        },
        (None, None) => Ok(None),
    }
}

/// The share of a fleet budget one of `live_workers` workers takes.
pub fn share(budget_wcu_per_sec: f64, live_workers: usize) -> f64 {
    budget_wcu_per_sec / live_workers.max(1) as f64
}

struct State {
    share: f64,
    aimd: Aimd,
    /// WCU paid for writes DynamoDB did not take (refused, or returned
    /// unprocessed), spent by the next acquisitions before the limiter.
    credit: f64,
}

/// At most this long of the current rate is held as credit: refunds are
/// spent by the resend that follows them, and a fleet whose every worker
/// banked a whole second would ask for twice its budget at once.
const CREDIT_SECS: f64 = 0.25;

/// One worker's admission of writes to one target table.
///
/// One governor limiter for the limiter's whole life, counting time in
/// cells ([`CELLS_PER_SEC`]); a WCU costs `CELLS_PER_SEC / rate` cells, so
/// a change of rate changes the price, not the limiter. Rebuilding a
/// governor limiter at each change of rate (it cannot change its quota)
/// let the writes waiting on the old one through on the old schedule while
/// new ones started afresh on the new: up to twice the rate while the rate
/// moved, which during the join ramp was the whole fleet at once (the
/// fleet benchmark's third and fourth seconds wrote 1.3 times its budget).
pub struct WriteLimiter {
    table: String,
    limiter: DefaultDirectRateLimiter,
    state: Mutex<State>,
}

impl std::fmt::Debug for WriteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLimiter")
            .field("table", &self.table)
            .field("rate", &self.rate())
            .finish()
    }
}

/// The limiter's unit of time: cells per second.
const CELLS_PER_SEC: u32 = 1_000_000;
/// The burst a worker may spend at once: a tenth of a second of its rate.
/// Every worker of a fleet can bank this much while it waits on its source,
/// and all of them may spend it together; kept small, the fleet's combined
/// overshoot stays well inside what DynamoDB's burst capacity absorbs
/// (the benchmark measured 3.6% throttled requests with a full second).
const BURST_CELLS: u32 = CELLS_PER_SEC / 10;

impl WriteLimiter {
    /// A limiter at `share` WCU/s.
    pub fn new(table: impl Into<String>, share: f64) -> Self {
        Self::ramping(table, share, 1.0)
    }

    /// A limiter that starts at `start` (0 to 1) of `share` and ramps up
    /// additively as its writes succeed: a worker that joins before it
    /// knows the fleet does not take a share the others also take.
    pub fn ramping(table: impl Into<String>, share: f64, start: f64) -> Self {
        let per_sec = NonZeroU32::new(CELLS_PER_SEC).expect("positive");
        let burst = NonZeroU32::new(BURST_CELLS).expect("positive");
        let limiter = RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst));
        // It starts paced, its burst spent: a joining worker takes no burst.
        let _ = limiter.check_n(burst);
        WriteLimiter {
            table: table.into(),
            limiter,
            state: Mutex::new(State {
                share,
                aimd: Aimd::new(start, Instant::now()),
                credit: 0.0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Two numbers, consistent between statements: a panic elsewhere
        // while holding the lock cannot have broken them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The WCU/s admitted now (share times the AIMD factor).
    pub fn rate(&self) -> f64 {
        let s = self.lock();
        s.share * s.aimd.factor()
    }

    /// The share of the fleet budget, before AIMD.
    pub fn share(&self) -> f64 {
        self.lock().share
    }

    /// A new share (the number of live workers changed).
    pub fn set_share(&self, share: f64) {
        self.lock().share = share;
    }

    /// Waits until `wcu` may be spent, at the rate of each moment: the debit
    /// is taken in slices of at most the burst, each priced at the rate
    /// then, so a 400 KB item still passes and a change of rate applies to
    /// what is left.
    pub async fn acquire(&self, wcu: u64) {
        let mut left = wcu as f64;
        {
            let mut s = self.lock();
            let spent = s.credit.min(left);
            s.credit -= spent;
            left -= spent;
        }
        while left > 1e-9 {
            // At least 1 WCU/s, as a quota must be.
            let per_wcu = f64::from(CELLS_PER_SEC) / self.rate().max(1.0);
            let cells = (left * per_wcu).ceil().min(f64::from(BURST_CELLS)).max(1.0);
            let n = NonZeroU32::new(cells as u32).expect("at least one cell");
            if self.limiter.until_n_ready(n).await.is_err() {
                // Never more than the burst: cannot happen; do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            left -= cells / per_wcu;
        }
    }

    /// `wcu` that was paid for was not written (DynamoDB refused the
    /// request, or returned items unprocessed, or consumed less than the
    /// estimate): the next writes may spend it. Without this, every item
    /// a hot partition sent back was paid for twice, once for the attempt
    /// it did not get and once for the resend: the clustered fleet
    /// benchmark returned 4% of its items, and lost that much budget.
    pub fn refund(&self, wcu: f64) {
        if !(wcu.is_finite() && wcu > 0.0) {
            return;
        }
        let mut s = self.lock();
        let most = s.share * s.aimd.factor() * CREDIT_SECS;
        s.credit = (s.credit + wcu).min(most);
    }

    /// DynamoDB throttled a request: halve the rate (not below 5% of the share).
    pub fn on_throttle(&self) {
        let mut s = self.lock();
        s.aimd.on_throttle(Instant::now());
        tracing::debug!(table = %self.table, factor = s.aimd.factor(), "throttled: backing off");
    }

    /// A request went through: recover additively, in proportion to the time since the last step.
    pub fn on_success(&self) {
        self.lock().aimd.on_success(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn table(wcu: Option<f64>, fraction: Option<f64>) -> backfill_config::TableConfig {
        let mut t: backfill_config::TableConfig = serde_json::from_value(serde_json::json!({
            "source": "public.orders",
            "target": "orders",
            "partition_key": { "columns": ["id"] },
        }))
        .expect("a minimal table config");
        t.write_budget_wcu = wcu;
        t.write_budget_fraction = fraction;
        t
    }

    #[test]
    fn a_budget_is_given_or_a_fraction_of_provisioned_capacity() {
        let fixed = table(Some(500.0), Some(0.5));
        assert!(!needs_provisioned(&fixed), "a given budget wins");
        assert_eq!(resolve_budget(&fixed, None), Ok(Some(500.0)));
        let half = table(None, Some(0.5));
        assert!(needs_provisioned(&half));
        assert_eq!(resolve_budget(&half, Some(4000)), Ok(Some(2000.0)));
        let none = table(None, None);
        assert!(!needs_provisioned(&none));
        assert_eq!(resolve_budget(&none, None), Ok(None));
        // On demand (no provisioned figure, or 0): a fraction of nothing is
        // refused, naming the table and the key to set instead.
        for on_demand in [None, Some(0), Some(-1)] {
            let e = resolve_budget(&half, on_demand).expect_err("on demand");
            assert!(
                e.contains("table orders") && e.contains("write_budget_wcu"),
                "{e}"
            );
        }
    }

    #[test]
    fn share_divides_the_budget() {
        assert_eq!(share(1000.0, 4), 250.0);
        assert_eq!(share(1000.0, 0), 1000.0);
    }

    #[test]
    fn estimate_is_per_started_kilobyte() {
        let small: Item = [("id".to_string(), AttributeValue::N("1".into()))].into();
        assert_eq!(estimate_wcu(&small), 1);
        let three_k: Item = [
            ("id".to_string(), AttributeValue::N("1".into())),
            ("v".to_string(), AttributeValue::S("x".repeat(3000))),
        ]
        .into();
        assert_eq!(estimate_wcu(&three_k), 3);
    }

    #[test]
    fn aimd_halves_then_recovers() {
        let l = WriteLimiter::new("t", 100.0);
        l.on_throttle();
        assert_eq!(l.rate(), 50.0);
        l.on_throttle();
        assert_eq!(l.rate(), 25.0);
        for _ in 0..10 {
            l.on_throttle();
        }
        assert_eq!(l.rate(), 5.0, "never below 5% of the share");
        l.set_share(200.0);
        assert_eq!(l.rate(), 10.0);
    }

    #[test]
    fn a_joining_worker_starts_at_a_quarter_of_its_share() {
        let l = WriteLimiter::ramping("t", 1000.0, JOIN_START);
        assert_eq!(l.rate(), 250.0);
        l.on_throttle();
        assert_eq!(l.rate(), 125.0);
        l.set_share(500.0);
        assert_eq!(l.rate(), 62.5, "a new share keeps the ramp's factor");
    }

    #[tokio::test]
    async fn a_refund_is_spent_before_the_limiter_and_is_capped() {
        let l = WriteLimiter::new("t", 100.0);
        // The burst is spent at the start: 50 WCU wait about half a second.
        let start = Instant::now();
        l.acquire(50).await;
        let paid = start.elapsed().as_secs_f64();
        assert!(paid > 0.35, "{paid}");
        // Refunded (the write was refused), the resend passes at once.
        l.refund(20.0);
        let start = Instant::now();
        l.acquire(20).await;
        assert!(start.elapsed().as_secs_f64() < 0.05);
        // Credit is capped at a quarter second of the rate (25 WCU here),
        // and bad figures are ignored.
        l.refund(1000.0);
        l.refund(f64::NAN);
        l.refund(-5.0);
        let start = Instant::now();
        l.acquire(25).await;
        assert!(start.elapsed().as_secs_f64() < 0.05);
        let start = Instant::now();
        l.acquire(25).await;
        let waited = start.elapsed().as_secs_f64();
        assert!(waited > 0.1, "the cap held: {waited}");
    }

    #[tokio::test]
    async fn acquire_paces_to_the_rate() {
        let l = WriteLimiter::new("t", 200.0);
        let start = Instant::now();
        // 20 of burst, then 200 more at 200/s: about one second.
        for _ in 0..22 {
            l.acquire(10).await;
        }
        let secs = start.elapsed().as_secs_f64();
        assert!(secs > 0.8 && secs < 1.6, "{secs}");
        // A debit larger than a second's rate still passes, in slices.
        let l = WriteLimiter::new("t", 50.0);
        let start = Instant::now();
        l.acquire(120).await;
        let secs = start.elapsed().as_secs_f64();
        assert!(secs > 2.0 && secs < 3.0, "{secs}");
    }
}
