//! Key attributes: how each is built from a row, and DynamoDB's key limits.
//!
//! Every row's keys go through here, and a key that is empty, too long or
//! has a NULL part must be refused before DynamoDB (or a laxer emulator)
//! sees it; how joined keys treat their separator is in `keys.rs`.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType};
use backfill_config::AmbiguousKeys;
use backfill_model::{SourceRow, Value};

use crate::convert::{int_text, text_form};
use crate::{keys, number, Item, ItemMapper, ShapedItem};

/// Largest partition key value, in bytes (DynamoDB limit).
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Largest sort key value, in bytes (DynamoDB limit).
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// Where a key attribute's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// One column (keeps its type) or several joined with `#`.
    Columns(Vec<usize>),
    /// Literal text and columns, e.g. `USER#{user_id}`.
    Template(Vec<Part>),
}

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Literal(String),
    Column(usize),
}

/// A key attribute of the target and how it is built from the row.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    pub attribute: String,
    pub attribute_type: ScalarAttributeType,
    pub(crate) source: KeySource,
    pub(crate) max_bytes: usize,
    /// The characters of the literals between the key's columns: a part
    /// free of them parses back unambiguously. Empty for a key of one column.
    pub(crate) separators: Vec<char>,
    pub(crate) ambiguous: AmbiguousKeys,
}

impl KeyPlan {
    /// The columns the attribute is built from (indexes of the mapper's
    /// columns), in the order they appear in it.
    pub(crate) fn columns(&self) -> Vec<usize> {
        match &self.source {
            KeySource::Columns(c) => c.clone(),
            KeySource::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Column(i) => Some(*i),
                    Part::Literal(_) => None,
                })
                .collect(),
        }
    }
}

impl ItemMapper {
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

    /// A 128-bit identity of the item's key (its key attributes' types and
    /// values): equal for two items DynamoDB would store as one. The worker
    /// keeps one per row of a job to catch two rows that map to one item,
    /// so it is FNV-1a over the key's bytes (one cheap pass; the keys are
    /// the table's own, not chosen to collide, and a collision would only
    /// make a row a reject, never lose one).
    pub fn shaped_key_id(&self, item: &ShapedItem) -> u128 {
        const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        let mut h = OFFSET;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u128::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for &slot in &self.key_slots {
            // Type tag and length first, so ("ab", "c") and ("a", "bc")
            // differ, and so do S "1" and N "1".
            let (tag, bytes): (u8, &[u8]) = match self.shape.value_at(item, slot) {
                Some(AttributeValue::S(s)) => (0, s.as_bytes()),
                Some(AttributeValue::N(n)) => (1, n.as_bytes()),
                Some(AttributeValue::B(b)) => (2, b.as_ref()),
                _ => (3, &[]),
            };
            eat(&[tag]);
            eat(&(bytes.len() as u64).to_le_bytes());
            eat(bytes);
        }
        h
    }

