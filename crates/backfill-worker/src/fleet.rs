//! The fleet's write budgets as this worker holds them: each target's
//! budget resolved once, a limiter per target at this worker's share, and
//! the heartbeat in the control table that re-divides every share by the
//! live workers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_capacity::{KeyPacer, WriteLimiter, JOIN_START};
use backfill_control::{TargetLoad, HOT_KEYS_PER_BEAT};
use backfill_dynamo::{DynamoSink, KeyPacing};
use tokio_util::sync::CancellationToken;

use crate::Worker;

/// For its first [`JOIN_PERIOD`], a worker counts the fleet this often.
const JOIN_BEAT: Duration = Duration::from_millis(250);
/// Long enough for the rest of a fleet started together to register: the
/// processes of one start a second or more apart, and a worker that left
/// the fast beats once its count had held for a second still saw itself
/// alone, and took the whole budget until its next beat.
const JOIN_PERIOD: Duration = Duration::from_secs(10);

/// The rate a heartbeat reports is taken over about this long: over one
/// beat (a quarter of a second while joining) it read 0 or twice the rate
/// as batches fell in or out, and `status` showed 1,496 to 8,476 WCU/s
/// where the true ten-second rate was 4,399 to 5,502.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The consumed-WCU totals at recent heartbeats, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ConsumedSamples(std::collections::VecDeque<(Instant, HashMap<String, f64>)>);

impl ConsumedSamples {
    /// WCU/s per target from the oldest sample within [`RATE_WINDOW`] (or
    /// the newest before it) to `totals` now; 0 at the first beat.
    fn rates(&mut self, now: Instant, totals: HashMap<String, f64>) -> HashMap<String, f64> {
        // Keep one sample older than the window, so the window is whole.
        while self.0.len() > 1 && now.duration_since(self.0[1].0) >= RATE_WINDOW {
            self.0.pop_front();
        }
        let rates = match self.0.front() {
            Some((then, before)) => {
                let secs = now.saturating_duration_since(*then).as_secs_f64().max(1e-3);
                totals
                    .iter()
                    .map(|(t, total)| {
                        let b = before.get(t).copied().unwrap_or(0.0);
                        (t.clone(), ((total - b) / secs).max(0.0))
                    })
                    .collect()
            }
            None => totals.keys().map(|t| (t.clone(), 0.0)).collect(),
        };
        self.0.push_back((now, totals));
        rates
    }
}

/// What a worker holds per target table.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    /// Tables with a budget: the fleet budget and this worker's limiter.
    budgets: HashMap<String, (f64, Arc<WriteLimiter>)>,
    /// Every table written so far: the pacing of its partition-key values,
    /// shared by all of this worker's jobs on it.
    pacers: HashMap<String, Arc<KeyPacer>>,
    /// Tables with a read budget (`read_budget_rcu`): the fleet budget, and
    /// the limiters the verifier charges its reads to.
    read_budgets: HashMap<String, f64>,
    pub(crate) reads: backfill_verify::ReadBudgets,
}

