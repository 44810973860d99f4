//! How each Postgres column is stored in an archive: its Arrow (and so
//! Parquet) type, and the metadata that names the original type.
//!
//! The mapping depends only on the table's schema and the caller's list of
//! columns to keep as text, never on the values, so every part of a table
//! has the same schema. Every field names its `pg_type` and `pg_kind`, so a
//! part can be read back (and restored with `COPY`) without the source.
//!
//! | Postgres | Arrow / Parquet | Notes |
//! |---|---|---|
//! | smallint, integer, bigint | Int16, Int32, Int64 | |
//! | numeric(p,s), 1 <= p <= 38, 0 <= s <= p | Decimal128(p,s) | exact; NaN is an error naming the column |
//! | numeric (unconstrained, p > 38, negative or larger-than-p scale), money | Utf8, `backfill.encoding = "text"` | Postgres' exact text (`NaN`, `-1234.56`); money without the currency symbol |
//! | real, double precision | Float32, Float64 | bit-exact: NaN, ±Infinity and -0 kept |
//! | bool | Boolean | |
//! | text, varchar, char(n), name, citext, enum, uuid, inet, cidr, macaddr, point, other | Utf8, `backfill.encoding = "text"` | Postgres' text form; char(n) keeps its padding; uuid lower case |
//! | bytea | Binary | |
//! | date | Date32 | days since 1970-01-01, proleptic Gregorian, 1 BC = year 0; `infinity` = i32::MAX, `-infinity` = i32::MIN (Postgres' own sentinels) |
//! | timestamp | Timestamp(µs) | micros since 1970-01-01; `infinity` = i64::MAX, `-infinity` = i64::MIN; values after 294247-01-10T04:00:54.775806 do not fit and are errors (archive the column as text) |
//! | timestamptz | Timestamp(µs, "UTC") | as timestamp, the instant in UTC |
//! | time | Time64(µs) | `24:00:00` is 86,400,000,000 |
//! | timetz | Time64(µs), `pg_kind = "timetz"` | the time in UTC (the offset is not kept, as the reader normalises it) |
//! | interval | Struct{months: Int32, days: Int32, micros: Int64} | exactly Postgres' three fields |
//! | json, jsonb | Utf8, `backfill.encoding = "json"` | compact JSON text |
//! | arrays | List(element as above) | 1-D only: a value with nested arrays is an error naming the column |
//! | arrays listed in `text_columns` | Utf8, `backfill.encoding = "json"` | the `to_json` text, any dimensions |
//! | any other column listed in `text_columns` | Utf8, `backfill.encoding = "text"` | its text as read |
//!
//! Every field carries `pg_type` (`format_type()`, e.g. `numeric(12,2)`)
//! and `pg_kind` (`int4`, `timetz`, `int4[]`, ...); the schema carries
//! `backfill.table`. A field is nullable unless its column is NOT NULL.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use backfill_model::{ColumnKind, TableSchema};

use crate::ArchiveError;

/// Field metadata: the column's `format_type()`.
pub const PG_TYPE: &str = "pg_type";
/// Field metadata: the column's kind (`int4`, `timetz`, `text[]`, ...).
pub const PG_KIND: &str = "pg_kind";
/// Field metadata on Utf8 fields: `text` (Postgres' text form) or `json`.
pub const ENCODING: &str = "backfill.encoding";
/// Schema metadata: the source table, `schema.name`.
pub const TABLE: &str = "backfill.table";

/// How one column's values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Int16,
    Int32,
    Int64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Float32,
    Float64,
    Bool,
    /// Utf8: the value's Postgres text form (valid input for its type).
    Text,
    /// Utf8: a json or jsonb value as compact JSON text.
    Json,
    /// Utf8: a whole array as its `to_json` text (any dimensions).
    ArrayJson,
    Binary,
    /// Date32; the sentinels stand for ±infinity.
    Date,
    /// Timestamp(µs) without zone; the sentinels stand for ±infinity.
    Timestamp,
    /// Timestamp(µs, "UTC"); the sentinels stand for ±infinity.
    TimestampTz,
    Time,
    /// Time64(µs) of the time in UTC.
    TimeTz,
    /// Struct{months, days, micros}.
    Interval,
    /// A 1-D array of the element type.
    List(Box<ColumnType>),
}

/// An archive's schema: the Arrow schema written to every part, and how
/// each column (in table order) is stored.
#[derive(Debug, Clone)]
pub struct ArchiveSchema {
    pub arrow: SchemaRef,
    pub columns: Vec<ColumnType>,
}

