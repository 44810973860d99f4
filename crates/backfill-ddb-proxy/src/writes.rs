//! The write operations: admission, forwarding (or answering in place),
//! refunds, and the counters.

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::admission::{units_per_partition, Charge};
use crate::error::{ProxyError, ThrottleReason};
use crate::request::{
    merge_unprocessed, parse_body, single_write_cost, single_write_item, unprocessed_entries,
    BatchWrite, WriteOp,
};
use crate::server::{forward, json_response, pass_through, relay, Shared};
use crate::{Counters, Mode};

pub(crate) async fn single_write(
    shared: &Shared,
    op: WriteOp,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let json = parse_body(&body)?;
    if !shared.prices(table_name(&json)) {
        return pass_through(shared, parts, body).await;
    }
    let cost = single_write_cost(op, &json)?;
    let charge = Charge {
        cost,
        partition: shared
            .budget
            .partition_of_item(single_write_item(op, &json)),
    };
    if let Err(reason) = shared.budget.admit_one(charge) {
        if reason == ThrottleReason::KeyRange {
            if let Some(p) = charge.partition {
                shared.counters.record_partition_throttle(p);
            }
        }
        return Err(throttled(shared, reason, table_name(&json)));
    }
    let per_partition = units_per_partition([charge]);
    if shared.mode == Mode::Blackhole {
        shared.counters.record_accepted(cost, 1, &per_partition);
        let mut out = Map::new();
        if let Some(cc) = consumed_capacity(&json, table_name(&json), cost) {
            out.insert("ConsumedCapacity".into(), cc);
        }
        return Ok(json_response(
            shared,
            StatusCode::OK,
            Bytes::from(Value::Object(out).to_string()),
        ));
    }
    let up = match forward(shared, parts, body, None).await {
        Ok(up) => up,
        Err(e) => {
            shared.budget.refund([charge]);
            return Err(e);
        }
    };
    // DynamoDB charges a write whose condition failed; not one it refused.
    if up.status.is_success() || up.is_error("ConditionalCheckFailedException") {
        shared.counters.record_accepted(cost, 1, &per_partition);
    } else {
        shared.budget.refund([charge]);
    }
    Ok(relay(shared, up, None))
}