impl Worker {
    fn targets(&self) -> std::sync::MutexGuard<'_, Targets> {
        // Maps only inserted into whole: a panic elsewhere while holding
        // the lock cannot have left them half-changed.
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sink for writes to `target` (whose partition key is the
    /// attribute `partition_key`): limited to this worker's share when the
    /// target has a budget, and paced per partition-key value unless
    /// `capacity.key_wcu_per_sec` is 0.
    pub(crate) fn sink_for(&self, target: &str, partition_key: &str) -> DynamoSink {
        let mut t = self.targets();
        let mut sink = match t.budgets.get(target) {
            Some((_, l)) => self.sink.limited(l.clone()),
            None => self.sink.clone(),
        };
        let cap = self.cfg.capacity.key_wcu_per_sec;
        if cap > 0.0 {
            let pacer = t
                .pacers
                .entry(target.to_string())
                .or_insert_with(|| Arc::new(KeyPacer::new(cap)))
                .clone();
            sink = sink.paced(KeyPacing {
                pacer,
                attribute: partition_key.into(),
            });
        }
        sink
    }

    /// WCU per second per target since the previous call. The totals are
    /// the metrics' counters, so `/metrics` and the fleet heartbeat (which
    /// `status` reads) never disagree.
    fn consumed_rates(&self) -> HashMap<String, f64> {
        let now: HashMap<String, f64> = self
            .cfg
            .tables
            .iter()
            .map(|t| (t.target.clone(), self.metrics.wcu_consumed_total(&t.target)))
            .collect();
        let mut samples = self
            .consumed_at_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        samples.rates(Instant::now(), now)
    }

    /// What slowed this worker's writes, per target, for its heartbeat:
    /// throttles by reason since it started (counters, so `status` sums
    /// live workers without losing a throttle between beats) and its
    /// hottest partition-key values.
    fn target_loads(&self, now: Instant) -> HashMap<String, TargetLoad> {
        let pacers = self.targets().pacers.clone();
        let mut loads = HashMap::new();
        for t in &self.cfg.tables {
            let all = self.metrics.throttles_total(&t.target);
            let key_range = self.metrics.key_range_throttles_total(&t.target);
            loads.insert(
                t.target.clone(),
                TargetLoad {
                    // Two counters read one after the other while writes
                    // go on: they need not agree to the last throttle.
                    table_throttles: all.saturating_sub(key_range),
                    key_range_throttles: key_range,
                    hot_keys: pacers
                        .get(&t.target)
                        .map(|p| p.hot_keys(HOT_KEYS_PER_BEAT, now))
                        .unwrap_or_default(),
                },
            );
        }
        loads
    }

    /// This worker's share of `target`'s fleet budget (WCU/s), before its
    /// backoff and join ramp, if the target has a budget.
    pub fn write_share(&self, target: &str) -> Option<f64> {
        self.targets().budgets.get(target).map(|(_, l)| l.share())
    }

    /// This worker's current write rate for `target` (WCU/s), if it has a budget.
    pub fn write_rate(&self, target: &str) -> Option<f64> {
        self.targets().budgets.get(target).map(|(_, l)| l.rate())
    }

    /// Resolves every table's fleet budget (a fraction of provisioned
    /// capacity is read with DescribeTable) and builds its limiter at the
    /// whole budget, ramping from [`JOIN_START`] of it; the first heartbeat
    /// divides it by the live workers.
    pub(crate) async fn resolve_budgets(&self) -> Result<(), String> {
        let mut out = HashMap::new();
        for t in &self.cfg.tables {
            let Some(budget) = backfill_dynamo::write_budget(self.sink.client(), t).await? else {
                continue;
            };
            tracing::info!(target = %t.target, budget_wcu = budget, "fleet write budget");
            self.metrics.set_budget(&t.target, budget);
            out.insert(
                t.target.clone(),
                (
                    budget,
                    Arc::new(WriteLimiter::ramping(&t.target, budget, JOIN_START)),
                ),
            );
        }
        let mut t = self.targets();
        t.budgets = out;
        for table in &self.cfg.tables {
            if let Some(rcu) = table.read_budget_rcu {
                tracing::info!(target = %table.target, budget_rcu = rcu, "fleet read budget (verification)");
                t.read_budgets.insert(table.target.clone(), rcu);
                t.reads.set(
                    &table.target,
                    Arc::new(WriteLimiter::ramping(&table.target, rcu, JOIN_START)),
                );
            }
        }
        Ok(())
    }

    /// One heartbeat in the control table, and each budget re-divided by the
    /// live workers.
    pub(crate) async fn fleet_beat(&self) {
        let expiry = self.cfg.capacity.worker_expiry_secs;
        // Jobs still on the queue mean every live worker is about to be
        // busy; when the depth cannot be read, assume so (the smaller share
        // is the safe side).
        let waiting = self.queue.depth().await.map_or(true, |d| d.visible > 0);
        // Between jobs a worker still counts as busy for a while, so its
        // share does not flap; once nothing waits it has no next job, and
        // its share goes to the workers finishing the last ones at once
        // (held for the expiry, it kept the fleet's tail at part of the
        // budget for ten seconds).
        let busy = self.in_hand.load(Ordering::Relaxed) > 0
            || (waiting
                && self.last_busy.lock().expect("last_busy lock").elapsed()
                    < Duration::from_secs(expiry));
        let rates = self.consumed_rates();
        let loads = self.target_loads(Instant::now());
        let beat = async {
            self.control
                .heartbeat(&self.worker_id, expiry, busy, &rates, &loads)
                .await?;
            self.control.live_workers(expiry).await
        };
        match beat.await {
            Ok(fleet) => {
                let divide = fleet.divisor(busy, waiting);
                self.tail
                    .observe(waiting, fleet.live, fleet.busy, Instant::now());
                tracing::debug!(
                    live = fleet.live,
                    busy = fleet.busy,
                    waiting,
                    divide,
                    "fleet counted"
                );
                let t = self.targets();
                for (target, (budget, l)) in t.budgets.iter() {
                    let share = backfill_capacity::share(*budget, divide);
                    l.set_share(share);
                    self.metrics.set_budget_share(target, share);
                }
                for (target, budget) in t.read_budgets.iter() {
                    if let Some(l) = t.reads.get(target) {
                        l.set_share(backfill_capacity::share(*budget, divide));
                    }
                }
                drop(t);
                for (target, load) in &loads {
                    if !load.hot_keys.is_empty() {
                        let hot: Vec<String> = load
                            .hot_keys
                            .iter()
                            .map(|h| {
                                format!(
                                    "{} at {:.0} WCU/s ({} throttles)",
                                    h.label, h.rate, h.throttles
                                )
                            })
                            .collect();
                        tracing::info!(target = %target, hot = %hot.join(", "), "hot partition keys slowed");
                    }
                }
                self.health.set_heartbeat_sent();
            }
            Err(e) => tracing::warn!(error = %e, "fleet heartbeat failed"),
        }
    }

    /// Heartbeats every few seconds until cancelled; then deregisters so the
    /// others take the freed share at once.
    /// While joining, beats come every [`JOIN_BEAT`], so workers started
    /// together learn of each other before their limiters have ramped up.
    pub(crate) async fn fleet_loop(self: Arc<Self>, cancel: CancellationToken) {
        let started = Instant::now();
        loop {
            self.health.tick();
            let every = if started.elapsed() < JOIN_PERIOD {
                JOIN_BEAT
            } else {
                Duration::from_secs(self.cfg.capacity.heartbeat_secs)
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cancel.cancelled() => break,
            }
            self.fleet_beat().await;
        }
        if let Err(e) = self.control.deregister(&self.worker_id).await {
            tracing::warn!(error = %e, "deregistering from the fleet failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_rate_is_taken_over_the_window_not_one_beat() {
        let mut s = ConsumedSamples::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let total = |w: f64| HashMap::from([("t".to_string(), w)]);
        assert_eq!(
            s.rates(at(0), total(0.0))["t"],
            0.0,
            "no rate at the first beat"
        );
        // Batches of 50 WCU every half second (100 WCU/s), beats every
        // 250 ms: one beat sees a batch or none (200 or 0 WCU/s); the
        // window sees the rate.
        let mut w = 0.0;
        let mut seen = Vec::new();
        for i in 1..=80u64 {
            if i % 2 == 0 {
                w += 50.0;
            }
            seen.push(s.rates(at(i * 250), total(w))["t"]);
        }
        for r in &seen[50..] {
            assert!((r - 100.0).abs() < 6.0, "{r} in {seen:?}");
        }
        assert!(
            s.0.len() <= 42,
            "samples are dropped past the window: {}",
            s.0.len()
        );
    }
}
