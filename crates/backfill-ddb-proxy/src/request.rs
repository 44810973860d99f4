//! What a write request costs, and how a BatchWriteItem is cut in two.
//!
//! Costs follow DynamoDB's rules for standard (non-transactional) writes:
//! - `PutItem`: one unit per started kilobyte of the item, at least one.
//! - `BatchWriteItem`: the same per put request, one per delete request.
//! - `UpdateItem`, `DeleteItem`: one unit. This is an approximation: the
//!   service charges by the size of the stored item (the larger of before
//!   and after), which a proxy that does not read the table cannot know.
//!   For the same reason a `PutItem` that replaces a larger item is charged
//!   by the new item only.
//!
//! Conditional writes cost the same as unconditional ones.
//! `TransactWriteItems` (which dynalite lacks) is forwarded unaccounted.

use serde_json::{Map, Value};

use crate::error::ProxyError;
use crate::size::{item_size, write_capacity_units};

/// Most write requests DynamoDB takes in one BatchWriteItem.
pub const MAX_BATCH_WRITES: usize = 25;

/// The write operations the proxy accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
}

impl WriteOp {
    /// The write operation named by an `X-Amz-Target` header, if it is one.
    pub fn from_target(target: &str) -> Option<WriteOp> {
        match target.strip_prefix("DynamoDB_20120810.")? {
            "PutItem" => Some(WriteOp::PutItem),
            "UpdateItem" => Some(WriteOp::UpdateItem),
            "DeleteItem" => Some(WriteOp::DeleteItem),
            "BatchWriteItem" => Some(WriteOp::BatchWriteItem),
            _ => None,
        }
    }
}

/// Parses a request body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ProxyError::Serialization(
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(ProxyError::Serialization(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// Write capacity units of a PutItem, UpdateItem or DeleteItem request.
pub fn single_write_cost(op: WriteOp, body: &Map<String, Value>) -> Result<u64, ProxyError> {
    match op {
        WriteOp::PutItem => {
            let item = body
                .get("Item")
                .ok_or_else(|| ProxyError::Validation("PutItem request has no Item".into()))?
                .as_object()
                .ok_or_else(|| ProxyError::Serialization("Item must be a JSON object".into()))?;
            Ok(write_capacity_units(item_size(item)?))
        }
        WriteOp::UpdateItem | WriteOp::DeleteItem | WriteOp::BatchWriteItem => Ok(1),
    }
}

/// Write capacity units of one element of a BatchWriteItem table's list
/// (`{"PutRequest": {"Item": ...}}` or `{"DeleteRequest": {"Key": ...}}`).
pub fn write_request_cost(req: &Value) -> Result<u64, ProxyError> {
    let obj = req
        .as_object()
        .ok_or_else(|| ProxyError::Serialization("a write request must be a JSON object".into()))?;
    if let Some(put) = obj.get("PutRequest") {
        let item = put
            .get("Item")
            .and_then(Value::as_object)
            .ok_or_else(|| ProxyError::Validation("PutRequest has no Item object".into()))?;
        Ok(write_capacity_units(item_size(item)?))
    } else if obj.contains_key("DeleteRequest") {
        Ok(1)
    } else {
        Err(ProxyError::Validation(
            "a write request must have a PutRequest or a DeleteRequest".into(),
        ))
    }
}

/// One write request of a batch, with its table and cost.
#[derive(Debug, Clone)]
pub struct BatchEntry {
    pub table: String,
    pub request: Value,
    pub cost: u64,
}

/// A parsed BatchWriteItem: its write requests in order (tables in the
/// order the JSON object iterates them, requests in list order).
#[derive(Debug, Clone)]
pub struct BatchWrite {
    pub entries: Vec<BatchEntry>,
}

impl BatchWrite {
    /// Reads and costs the `RequestItems` of a BatchWriteItem body.
    pub fn parse(body: &Map<String, Value>) -> Result<BatchWrite, ProxyError> {
        let tables = body
            .get("RequestItems")
            .ok_or_else(|| {
                ProxyError::Validation("BatchWriteItem request has no RequestItems".into())
            })?
            .as_object()
            .ok_or_else(|| {
                ProxyError::Serialization("RequestItems must be a JSON object".into())
            })?;
        let entries = unprocessed_entries(tables)?;
        if entries.is_empty() {
            return Err(ProxyError::Validation(
                "BatchWriteItem request has no write requests".into(),
            ));
        }
        if entries.len() > MAX_BATCH_WRITES {
            return Err(ProxyError::Validation(
                "Too many items requested for the BatchWriteItem call".into(),
            ));
        }
        Ok(BatchWrite { entries })
    }

    /// The costs of the entries, in order.
    pub fn costs(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.cost).collect()
    }

    /// The original body with only the write requests at `indices` (in
    /// the order given).
    pub fn body_with(
        &self,
        original: &Map<String, Value>,
        indices: &[usize],
    ) -> Map<String, Value> {
        let mut body = original.clone();
        body.insert("RequestItems".into(), Value::Object(self.grouped(indices)));
        body
    }

    /// The write requests at `indices`, as an `UnprocessedItems` map.
    pub fn grouped(&self, indices: &[usize]) -> Map<String, Value> {
        group(indices.iter().filter_map(|&i| self.entries.get(i)))
    }

    /// Units of the entries at `indices`, summed per table.
    pub fn units_per_table(&self, indices: &[usize]) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for e in indices.iter().filter_map(|&i| self.entries.get(i)) {
            match out.iter_mut().find(|(t, _)| *t == e.table) {
                Some((_, u)) => *u += e.cost,
                None => out.push((e.table.clone(), e.cost)),
            }
        }
        out
    }
}