pub(crate) async fn batch_write(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let json = parse_body(&body)?;
    let batch = BatchWrite::parse(&json)?;
    // A batch pays when it writes the priced table at all (a worker's
    // batches each name one table).
    if !batch.entries.iter().any(|e| shared.prices(&e.table)) {
        return pass_through(shared, parts, body).await;
    }
    let charges: Vec<Charge> = batch
        .entries
        .iter()
        .map(|e| Charge {
            cost: e.cost,
            partition: shared.budget.partition_of_item(e.item()),
        })
        .collect();
    // An injected partial answer: only the first half may be written.
    let offered = if shared.faults.unprocessed_half && charges.len() > 1 {
        charges.len().div_ceil(2)
    } else {
        charges.len()
    };
    let a = shared.budget.admit_batch(&charges, offered);
    for &p in &a.refusing_partitions {
        shared.counters.record_partition_throttle(p);
    }
    if a.admitted.is_empty() {
        let reason = a.reason(shared.budget.table_reason());
        // Parsing guarantees at least one entry.
        let table = batch.entries.first().map_or("", |e| e.table.as_str());
        return Err(throttled(shared, reason, table));
    }
    if offered < charges.len() {
        Counters::add(
            &shared.counters.injected_unprocessed,
            (charges.len() - offered) as u64,
        );
    }
    let admitted: Vec<Charge> = a.admitted.iter().map(|&i| charges[i]).collect();
    let admitted_units: u64 = admitted.iter().map(|c| c.cost).sum();
    let admitted_count = admitted.len() as u64;
    let deferred = batch.grouped(&a.deferred);
    let deferred_count = a.deferred.len() as u64;
    let mut per_partition = units_per_partition(admitted.iter().copied());

    if matches!(shared.mode, Mode::Blackhole | Mode::BlackholeBatches) {
        shared
            .counters
            .record_accepted(admitted_units, admitted_count, &per_partition);
        count_deferred(shared, deferred_count, a.key_range_deferred);
        let mut out = Map::new();
        out.insert("UnprocessedItems".into(), Value::Object(deferred));
        if let Some(mode) = return_consumed_capacity(&json) {
            let per_table: Vec<Value> = batch
                .units_per_table(&a.admitted)
                .into_iter()
                .map(|(table, units)| capacity_entry(mode, &table, units))
                .collect();
            out.insert("ConsumedCapacity".into(), Value::Array(per_table));
        }
        return Ok(json_response(
            shared,
            StatusCode::OK,
            Bytes::from(Value::Object(out).to_string()),
        ));
    }

    let forwarded_body = if deferred_count == 0 {
        body
    } else {
        Bytes::from(Value::Object(batch.body_with(&json, &a.admitted)).to_string())
    };
    let up = match forward(shared, parts, forwarded_body, None).await {
        Ok(up) => up,
        Err(e) => {
            shared.budget.refund(admitted);
            return Err(e);
        }
    };
    if !up.status.is_success() {
        // The whole call failed: nothing was written, nothing is deferred.
        shared.budget.refund(admitted);
        return Ok(relay(shared, up, None));
    }
    let mut response = match serde_json::from_slice::<Value>(&up.body) {
        Ok(Value::Object(m)) => m,
        // Not a body we can amend: relay it, and count what we admitted.
        _ => {
            shared
                .counters
                .record_accepted(admitted_units, admitted_count, &per_partition);
            return Ok(relay(shared, up, None));
        }
    };
    // Items the upstream left unprocessed were not written: not charged.
    let returned: Vec<Charge> = match response.get("UnprocessedItems") {
        Some(Value::Object(m)) => unprocessed_entries(m)
            .map(|es| {
                es.iter()
                    .map(|e| Charge {
                        cost: e.cost,
                        partition: shared.budget.partition_of_item(e.item()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let returned_units = returned
        .iter()
        .map(|c| c.cost)
        .sum::<u64>()
        .min(admitted_units);
    let returned_items = (returned.len() as u64).min(admitted_count);
    // A partition gets back at most what it paid, whatever the upstream
    // claims to have left undone.
    let mut refunds = Vec::new();
    for (p, units) in units_per_partition(returned) {
        if let Some((_, paid)) = per_partition.iter_mut().find(|(q, _)| *q == p) {
            let back = units.min(*paid);
            *paid -= back;
            refunds.push((p, back));
        }
    }
    shared.budget.refund_units(returned_units, &refunds);
    shared.counters.record_accepted(
        admitted_units - returned_units,
        admitted_count - returned_items,
        &per_partition,
    );
    if deferred_count == 0 {
        return Ok(relay(shared, up, None));
    }
    count_deferred(shared, deferred_count, a.key_range_deferred);
    let unprocessed = response
        .entry("UnprocessedItems")
        .or_insert_with(|| Value::Object(Map::new()));
    if !unprocessed.is_object() {
        *unprocessed = Value::Object(Map::new());
    }
    if let Value::Object(u) = unprocessed {
        merge_unprocessed(u, deferred);
    }
    let body = Bytes::from(Value::Object(response).to_string());
    Ok(relay(shared, up, Some(body)))
}

/// Counts a throttled call and makes its error.
fn throttled(shared: &Shared, reason: ThrottleReason, table: &str) -> ProxyError {
    let c = &shared.counters;
    Counters::add(&c.throttled_requests, 1);
    match reason {
        ThrottleReason::KeyRange => Counters::add(&c.throttled_key_range, 1),
        ThrottleReason::TableProvisioned | ThrottleReason::MaxOnDemand => {
            Counters::add(&c.throttled_table, 1)
        }
    }
    ProxyError::Throttled {
        reason,
        table: table.to_string(),
    }
}

fn count_deferred(shared: &Shared, deferred: u64, key_range: u64) {
    Counters::add(&shared.counters.unprocessed_items_returned, deferred);
    Counters::add(&shared.counters.unprocessed_key_range, key_range);
}

fn table_name(json: &Map<String, Value>) -> &str {
    json.get("TableName").and_then(Value::as_str).unwrap_or("")
}

/// `TOTAL` or `INDEXES` when the request asks for consumed capacity.
fn return_consumed_capacity(json: &Map<String, Value>) -> Option<&str> {
    match json.get("ReturnConsumedCapacity").and_then(Value::as_str) {
        Some(m @ ("TOTAL" | "INDEXES")) => Some(m),
        _ => None,
    }
}

fn consumed_capacity(json: &Map<String, Value>, table: &str, units: u64) -> Option<Value> {
    return_consumed_capacity(json).map(|mode| capacity_entry(mode, table, units))
}

fn capacity_entry(mode: &str, table: &str, units: u64) -> Value {
    let mut v = json!({ "TableName": table, "CapacityUnits": units });
    if mode == "INDEXES" {
        v["Table"] = json!({ "CapacityUnits": units });
    }
    v
}
