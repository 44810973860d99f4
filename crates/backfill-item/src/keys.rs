//! Keys built from several columns: the separator that joins them, and
//! what a part that contains it does. A joined key is only one row per item
//! when no part can run into its neighbour: `('a#b', 'c')` and `('a', 'b#c')`
//! both join to `a#b#c`. Such a part makes its row a reject
//! (`ambiguous_keys = "reject"`) or is escaped (`"escape"`).

use backfill_config::AmbiguousKeys;
use backfill_model::Value;

use crate::key_plan::{KeySource, Part};
use crate::{text_form, ItemMapper, KeyPlan};

/// How the reason of a part that contains its separator begins (`plan`
/// counts sampled rows by it).
pub const AMBIGUOUS_KEY: &str = "ambiguous key";

/// What joins the columns of a key given as `columns = [...]`.
pub const JOIN_SEPARATOR: &str = "#";

/// The characters of the literals that stand between a key's columns. A
/// part free of them (or escaped) cannot run into its neighbour, so the key
/// parses back into one tuple of parts: the key is injective.
pub(crate) fn separator_chars(source: &KeySource) -> Vec<char> {
    let mut out: Vec<char> = match source {
        KeySource::Columns(cols) if cols.len() > 1 => JOIN_SEPARATOR.chars().collect(),
        KeySource::Columns(_) => Vec::new(),
        KeySource::Template(parts) => {
            let first = parts.iter().position(|p| matches!(p, Part::Column(_)));
            let last = parts.iter().rposition(|p| matches!(p, Part::Column(_)));
            match (first, last) {
                (Some(a), Some(b)) if a < b => parts[a..b]
                    .iter()
                    .filter_map(|p| match p {
                        Part::Literal(l) => Some(l.chars()),
                        Part::Column(_) => None,
                    })
                    .flatten()
                    .collect(),
                _ => Vec::new(),
            }
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}

impl ItemMapper {
    /// Key attributes joined from several columns whose parts are refused
    /// when they contain the separator: (attribute, separator characters,
    /// columns), for `plan` to warn about before the copy.
    pub fn rejecting_joined_keys(&self) -> Vec<(String, String, Vec<String>)> {
        std::iter::once(&self.partition)
            .chain(self.sort.as_ref())
            .filter(|k| !k.separators.is_empty() && k.ambiguous == AmbiguousKeys::Reject)
            .map(|k| {
                let cols = k.columns();
                (
                    k.attribute.clone(),
                    k.separators.iter().collect(),
                    cols.iter()
                        .filter_map(|i| self.column_names.get(*i).cloned())
                        .collect(),
                )
            })
            .collect()
    }

    /// Appends one column's part of a joined key, refusing (or escaping) a
    /// value that contains a separator character.
    pub(crate) fn push_key_part(
        &self,
        plan: &KeyPlan,
        out: &mut String,
        column: usize,
        v: &Value,
    ) -> Result<(), (String, String)> {
        let text = text_form(v);
        if plan.separators.is_empty() {
            out.push_str(&text);
            return Ok(());
        }
        match plan.ambiguous {
            // Escaped, every part parses back, whatever it holds.
            AmbiguousKeys::Escape => {
                escape_part(out, &text, &plan.separators);
                Ok(())
            }
            AmbiguousKeys::Reject if !text.chars().any(|c| plan.separators.contains(&c)) => {
                out.push_str(&text);
                Ok(())
            }
            AmbiguousKeys::Reject => Err((
                self.column_names.get(column).cloned().unwrap_or_default(),
                format!(
                    "{AMBIGUOUS_KEY}: value {text:?} contains the separator {:?} of key attribute {}, so two rows could make one item (set `ambiguous_keys = \"escape\"` if the application escapes such values)",
                    plan.separators.iter().collect::<String>(),
                    plan.attribute
                ),
            )),
        }
    }
}

/// `\` before every backslash and separator character of `text`.
fn escape_part(out: &mut String, text: &str, separators: &[char]) {
    for c in text.chars() {
        if c == '\\' || separators.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;
    use backfill_config::{AmbiguousKeys, KeyAttribute, TableConfig};
    use backfill_job::KeyValue;
    use backfill_model::{ColumnKind, ColumnSchema, SourceRow, TableRef, TableSchema, Value};

    use crate::{ItemMapper, MapError};

    fn mapper(pk: KeyAttribute, ambiguous: AmbiguousKeys) -> Result<ItemMapper, MapError> {
        let schema = TableSchema {
            table: TableRef::parse("public.t"),
            columns: ["x", "y"]
                .iter()
                .map(|n| ColumnSchema {
                    name: n.to_string(),
                    pg_type: "text".into(),
                    kind: ColumnKind::Text,
                    not_null: true,
                    precision: None,
                })
                .collect(),
            key: vec![0, 1],
            reltuples: 0.0,
            relpages: 0,
            pages: 0,
        };
        let mut cfg = TableConfig::new("public.t", "target", pk);
        cfg.ambiguous_keys = ambiguous;
        ItemMapper::new(&cfg, &schema)
    }

    fn row(x: &str, y: &str) -> SourceRow {
        SourceRow {
            key: vec![KeyValue::Text(x.into()), KeyValue::Text(y.into())],
            values: vec![Value::Text(x.into()), Value::Text(y.into())],
        }
    }

    fn pk(m: &ItemMapper, x: &str, y: &str) -> Result<String, MapError> {
        m.map_row(&row(x, y)).map(|item| match &item["pk"] {
            AttributeValue::S(s) => s.clone(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn a_part_with_the_separator_is_refused_naming_the_column() {
        let m = mapper(
            KeyAttribute::columns(&["x", "y"], Some("pk")),
            AmbiguousKeys::Reject,
        )
        .unwrap();
        assert_eq!(pk(&m, "a", "b").unwrap(), "a#b");
        for (x, y, column) in [("a#b", "c", "x"), ("a", "b#c", "y"), ("#", "#", "x")] {
            let err = pk(&m, x, y).unwrap_err();
            let MapError::Row { problems, .. } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(problems[0].column, column, "{err}");
            assert!(problems[0].reason.contains("ambiguous key"), "{err}");
        }
        // A backslash is no separator: it stays as it is.
        assert_eq!(pk(&m, "a\\", "b").unwrap(), "a\\#b");
    }

    #[test]
    fn escaped_parts_never_make_one_key_of_two_rows() {
        let m = mapper(
            KeyAttribute::columns(&["x", "y"], Some("pk")),
            AmbiguousKeys::Escape,
        )
        .unwrap();
        let a = pk(&m, "a#b", "c").unwrap();
        let b = pk(&m, "a", "b#c").unwrap();
        assert_eq!(a, "a\\#b#c");
        assert_eq!(b, "a#b\\#c");
        assert_ne!(a, b);
        // Backslashes are escaped too, so `\#` in a value stays apart from
        // an escaped separator.
        assert_eq!(pk(&m, "a\\", "#").unwrap(), "a\\\\#\\#");
        assert_ne!(pk(&m, "a\\", "#b").unwrap(), pk(&m, "a\\#", "b").unwrap());
    }

    #[test]
    fn template_separators_are_the_literals_between_columns() {
        let m = mapper(
            KeyAttribute::template("T#{x}-{y}!", "pk"),
            AmbiguousKeys::Reject,
        )
        .unwrap();
        // '#' and '!' stand outside the columns: fixed, never ambiguous.
        assert_eq!(pk(&m, "a#", "b!").unwrap(), "T#a#-b!!");
        assert!(pk(&m, "a-", "b").is_err());
        assert_eq!(
            m.rejecting_joined_keys(),
            vec![(
                "pk".to_string(),
                "-".to_string(),
                vec!["x".to_string(), "y".to_string()]
            )]
        );
        // One column: nothing to run into.
        let one = mapper(
            KeyAttribute::template("USER#{x}", "pk"),
            AmbiguousKeys::Reject,
        )
        .unwrap();
        assert_eq!(pk(&one, "a#b", "").unwrap(), "USER#a#b");
        assert!(one.rejecting_joined_keys().is_empty());
        // Two columns side by side can never be told apart.
        let err = mapper(
            KeyAttribute::template("{x}{y}", "pk"),
            AmbiguousKeys::Escape,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("side by side"), "{err}");
    }
}
