//! A source row and its values, as the reader hands them to the mapper.
//!
//! Plain data: the reader (`backfill-source`) decodes Postgres' results into
//! these; nothing here knows sqlx, DynamoDB or SQS.

use backfill_job::KeyTuple;

/// One column value as read from Postgres.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Int(i64),
    /// A numeric, real or double in Postgres' exact text form (may be `NaN`
    /// or `Infinity`; the mapper decides what to do with those).
    Number(String),
    Bool(bool),
    /// Text, and the text form of uuid, dates, times and other types.
    Text(String),
    Bytes(Vec<u8>),
    /// json and jsonb, numbers kept exact.
    Json(serde_json::Value),
}

/// One row: its key tuple and every column's value, in table column order.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub key: KeyTuple,
    pub values: Vec<Value>,
}

impl SourceRow {
    /// About how many bytes the row's data takes (its values' payloads; not
    /// the allocator's overhead): what sizes the next page.
    pub fn approx_bytes(&self) -> usize {
        self.values.iter().map(Value::approx_bytes).sum::<usize>() + 8 * self.values.len()
    }
}

impl Value {
    /// About how many bytes the value's data takes.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) => 8,
            Value::Number(s) | Value::Text(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Json(j) => json_bytes(j),
        }
    }
}

fn json_bytes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(_) => 4,
        serde_json::Value::Number(_) => 8,
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => 2 + a.iter().map(json_bytes).sum::<usize>(),
        serde_json::Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, v)| k.len() + 3 + json_bytes(v))
                .sum::<usize>()
        }
    }
}