impl ArchiveSchema {
    /// The name of column `i` (empty if there is none).
    pub fn name(&self, i: usize) -> &str {
        self.arrow.fields().get(i).map_or("", |f| f.name().as_str())
    }

    /// The `pg_type` of column `i` (empty if unknown).
    pub fn pg_type(&self, i: usize) -> &str {
        self.arrow
            .fields()
            .get(i)
            .and_then(|f| f.metadata().get(PG_TYPE))
            .map_or("", String::as_str)
    }

    /// The schema of a part written by this crate, from its Arrow schema
    /// (as stored in the Parquet file): fails on a field that this crate
    /// would not have written.
    pub fn from_arrow(arrow: SchemaRef) -> Result<Self, ArchiveError> {
        let columns = arrow
            .fields()
            .iter()
            .map(|f| {
                let kind = f.metadata().get(PG_KIND).map_or("", String::as_str);
                let encoding = f.metadata().get(ENCODING).map_or("", String::as_str);
                type_of_field(f.data_type(), kind, encoding).ok_or_else(|| ArchiveError::Schema {
                    column: f.name().clone(),
                    pg_type: f.metadata().get(PG_TYPE).cloned().unwrap_or_default(),
                    reason: format!(
                        "field type {} is not one this archive writes",
                        f.data_type()
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ArchiveSchema { arrow, columns })
    }
}

/// The archive schema of `schema`. Columns named in `text_columns` are kept
/// as text: an array column as its JSON text (the caller lists the array
/// columns that hold multi-dimensional values, found with `array_ndims`),
/// any other column as the text it is read as (e.g. a timestamp column
/// holding values beyond 294247 AD). A name that is not a column fails.
pub fn archive_schema(
    schema: &TableSchema,
    text_columns: &[String],
) -> Result<ArchiveSchema, ArchiveError> {
    for name in text_columns {
        if schema.column(name).is_none() {
            return Err(ArchiveError::Schema {
                column: name.clone(),
                pg_type: String::new(),
                reason: format!(
                    "listed to be kept as text, but {} has no such column",
                    schema.table
                ),
            });
        }
    }
    let mut fields = Vec::with_capacity(schema.columns.len());
    let mut columns = Vec::with_capacity(schema.columns.len());
    for c in &schema.columns {
        let ty = if text_columns.contains(&c.name) {
            match c.kind {
                ColumnKind::Array(_) => ColumnType::ArrayJson,
                ColumnKind::Json | ColumnKind::Jsonb => ColumnType::Json,
                _ => ColumnType::Text,
            }
        } else {
            column_type(&c.kind, &c.pg_type)
        };
        let mut meta = HashMap::from([
            (PG_TYPE.to_string(), c.pg_type.clone()),
            (PG_KIND.to_string(), kind_name(&c.kind)),
        ]);
        if let Some(e) = encoding(&ty) {
            meta.insert(ENCODING.to_string(), e.to_string());
        }
        fields.push(Field::new(&c.name, data_type(&ty), !c.not_null).with_metadata(meta));
        columns.push(ty);
    }
    let meta = HashMap::from([(TABLE.to_string(), schema.table.to_string())]);
    Ok(ArchiveSchema {
        arrow: Arc::new(Schema::new(fields).with_metadata(meta)),
        columns,
    })
}

/// How a column of `kind` and `pg_type` (its `format_type()`) is stored
/// when it is not kept as text.
pub fn column_type(kind: &ColumnKind, pg_type: &str) -> ColumnType {
    match kind {
        ColumnKind::Int2 => ColumnType::Int16,
        ColumnKind::Int4 => ColumnType::Int32,
        ColumnKind::Int8 => ColumnType::Int64,
        ColumnKind::Numeric => match numeric_typmod(pg_type) {
            Some((p, s)) if (1..=38).contains(&p) && (0..=p).contains(&s) => ColumnType::Decimal {
                precision: p as u8,
                scale: s as i8,
            },
            _ => ColumnType::Text,
        },
        ColumnKind::Float4 => ColumnType::Float32,
        ColumnKind::Float8 => ColumnType::Float64,
        ColumnKind::Bool => ColumnType::Bool,
        ColumnKind::Bytea => ColumnType::Binary,
        ColumnKind::Date => ColumnType::Date,
        ColumnKind::Timestamp => ColumnType::Timestamp,
        ColumnKind::TimestampTz => ColumnType::TimestampTz,
        ColumnKind::Time => ColumnType::Time,
        ColumnKind::TimeTz => ColumnType::TimeTz,
        ColumnKind::Interval => ColumnType::Interval,
        ColumnKind::Json | ColumnKind::Jsonb => ColumnType::Json,
        ColumnKind::Array(elem) => {
            let elem_type = pg_type.strip_suffix("[]").unwrap_or(pg_type);
            ColumnType::List(Box::new(column_type(elem, elem_type)))
        }
        ColumnKind::Money
        | ColumnKind::Text
        | ColumnKind::Char
        | ColumnKind::Uuid
        | ColumnKind::Enum
        | ColumnKind::Other => ColumnType::Text,
    }
}

/// `(p, s)` of `numeric(p,s)` or `numeric(p)` (with any trailing `[]`s).
fn numeric_typmod(pg_type: &str) -> Option<(i32, i32)> {
    let t = pg_type.trim_end_matches("[]");
    let args = t.strip_prefix("numeric(")?.strip_suffix(')')?;
    match args.split_once(',') {
        Some((p, s)) => Some((p.trim().parse().ok()?, s.trim().parse().ok()?)),
        None => Some((args.trim().parse().ok()?, 0)),
    }
}

/// The Arrow type a column type is stored as.
pub fn data_type(ty: &ColumnType) -> DataType {
    match ty {
        ColumnType::Int16 => DataType::Int16,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Text | ColumnType::Json | ColumnType::ArrayJson => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Time | ColumnType::TimeTz => DataType::Time64(TimeUnit::Microsecond),
        ColumnType::Interval => DataType::Struct(interval_fields()),
        ColumnType::List(elem) => DataType::List(Arc::new(list_item(elem))),
    }
}

/// The element field of a list column: always nullable, as array elements
/// can be NULL whatever the column's constraint.
pub(crate) fn list_item(elem: &ColumnType) -> Field {
    Field::new("item", data_type(elem), true)
}

/// An interval's three fields, as Postgres stores them.
pub(crate) fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("micros", DataType::Int64, false),
    ])
}

fn encoding(ty: &ColumnType) -> Option<&'static str> {
    match ty {
        ColumnType::Text => Some("text"),
        ColumnType::Json | ColumnType::ArrayJson => Some("json"),
        _ => None,
    }
}

