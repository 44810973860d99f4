//! The fleet's write budgets as this worker holds them: each target's
//! budget resolved once, a limiter per target at this worker's share, and
//! the heartbeat in the control table that re-divides every share by the
//! live workers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_capacity::WriteLimiter;
use backfill_dynamo::DynamoSink;
use tokio_util::sync::CancellationToken;

use crate::Worker;

impl Worker {
    /// The sink for writes to `target`: limited to this worker's share when
    /// the target has a budget.
    pub(crate) fn sink_for(&self, target: &str) -> DynamoSink {
        match self.limiters.lock().expect("limiters lock").get(target) {
            Some((_, l)) => self.sink.limited(l.clone()),
            None => self.sink.clone(),
        }
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
        let mut last = self.consumed_at_beat.lock().expect("consumed lock");
        let secs = last.0.elapsed().as_secs_f64().max(1e-3);
        let rates = now
            .iter()
            .map(|(t, total)| {
                let before = last.1.get(t).copied().unwrap_or(0.0);
                (t.clone(), ((total - before) / secs).max(0.0))
            })
            .collect();
        *last = (Instant::now(), now);
        rates
    }

    /// This worker's current write rate for `target` (WCU/s), if it has a budget.
    pub fn write_rate(&self, target: &str) -> Option<f64> {
        self.limiters
            .lock()
            .expect("limiters lock")
            .get(target)
            .map(|(_, l)| l.rate())
    }

    /// Resolves every table's fleet budget (a fraction of provisioned
    /// capacity is read with DescribeTable) and builds its limiter at the
    /// whole budget; the first heartbeat divides it by the live workers.
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
                (budget, Arc::new(WriteLimiter::new(&t.target, budget))),
            );
        }
        *self.limiters.lock().expect("limiters lock") = out;
        Ok(())
    }

    /// One heartbeat in the control table, and each budget re-divided by the
    /// live workers.
    pub(crate) async fn fleet_beat(&self) {
        let expiry = self.cfg.capacity.worker_expiry_secs;
        let busy = self.in_hand.load(Ordering::Relaxed) > 0
            || self.last_busy.lock().expect("last_busy lock").elapsed()
                < Duration::from_secs(expiry);
        let rates = self.consumed_rates();
        let beat = async {
            self.control
                .heartbeat(&self.worker_id, expiry, busy, &rates)
                .await?;
            self.control.live_workers(expiry).await
        };
        match beat.await {
            Ok(fleet) => {
                let divide = fleet.divisor(busy);
                for (target, (budget, l)) in self.limiters.lock().expect("limiters lock").iter() {
                    let share = backfill_capacity::share(*budget, divide);
                    l.set_share(share);
                    self.metrics.set_budget_share(target, share);
                }
                self.health.set_heartbeat_sent();
            }
            Err(e) => tracing::warn!(error = %e, "fleet heartbeat failed"),
        }
    }

    /// Heartbeats every few seconds until cancelled; then deregisters so the
    /// others take the freed share at once.
    pub(crate) async fn fleet_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.health.tick();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(self.cfg.capacity.heartbeat_secs)) => {}
                _ = cancel.cancelled() => break,
            }
            self.fleet_beat().await;
        }
        if let Err(e) = self.control.deregister(&self.worker_id).await {
            tracing::warn!(error = %e, "deregistering from the fleet failed");
        }
    }
}