    pub(crate) fn key_value(
        &self,
        plan: &KeyPlan,
        row: &SourceRow,
    ) -> Result<AttributeValue, (String, String)> {
        let value_of = |i: usize| -> Result<&Value, (String, String)> {
            match row.values.get(i) {
                Some(Value::Null) | None => Err((
                    self.column_names.get(i).cloned().unwrap_or_default(),
                    format!("NULL cannot be part of key attribute {}", plan.attribute),
                )),
                Some(v) => Ok(v),
            }
        };
        // The columns' names, for an error only: every row takes this path.
        let col_label = || -> String {
            let names = |cols: &mut dyn Iterator<Item = usize>| {
                cols.map(|i| self.column_names.get(i).map_or("?", String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match &plan.source {
                KeySource::Columns(cols) => names(&mut cols.iter().copied()),
                KeySource::Template(parts) => names(&mut parts.iter().filter_map(|p| match p {
                    Part::Column(i) => Some(*i),
                    Part::Literal(_) => None,
                })),
            }
        };
        let av = match &plan.source {
            KeySource::Columns(cols) if cols.len() == 1 => {
                let v = value_of(cols[0])?;
                match (&plan.attribute_type, v) {
                    (ScalarAttributeType::N, Value::Int(i)) => AttributeValue::N(int_text(*i)),
                    (ScalarAttributeType::N, Value::Number(s)) => AttributeValue::N(
                        number::to_dynamo_number(s).map_err(|e| (col_label(), e.to_string()))?,
                    ),
                    (ScalarAttributeType::B, Value::Bytes(b)) => {
                        AttributeValue::B(Blob::new(b.clone()))
                    }
                    (_, v) => AttributeValue::S(text_form(v)),
                }
            }
            KeySource::Columns(cols) => {
                let mut out = String::new();
                for (n, &i) in cols.iter().enumerate() {
                    if n > 0 {
                        out.push_str(keys::JOIN_SEPARATOR);
                    }
                    self.push_key_part(plan, &mut out, i, value_of(i)?)?;
                }
                AttributeValue::S(out)
            }
            KeySource::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Literal(l) => out.push_str(l),
                        Part::Column(i) => self.push_key_part(plan, &mut out, *i, value_of(*i)?)?,
                    }
                }
                AttributeValue::S(out)
            }
        };
        let len = match &av {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            _ => 0,
        };
        if len == 0 {
            return Err((
                col_label(),
                format!(
                    "key attribute {} would be empty, which DynamoDB refuses",
                    plan.attribute
                ),
            ));
        }
        if len > plan.max_bytes {
            return Err((
                col_label(),
                format!(
                    "key attribute {} is {len} bytes, over DynamoDB's limit of {}",
                    plan.attribute, plan.max_bytes
                ),
            ));
        }
        Ok(av)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mapper, row};
    use backfill_config::KeyAttribute;

    #[test]
    fn an_empty_key_attribute_is_refused() {
        let m = mapper(KeyAttribute::columns(&["a"], None), None);
        let e = m
            .map_row(&row(vec![Value::Text(String::new()), Value::Null]))
            .unwrap_err();
        assert!(
            e.to_string().contains("key attribute a would be empty"),
            "{e}"
        );
        assert!(e.to_string().contains("column a"), "{e}");
    }

    #[test]
    fn partition_key_at_most_2048_bytes() {
        let m = mapper(KeyAttribute::columns(&["a"], None), None);
        assert!(m
            .map_row(&row(vec![Value::Text("é".repeat(1024)), Value::Null]))
            .is_ok());
        let e = m
            .map_row(&row(vec![Value::Text("x".repeat(2049)), Value::Null]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("2049 bytes, over DynamoDB's limit of 2048"),
            "{e}"
        );
    }

    #[test]
    fn sort_key_at_most_1024_bytes() {
        let m = mapper(
            KeyAttribute::columns(&["a"], None),
            Some(KeyAttribute::columns(&["b"], None)),
        );
        assert!(m
            .map_row(&row(vec![
                Value::Text("k".into()),
                Value::Text("x".repeat(1024))
            ]))
            .is_ok());
        let e = m
            .map_row(&row(vec![
                Value::Text("k".into()),
                Value::Text("x".repeat(1025)),
            ]))
            .unwrap_err();
        assert!(
            e.to_string().contains("over DynamoDB's limit of 1024"),
            "{e}"
        );
    }

    #[test]
    fn a_null_key_part_is_refused_and_templates_render() {
        let m = mapper(KeyAttribute::template("A#{a}#{b}", "pk"), None);
        let item = m
            .map_row(&row(vec![Value::Text("x".into()), Value::Text("y".into())]))
            .unwrap();
        assert_eq!(item["pk"], AttributeValue::S("A#x#y".into()));
        let e = m
            .map_row(&row(vec![Value::Text("x".into()), Value::Null]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("NULL cannot be part of key attribute pk"),
            "{e}"
        );
    }
}
