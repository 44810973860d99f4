//! Which rows an item names: the source key columns read back from the
//! item's attributes, so `verify` can ask Postgres about a page of items
//! instead of holding every key of the table.
//!
//! A key column is read back from the attribute it is copied to (after
//! `include`, `exclude`, `rename`), or else from a key attribute built from
//! it (one column, columns joined with `#`, a template), parsed back by the
//! same rules that built it: a part ends at the first separator character
//! (`ambiguous_keys = "reject"` lets no part hold one) or at the first
//! unescaped one (`"escape"`). A key column in neither, or a value in a
//! form with no text (binary), cannot be read: range checks then report
//! what they cannot attribute as differences, and the scan for extra items
//! looks rows up by the key columns it can read.

use backfill_config::{parse_template, AmbiguousKeys, KeyAttribute, TableConfig, TemplatePart};
use backfill_item::{Item, ItemMapper, JOIN_SEPARATOR};
use backfill_source::TableSchema;

/// Where a key column's value is in an item.
#[derive(Debug, Clone)]
enum Source {
    /// The attribute the column is copied to.
    Attribute(String),
    /// Part `nth` (counting columns only) of a key attribute built by `parts`.
    KeyPart {
        attribute: String,
        parts: Vec<TemplatePart>,
        separators: Vec<char>,
        escaped: bool,
        nth: usize,
    },
}

impl Source {
    fn attribute(&self) -> &str {
        match self {
            Source::Attribute(a) | Source::KeyPart { attribute: a, .. } => a,
        }
    }

    fn read(&self, item: &Item) -> Option<String> {
        let v = item.get(self.attribute())?;
        let text = match (v.as_s(), v.as_n(), v.as_bool()) {
            (Ok(s), _, _) | (_, Ok(s), _) => s.clone(),
            (_, _, Ok(b)) => b.to_string(),
            _ => return None,
        };
        match self {
            Source::Attribute(_) => Some(text),
            Source::KeyPart {
                parts,
                separators,
                escaped,
                nth,
                ..
            } => parse_key(&text, parts, separators, *escaped)?
                .into_iter()
                .nth(*nth),
        }
    }
}

/// The parts of a key attribute, as `TemplatePart`s; `None` for a template
/// that does not parse (the mapper refuses it before this is reached).
fn key_parts(k: &KeyAttribute) -> Option<Vec<TemplatePart>> {
    match &k.template {
        Some(t) => parse_template(t).ok(),
        None => {
            let mut parts = Vec::new();
            for (i, c) in k.columns.iter().enumerate() {
                if i > 0 {
                    parts.push(TemplatePart::Literal(JOIN_SEPARATOR.to_string()));
                }
                parts.push(TemplatePart::Column(c.clone()));
            }
            Some(parts)
        }
    }
}

