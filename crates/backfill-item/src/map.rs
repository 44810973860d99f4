//! Mapping one row to one item: copied columns, NULLs, overrides, then keys.
//!
//! The hot path of the copy (every row of every job), kept apart from the
//! mapper's construction so that its allocation choices (moving values
//! out of an owned row, writing straight into a shaped item) can be read
//! in one place.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use backfill_config::{NullPolicy, TypeOverride};
use backfill_job::{display_key, KeyTuple};
use backfill_model::{SourceRow, Value};

use crate::convert::{
    int_text, json_into_attribute, json_to_attribute, number_attribute, number_attribute_owned,
    text_form,
};
use crate::key_plan::KeyPlan;
use crate::mapper::ColumnPlan;
use crate::{number, Item, ItemMapper, MapError, RowProblem, ShapedItem};

/// Which attribute a mapped value is for.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The copied column at this index of `ItemMapper::columns`.
    Column(usize),
    /// The partition key (0) or the sort key (1), with its plan.
    Key(usize, &'a KeyPlan),
}

impl ItemMapper {
    /// The item a row becomes: copied columns under their attribute names
    /// (NULL per the NULL policy), and the key attributes.
    pub fn map_row(&self, row: &SourceRow) -> Result<Item, MapError> {
        self.map_row_owned(row.clone()).map(|(_, item)| item)
    }

    /// [`ItemMapper::map_row`] for a row that is not needed afterwards: text
    /// and bytes move into the item instead of being copied (a column that
    /// more than one attribute is made from is still copied). Returns the
    /// row's key tuple beside the item.
    pub fn map_row_owned(&self, row: SourceRow) -> Result<(KeyTuple, Item), MapError> {
        let mut item = Item::with_capacity(self.columns.len() + 2);
        let key = self
            .map_into(row, |target, av| {
                let attribute = match target {
                    Target::Column(i) => &self.columns[i].attribute,
                    Target::Key(_, plan) => &plan.attribute,
                };
                item.insert(attribute.clone(), av);
            })
            .map_err(|(_, e)| e)?;
        Ok((key, item))
    }

    /// [`ItemMapper::map_row_owned`] making a [`ShapedItem`] of
    /// [`ItemMapper::shape`]: the same attributes and values, without a
    /// map or a name per attribute. A row that cannot be mapped comes back
    /// as its key and every problem, so the caller can record it as a
    /// reject and go on.
    pub fn map_row_shaped(
        &self,
        row: SourceRow,
    ) -> Result<(KeyTuple, ShapedItem), (KeyTuple, MapError)> {
        let mut item = self.shape.empty_item();
        let key = self.map_into(row, |target, av| {
            let slot = match target {
                Target::Column(i) => self.column_slots.get(i),
                Target::Key(k, _) => self.key_slots.get(k),
            };
            if let Some(&slot) = slot {
                item.set(slot, av);
            }
        })?;
        Ok((key, item))
    }

