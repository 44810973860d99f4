//! Mapping of source rows to DynamoDB items, and DynamoDB's own limits.
//!
//! Pure code: no I/O, no knowledge of SQS or of how items are written. An
//! [`ItemMapper`] is built once per job from the table's config and schema;
//! it checks that the key columns exist before any row is read, then maps
//! each [`SourceRow`] or fails with the table, key and column named.
//!
//! DynamoDB's limits are enforced here, not left to the service or an
//! emulator (which may be laxer): numbers ([`number`]), key attributes
//! (non-empty, 2,048 bytes for a partition key, 1,024 for a sort key).

pub mod number;

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType};
use backfill_config::{KeyAttribute, TableConfig};
use backfill_job::display_key;
use backfill_source::{ColumnKind, SourceRow, TableSchema, Value};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Largest partition key value, in bytes (DynamoDB limit).
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Largest sort key value, in bytes (DynamoDB limit).
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// Why a row cannot become an item, or a table cannot be mapped at all.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("table {table}, key {key}, column {column}: {reason}")]
    Row {
        table: String,
        key: String,
        column: String,
        reason: String,
    },
    #[error("table {table}: {reason}")]
    Table { table: String, reason: String },
}

/// A key attribute of the target and the source columns it is built from.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    pub attribute: String,
    pub columns: Vec<usize>,
    pub attribute_type: ScalarAttributeType,
    max_bytes: usize,
}

/// Maps the rows of one table to items of its target.
#[derive(Debug, Clone)]
pub struct ItemMapper {
    table: String,
    column_names: Vec<String>,
    partition: KeyPlan,
    sort: Option<KeyPlan>,
}

