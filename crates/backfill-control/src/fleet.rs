//! Fleet heartbeats (`pk = FLEET`, `sk = WORKER#<id>`): a worker
//! registering and refreshing itself, leaving, and the live fleet as its
//! heartbeats show it.
//!
//! The control table only stores and counts heartbeats; how a budget is
//! divided among them is capacity's policy ([`backfill_capacity::FleetCount`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_capacity::{FleetCount, HotKey};

use crate::{epoch_ms, get_n, get_s, n, s, ControlError, ControlTable, Item};

const FLEET_PK: &str = "FLEET";

/// The hot keys a heartbeat carries per target: `status` shows the top
/// few, and a heartbeat is rewritten every few seconds, so it stays small.
pub const HOT_KEYS_PER_BEAT: usize = 3;

/// One live worker as its last heartbeat says.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBeat {
    pub worker: String,
    pub busy: bool,
    pub heartbeat_ms: u64,
    /// WCU per second it wrote to each target table since its previous heartbeat.
    pub wcu_per_sec: HashMap<String, f64>,
    /// What slowed its writes, per target table (absent: nothing, or a
    /// heartbeat written before workers reported it).
    pub load: HashMap<String, TargetLoad>,
}

/// What slowed one worker's writes to one target table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetLoad {
    /// Throttles since the worker started that slowed its share of the
    /// table's budget.
    pub table_throttles: u64,
    /// Throttles since the worker started that slowed partition-key values
    /// alone.
    pub key_range_throttles: u64,
    /// Its most throttled partition-key values still slowed, at most
    /// [`HOT_KEYS_PER_BEAT`].
    pub hot_keys: Vec<HotKey>,
}

impl TargetLoad {
    /// Nothing to report: not worth a heartbeat's bytes.
    pub fn is_empty(&self) -> bool {
        self.table_throttles == 0 && self.key_range_throttles == 0 && self.hot_keys.is_empty()
    }
}

/// A rate as a DynamoDB number: a NaN or infinity would make the whole
/// heartbeat a `ValidationException`.
fn rate_n(r: f64) -> AttributeValue {
    AttributeValue::N(format!(
        "{:.3}",
        if r.is_finite() { r.max(0.0) } else { 0.0 }
    ))
}

fn load_value(l: &TargetLoad) -> AttributeValue {
    let hot = l
        .hot_keys
        .iter()
        .take(HOT_KEYS_PER_BEAT)
        .map(|h| {
            AttributeValue::M(HashMap::from([
                ("label".to_string(), s(h.label.clone())),
                ("rate".to_string(), rate_n(h.rate)),
                ("throttles".to_string(), n(h.throttles)),
            ]))
        })
        .collect();
    AttributeValue::M(HashMap::from([
        ("table_throttles".to_string(), n(l.table_throttles)),
        ("key_range_throttles".to_string(), n(l.key_range_throttles)),
        ("hot".to_string(), AttributeValue::L(hot)),
    ]))
}

/// A target's load from its map; whatever is missing or malformed reads
/// as 0 or empty, since `status` must show the rest of the fleet anyway.
fn load_record(v: &AttributeValue) -> TargetLoad {
    let Ok(m) = v.as_m() else {
        return TargetLoad::default();
    };
    let rate = |m: &Item| {
        m.get("rate")
            .and_then(|v| v.as_n().ok())
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r >= 0.0)
            .unwrap_or(0.0)
    };
    let hot_keys = match m.get("hot") {
        Some(AttributeValue::L(l)) => l
            .iter()
            .filter_map(|h| h.as_m().ok())
            .filter_map(|h| {
                Some(HotKey {
                    label: get_s(h, "label")?,
                    rate: rate(h),
                    throttles: get_n(h, "throttles"),
                })
            })
            .take(HOT_KEYS_PER_BEAT)
            .collect(),
        _ => Vec::new(),
    };
    TargetLoad {
        table_throttles: get_n(m, "table_throttles"),
        key_range_throttles: get_n(m, "key_range_throttles"),
        hot_keys,
    }
}