    /// Maps `row`, handing each attribute's value to `put` (copied columns
    /// in order, then the keys, so a key wins over a column of its name),
    /// and returns the row's key tuple.
    fn map_into(
        &self,
        mut row: SourceRow,
        mut put: impl FnMut(Target<'_>, AttributeValue),
    ) -> Result<KeyTuple, (KeyTuple, MapError)> {
        let mut problems: Vec<RowProblem> = Vec::new();
        let mut problem = |column: &str, reason: String| {
            problems.push(RowProblem {
                column: column.to_string(),
                reason,
            })
        };
        // Keys are read first, because the loop below moves columns out of
        // the row; their problems are listed after the columns'.
        let keys: Vec<_> = std::iter::once(&self.partition)
            .chain(self.sort.as_ref())
            .map(|plan| (plan, self.key_value(plan, &row)))
            .collect();
        for (i, plan) in self.columns.iter().enumerate() {
            let owned = if self.used_once.get(plan.index).copied().unwrap_or(false) {
                row.values
                    .get_mut(plan.index)
                    .map(std::mem::take)
                    .unwrap_or(Value::Null)
            } else {
                row.values.get(plan.index).cloned().unwrap_or(Value::Null)
            };
            let av = match (plan.form, owned) {
                (None, Value::Text(s)) => Ok(Some(AttributeValue::S(s))),
                (None, Value::Bytes(b)) => Ok(Some(AttributeValue::B(Blob::new(b)))),
                (None, Value::Number(s)) => {
                    number_attribute_owned(s, self.unrepresentable).map(Some)
                }
                (None, Value::Json(j)) => json_into_attribute(j, self.unrepresentable).map(Some),
                (_, v) => self.column_attribute(plan, &v),
            };
            match av {
                Ok(Some(av)) => put(Target::Column(i), av),
                Ok(None) => {}
                Err(reason) => problem(&plan.column, reason),
            }
        }
        for (k, (plan, key)) in keys.into_iter().enumerate() {
            match key {
                Ok(av) => put(Target::Key(k, plan), av),
                Err((col, reason)) => problem(&col, reason),
            }
        }
        if problems.is_empty() {
            Ok(row.key)
        } else {
            let error = MapError::Row {
                table: self.table.clone(),
                key: display_key(&row.key),
                problems,
            };
            Err((row.key, error))
        }
    }

    fn column_attribute(
        &self,
        plan: &ColumnPlan,
        v: &Value,
    ) -> Result<Option<AttributeValue>, String> {
        if matches!(v, Value::Null) {
            return Ok(match self.nulls {
                NullPolicy::Omit => None,
                NullPolicy::Null => Some(AttributeValue::Null(true)),
            });
        }
        let fallback = self.unrepresentable;
        Ok(Some(match plan.form {
            Some(TypeOverride::String) => AttributeValue::S(text_form(v)),
            Some(TypeOverride::Number) => AttributeValue::N(
                number::to_dynamo_number(&text_form(v)).map_err(|e| e.to_string())?,
            ),
            Some(TypeOverride::Json) => {
                let j = match v {
                    Value::Json(j) => j.clone(),
                    other => serde_json::from_str(&text_form(other))
                        .map_err(|e| format!("is not JSON: {e}"))?,
                };
                json_to_attribute(&j, fallback)?
            }
            None => match v {
                Value::Null => return Ok(None),
                Value::Int(i) => AttributeValue::N(int_text(*i)),
                Value::Number(s) => number_attribute(s, fallback)?,
                Value::Bool(b) => AttributeValue::Bool(*b),
                Value::Text(s) => AttributeValue::S(s.clone()),
                Value::Bytes(b) => AttributeValue::B(Blob::new(b.clone())),
                Value::Json(j) => json_to_attribute(j, fallback)?,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{row, schema};
    use backfill_config::{KeyAttribute, NullPolicy, TableConfig, Unrepresentable};
    use backfill_model::ColumnKind;

    /// `map_row` is `map_row_owned` on a copy of the row, so every other
    /// mapping test covers the owned path; this one checks the key tuple
    /// it returns, that key columns are read before anything moves, and
    /// that a row wrong in a column and in its key is reported by the
    /// column, as before the owned path existed.
    #[test]
    fn owned_mapping_gives_the_same_items() {
        let s = schema(&[
            ("a", ColumnKind::Text),
            ("b", ColumnKind::Bytea),
            ("c", ColumnKind::Numeric),
            ("d", ColumnKind::Jsonb),
            ("e", ColumnKind::Text),
        ]);
        let m = ItemMapper::new(
            &TableConfig::new("public.t", "target", KeyAttribute::columns(&["a"], None)),
            &s,
        )
        .unwrap();
        let rows = [
            row(vec![
                Value::Text("k1".into()),
                Value::Bytes(vec![1, 2, 3]),
                Value::Number("12.50".into()),
                Value::Json(serde_json::json!({"x": [1, "y"]})),
                Value::Null,
            ]),
            row(vec![
                Value::Text("k2 ü".into()),
                Value::Null,
                Value::Number("-0".into()),
                Value::Null,
                Value::Text("tail".into()),
            ]),
        ];
        for r in rows {
            let by_ref = m.map_row(&r).unwrap();
            let (key, owned) = m.map_row_owned(r.clone()).unwrap();
            assert_eq!(owned, by_ref);
            assert_eq!(key, r.key);
        }
        // An error names the same key and column either way.
        let bad = row(vec![
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        assert_eq!(
            m.map_row(&bad).unwrap_err().to_string(),
            m.map_row_owned(bad).unwrap_err().to_string()
        );
        let both = row(vec![
            Value::Null,
            Value::Null,
            Value::Number("not a number".into()),
            Value::Null,
            Value::Null,
        ]);
        let e = m.map_row_owned(both).unwrap_err().to_string();
        assert!(e.contains("column c"), "{e}");
    }

    /// The worker's shaped items are the map items by another road: the
    /// same attributes and values, digest bits, size and errors, over keys
    /// from one column, several, a template, a key named like a column,
    /// renames and both NULL policies.
    #[test]
    fn shaped_mapping_gives_the_same_items_digests_and_sizes() {
        use crate::compare::ItemDigest;
        use crate::size::{attributes_size_upper_bound, item_size_upper_bound};
        let s = schema(&[
            ("a", ColumnKind::Text),
            ("b", ColumnKind::Int8),
            ("c", ColumnKind::Numeric),
            ("d", ColumnKind::Jsonb),
            ("e", ColumnKind::Text),
        ]);
        let mut configs = Vec::new();
        let mut cfg = TableConfig::new("public.t", "target", KeyAttribute::columns(&["a"], None));
        configs.push(cfg.clone());
        cfg.sort_key = Some(KeyAttribute::template("E#{e}#{b}", "sk"));
        cfg.rename.insert("c".into(), "amount".into());
        configs.push(cfg.clone());
        cfg.nulls = NullPolicy::Null;
        cfg.partition_key = KeyAttribute::columns(&["a", "b"], Some("pk"));
        configs.push(cfg.clone());
        cfg.exclude = vec!["d".into()];
        configs.push(cfg);
        let rows = [
            row(vec![
                Value::Text("k1".into()),
                Value::Int(7),
                Value::Number("12.50".into()),
                Value::Json(serde_json::json!({"x": [1, "y"]})),
                Value::Text("tail".into()),
            ]),
            row(vec![
                Value::Text("k2 ü".into()),
                Value::Int(-3),
                Value::Null,
                Value::Null,
                Value::Text("e\"2".into()),
            ]),
        ];
        for (i, cfg) in configs.iter().enumerate() {
            let m = ItemMapper::new(cfg, &s).unwrap();
            let columns: Vec<&str> = m.column_attributes().collect();
            for r in &rows {
                let (key, item) = m.map_row_owned(r.clone()).unwrap();
                let (shaped_key, shaped) = m.map_row_shaped(r.clone()).unwrap();
                assert_eq!(shaped_key, key, "config {i}");
                assert_eq!(m.shape().to_item(&shaped), item, "config {i}");
                assert_eq!(
                    m.shape().clone().into_item(shaped.clone()),
                    item,
                    "config {i}"
                );
                let (mut d1, mut d2) = (ItemDigest::default(), ItemDigest::default());
                d1.add(&item, &columns);
                d2.add_shaped(m.shape(), &shaped);
                assert_eq!(d1, d2, "config {i}");
                assert_eq!(
                    attributes_size_upper_bound(m.shape().attributes(&shaped)),
                    item_size_upper_bound(&item),
                    "config {i}"
                );
            }
            // Errors name the same key and column.
            let bad = row(vec![
                Value::Null,
                Value::Int(1),
                Value::Number("not a number".into()),
                Value::Null,
                Value::Null,
            ]);
            assert_eq!(
                m.map_row_shaped(bad.clone()).unwrap_err().1.to_string(),
                m.map_row_owned(bad).unwrap_err().to_string(),
                "config {i}"
            );
        }
        // Different items digest differently.
        let m = ItemMapper::new(&configs[0], &s).unwrap();
        let (_, x) = m.map_row_shaped(rows[0].clone()).unwrap();
        let (_, y) = m.map_row_shaped(rows[1].clone()).unwrap();
        let (mut dx, mut dy) = (ItemDigest::default(), ItemDigest::default());
        dx.add_shaped(m.shape(), &x);
        dy.add_shaped(m.shape(), &y);
        assert_ne!(dx, dy);
    }

    /// Numbers and JSON move into their attributes on the owned path; the
    /// result must be what the borrowing conversion gives, errors included.
    #[test]
    fn moved_numbers_and_json_map_like_borrowed_ones() {
        let s = schema(&[
            ("a", ColumnKind::Text),
            ("c", ColumnKind::Numeric),
            ("d", ColumnKind::Jsonb),
        ]);
        let numbers = [
            "12.50",
            "-0",
            "0.000",
            "+3",
            " 5 ",
            "1e5",
            "-1.5E-7",
            ".5",
            "NaN",
            "Infinity",
            "1e400",
            "1e-400",
            "x",
            "",
            &"1".repeat(39),
        ];
        let json = [
            serde_json::json!({"x": [1, "y", 1.50, null, true], "n": {"deep": -0.0}}),
            serde_json::json!([1e300, "s"]),
            serde_json::json!("plain"),
            serde_json::json!(12345678901234567890u64),
        ];
        for fallback in [Unrepresentable::Fail, Unrepresentable::String] {
            let mut cfg =
                TableConfig::new("public.t", "target", KeyAttribute::columns(&["a"], None));
            cfg.unrepresentable = fallback;
            let m = ItemMapper::new(&cfg, &s).unwrap();
            let cases = numbers
                .iter()
                .map(|n| (Value::Number(n.to_string()), Value::Null))
                .chain(json.iter().map(|j| (Value::Null, Value::Json(j.clone()))));
            for (number, json) in cases {
                let r = row(vec![Value::Text("k".into()), number, json]);
                let owned = m.map_row_owned(r.clone()).map(|(_, item)| item);
                // The borrowing conversion, column by column.
                let borrowed: Result<Item, String> = m
                    .columns
                    .iter()
                    .filter_map(|plan| {
                        m.column_attribute(plan, &r.values[plan.index])
                            .map(|av| av.map(|av| (plan.attribute.clone(), av)))
                            .transpose()
                    })
                    .chain(std::iter::once(Ok((
                        "a".to_string(),
                        AttributeValue::S("k".into()),
                    ))))
                    .collect();
                match (owned, borrowed) {
                    (Ok(o), Ok(b)) => assert_eq!(o, b, "{r:?}"),
                    (Err(o), Err(b)) => assert!(o.to_string().contains(&b), "{o} / {b}"),
                    (o, b) => panic!("{r:?}: owned {o:?}, borrowed {b:?}"),
                }
            }
        }
    }
}
