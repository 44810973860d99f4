//! What slows a target's writes, over the live fleet: throttles by reason
//! and the hottest partition-key values, merged from the workers'
//! heartbeats (each worker reports only what it met itself).

use std::collections::HashMap;

use backfill_control::WorkerBeat;
use serde::Serialize;

/// The hot keys `status` shows per table: the few worth acting on.
pub const HOT_KEYS: usize = 3;

/// A target's throttles by reason, summed over the live workers, each
/// counted since that worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttles {
    /// Throttles that slowed the fleet's share of the table's budget.
    pub table_wide: u64,
    /// Throttles that slowed partition-key values alone.
    pub key_range: u64,
}

impl Throttles {
    pub fn is_zero(&self) -> bool {
        self.table_wide == 0 && self.key_range == 0
    }
}

/// A partition-key value DynamoDB throttled, over the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotKeyStatus {
    /// The key as the workers log it (`attribute=value`, shortened).
    pub label: String,
    /// The WCU/s the live workers now write it at together.
    pub wcu_per_sec: f64,
    /// Its throttles, summed over the live workers.
    pub throttles: u64,
}

/// `target`'s throttles by reason, over `fleet`.
pub(crate) fn throttles(fleet: &[WorkerBeat], target: &str) -> Throttles {
    fleet
        .iter()
        .filter_map(|w| w.load.get(target))
        .fold(Throttles::default(), |t, l| Throttles {
            table_wide: t.table_wide.saturating_add(l.table_throttles),
            key_range: t.key_range.saturating_add(l.key_range_throttles),
        })
}

/// `target`'s hot keys over `fleet`: a key several workers slowed is one
/// key (it lives in one partition, which they share), so their rates and
/// throttles add up; the [`HOT_KEYS`] most throttled, then the fastest.
pub(crate) fn hot_keys(fleet: &[WorkerBeat], target: &str) -> Vec<HotKeyStatus> {
    let mut merged: HashMap<&str, HotKeyStatus> = HashMap::new();
    for h in fleet
        .iter()
        .filter_map(|w| w.load.get(target))
        .flat_map(|l| &l.hot_keys)
    {
        let k = merged
            .entry(h.label.as_str())
            .or_insert_with(|| HotKeyStatus {
                label: h.label.clone(),
                wcu_per_sec: 0.0,
                throttles: 0,
            });
        k.wcu_per_sec += h.rate;
        k.throttles = k.throttles.saturating_add(h.throttles);
    }
    let mut hot: Vec<HotKeyStatus> = merged.into_values().collect();
    hot.sort_by(|a, b| {
        b.throttles
            .cmp(&a.throttles)
            .then(b.wcu_per_sec.total_cmp(&a.wcu_per_sec))
            .then_with(|| a.label.cmp(&b.label))
    });
    hot.truncate(HOT_KEYS);
    hot
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_control::{HotKey, TargetLoad};

    fn beat(worker: &str, target: &str, load: TargetLoad) -> WorkerBeat {
        WorkerBeat {
            worker: worker.into(),
            busy: true,
            heartbeat_ms: 0,
            wcu_per_sec: HashMap::new(),
            load: HashMap::from([(target.to_string(), load)]),
        }
    }

    fn hot(label: &str, rate: f64, throttles: u64) -> HotKey {
        HotKey {
            label: label.into(),
            rate,
            throttles,
        }
    }

    fn shown(label: &str, wcu_per_sec: f64, throttles: u64) -> HotKeyStatus {
        HotKeyStatus {
            label: label.into(),
            wcu_per_sec,
            throttles,
        }
    }

    #[test]
    fn throttles_and_hot_keys_merge_over_the_fleet() {
        let fleet = vec![
            beat(
                "a",
                "T",
                TargetLoad {
                    table_throttles: 5,
                    key_range_throttles: 300,
                    hot_keys: vec![hot("tenant=7", 200.0, 8), hot("tenant=2", 900.0, 2)],
                },
            ),
            beat(
                "b",
                "T",
                TargetLoad {
                    table_throttles: 7,
                    key_range_throttles: 40,
                    hot_keys: vec![
                        hot("tenant=7", 250.0, 4),
                        hot("tenant=3", 100.0, 10),
                        hot("tenant=4", 450.0, 2),
                    ],
                },
            ),
            beat(
                "c",
                "other",
                TargetLoad {
                    table_throttles: 1_000,
                    key_range_throttles: 1_000,
                    hot_keys: vec![hot("tenant=7", 1.0, 1_000)],
                },
            ),
        ];
        assert_eq!(
            throttles(&fleet, "T"),
            Throttles {
                table_wide: 12,
                key_range: 340
            }
        );
        // tenant=7 is one key over two workers (12 throttles at 450 WCU/s);
        // of the two with 2 throttles the faster goes first.
        assert_eq!(
            hot_keys(&fleet, "T"),
            [
                shown("tenant=7", 450.0, 12),
                shown("tenant=3", 100.0, 10),
                shown("tenant=2", 900.0, 2),
            ]
        );
        assert!(throttles(&fleet, "none").is_zero());
        assert!(hot_keys(&fleet, "none").is_empty());
    }

    #[test]
    fn huge_counts_saturate_instead_of_overflowing() {
        let big = TargetLoad {
            table_throttles: u64::MAX,
            key_range_throttles: u64::MAX,
            hot_keys: vec![hot("k", 1.0, u64::MAX)],
        };
        let fleet = vec![beat("a", "T", big.clone()), beat("b", "T", big)];
        assert_eq!(throttles(&fleet, "T").table_wide, u64::MAX);
        assert_eq!(hot_keys(&fleet, "T")[0].throttles, u64::MAX);
    }
}
