//! The drift watch's families: what each `backfill audit` round compared
//! and found, per source table, and when the last round finished.
//!
//! They are registered only in the watch's registry ([`Metrics::with_drift`]),
//! not in a worker's: a worker exposing a last-round time of 0 would read
//! as a watch that never ran.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{table, F64Gauge, TableLabels};
use crate::Metrics;

#[derive(Debug)]
pub(crate) struct DriftFamilies {
    rows_checked: Family<TableLabels, Counter>,
    missing: Family<TableLabels, Counter>,
    different: Family<TableLabels, Counter>,
    last_round: F64Gauge,
}

impl DriftFamilies {
    fn register(registry: &mut Registry) -> Self {
        let f = DriftFamilies {
            rows_checked: Family::default(),
            missing: Family::default(),
            different: Family::default(),
            last_round: F64Gauge::default(),
        };
        registry.register(
            "backfill_drift_rows_checked",
            "Rows the drift watch compared with their items (changed since the watermark, and the sample), per source table",
            f.rows_checked.clone(),
        );
        registry.register(
            "backfill_drift_missing",
            "Rows whose item the drift watch found missing after its re-check, per source table; a drift still there next round counts again",
            f.missing.clone(),
        );
        registry.register(
            "backfill_drift_different",
            "Rows whose item the drift watch found different after its re-check, per source table; a drift still there next round counts again",
            f.different.clone(),
        );
        registry.register_with_unit(
            "backfill_drift_last_round_timestamp",
            "When the drift watch last finished a round (Unix time)",
            Unit::Seconds,
            f.last_round.clone(),
        );
        f
    }
}

impl Metrics {
    /// A registry with the drift watch's families besides the worker's
    /// (which stay at zero in the watch's process).
    pub fn with_drift() -> Self {
        let mut m = Metrics::new();
        m.drift = Some(DriftFamilies::register(&mut m.registry));
        m
    }

    /// Creates the zero series of a watched table, so the first drift is an
    /// increase that `increase()` and the alert see.
    pub fn init_drift_table(&self, source: &str) {
        if let Some(d) = &self.drift {
            let t = table(source);
            let _ = d.rows_checked.get_or_create(&t);
            let _ = d.missing.get_or_create(&t);
            let _ = d.different.get_or_create(&t);
        }
    }

    /// One round's counts of one table.
    pub fn drift_round(&self, source: &str, rows_checked: u64, missing: u64, different: u64) {
        if let Some(d) = &self.drift {
            let t = table(source);
            d.rows_checked.get_or_create(&t).inc_by(rows_checked);
            d.missing.get_or_create(&t).inc_by(missing);
            d.different.get_or_create(&t).inc_by(different);
        }
    }

    /// A round (of every table) finished at `unix_secs`.
    pub fn drift_round_finished(&self, unix_secs: f64) {
        if let Some(d) = &self.drift {
            d.last_round.set(unix_secs);
        }
    }

    /// Drift counts of `source` so far: rows checked, missing, different.
    pub fn drift_totals(&self, source: &str) -> (u64, u64, u64) {
        let Some(d) = &self.drift else {
            return (0, 0, 0);
        };
        let t = table(source);
        let get = |f: &Family<TableLabels, Counter>| f.get(&t).map_or(0, |c| c.get());
        (get(&d.rows_checked), get(&d.missing), get(&d.different))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Metrics, TextFormat};

    #[test]
    fn drift_families_only_in_the_watch_and_counted_per_table() {
        let worker = Metrics::new();
        worker.drift_round("s.t", 5, 1, 1);
        let text = worker.encode(TextFormat::OpenMetrics).unwrap();
        assert!(!text.contains("backfill_drift"), "{text}");

        let m = Metrics::with_drift();
        m.init_drift_table("s.t");
        let text = m.encode(TextFormat::OpenMetrics).unwrap();
        assert!(
            text.contains("backfill_drift_missing_total{table=\"s.t\"} 0"),
            "{text}"
        );
        m.drift_round("s.t", 40, 1, 2);
        m.drift_round("s.t", 10, 0, 1);
        m.drift_round_finished(1_765_000_000.5);
        assert_eq!(m.drift_totals("s.t"), (50, 1, 3));
        assert_eq!(m.drift_totals("other"), (0, 0, 0));
        let text = m.encode(TextFormat::Prometheus).unwrap();
        for want in [
            "backfill_drift_rows_checked_total{table=\"s.t\"} 50",
            "backfill_drift_missing_total{table=\"s.t\"} 1",
            "backfill_drift_different_total{table=\"s.t\"} 3",
            "backfill_drift_last_round_timestamp_seconds 1765000000.5",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "no line {want:?} in\n{text}"
            );
        }
    }
}
