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

pub mod compare;
pub mod fidelity;
mod keys;
pub mod number;
pub mod shaped;
pub mod size;

pub use keys::{AMBIGUOUS_KEY, JOIN_SEPARATOR};
pub use shaped::{Shape, ShapedItem};

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType};
use backfill_config::{
    parse_template, AmbiguousKeys, KeyAttribute, NullPolicy, TableConfig, TemplatePart,
    TypeOverride, Unrepresentable,
};
use backfill_job::{display_key, KeyTuple};
use backfill_model::{ColumnKind, SourceRow, TableSchema, Value};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// `s.trim()`, without the char-by-char scan when neither end is
/// whitespace (numbers from Postgres never have any): an ASCII graphic byte
/// at each end is a non-whitespace char there.
pub(crate) fn trim_ascii_fast(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Largest partition key value, in bytes (DynamoDB limit).
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Largest sort key value, in bytes (DynamoDB limit).
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// Why a row cannot become an item, or a table cannot be mapped at all.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// Every column of the row that cannot be mapped, not just the first,
    /// so one fix of the config or the data settles the row.
    #[error("table {table}, key {key}, {}", show_problems(problems))]
    Row {
        table: String,
        key: String,
        problems: Vec<RowProblem>,
    },
    #[error("table {table}: {reason}")]
    Table { table: String, reason: String },
}

/// One column of a row that cannot be mapped, and why (the reason quotes
/// the offending value where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub column: String,
    pub reason: String,
}