/// The `pg_kind` name of a column kind; arrays end in `[]`.
pub fn kind_name(kind: &ColumnKind) -> String {
    let name = match kind {
        ColumnKind::Array(elem) => return format!("{}[]", kind_name(elem)),
        ColumnKind::Int2 => "int2",
        ColumnKind::Int4 => "int4",
        ColumnKind::Int8 => "int8",
        ColumnKind::Numeric => "numeric",
        ColumnKind::Float4 => "float4",
        ColumnKind::Float8 => "float8",
        ColumnKind::Bool => "bool",
        ColumnKind::Text => "text",
        ColumnKind::Uuid => "uuid",
        ColumnKind::Date => "date",
        ColumnKind::Timestamp => "timestamp",
        ColumnKind::TimestampTz => "timestamptz",
        ColumnKind::Json => "json",
        ColumnKind::Jsonb => "jsonb",
        ColumnKind::Bytea => "bytea",
        ColumnKind::Char => "char",
        ColumnKind::Money => "money",
        ColumnKind::Time => "time",
        ColumnKind::TimeTz => "timetz",
        ColumnKind::Interval => "interval",
        ColumnKind::Enum => "enum",
        ColumnKind::Other => "other",
    };
    name.to_string()
}

/// The column type a field of `data_type` was written for, given its
/// `pg_kind` and `backfill.encoding`; `None` if this crate never writes it.
fn type_of_field(data_type: &DataType, kind: &str, encoding: &str) -> Option<ColumnType> {
    Some(match data_type {
        DataType::Int16 => ColumnType::Int16,
        DataType::Int32 => ColumnType::Int32,
        DataType::Int64 => ColumnType::Int64,
        DataType::Decimal128(precision, scale) => ColumnType::Decimal {
            precision: *precision,
            scale: *scale,
        },
        DataType::Float32 => ColumnType::Float32,
        DataType::Float64 => ColumnType::Float64,
        DataType::Boolean => ColumnType::Bool,
        DataType::Utf8 => match encoding {
            "json" if kind.ends_with("[]") => ColumnType::ArrayJson,
            "json" => ColumnType::Json,
            _ => ColumnType::Text,
        },
        DataType::Binary => ColumnType::Binary,
        DataType::Date32 => ColumnType::Date,
        DataType::Timestamp(TimeUnit::Microsecond, None) => ColumnType::Timestamp,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ColumnType::TimestampTz,
        DataType::Time64(TimeUnit::Microsecond) if kind == "timetz" => ColumnType::TimeTz,
        DataType::Time64(TimeUnit::Microsecond) => ColumnType::Time,
        DataType::Struct(fields) if *fields == interval_fields() => ColumnType::Interval,
        DataType::List(item) => {
            let elem_kind = kind.strip_suffix("[]").unwrap_or(kind);
            let elem_encoding = if elem_kind == "json" || elem_kind == "jsonb" {
                "json"
            } else {
                "text"
            };
            ColumnType::List(Box::new(type_of_field(
                item.data_type(),
                elem_kind,
                elem_encoding,
            )?))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_model::{ColumnSchema, TableRef};

    pub(crate) fn table(cols: &[(&str, &str, ColumnKind)]) -> TableSchema {
        TableSchema {
            table: TableRef::parse("app.t"),
            columns: cols
                .iter()
                .map(|(name, pg_type, kind)| ColumnSchema {
                    name: name.to_string(),
                    pg_type: pg_type.to_string(),
                    kind: kind.clone(),
                    not_null: *name == "id",
                    precision: None,
                })
                .collect(),
            key: vec![0],
            reltuples: -1.0,
            relpages: 0,
            pages: 0,
        }
    }

    #[test]
    fn numerics_are_decimals_only_when_their_typmod_fits() {
        let n = ColumnKind::Numeric;
        assert_eq!(
            column_type(&n, "numeric(12,2)"),
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            column_type(&n, "numeric(38,0)"),
            ColumnType::Decimal {
                precision: 38,
                scale: 0
            }
        );
        assert_eq!(
            column_type(&n, "numeric(5)"),
            ColumnType::Decimal {
                precision: 5,
                scale: 0
            }
        );
        for text in ["numeric", "numeric(39,2)", "numeric(3,-2)", "numeric(2,5)"] {
            assert_eq!(column_type(&n, text), ColumnType::Text, "{text}");
        }
        assert_eq!(column_type(&ColumnKind::Money, "money"), ColumnType::Text);
        let arr = ColumnKind::Array(Box::new(n));
        assert_eq!(
            column_type(&arr, "numeric(10,2)[]"),
            ColumnType::List(Box::new(ColumnType::Decimal {
                precision: 10,
                scale: 2
            }))
        );
    }

    #[test]
    fn fields_carry_pg_types_encodings_and_the_table() {
        let t = table(&[
            ("id", "integer", ColumnKind::Int4),
            ("n", "numeric", ColumnKind::Numeric),
            ("tz", "time with time zone", ColumnKind::TimeTz),
            (
                "ai",
                "integer[]",
                ColumnKind::Array(Box::new(ColumnKind::Int4)),
            ),
            (
                "a2",
                "integer[]",
                ColumnKind::Array(Box::new(ColumnKind::Int4)),
            ),
            ("ts", "timestamp without time zone", ColumnKind::Timestamp),
        ]);
        let s = archive_schema(&t, &["a2".into(), "ts".into()]).unwrap();
        assert_eq!(s.arrow.metadata()[TABLE], "app.t");
        let f = s.arrow.field(0);
        assert!(!f.is_nullable());
        assert_eq!(f.metadata()[PG_TYPE], "integer");
        assert_eq!(f.metadata()[PG_KIND], "int4");
        assert_eq!(s.arrow.field(1).metadata()[ENCODING], "text");
        assert_eq!(s.arrow.field(2).metadata()[PG_KIND], "timetz");
        assert_eq!(s.arrow.field(3).metadata()[PG_KIND], "int4[]");
        assert_eq!(s.arrow.field(4).metadata()[ENCODING], "json");
        assert_eq!(
            s.columns[3..],
            [
                ColumnType::List(Box::new(ColumnType::Int32)),
                ColumnType::ArrayJson,
                ColumnType::Text
            ]
        );
        assert_eq!((s.name(2), s.pg_type(2)), ("tz", "time with time zone"));
        let back = ArchiveSchema::from_arrow(s.arrow.clone()).unwrap();
        assert_eq!(back.columns, s.columns);
    }

    #[test]
    fn an_unknown_text_column_is_refused() {
        let t = table(&[("id", "integer", ColumnKind::Int4)]);
        let e = archive_schema(&t, &["nope".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column nope (): listed to be kept as text, but app.t has no such column"
        );
    }

    #[test]
    fn a_foreign_field_type_is_refused() {
        let arrow = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt8, true)]));
        assert!(ArchiveSchema::from_arrow(arrow).is_err());
    }
}