impl ItemMapper {
    /// Checks the key mapping against the table as it is and builds the mapper.
    pub fn new(cfg: &TableConfig, schema: &TableSchema) -> Result<Self, MapError> {
        let table = schema.table.to_string();
        let plan = |k: &KeyAttribute, max_bytes: usize| -> Result<KeyPlan, MapError> {
            let columns = k
                .columns
                .iter()
                .map(|name| {
                    schema
                        .columns
                        .iter()
                        .position(|c| &c.name == name)
                        .ok_or_else(|| MapError::Table {
                            table: table.clone(),
                            reason: format!("key attribute {} names column {name}, which the table does not have", k.attribute_name()),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let attribute_type = if columns.len() == 1 {
                match schema.columns[columns[0]].kind {
                    ColumnKind::Int2
                    | ColumnKind::Int4
                    | ColumnKind::Int8
                    | ColumnKind::Numeric
                    | ColumnKind::Float4
                    | ColumnKind::Float8 => ScalarAttributeType::N,
                    ColumnKind::Bytea => ScalarAttributeType::B,
                    _ => ScalarAttributeType::S,
                }
            } else {
                ScalarAttributeType::S
            };
            Ok(KeyPlan {
                attribute: k.attribute_name().to_string(),
                columns,
                attribute_type,
                max_bytes,
            })
        };
        Ok(ItemMapper {
            partition: plan(&cfg.partition_key, MAX_PARTITION_KEY_BYTES)?,
            sort: cfg
                .sort_key
                .as_ref()
                .map(|k| plan(k, MAX_SORT_KEY_BYTES))
                .transpose()?,
            column_names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            table,
        })
    }

    /// The partition key attribute of the target.
    pub fn partition_key(&self) -> &KeyPlan {
        &self.partition
    }

    /// The sort key attribute of the target, if any.
    pub fn sort_key(&self) -> Option<&KeyPlan> {
        self.sort.as_ref()
    }

    /// The item a row becomes: every non-NULL column under its own name, and
    /// the key attributes.
    pub fn map_row(&self, row: &SourceRow) -> Result<Item, MapError> {
        let row_err = |column: &str, reason: String| MapError::Row {
            table: self.table.clone(),
            key: display_key(&row.key),
            column: column.to_string(),
            reason,
        };
        let mut item = Item::with_capacity(self.column_names.len() + 2);
        for (name, value) in self.column_names.iter().zip(&row.values) {
            if let Some(av) = to_attribute(value).map_err(|r| row_err(name, r))? {
                item.insert(name.clone(), av);
            }
        }
        for plan in std::iter::once(&self.partition).chain(self.sort.as_ref()) {
            let av = self
                .key_value(plan, row)
                .map_err(|(col, r)| row_err(&col, r))?;
            item.insert(plan.attribute.clone(), av);
        }
        Ok(item)
    }

    /// The key attributes of an item (for reads and deletes).
    pub fn key_of(&self, item: &Item) -> Item {
        std::iter::once(&self.partition)
            .chain(self.sort.as_ref())
            .filter_map(|p| {
                item.get(&p.attribute)
                    .map(|v| (p.attribute.clone(), v.clone()))
            })
            .collect()
    }

    fn key_value(
        &self,
        plan: &KeyPlan,
        row: &SourceRow,
    ) -> Result<AttributeValue, (String, String)> {
        let names: Vec<&str> = plan
            .columns
            .iter()
            .map(|&i| self.column_names[i].as_str())
            .collect();
        let col_label = names.join(", ");
        let value_of = |i: usize| -> Result<&Value, (String, String)> {
            match row.values.get(i) {
                Some(Value::Null) | None => Err((
                    self.column_names.get(i).cloned().unwrap_or_default(),
                    format!("NULL cannot be part of key attribute {}", plan.attribute),
                )),
                Some(v) => Ok(v),
            }
        };
        let av = if plan.columns.len() == 1 {
            let v = value_of(plan.columns[0])?;
            match (&plan.attribute_type, v) {
                (ScalarAttributeType::N, Value::Int(i)) => AttributeValue::N(i.to_string()),
                (ScalarAttributeType::N, Value::Number(s)) => AttributeValue::N(
                    number::to_dynamo_number(s).map_err(|e| (col_label.clone(), e.to_string()))?,
                ),
                (ScalarAttributeType::B, Value::Bytes(b)) => {
                    AttributeValue::B(Blob::new(b.clone()))
                }
                (_, v) => AttributeValue::S(key_text(v)),
            }
        } else {
            let parts = plan
                .columns
                .iter()
                .map(|&i| value_of(i).map(key_text))
                .collect::<Result<Vec<_>, _>>()?;
            AttributeValue::S(parts.join("#"))
        };
        let len = match &av {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            _ => 0,
        };
        if len == 0 {
            return Err((
                col_label,
                format!(
                    "key attribute {} would be empty, which DynamoDB refuses",
                    plan.attribute
                ),
            ));
        }
        if len > plan.max_bytes {
            return Err((
                col_label,
                format!(
                    "key attribute {} is {len} bytes, over DynamoDB's limit of {}",
                    plan.attribute, plan.max_bytes
                ),
            ));
        }
        Ok(av)
    }
}

/// The text a value contributes to a string key.
fn key_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Number(s) | Value::Text(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::Json(j) => j.to_string(),
    }
}

/// The attribute a column value becomes; `None` for NULL (the attribute is omitted).
pub fn to_attribute(v: &Value) -> Result<Option<AttributeValue>, String> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Int(i) => AttributeValue::N(i.to_string()),
        Value::Number(s) => {
            AttributeValue::N(number::to_dynamo_number(s).map_err(|e| e.to_string())?)
        }
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Text(s) => AttributeValue::S(s.clone()),
        Value::Bytes(b) => AttributeValue::B(Blob::new(b.clone())),
        Value::Json(j) => json_to_attribute(j)?,
    }))
}

/// JSON to DynamoDB: objects to M, arrays to L, numbers to N (exact digits).
pub fn json_to_attribute(j: &serde_json::Value) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => AttributeValue::Null(true),
        J::Bool(b) => AttributeValue::Bool(*b),
        J::Number(n) => {
            AttributeValue::N(number::to_dynamo_number(&n.to_string()).map_err(|e| e.to_string())?)
        }
        J::String(s) => AttributeValue::S(s.clone()),
        J::Array(a) => {
            AttributeValue::L(a.iter().map(json_to_attribute).collect::<Result<_, _>>()?)
        }
        J::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_attribute(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
