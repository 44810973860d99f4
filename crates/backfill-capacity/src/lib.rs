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
use std::sync::{Arc, Mutex};
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
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The rate the limiter was built for (WCU/s).
    rate: u32,
    share: f64,
    aimd: Aimd,
}

/// One worker's admission of writes to one target table.
pub struct WriteLimiter {
    table: String,
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

/// The burst a worker may spend at once: a tenth of a second of its rate.
/// Every worker of a fleet can bank this much while it waits on its source,
/// and all of them may spend it together; kept small, the fleet's combined
/// overshoot stays well inside what DynamoDB's burst capacity absorbs
/// (the benchmark measured 3.6% throttled requests with a full second).
fn burst_for(rate: u32) -> u32 {
    (rate / 10).max(1)
}

/// A limiter at `rate`, its burst already spent: a limiter is rebuilt at
/// every change of rate, and one that started full gave its worker a fresh
/// burst each time; during the join ramp (a change every quarter second)
/// that was 40% over the rate, across the whole fleet at once.
fn limiter_for(rate: u32) -> Arc<DefaultDirectRateLimiter> {
    let r = NonZeroU32::new(rate.max(1)).expect("at least 1");
    let b = NonZeroU32::new(burst_for(rate)).expect("at least 1");
    let l = RateLimiter::direct(Quota::per_second(r).allow_burst(b));
    // Within the quota by construction, so this only drains it.
    let _ = l.check_n(b);
    Arc::new(l)
}

impl WriteLimiter {
    /// A limiter at `share` WCU/s.
    pub fn new(table: impl Into<String>, share: f64) -> Self {
        Self::ramping(table, share, 1.0)
    }

    /// A limiter that starts at `start` (0 to 1) of `share` and ramps up
    /// additively as its writes succeed: a worker that joins before it
    /// knows the fleet does not take a share the others also take.
    pub fn ramping(table: impl Into<String>, share: f64, start: f64) -> Self {
        let aimd = Aimd::new(start, Instant::now());
        let rate = (share * aimd.factor()).max(1.0).round() as u32;
        WriteLimiter {
            table: table.into(),
            state: Mutex::new(State {
                limiter: limiter_for(rate),
                rate,
                share,
                aimd,
            }),
        }
    }

    /// The WCU/s admitted now (share times the AIMD factor).
    pub fn rate(&self) -> f64 {
        let s = self.state.lock().expect("limiter state lock");
        s.share * s.aimd.factor()
    }

    /// The share of the fleet budget, before AIMD.
    pub fn share(&self) -> f64 {
        self.state.lock().expect("limiter state lock").share
    }

    /// A new share (the number of live workers changed).
    pub fn set_share(&self, share: f64) {
        let mut s = self.state.lock().expect("limiter state lock");
        s.share = share;
        Self::rebuild(&mut s);
    }

    fn rebuild(s: &mut State) {
        let rate = (s.share * s.aimd.factor()).max(1.0).round() as u32;
        // Rebuilding drops the accrued burst; only do it for a real change.
        if rate != s.rate {
            s.rate = rate;
            s.limiter = limiter_for(rate);
        }
    }

    /// Waits until `wcu` may be spent. Larger than the burst, the debit is
    /// taken in burst-sized slices, so a 400 KB item still passes.
    pub async fn acquire(&self, wcu: u64) {
        let mut left = wcu;
        while left > 0 {
            let (limiter, rate) = {
                let s = self.state.lock().expect("limiter state lock");
                (s.limiter.clone(), s.rate)
            };
            let step = left.min(u64::from(burst_for(rate))) as u32;
            let n = NonZeroU32::new(step).expect("step is at least 1");
            if limiter.until_n_ready(n).await.is_err() {
                // The limiter was rebuilt smaller meanwhile: take what it allows.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            left -= u64::from(step);
        }
    }

    /// DynamoDB throttled a request: halve the rate (not below 5% of the share).
    pub fn on_throttle(&self) {
        let mut s = self.state.lock().expect("limiter state lock");
        s.aimd.on_throttle(Instant::now());
        tracing::debug!(table = %self.table, factor = s.aimd.factor(), "throttled: backing off");
        Self::rebuild(&mut s);
    }

    /// A request went through: recover additively, in proportion to the time since the last step.
    pub fn on_success(&self) {
        let mut s = self.state.lock().expect("limiter state lock");
        if s.aimd.on_success(Instant::now()) {
            Self::rebuild(&mut s);
        }
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
    fn a_joining_worker_starts_at_a_tenth_of_its_share() {
        let l = WriteLimiter::ramping("t", 1000.0, JOIN_START);
        assert_eq!(l.rate(), 100.0);
        l.on_throttle();
        assert_eq!(l.rate(), 50.0);
        l.set_share(500.0);
        assert_eq!(l.rate(), 25.0, "a new share keeps the ramp's factor");
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