impl BatchEntry {
    /// The item a put writes or the key a delete names.
    pub fn item(&self) -> Option<&Value> {
        write_request_item(&self.request)
    }
}

/// The item (`PutRequest.Item`) or key (`DeleteRequest.Key`) of one
/// element of a batch's list.
pub fn write_request_item(req: &Value) -> Option<&Value> {
    req.get("PutRequest")
        .and_then(|p| p.get("Item"))
        .or_else(|| req.get("DeleteRequest").and_then(|d| d.get("Key")))
}

/// The item (`PutItem`) or key (`UpdateItem`, `DeleteItem`) a single
/// write names.
pub fn single_write_item(op: WriteOp, body: &Map<String, Value>) -> Option<&Value> {
    match op {
        WriteOp::PutItem => body.get("Item"),
        WriteOp::UpdateItem | WriteOp::DeleteItem => body.get("Key"),
        WriteOp::BatchWriteItem => None,
    }
}

/// The entries of a `RequestItems` or `UnprocessedItems` map.
pub fn unprocessed_entries(tables: &Map<String, Value>) -> Result<Vec<BatchEntry>, ProxyError> {
    let mut entries = Vec::new();
    for (table, reqs) in tables {
        let reqs = reqs.as_array().ok_or_else(|| {
            ProxyError::Serialization(format!("RequestItems[{table:?}] must be a JSON array"))
        })?;
        for r in reqs {
            entries.push(BatchEntry {
                table: table.clone(),
                request: r.clone(),
                cost: write_request_cost(r)?,
            });
        }
    }
    Ok(entries)
}

/// Merges `extra` into an `UnprocessedItems` map, after what is there.
pub fn merge_unprocessed(into: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (table, reqs) in extra {
        let Value::Array(reqs) = reqs else { continue };
        match into.get_mut(&table) {
            Some(Value::Array(existing)) => existing.extend(reqs),
            _ => {
                into.insert(table, Value::Array(reqs));
            }
        }
    }
}

