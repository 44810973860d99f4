//! A source row's values as typed cells: the one form every other part of
//! the archive (batches, digests, `COPY` text) works from.
//!
//! A cell holds exactly what its column's Arrow type stores; a value that
//! has no exact form there is an error naming the column and the value
//! (never rounded, clamped or dropped). The caller adds table and key.

pub mod datetime;
pub mod interval;
pub mod number;

use backfill_model::{SourceRow, Value};
use serde_json::Value as Json;

use crate::types::{ArchiveSchema, ColumnType};
use crate::ArchiveError;

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Bin(Vec<u8>),
    /// The unscaled value of a Decimal128 (the scale is the column's).
    Decimal(i128),
    /// Days since 1970-01-01; i32::MIN/MAX are ±infinity.
    Date(i32),
    /// Micros: since 1970-01-01 for a timestamp (i64::MIN/MAX are
    /// ±infinity), since midnight for a time.
    Micros(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    List(Vec<Cell>),
}

impl Cell {
    /// The variant's name, for errors.
    pub fn variant(&self) -> &'static str {
        match self {
            Cell::Null => "Null",
            Cell::I16(_) => "I16",
            Cell::I32(_) => "I32",
            Cell::I64(_) => "I64",
            Cell::F32(_) => "F32",
            Cell::F64(_) => "F64",
            Cell::Bool(_) => "Bool",
            Cell::Str(_) => "Str",
            Cell::Bin(_) => "Bin",
            Cell::Decimal(_) => "Decimal",
            Cell::Date(_) => "Date",
            Cell::Micros(_) => "Micros",
            Cell::Interval { .. } => "Interval",
            Cell::List(_) => "List",
        }
    }

    /// Whether two cells are the same value, floats compared by their bits
    /// (so NaN equals itself and -0 differs from 0), unlike `==`.
    pub fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::F32(a), Cell::F32(b)) => a.to_bits() == b.to_bits(),
            (Cell::F64(a), Cell::F64(b)) => a.to_bits() == b.to_bits(),
            (Cell::List(a), Cell::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            _ => self == other,
        }
    }
}

/// Why one value failed: its text and the reason; the column is added above.
struct Bad {
    value: String,
    reason: String,
}

fn bad(value: &str, reason: impl Into<String>) -> Bad {
    Bad {
        value: crate::error::quote(value),
        reason: reason.into(),
    }
}

/// The cells of `row`, one per column of `schema`, in column order.
pub fn row_cells(schema: &ArchiveSchema, row: &SourceRow) -> Result<Vec<Cell>, ArchiveError> {
    if row.values.len() != schema.columns.len() {
        return Err(ArchiveError::Arity {
            got: row.values.len(),
            want: schema.columns.len(),
        });
    }
    schema
        .columns
        .iter()
        .zip(&row.values)
        .enumerate()
        .map(|(i, (ty, v))| {
            value_cell(ty, v).map_err(|b| ArchiveError::Value {
                column: schema.name(i).to_string(),
                value: b.value,
                reason: b.reason,
            })
        })
        .collect()
}