fn show_problems(problems: &[RowProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("column {}: {}", p.column, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl MapError {
    /// What is wrong with the row, without the table and key.
    pub fn row_reason(&self) -> String {
        match self {
            MapError::Row { problems, .. } => show_problems(problems),
            MapError::Table { reason, .. } => reason.clone(),
        }
    }
}

/// Where a key attribute's value comes from.
#[derive(Debug, Clone)]
enum KeySource {
    /// One column (keeps its type) or several joined with `#`.
    Columns(Vec<usize>),
    /// Literal text and columns, e.g. `USER#{user_id}`.
    Template(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Column(usize),
}

/// A key attribute of the target and how it is built from the row.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    pub attribute: String,
    pub attribute_type: ScalarAttributeType,
    source: KeySource,
    max_bytes: usize,
    /// The characters of the literals between the key's columns: a part
    /// free of them parses back unambiguously. Empty for a key of one column.
    separators: Vec<char>,
    ambiguous: AmbiguousKeys,
}

/// A copied column: where it is in the row and what it becomes.
#[derive(Debug, Clone)]
struct ColumnPlan {
    index: usize,
    column: String,
    attribute: String,
    form: Option<TypeOverride>,
}

/// Maps the rows of one table to items of its target.
#[derive(Debug, Clone)]
pub struct ItemMapper {
    table: String,
    column_names: Vec<String>,
    columns: Vec<ColumnPlan>,
    partition: KeyPlan,
    sort: Option<KeyPlan>,
    nulls: NullPolicy,
    unrepresentable: Unrepresentable,
    version: Option<(usize, String)>,
    /// Per source column: whether exactly one attribute is made from it, so
    /// `map_row_owned` may move its value instead of copying it.
    used_once: Vec<bool>,
    /// The names of the items this mapper makes, for [`ItemMapper::map_row_shaped`].
    shape: std::sync::Arc<Shape>,
    /// Each copied column's place in `shape`, in the order of `columns`.
    column_slots: Vec<usize>,
    /// The partition key's place in `shape`, then the sort key's.
    key_slots: Vec<usize>,
}

/// Which attribute a mapped value is for.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The copied column at this index of `ItemMapper::columns`.
    Column(usize),
    /// The partition key (0) or the sort key (1), with its plan.
    Key(usize, &'a KeyPlan),
}

impl ItemMapper {
    /// Checks the mapping (key, include, exclude, rename, types, version
    /// column) against the table as it is and builds the mapper.
    pub fn new(cfg: &TableConfig, schema: &TableSchema) -> Result<Self, MapError> {
        let table = schema.table.to_string();
        let table_err = |reason: String| MapError::Table {
            table: table.clone(),
            reason,
        };
        let position = |name: &str, what: &str| {
            schema
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    table_err(format!(
                        "{what} names column {name}, which the table does not have"
                    ))
                })
        };
        let plan = |k: &KeyAttribute, max_bytes: usize| -> Result<KeyPlan, MapError> {
            let what = format!("key attribute {}", k.attribute_name());
            let (source, attribute_type) = match &k.template {
                Some(t) => {
                    let parts = parse_template(t)
                        .map_err(|e| table_err(format!("{what}: {e}")))?
                        .into_iter()
                        .map(|p| match p {
                            TemplatePart::Literal(l) => Ok(Part::Literal(l)),
                            TemplatePart::Column(c) => position(&c, &what).map(Part::Column),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (KeySource::Template(parts), ScalarAttributeType::S)
                }
                None => {
                    let cols = k
                        .columns
                        .iter()
                        .map(|c| position(c, &what))
                        .collect::<Result<Vec<_>, _>>()?;
                    let ty = match cols.as_slice() {
                        [one] => match schema.columns[*one].kind {
                            ColumnKind::Int2
                            | ColumnKind::Int4
                            | ColumnKind::Int8
                            | ColumnKind::Numeric
                            | ColumnKind::Float4
                            | ColumnKind::Float8
                            | ColumnKind::Money => ScalarAttributeType::N,
                            ColumnKind::Bytea => ScalarAttributeType::B,
                            _ => ScalarAttributeType::S,
                        },
                        _ => ScalarAttributeType::S,
                    };
                    (KeySource::Columns(cols), ty)
                }
            };
            let separators = keys::separator_chars(&source);
            if let KeySource::Template(parts) = &source {
                if parts
                    .windows(2)
                    .any(|w| matches!(w, [Part::Column(_), Part::Column(_)]))
                {
                    return Err(table_err(format!(
                        "{what}: template `{}` puts two columns side by side with no separator, so two rows could make one key",
                        k.template.as_deref().unwrap_or_default()
                    )));
                }
            }
            Ok(KeyPlan {
                attribute: k.attribute_name().to_string(),
                attribute_type,
                source,
                max_bytes,
                separators,
                ambiguous: cfg.ambiguous_keys,
            })
        };
        let partition = plan(&cfg.partition_key, MAX_PARTITION_KEY_BYTES)?;
        let sort = cfg
            .sort_key
            .as_ref()
            .map(|k| plan(k, MAX_SORT_KEY_BYTES))
            .transpose()?;

        for c in cfg.include.iter().flatten() {
            position(c, "`include`")?;
        }
        for c in &cfg.exclude {
            position(c, "`exclude`")?;
        }
        for c in cfg.rename.keys() {
            position(c, "`rename`")?;
        }
        for c in cfg.types.keys() {
            position(c, "`types`")?;
        }
        let version = cfg
            .version_column
            .as_ref()
            .map(|v| {
                let i = position(v, "`version_column`")?;
                Ok::<_, MapError>((i, cfg.rename.get(v).cloned().unwrap_or_else(|| v.clone())))
            })
            .transpose()?;
        let key_attrs: Vec<&str> = std::iter::once(&partition)
            .chain(sort.as_ref())
            .map(|k| k.attribute.as_str())
            .collect();
        let mut columns = Vec::new();
        for (index, c) in schema.columns.iter().enumerate() {
            let included = cfg.include.as_ref().is_none_or(|inc| inc.contains(&c.name))
                || version.as_ref().is_some_and(|(v, _)| *v == index);
            if !included || cfg.exclude.contains(&c.name) {
                continue;
            }
            let attribute = cfg
                .rename
                .get(&c.name)
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            if key_attrs.contains(&attribute.as_str())
                && !is_plain_key_column(&partition, &sort, index, &attribute)
            {
                return Err(table_err(format!(
                    "column {} would be stored as attribute {attribute}, which is a key attribute; rename or exclude it",
                    c.name
                )));
            }
            columns.push(ColumnPlan {
                index,
                column: c.name.clone(),
                attribute,
                form: cfg.types.get(&c.name).copied(),
            });
        }
        let mut uses = vec![0usize; schema.columns.len()];
        for c in &columns {
            if let Some(n) = uses.get_mut(c.index) {
                *n += 1;
            }
        }
        let column_refs: Vec<&str> = columns.iter().map(|c| c.attribute.as_str()).collect();
        let shape = Shape::new(&column_refs, key_attrs.iter().copied());
        let slot = |name: &str| {
            shape
                .slot(name)
                .ok_or_else(|| table_err(format!("attribute {name} is missing from its shape")))
        };
        let column_slots = column_refs
            .iter()
            .map(|n| slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        let key_slots = key_attrs
            .iter()
            .map(|n| slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ItemMapper {
            shape: std::sync::Arc::new(shape),
            column_slots,
            key_slots,
            partition,
            sort,
            column_names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            used_once: uses.into_iter().map(|n| n == 1).collect(),
            columns,
            nulls: cfg.nulls,
            unrepresentable: cfg.unrepresentable,
            version,
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

    /// The attribute holding the version, when writes are conditional on it.
    pub fn version_attribute(&self) -> Option<&str> {
        self.version.as_ref().map(|(_, a)| a.as_str())
    }

    /// Names of the attributes copied columns become (keys excluded).
    pub fn column_attributes(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.attribute.as_str())
    }

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

    /// The shape of the items [`ItemMapper::map_row_shaped`] makes.
    pub fn shape(&self) -> &std::sync::Arc<Shape> {
        &self.shape
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

/// A column stored under a key attribute's name is fine only when it is
/// that key's own single column (its value is the key's value).
fn is_plain_key_column(
    partition: &KeyPlan,
    sort: &Option<KeyPlan>,
    index: usize,
    attribute: &str,
) -> bool {
    std::iter::once(partition).chain(sort.as_ref()).any(|k| {
        k.attribute == attribute
            && matches!(&k.source, KeySource::Columns(c) if c.as_slice() == [index])
    })
}

/// An integer's decimal text (itoa: every integer column of every row
/// comes through here, and the formatter is several times slower).
fn int_text(i: i64) -> String {
    itoa::Buffer::new().format(i).to_owned()
}

/// The text form of a value: what it contributes to a string key or a
/// `string` override (Postgres' own text form; bytea as `\x` hex).
pub fn text_form(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(i) => int_text(*i),
        Value::Number(s) | Value::Text(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for x in b {
                s.push_str(&format!("{x:02x}"));
            }
            s
        }
        Value::Json(j) => j.to_string(),
    }
}

fn number_attribute(text: &str, fallback: Unrepresentable) -> Result<AttributeValue, String> {
    match number::to_dynamo_number(text) {
        Ok(n) => Ok(AttributeValue::N(n)),
        Err(_) if fallback == Unrepresentable::String => Ok(AttributeValue::S(text.to_string())),
        Err(e) => Err(format!(
            "{e} (set `unrepresentable = \"string\"` or a `types` override to store it as text)"
        )),
    }
}

/// [`number_attribute`] for a text that is not needed afterwards: a valid
/// number is moved into the attribute instead of copied.
fn number_attribute_owned(
    text: String,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    if number::is_sent_as_is(&text) {
        Ok(AttributeValue::N(text))
    } else {
        number_attribute(&text, fallback)
    }
}

/// [`json_to_attribute`] for a value that is not needed afterwards: strings
/// and keys move into the attribute.
pub fn json_into_attribute(
    j: serde_json::Value,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    Ok(match j {
        J::String(s) => AttributeValue::S(s),
        J::Number(n) => number_attribute_owned(n.to_string(), fallback)?,
        J::Array(a) => AttributeValue::L(
            a.into_iter()
                .map(|x| json_into_attribute(x, fallback))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => AttributeValue::M(
            o.into_iter()
                .map(|(k, v)| Ok((k, json_into_attribute(v, fallback)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => json_to_attribute(&other, fallback)?,
    })
}

/// JSON to DynamoDB: objects to M, arrays to L, numbers to N with their
/// exact digits, strings to S, null to NULL.
pub fn json_to_attribute(
    j: &serde_json::Value,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => AttributeValue::Null(true),
        J::Bool(b) => AttributeValue::Bool(*b),
        J::Number(n) => number_attribute(&n.to_string(), fallback)?,
        J::String(s) => AttributeValue::S(s.clone()),
        J::Array(a) => AttributeValue::L(
            a.iter()
                .map(|x| json_to_attribute(x, fallback))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_attribute(v, fallback)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_config::KeyAttribute;
    use backfill_job::KeyValue;
    use backfill_model::{ColumnSchema, TableRef};

    fn schema(cols: &[(&str, ColumnKind)]) -> TableSchema {
        TableSchema {
            table: TableRef::parse("public.t"),
            columns: cols
                .iter()
                .map(|(n, k)| ColumnSchema {
                    name: n.to_string(),
                    pg_type: "x".into(),
                    kind: k.clone(),
                    not_null: true,
                    precision: None,
                })
                .collect(),
            key: vec![0],
            reltuples: 0.0,
            relpages: 0,
            pages: 0,
        }
    }

    fn row(values: Vec<Value>) -> SourceRow {
        SourceRow {
            key: vec![KeyValue::Int(1)],
            values,
        }
    }

    fn mapper(pk: KeyAttribute, sk: Option<KeyAttribute>) -> ItemMapper {
        let mut cfg = TableConfig::new("public.t", "target", pk);
        cfg.sort_key = sk;
        ItemMapper::new(
            &cfg,
            &schema(&[("a", ColumnKind::Text), ("b", ColumnKind::Text)]),
        )
        .unwrap()
    }

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

    #[test]
    fn a_column_named_like_a_template_key_is_refused() {
        let mut cfg = TableConfig::new("public.t", "target", KeyAttribute::template("A#{a}", "b"));
        cfg.sort_key = None;
        let e = ItemMapper::new(
            &cfg,
            &schema(&[("a", ColumnKind::Text), ("b", ColumnKind::Text)]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("column b would be stored as attribute b"),
            "{e}"
        );
    }
}