/// The heartbeat item of `worker` at `now_ms`, kept `expiry_secs * 10`
/// before a DynamoDB TTL may remove it (long after it stops counting).
fn beat_item(
    worker: &str,
    now_ms: u64,
    expiry_secs: u64,
    busy: bool,
    wcu_per_sec: &HashMap<String, f64>,
    load: &HashMap<String, TargetLoad>,
) -> Item {
    let wcu: HashMap<String, AttributeValue> = wcu_per_sec
        .iter()
        .map(|(t, r)| (t.clone(), AttributeValue::N(format!("{r:.3}"))))
        .collect();
    let load: HashMap<String, AttributeValue> = load
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(t, l)| (t.clone(), load_value(l)))
        .collect();
    Item::from([
        ("wcu".to_string(), AttributeValue::M(wcu)),
        ("load".to_string(), AttributeValue::M(load)),
        ("pk".to_string(), s(FLEET_PK)),
        ("sk".to_string(), s(format!("WORKER#{worker}"))),
        ("heartbeat_ms".to_string(), n(now_ms)),
        ("busy".to_string(), AttributeValue::Bool(busy)),
        (
            "expires_at".to_string(),
            n(now_ms / 1000 + expiry_secs * 10),
        ),
    ])
}

/// A worker's heartbeat from its item.
fn beat_record(i: &Item) -> WorkerBeat {
    let wcu_per_sec = match i.get("wcu") {
        Some(AttributeValue::M(m)) => m
            .iter()
            .filter_map(|(t, v)| Some((t.clone(), v.as_n().ok()?.parse().ok()?)))
            .collect(),
        _ => HashMap::new(),
    };
    let load = match i.get("load") {
        Some(AttributeValue::M(m)) => m.iter().map(|(t, v)| (t.clone(), load_record(v))).collect(),
        _ => HashMap::new(),
    };
    WorkerBeat {
        worker: get_s(i, "sk")
            .and_then(|sk| sk.strip_prefix("WORKER#").map(str::to_string))
            .unwrap_or_default(),
        busy: !matches!(i.get("busy"), Some(AttributeValue::Bool(false))),
        heartbeat_ms: get_n(i, "heartbeat_ms"),
        wcu_per_sec,
        load,
    }
}

impl ControlTable {
    /// Registers or refreshes a worker: its heartbeat, in ms since the epoch.
    /// `expires_at` (epoch seconds) lets a DynamoDB TTL remove dead workers' records.
    /// `busy`: the worker holds a job, or held one or started within the
    /// expiry; only busy workers divide a budget, so at the end of a run the
    /// workers still copying take the share of those with nothing left to do.
    /// `wcu_per_sec`: what this worker wrote per target table since its last
    /// heartbeat, which `status` sums into the fleet's capacity use.
    /// `load`: what slowed its writes per target table, which `status`
    /// sums and merges over the fleet.
    pub async fn heartbeat(
        &self,
        worker: &str,
        expiry_secs: u64,
        busy: bool,
        wcu_per_sec: &HashMap<String, f64>,
        load: &HashMap<String, TargetLoad>,
    ) -> Result<(), ControlError> {
        let item = beat_item(worker, epoch_ms(), expiry_secs, busy, wcu_per_sec, load);
        self.put(item, None, backfill_aws::RetryPolicy::CALL)
            .await?;
        Ok(())
    }

    /// Workers whose last heartbeat is younger than `expiry_secs`: all of
    /// them, and the busy ones.
    pub async fn live_workers(&self, expiry_secs: u64) -> Result<FleetCount, ControlError> {
        let fleet = self.fleet(expiry_secs).await?;
        Ok(FleetCount {
            live: fleet.len(),
            busy: fleet.iter().filter(|w| w.busy).count(),
        })
    }