/// The cell of one value as the reader hands it.
fn value_cell(ty: &ColumnType, v: &Value) -> Result<Cell, Bad> {
    let wrong = |v: &Value| {
        let shown = match v {
            Value::Json(j) => j.to_string(),
            other => format!("{other:?}"),
        };
        bad(
            &shown,
            format!("a value the reader does not give a {ty:?} column"),
        )
    };
    Ok(match (ty, v) {
        (_, Value::Null) => Cell::Null,
        (ColumnType::Int16, Value::Int(i)) => Cell::I16(
            i16::try_from(*i).map_err(|_| bad(&i.to_string(), "outside smallint's range"))?,
        ),
        (ColumnType::Int32, Value::Int(i)) => Cell::I32(
            i32::try_from(*i).map_err(|_| bad(&i.to_string(), "outside integer's range"))?,
        ),
        (ColumnType::Int64, Value::Int(i)) => Cell::I64(*i),
        (ColumnType::Bool, Value::Bool(b)) => Cell::Bool(*b),
        (ColumnType::Binary, Value::Bytes(b)) => Cell::Bin(b.clone()),
        (ColumnType::Text, v) => Cell::Str(match v {
            Value::Text(s) | Value::Number(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Bytes(b) => format!("\\x{}", hex::encode(b)),
            Value::Json(Json::String(s)) => s.clone(),
            Value::Json(j) => j.to_string(),
            Value::Null => return Ok(Cell::Null),
        }),
        (ColumnType::Json | ColumnType::ArrayJson, Value::Json(j)) => Cell::Str(j.to_string()),
        (ColumnType::Json, Value::Text(s)) => Cell::Str(s.clone()),
        (ColumnType::List(elem), Value::Json(Json::Array(items))) => Cell::List(
            items
                .iter()
                .map(|item| element_cell(elem, item))
                .collect::<Result<_, _>>()?,
        ),
        (ty, Value::Text(s) | Value::Number(s)) => text_cell(ty, s)?,
        (_, v) => return Err(wrong(v)),
    })
}

/// The cell of a value given as Postgres' text (or `to_json` text).
fn text_cell(ty: &ColumnType, s: &str) -> Result<Cell, Bad> {
    let at = |r: Result<Cell, String>| r.map_err(|reason| bad(s, reason));
    at(match ty {
        ColumnType::Int16 => {
            number::parse_int(s, i16::MIN.into(), i16::MAX.into()).map(|v| Cell::I16(v as i16))
        }
        ColumnType::Int32 => {
            number::parse_int(s, i32::MIN.into(), i32::MAX.into()).map(|v| Cell::I32(v as i32))
        }
        ColumnType::Int64 => number::parse_int(s, i64::MIN, i64::MAX).map(Cell::I64),
        ColumnType::Decimal { precision, scale } => {
            number::parse_decimal(s, *precision, *scale).map(Cell::Decimal)
        }
        ColumnType::Float32 => number::parse_f32(s).map(Cell::F32),
        ColumnType::Float64 => number::parse_f64(s).map(Cell::F64),
        ColumnType::Text | ColumnType::Json => Ok(Cell::Str(s.to_string())),
        ColumnType::Binary => parse_bytea_hex(s).map(Cell::Bin),
        ColumnType::Date => datetime::parse_date(s).map(Cell::Date),
        ColumnType::Timestamp => datetime::parse_timestamp(s, false).map(Cell::Micros),
        ColumnType::TimestampTz => datetime::parse_timestamp(s, true).map(Cell::Micros),
        ColumnType::Time => datetime::parse_time(s).map(Cell::Micros),
        ColumnType::TimeTz => datetime::parse_timetz(s).map(Cell::Micros),
        ColumnType::Interval => {
            interval::parse_interval(s).map(|(months, days, micros)| Cell::Interval {
                months,
                days,
                micros,
            })
        }
        ColumnType::Bool => match s {
            "true" | "t" => Ok(Cell::Bool(true)),
            "false" | "f" => Ok(Cell::Bool(false)),
            _ => Err("not a boolean".to_string()),
        },
        ColumnType::ArrayJson | ColumnType::List(_) => Err("an array given as text".to_string()),
    })
}

/// `\x` and hex digits (bytea's hex output, as `to_json` gives array
/// elements) as bytes.
fn parse_bytea_hex(s: &str) -> Result<Vec<u8>, String> {
    let hex = s
        .strip_prefix("\\x")
        .ok_or_else(|| "bytea text without its \\x prefix".to_string())?;
    hex::decode(hex).map_err(|e| format!("bad bytea hex: {e}"))
}

/// The cell of one array element, from the array's `to_json` form.
fn element_cell(elem: &ColumnType, j: &Json) -> Result<Cell, Bad> {
    match (elem, j) {
        (_, Json::Null) => Ok(Cell::Null),
        // A json[] element may itself be any JSON value, arrays included.
        (ColumnType::Json, j) => Ok(Cell::Str(j.to_string())),
        (_, Json::Array(_)) => Err(bad(
            &j.to_string(),
            "a multi-dimensional array value in a column archived as a 1-D list; \
             keep the column as text (JSON) to archive it",
        )),
        (ColumnType::Bool, Json::Bool(b)) => Ok(Cell::Bool(*b)),
        (ColumnType::Text, Json::String(s)) => Ok(Cell::Str(s.clone())),
        // Elements without a JSON form of their own, e.g. composites.
        (ColumnType::Text, j) => Ok(Cell::Str(j.to_string())),
        (ty, Json::String(s)) => text_cell(ty, s),
        // With arbitrary_precision, a number prints its exact digits.
        (ty, Json::Number(n)) => text_cell(ty, &n.to_string()),
        (ty, j) => Err(bad(
            &j.to_string(),
            format!("an array element that is not a {ty:?}"),
        )),
    }
}

#[cfg(test)]
#[path = "cell/tests.rs"]
mod tests;