fn group<'a>(entries: impl IntoIterator<Item = &'a BatchEntry>) -> Map<String, Value> {
    let mut out = Map::new();
    for e in entries {
        if let Value::Array(a) = out
            .entry(e.table.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            a.push(e.request.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn put(id: &str, body_len: usize) -> Value {
        json!({"PutRequest": {"Item": {"id": {"S": id}, "body": {"S": "x".repeat(body_len)}}}})
    }

    #[test]
    fn targets() {
        assert_eq!(
            WriteOp::from_target("DynamoDB_20120810.PutItem"),
            Some(WriteOp::PutItem)
        );
        assert_eq!(
            WriteOp::from_target("DynamoDB_20120810.BatchWriteItem"),
            Some(WriteOp::BatchWriteItem)
        );
        assert_eq!(WriteOp::from_target("DynamoDB_20120810.GetItem"), None);
        assert_eq!(WriteOp::from_target("PutItem"), None);
    }

    #[test]
    fn put_item_costs_started_kilobytes() {
        let b = obj(
            json!({"TableName": "t", "Item": {"id": {"S": "a"}, "body": {"S": "x".repeat(3000)}}}),
        );
        assert_eq!(single_write_cost(WriteOp::PutItem, &b).unwrap(), 3);
        let b = obj(json!({"TableName": "t", "Key": {"id": {"S": "a"}}}));
        assert_eq!(single_write_cost(WriteOp::UpdateItem, &b).unwrap(), 1);
        assert_eq!(single_write_cost(WriteOp::DeleteItem, &b).unwrap(), 1);
        assert!(single_write_cost(WriteOp::PutItem, &b).is_err());
    }

    #[test]
    fn batch_is_costed_and_split_in_order() {
        let body = obj(json!({
            "RequestItems": {
                "a": [put("1", 3000), {"DeleteRequest": {"Key": {"id": {"S": "2"}}}}],
                "b": [put("3", 10)]
            },
            "ReturnConsumedCapacity": "TOTAL"
        }));
        let batch = BatchWrite::parse(&body).unwrap();
        assert_eq!(batch.costs(), vec![3, 1, 1]);
        let head = batch.body_with(&body, &[0]);
        assert_eq!(head["RequestItems"], json!({"a": [put("1", 3000)]}));
        assert_eq!(head["ReturnConsumedCapacity"], json!("TOTAL"));
        let rest = batch.grouped(&[1, 2]);
        assert_eq!(rest["a"].as_array().unwrap().len(), 1);
        assert_eq!(rest["b"], json!([put("3", 10)]));
        assert_eq!(
            batch.units_per_table(&[0, 1, 2]),
            vec![("a".to_string(), 4), ("b".to_string(), 1)]
        );
        // A subset that is not a prefix keeps its order within each table,
        // and indices past the end are ignored, not a panic.
        let mid = batch.body_with(&body, &[1, 2, 99]);
        assert_eq!(
            mid["RequestItems"],
            json!({"a": [{"DeleteRequest": {"Key": {"id": {"S": "2"}}}}], "b": [put("3", 10)]})
        );
        assert_eq!(
            batch.units_per_table(&[2, 0]),
            vec![("b".to_string(), 1), ("a".to_string(), 3)]
        );
        assert_eq!(batch.entries[0].item().unwrap()["id"], json!({"S": "1"}));
        assert_eq!(batch.entries[1].item().unwrap(), &json!({"id": {"S": "2"}}));
    }

    #[test]
    fn single_writes_name_their_item_or_key() {
        let put = obj(json!({"Item": {"id": {"S": "a"}}, "Key": {"id": {"S": "b"}}}));
        assert_eq!(
            single_write_item(WriteOp::PutItem, &put).unwrap()["id"],
            json!({"S": "a"})
        );
        assert_eq!(
            single_write_item(WriteOp::UpdateItem, &put).unwrap()["id"],
            json!({"S": "b"})
        );
        assert_eq!(
            single_write_item(WriteOp::DeleteItem, &put).unwrap()["id"],
            json!({"S": "b"})
        );
        assert_eq!(
            single_write_item(WriteOp::DeleteItem, &obj(json!({}))),
            None
        );
        assert_eq!(write_request_item(&json!({"Nope": 1})), None);
        assert_eq!(write_request_item(&json!(3)), None);
    }

    #[test]
    fn batch_limits() {
        let none = obj(json!({"RequestItems": {}}));
        assert!(matches!(
            BatchWrite::parse(&none),
            Err(ProxyError::Validation(_))
        ));
        let many: Vec<Value> = (0..26).map(|i| put(&i.to_string(), 1)).collect();
        let many = obj(json!({"RequestItems": {"t": many}}));
        assert!(matches!(
            BatchWrite::parse(&many),
            Err(ProxyError::Validation(_))
        ));
        let bad = obj(json!({"RequestItems": {"t": [{"Nope": {}}]}}));
        assert!(BatchWrite::parse(&bad).is_err());
        let bad = obj(json!({"RequestItems": []}));
        assert!(matches!(
            BatchWrite::parse(&bad),
            Err(ProxyError::Serialization(_))
        ));
    }

    #[test]
    fn merge_appends_per_table() {
        let mut into = obj(json!({"a": [1]}));
        merge_unprocessed(&mut into, obj(json!({"a": [2], "b": [3]})));
        assert_eq!(Value::Object(into), json!({"a": [1, 2], "b": [3]}));
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(
            parse_body(b"{"),
            Err(ProxyError::Serialization(_))
        ));
        assert!(matches!(
            parse_body(b"[]"),
            Err(ProxyError::Serialization(_))
        ));
        assert!(matches!(parse_body(b""), Err(ProxyError::Serialization(_))));
        assert!(parse_body(b"{}").is_ok());
    }
}