    /// The live workers' heartbeats.
    pub async fn fleet(&self, expiry_secs: u64) -> Result<Vec<WorkerBeat>, ControlError> {
        let oldest = epoch_ms().saturating_sub(expiry_secs * 1000);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(FLEET_PK))
            .consistent_read(true);
        Ok(self
            .query_all(query)
            .await?
            .iter()
            .filter(|i| get_n(i, "heartbeat_ms") >= oldest)
            .map(beat_record)
            .collect())
    }

    /// Removes a stopping worker at once, so its share goes to the others
    /// at their next heartbeat instead of after the expiry.
    pub async fn deregister(&self, worker: &str) -> Result<(), ControlError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(FLEET_PK))
                .key("sk", s(format!("WORKER#{worker}")))
                .send()
        })
        .await
        .map_err(|e| self.err("DeleteItem", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reads_back_as_written() {
        let wcu = HashMap::from([("t".to_string(), 12.5)]);
        let hot = |label: &str, rate: f64, throttles: u64| HotKey {
            label: label.into(),
            rate,
            throttles,
        };
        let load = HashMap::from([
            (
                "t".to_string(),
                TargetLoad {
                    table_throttles: 12,
                    key_range_throttles: 340,
                    hot_keys: vec![hot("tenant=7", 450.0, 200), hot("tenant=9", 112.5, 140)],
                },
            ),
            ("quiet".to_string(), TargetLoad::default()),
        ]);
        let item = beat_item("w1", 1_700_000_000_123, 30, false, &wcu, &load);
        assert_eq!(item.get("expires_at"), Some(&n(1_700_000_000u64 + 300)));
        assert_eq!(
            item.get("wcu")
                .and_then(|m| m.as_m().ok())
                .and_then(|m| m.get("t")),
            Some(&AttributeValue::N("12.500".into()))
        );
        let beat = beat_record(&item);
        let mut written = load.clone();
        written.remove("quiet");
        assert_eq!(
            beat,
            WorkerBeat {
                worker: "w1".into(),
                busy: false,
                heartbeat_ms: 1_700_000_000_123,
                wcu_per_sec: wcu,
                load: written,
            },
            "a target with nothing to report is left out"
        );
    }

    #[test]
    fn an_old_or_odd_heartbeat_reads_as_zero_and_empty() {
        let mut old = beat_item("w", 1, 1, true, &HashMap::new(), &HashMap::new());
        old.remove("load");
        assert!(beat_record(&old).load.is_empty());

        let odd = |v: AttributeValue| {
            let mut i = old.clone();
            i.insert(
                "load".into(),
                AttributeValue::M(HashMap::from([("t".into(), v)])),
            );
            beat_record(&i).load.remove("t").unwrap_or_default()
        };
        assert_eq!(odd(AttributeValue::S("12".into())), TargetLoad::default());
        let garbled = AttributeValue::M(HashMap::from([
            ("table_throttles".into(), AttributeValue::N("-3".into())),
            ("key_range_throttles".into(), AttributeValue::S("7".into())),
            (
                "hot".into(),
                AttributeValue::L(vec![
                    AttributeValue::S("k".into()),
                    AttributeValue::M(HashMap::from([(
                        "rate".into(),
                        AttributeValue::N("5".into()),
                    )])),
                    AttributeValue::M(HashMap::from([
                        ("label".into(), AttributeValue::S("k=1".into())),
                        ("rate".into(), AttributeValue::N("NaN".into())),
                        ("throttles".into(), AttributeValue::N("x".into())),
                    ])),
                ]),
            ),
        ]));
        assert_eq!(
            odd(garbled),
            TargetLoad {
                table_throttles: 0,
                key_range_throttles: 0,
                hot_keys: vec![HotKey {
                    label: "k=1".into(),
                    rate: 0.0,
                    throttles: 0,
                }],
            },
            "a key without a label is dropped; bad numbers read as 0"
        );
        let mut odd_load = old.clone();
        odd_load.insert("load".into(), AttributeValue::L(vec![]));
        assert!(beat_record(&odd_load).load.is_empty());

        // A rate that is no number is never written as one.
        let nan = TargetLoad {
            hot_keys: vec![HotKey {
                label: "k".into(),
                rate: f64::NAN,
                throttles: 1,
            }],
            ..Default::default()
        };
        let item = beat_item(
            "w",
            1,
            1,
            true,
            &HashMap::new(),
            &HashMap::from([("t".to_string(), nan)]),
        );
        assert_eq!(beat_record(&item).load["t"].hot_keys[0].rate, 0.0);
    }
}