/// The characters of the literals between a key's first and last column:
/// what a part may not hold unescaped (the mapper's rule, `keys.rs`).
fn separators_of(parts: &[TemplatePart]) -> Vec<char> {
    let is_col = |p: &TemplatePart| matches!(p, TemplatePart::Column(_));
    let (Some(a), Some(b)) = (
        parts.iter().position(is_col),
        parts.iter().rposition(is_col),
    ) else {
        return Vec::new();
    };
    let mut out: Vec<char> = parts[a..b]
        .iter()
        .filter_map(|p| match p {
            TemplatePart::Literal(l) => Some(l.chars()),
            TemplatePart::Column(_) => None,
        })
        .flatten()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Splits a key attribute's text back into its columns' texts, or `None`
/// when it was not built by `parts` (a literal does not match, an escape
/// is cut short).
fn parse_key(
    text: &str,
    parts: &[TemplatePart],
    separators: &[char],
    escaped: bool,
) -> Option<Vec<String>> {
    let escaped = escaped && !separators.is_empty();
    let mut rest = text;
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            TemplatePart::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
            TemplatePart::Column(_) => {
                let later_column = parts[i + 1..]
                    .iter()
                    .any(|p| matches!(p, TemplatePart::Column(_)));
                // The last column runs to the literals after it; any other
                // ends at the first separator character not escaped.
                let end = if later_column {
                    let mut end = rest.len();
                    let mut chars = rest.char_indices();
                    while let Some((at, c)) = chars.next() {
                        if escaped && c == '\\' {
                            chars.next()?;
                        } else if separators.contains(&c) {
                            end = at;
                            break;
                        }
                    }
                    end
                } else {
                    let suffix: String = parts[i + 1..]
                        .iter()
                        .filter_map(|p| match p {
                            TemplatePart::Literal(l) => Some(l.as_str()),
                            TemplatePart::Column(_) => None,
                        })
                        .collect();
                    rest.strip_suffix(suffix.as_str())?.len()
                };
                let raw = &rest[..end];
                out.push(if escaped {
                    unescape(raw)?
                } else {
                    raw.to_string()
                });
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(out)
}

/// Undoes the mapper's escaping: `\x` is `x`; a lone `\` at the end is no
/// escaped part.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// Reads a table's source key columns back from its items.
#[derive(Debug, Clone)]
pub(crate) struct KeyReader {
    /// Per key column of the table, in key order: its name and where its
    /// value is in an item, if anywhere.
    columns: Vec<(String, Option<Source>)>,
}

impl KeyReader {
    pub(crate) fn new(t: &TableConfig, schema: &TableSchema, mapper: &ItemMapper) -> Self {
        let copied: Vec<&str> = mapper.column_attributes().collect();
        let columns = schema
            .key_columns()
            .map(|c| {
                let name = c.name.as_str();
                let included = t
                    .include
                    .as_ref()
                    .is_none_or(|inc| inc.iter().any(|i| i == name))
                    || t.version_column.as_deref() == Some(name);
                let as_copied = (included && !t.exclude.iter().any(|e| e == name))
                    .then(|| t.rename.get(name).map_or(name, String::as_str))
                    .filter(|a| copied.contains(a))
                    .map(|a| Source::Attribute(a.to_string()));
                let as_key = || {
                    std::iter::once(&t.partition_key)
                        .chain(t.sort_key.as_ref())
                        .find_map(|k| {
                            let parts = key_parts(k)?;
                            let nth = parts
                                .iter()
                                .filter(|p| matches!(p, TemplatePart::Column(_)))
                                .position(|p| matches!(p, TemplatePart::Column(c) if c == name))?;
                            Some(Source::KeyPart {
                                attribute: k.attribute_name().to_string(),
                                separators: separators_of(&parts),
                                escaped: t.ambiguous_keys == AmbiguousKeys::Escape,
                                parts,
                                nth,
                            })
                        })
                };
                (name.to_string(), as_copied.or_else(as_key))
            })
            .collect();
        KeyReader { columns }
    }

    /// Whether every key column can be read back, so a tuple names one row.
    pub(crate) fn is_complete(&self) -> bool {
        self.columns.iter().all(|(_, a)| a.is_some())
    }

    /// The key columns that can be read back, in key order.
    pub(crate) fn columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, a)| a.is_some())
            .map(|(c, _)| c.as_str())
            .collect()
    }

    /// The key columns that cannot, for messages.
    pub(crate) fn unreadable(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, a)| a.is_none())
            .map(|(c, _)| c.as_str())
            .collect()
    }

    /// The attributes read, for a scan's projection.
    pub(crate) fn attributes(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter_map(|(_, a)| a.as_ref().map(Source::attribute))
            .collect()
    }

    /// The readable key columns' values as text, in the order of
    /// [`KeyReader::columns`]; `None` when the item lacks one, holds one in
    /// a form with no text a cast reads back (binary, a map), or holds a key
    /// its template did not build.
    pub(crate) fn read(&self, item: &Item) -> Option<Vec<String>> {
        self.columns
            .iter()
            .filter_map(|(_, a)| a.as_ref())
            .map(|a| a.read(item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_config::KeyAttribute;
    use backfill_job::KeyValue;
    use backfill_source::{ColumnKind, ColumnSchema, SourceRow, TableRef, Value};

    fn schema() -> TableSchema {
        TableSchema {
            table: TableRef::parse("public.t"),
            columns: [
                ("x", ColumnKind::Text),
                ("y", ColumnKind::Int8),
                ("v", ColumnKind::Text),
            ]
            .iter()
            .map(|(n, kind)| ColumnSchema {
                name: n.to_string(),
                pg_type: "text".into(),
                kind: kind.clone(),
                not_null: true,
                precision: None,
            })
            .collect(),
            key: vec![0, 1],
            reltuples: 0.0,
            relpages: 0,
            pages: 0,
        }
    }

    fn reader(t: &TableConfig) -> KeyReader {
        let s = schema();
        KeyReader::new(t, &s, &ItemMapper::new(t, &s).expect("mapper"))
    }

    #[test]
    fn key_columns_are_read_from_their_renamed_attributes() {
        let mut t = TableConfig::new(
            "public.t",
            "target",
            KeyAttribute::columns(&["x", "y"], Some("pk")),
        );
        t.rename.insert("y".into(), "why".into());
        let s = schema();
        let m = ItemMapper::new(&t, &s).expect("mapper");
        let r = KeyReader::new(&t, &s, &m);
        assert!(r.is_complete());
        assert_eq!(r.attributes(), vec!["x", "why"]);
        let row = SourceRow {
            key: vec![KeyValue::Text("a#b".into()), KeyValue::Int(-1)],
            values: vec![
                Value::Text("a#b".into()),
                Value::Int(-1),
                Value::Text("v".into()),
            ],
        };
        let mut t2 = t.clone();
        t2.ambiguous_keys = backfill_config::AmbiguousKeys::Escape;
        let item = ItemMapper::new(&t2, &s)
            .expect("mapper")
            .map_row(&row)
            .expect("item");
        assert_eq!(
            r.read(&item),
            Some(vec!["a#b".to_string(), "-1".to_string()])
        );
        let mut bare = item.clone();
        bare.remove("why");
        assert_eq!(r.read(&bare), None);
    }

    #[test]
    fn excluded_key_columns_are_parsed_back_from_the_keys_built_from_them() {
        let mut t = TableConfig::new("public.t", "target", KeyAttribute::columns(&["x"], None));
        t.sort_key = Some(KeyAttribute::template("Y#{y}!", "sk"));
        t.exclude = vec!["x".into(), "y".into()];
        let r = reader(&t);
        assert!(r.is_complete());
        assert_eq!(r.attributes(), vec!["x", "sk"]);
        let item = ItemMapper::new(&t, &schema())
            .expect("mapper")
            .map_row(&SourceRow {
                key: vec![KeyValue::Text("a#b".into()), KeyValue::Int(-3)],
                values: vec![Value::Text("a#b".into()), Value::Int(-3), Value::Null],
            })
            .expect("item");
        assert_eq!(r.read(&item), Some(vec!["a#b".into(), "-3".into()]));

        // A template that leaves a key column out names only part of a row.
        t.partition_key = KeyAttribute::template("T#{x}", "pk");
        t.sort_key = None;
        let r = reader(&t);
        assert!(!r.is_complete());
        assert_eq!(r.columns(), vec!["x"]);
        assert_eq!(r.unreadable(), vec!["y"]);
    }

    fn parts(template: &str) -> Vec<TemplatePart> {
        parse_template(template).expect("template")
    }

    #[test]
    fn keys_parse_back_into_the_parts_that_built_them() {
        let joined = key_parts(&KeyAttribute::columns(&["x", "y"], Some("pk"))).expect("parts");
        let seps = separators_of(&joined);
        assert_eq!(seps, vec!['#']);
        // Escaped: a separator inside a part is preceded by a backslash.
        assert_eq!(
            parse_key(r"a\#b#c", &joined, &seps, true),
            Some(vec!["a#b".into(), "c".into()])
        );
        assert_eq!(
            parse_key(r"a\\#\#", &joined, &seps, true),
            Some(vec!["a\\".into(), "#".into()])
        );
        assert_eq!(parse_key(r"a#b\", &joined, &seps, true), None);
        // Rejected parts never hold the separator, so the first one splits.
        assert_eq!(
            parse_key("a#b#c", &joined, &seps, false),
            Some(vec!["a".into(), "b#c".into()])
        );
        let t = parts("ORDER#{at}-{id}!");
        let seps = separators_of(&t);
        assert_eq!(seps, vec!['-']);
        // A part holding a separator made its row a reject, so such a key
        // is no row's: it splits at the first one and names no row.
        assert_eq!(
            parse_key("ORDER#2024-01-01-7!", &t, &seps, false),
            Some(vec!["2024".into(), "01-01-7".into()])
        );
        assert_eq!(
            parse_key("ORDER#x#y-7!", &t, &seps, false),
            Some(vec!["x#y".into(), "7".into()])
        );
        assert_eq!(parse_key("USER#x-7!", &t, &seps, false), None);
        assert_eq!(parse_key("ORDER#x-7", &t, &seps, false), None);
    }
}
