//! Fleet heartbeats (`pk = FLEET`, `sk = WORKER#<id>`): a worker
//! registering and refreshing itself, leaving, and the live fleet as its
//! heartbeats show it.
//!
//! The control table only stores and counts heartbeats; how a budget is
//! divided among them is capacity's policy ([`backfill_capacity::FleetCount`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_capacity::FleetCount;

use crate::{epoch_ms, get_n, get_s, n, s, ControlError, ControlTable, Item};

const FLEET_PK: &str = "FLEET";

/// One live worker as its last heartbeat says.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBeat {
    pub worker: String,
    pub busy: bool,
    pub heartbeat_ms: u64,
    /// WCU per second it wrote to each target table since its previous heartbeat.
    pub wcu_per_sec: HashMap<String, f64>,
}

/// The heartbeat item of `worker` at `now_ms`, kept `expiry_secs * 10`
/// before a DynamoDB TTL may remove it (long after it stops counting).
fn beat_item(
    worker: &str,
    now_ms: u64,
    expiry_secs: u64,
    busy: bool,
    wcu_per_sec: &HashMap<String, f64>,
) -> Item {
    let wcu: HashMap<String, AttributeValue> = wcu_per_sec
        .iter()
        .map(|(t, r)| (t.clone(), AttributeValue::N(format!("{r:.3}"))))
        .collect();
    Item::from([
        ("wcu".to_string(), AttributeValue::M(wcu)),
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
    WorkerBeat {
        worker: get_s(i, "sk")
            .and_then(|sk| sk.strip_prefix("WORKER#").map(str::to_string))
            .unwrap_or_default(),
        busy: !matches!(i.get("busy"), Some(AttributeValue::Bool(false))),
        heartbeat_ms: get_n(i, "heartbeat_ms"),
        wcu_per_sec,
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
    pub async fn heartbeat(
        &self,
        worker: &str,
        expiry_secs: u64,
        busy: bool,
        wcu_per_sec: &HashMap<String, f64>,
    ) -> Result<(), ControlError> {
        let item = beat_item(worker, epoch_ms(), expiry_secs, busy, wcu_per_sec);
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
        let item = beat_item("w1", 1_700_000_000_123, 30, false, &wcu);
        assert_eq!(item.get("expires_at"), Some(&n(1_700_000_000u64 + 300)));
        assert_eq!(
            item.get("wcu")
                .and_then(|m| m.as_m().ok())
                .and_then(|m| m.get("t")),
            Some(&AttributeValue::N("12.500".into()))
        );
        let beat = beat_record(&item);
        assert_eq!(
            beat,
            WorkerBeat {
                worker: "w1".into(),
                busy: false,
                heartbeat_ms: 1_700_000_000_123,
                wcu_per_sec: wcu,
            }
        );
    }
}
