//! An on-demand table's write limit, and warm throughput.
//!
//! An on-demand table has no provisioned rate, but it is not unlimited: it
//! absorbs at once up to twice the highest rate it served within the last
//! 30 minutes (a new table as though it had served 2,000 WCU/s, so 4,000),
//! and throttles above that while it scales. Pre-warming (`UpdateTable`
//! with `WarmThroughput.WriteUnitsPerSecond`) raises the level it starts
//! from. The proxy models that as a one-second bucket whose rate is
//! `max(floor, 2 * peak)`, the peak being the most units admitted in one
//! whole second within the window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::request::parse_body;
use crate::server::{forward, json_response, relay, Shared};

/// What a new on-demand table absorbs at once, in WCU per second.
pub const DEFAULT_ON_DEMAND_INITIAL_WCU: f64 = 4000.0;

/// How long a peak is remembered.
pub const DEFAULT_PEAK_WINDOW: Duration = Duration::from_secs(30 * 60);

/// The table is on-demand: no provisioned rate, but a ceiling that follows
/// the table's own recent peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnDemand {
    /// WCU per second the table absorbs before it has any history (raised
    /// by warm throughput).
    pub initial_wcu: f64,
    /// How long the highest one-second rate counts as the previous peak.
    pub peak_window: Duration,
}

impl Default for OnDemand {
    fn default() -> Self {
        OnDemand {
            initial_wcu: DEFAULT_ON_DEMAND_INITIAL_WCU,
            peak_window: DEFAULT_PEAK_WINDOW,
        }
    }
}

/// The limiter for [`OnDemand`].
#[derive(Debug)]
pub(crate) struct OnDemandLimit {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    floor: f64,
    tokens: f64,
    last: Instant,
    second_start: Instant,
    second_units: f64,
    /// Finished seconds' totals within the window, oldest first, each
    /// larger than every later one: the front is the peak, and a second
    /// that a later, busier one outshines can never be the peak again.
    peaks: VecDeque<(Instant, f64)>,
}

impl OnDemandLimit {
    pub(crate) fn new(cfg: OnDemand) -> Self {
        let now = Instant::now();
        OnDemandLimit {
            window: cfg.peak_window,
            state: Mutex::new(State {
                floor: cfg.initial_wcu,
                tokens: cfg.initial_wcu,
                last: now,
                second_start: now,
                second_units: 0.0,
                peaks: VecDeque::new(),
            }),
        }
    }

    /// WCU per second the table absorbs right now.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> f64 {
        let mut s = self.lock();
        self.roll(&mut s);
        Self::limit_of(&s)
    }

    pub(crate) fn try_take(&self, cost: u64) -> bool {
        let mut s = self.lock();
        self.roll(&mut s);
        let limit = Self::limit_of(&s);
        let c = cost as f64;
        // As the provisioned bucket: an item larger than a whole second of
        // the limit goes through a full bucket rather than never.
        if s.tokens >= c || (limit > 0.0 && s.tokens >= limit) {
            s.tokens -= c;
            s.second_units += c;
            true
        } else {
            false
        }
    }

    pub(crate) fn refund(&self, units: u64) {
        let mut s = self.lock();
        self.roll(&mut s);
        let limit = Self::limit_of(&s);
        s.tokens = (s.tokens + units as f64).min(limit);
        s.second_units = (s.second_units - units as f64).max(0.0);
    }

    /// Pre-warms the table: it absorbs `wcu` per second from now on.
    pub(crate) fn warm(&self, wcu: f64) {
        let mut s = self.lock();
        self.roll(&mut s);
        s.floor = s.floor.max(wcu);
        s.tokens = s.tokens.max(s.floor);
    }

    fn limit_of(s: &State) -> f64 {
        let peak = s.peaks.front().map_or(0.0, |p| p.1);
        s.floor.max(2.0 * peak)
    }

    fn roll(&self, s: &mut State) {
        let now = Instant::now();
        let whole = now.saturating_duration_since(s.second_start).as_secs();
        if whole >= 1 {
            let units = s.second_units;
            if units > 0.0 {
                while s.peaks.back().is_some_and(|p| p.1 <= units) {
                    s.peaks.pop_back();
                }
                s.peaks.push_back((s.second_start, units));
            }
            s.second_start += Duration::from_secs(whole);
            s.second_units = 0.0;
        }
        while s
            .peaks
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.0) > self.window)
        {
            s.peaks.pop_front();
        }
        let limit = Self::limit_of(s);
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        if s.tokens < limit {
            s.tokens = (s.tokens + elapsed * limit).min(limit);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is left consistent between statements: a panic
        // elsewhere while holding the lock cannot have broken it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fields that make an `UpdateTable` do something in dynalite, which
/// refuses one that has none of them (and does not know warm throughput).
const UPDATE_FIELDS: [&str; 6] = [
    "ProvisionedThroughput",
    "BillingMode",
    "StreamSpecification",
    "GlobalSecondaryIndexUpdates",
    "SSESpecification",
    "ReplicaUpdates",
];

/// `UpdateTable`: takes `WarmThroughput.WriteUnitsPerSecond` as the on-demand
/// table's new starting level, and hands the rest to the upstream. An
/// update that only pre-warms is answered by the proxy with the table's
/// description, as the service answers it.
pub(crate) async fn update_table(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let Ok(mut json) = parse_body(&body) else {
        // Not ours to judge: the upstream answers as it answers bad input.
        return Ok(relay(
            shared,
            forward(shared, parts, body, None).await?,
            None,
        ));
    };
    let Some(warm) = json.remove("WarmThroughput") else {
        return Ok(relay(
            shared,
            forward(shared, parts, body, None).await?,
            None,
        ));
    };
    let wcu = warm.get("WriteUnitsPerSecond").and_then(Value::as_f64);
    if let Some(w) = wcu {
        if !(w.is_finite() && w >= 0.0) {
            return Err(ProxyError::Validation(format!(
                "WarmThroughput.WriteUnitsPerSecond must be a number >= 0, got {w}"
            )));
        }
        if let Some(od) = shared.budget.on_demand() {
            od.warm(w);
        }
    }
    if UPDATE_FIELDS.iter().any(|f| json.contains_key(*f)) {
        let stripped = Bytes::from(Value::Object(json).to_string());
        let up = forward(shared, parts, stripped, None).await?;
        return Ok(relay(shared, up, None));
    }
    let table = json.get("TableName").cloned().unwrap_or(Value::Null);
    let describe = Map::from_iter([("TableName".to_string(), table)]);
    let up = forward(
        shared,
        parts,
        Bytes::from(Value::Object(describe).to_string()),
        Some("DynamoDB_20120810.DescribeTable"),
    )
    .await?;
    let Ok(Value::Object(mut described)) = serde_json::from_slice::<Value>(&up.body) else {
        return Ok(relay(shared, up, None));
    };
    if !up.status.is_success() {
        return Ok(relay(shared, up, None));
    }
    let mut desc = described
        .remove("Table")
        .unwrap_or(Value::Object(Map::new()));
    if let (Value::Object(d), Some(w)) = (&mut desc, wcu) {
        d.insert(
            "WarmThroughput".into(),
            serde_json::json!({ "WriteUnitsPerSecond": w as i64, "Status": "ACTIVE" }),
        );
    }
    let out = serde_json::json!({ "TableDescription": desc });
    Ok(json_response(
        shared,
        StatusCode::OK,
        Bytes::from(out.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(initial: f64, window_ms: u64) -> OnDemandLimit {
        OnDemandLimit::new(OnDemand {
            initial_wcu: initial,
            peak_window: Duration::from_millis(window_ms),
        })
    }

    #[test]
    fn a_new_table_absorbs_its_initial_level() {
        let l = limiter(10.0, 60_000);
        assert_eq!(l.limit(), 10.0);
        for _ in 0..10 {
            assert!(l.try_take(1));
        }
        assert!(!l.try_take(1));
        l.refund(1);
        assert!(l.try_take(1));
        assert!(!l.try_take(1));
    }

    #[test]
    fn a_busy_second_doubles_the_next_and_is_forgotten_after_the_window() {
        let l = limiter(10.0, 1500);
        for _ in 0..10 {
            assert!(l.try_take(1));
        }
        std::thread::sleep(Duration::from_millis(1050));
        assert_eq!(l.limit(), 20.0, "twice the previous peak");
        std::thread::sleep(Duration::from_millis(1600));
        assert_eq!(l.limit(), 10.0, "the peak left the window");
    }

    #[test]
    fn warming_raises_the_floor_at_once() {
        let l = limiter(10.0, 60_000);
        l.warm(100.0);
        assert_eq!(l.limit(), 100.0);
        for _ in 0..100 {
            assert!(l.try_take(1));
        }
        assert!(!l.try_take(1));
        l.warm(5.0);
        assert_eq!(l.limit(), 100.0, "warming never lowers the level");
    }

    #[test]
    fn zero_absorbs_nothing_and_large_items_pass_a_full_bucket() {
        assert!(!limiter(0.0, 1000).try_take(1));
        let l = limiter(5.0, 1000);
        assert!(l.try_take(40));
        assert!(!l.try_take(1));
    }
}
