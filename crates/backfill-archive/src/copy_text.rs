//! Archived rows as lines of PostgreSQL's `COPY ... FROM STDIN` text
//! format, so that a restore gives back the exact values.
//!
//! Each value is written in a form Postgres' input function reads back to
//! the same value whatever the restoring session's DateStyle, TimeZone or
//! IntervalStyle: ISO dates with ` BC`, timestamps with an explicit `+00`,
//! ISO 8601 intervals with a sign per field, `\x` hex bytea, floats with
//! their shortest round-trip digits (`NaN`, `Infinity`, `-0`), decimals
//! with their scale, arrays as `{...}` literals with every element quoted.
//! Then the line is escaped for `COPY`: backslash, tab, newline and
//! carriage return become `\\`, `\t`, `\n`, `\r`; NULL is `\N`.

use serde_json::Value as Json;

use crate::cell::{datetime, interval, number};
use crate::types::{ArchiveSchema, ColumnType};
use crate::{ArchiveError, Cell};

/// Appends one `COPY` text line (with its newline) for `cells` to `out`.
/// Fails on a cell that does not fit its column, or an array kept as JSON
/// whose text is not a JSON array; `out` may then hold part of the line.
pub fn copy_line(
    schema: &ArchiveSchema,
    cells: &[Cell],
    out: &mut String,
) -> Result<(), ArchiveError> {
    if cells.len() != schema.columns.len() {
        return Err(ArchiveError::Arity {
            got: cells.len(),
            want: schema.columns.len(),
        });
    }
    for (i, (ty, cell)) in schema.columns.iter().zip(cells).enumerate() {
        if i > 0 {
            out.push('\t');
        }
        if matches!(cell, Cell::Null) {
            out.push_str("\\N");
            continue;
        }
        let text = value_text(ty, cell).map_err(|e| e.at(schema.name(i), ty, cell))?;
        escape_copy(&text, out);
    }
    out.push('\n');
    Ok(())
}

/// Why a value has no text: a caller's bug (wrong cell) or bad JSON.
enum NoText {
    Mismatch,
    Json(String, String),
}

impl NoText {
    fn at(self, column: &str, ty: &ColumnType, cell: &Cell) -> ArchiveError {
        match self {
            NoText::Mismatch => ArchiveError::CellType {
                column: column.to_string(),
                column_type: format!("{ty:?}"),
                cell: cell.variant().to_string(),
            },
            NoText::Json(value, reason) => ArchiveError::value(column, &value, reason),
        }
    }
}

/// The Postgres input text of a non-NULL cell of type `ty`.
fn value_text(ty: &ColumnType, cell: &Cell) -> Result<String, NoText> {
    Ok(match (ty, cell) {
        (ColumnType::Int16, Cell::I16(v)) => v.to_string(),
        (ColumnType::Int32, Cell::I32(v)) => v.to_string(),
        (ColumnType::Int64, Cell::I64(v)) => v.to_string(),
        (ColumnType::Decimal { scale, .. }, Cell::Decimal(v)) => number::format_decimal(*v, *scale),
        (ColumnType::Float32, Cell::F32(v)) => number::format_f32(*v),
        (ColumnType::Float64, Cell::F64(v)) => number::format_f64(*v),
        (ColumnType::Bool, Cell::Bool(v)) => if *v { "t" } else { "f" }.to_string(),
        (ColumnType::Text | ColumnType::Json, Cell::Str(s)) => s.clone(),
        (ColumnType::ArrayJson, Cell::Str(s)) => {
            let j: Json = serde_json::from_str(s)
                .map_err(|e| NoText::Json(s.clone(), format!("not JSON: {e}")))?;
            if !j.is_array() {
                return Err(NoText::Json(s.clone(), "not a JSON array".to_string()));
            }
            let mut lit = String::new();
            json_array_literal(&j, &mut lit);
            lit
        }
        (ColumnType::Binary, Cell::Bin(b)) => format!("\\x{}", hex::encode(b)),
        (ColumnType::Date, Cell::Date(d)) => datetime::format_date(*d),
        (ColumnType::Timestamp, Cell::Micros(v)) => datetime::format_timestamp(*v, false),
        (ColumnType::TimestampTz, Cell::Micros(v)) => datetime::format_timestamp(*v, true),
        (ColumnType::Time, Cell::Micros(v)) if valid_time(*v) => datetime::format_time(*v),
        (ColumnType::TimeTz, Cell::Micros(v)) if valid_time(*v) => {
            format!("{}+00", datetime::format_time(*v))
        }
        (
            ColumnType::Interval,
            Cell::Interval {
                months,
                days,
                micros,
            },
        ) => interval::format_interval(*months, *days, *micros),
        (ColumnType::List(elem), Cell::List(items)) => {
            let mut lit = String::from("{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    lit.push(',');
                }
                match item {
                    Cell::Null => lit.push_str("NULL"),
                    c => quote_element(&value_text(elem, c)?, &mut lit),
                }
            }
            lit.push('}');
            lit
        }
        _ => return Err(NoText::Mismatch),
    })
}

/// A time of day Postgres has: midnight to 24:00:00 inclusive.
fn valid_time(micros: i64) -> bool {
    (0..=86_400_000_000).contains(&micros)
}

/// An array's `to_json` form as a Postgres array literal: nested arrays
/// are dimensions, JSON null is NULL, every other element quoted (a
/// number by its exact digits, an object or a string by its text).
fn json_array_literal(j: &Json, out: &mut String) {
    match j {
        Json::Array(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_array_literal(item, out);
            }
            out.push('}');
        }
        Json::Null => out.push_str("NULL"),
        Json::String(s) => quote_element(s, out),
        Json::Bool(b) => out.push_str(if *b { "t" } else { "f" }),
        other => quote_element(&other.to_string(), out),
    }
}

/// An array element in double quotes, `"` and `\` backslash-escaped: valid
/// for any element type, and never taken for NULL or a delimiter.
fn quote_element(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `s` escaped for one field of a `COPY` text line.
fn escape_copy(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::data_type;
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    fn schema(types: Vec<ColumnType>) -> ArchiveSchema {
        let fields: Vec<Field> = types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("c{i}"), data_type(t), true))
            .collect();
        ArchiveSchema {
            arrow: Arc::new(Schema::new(fields)),
            columns: types,
        }
    }

    fn line(ty: ColumnType, cell: Cell) -> String {
        let mut out = String::new();
        copy_line(&schema(vec![ty]), &[cell], &mut out).unwrap();
        out.strip_suffix('\n').unwrap().to_string()
    }

    #[test]
    fn fields_are_escaped_and_nulls_marked() {
        let s = schema(vec![ColumnType::Text, ColumnType::Int32, ColumnType::Text]);
        let mut out = String::new();
        let cells = [
            Cell::Str("a\tb\nc\rd\\e \"q\" \\N".into()),
            Cell::Null,
            Cell::Str(String::new()),
        ];
        copy_line(&s, &cells, &mut out).unwrap();
        assert_eq!(out, "a\\tb\\nc\\rd\\\\e \"q\" \\\\N\t\\N\t\n");
    }

    #[test]
    fn scalars_print_in_their_exact_input_forms() {
        use ColumnType as T;
        let dec = T::Decimal {
            precision: 12,
            scale: 2,
        };
        let cases = [
            (T::Int16, Cell::I16(i16::MIN), "-32768"),
            (T::Int64, Cell::I64(i64::MIN), "-9223372036854775808"),
            (dec, Cell::Decimal(-5), "-0.05"),
            (T::Float64, Cell::F64(-0.0), "-0"),
            (T::Float64, Cell::F64(f64::NAN), "NaN"),
            (T::Float64, Cell::F64(5e-324), "5e-324"),
            (T::Float32, Cell::F32(f32::NEG_INFINITY), "-Infinity"),
            (T::Bool, Cell::Bool(true), "t"),
            (T::Binary, Cell::Bin(vec![0xde, 0xad]), "\\\\xdead"),
            (T::Binary, Cell::Bin(vec![]), "\\\\x"),
            (T::Date, Cell::Date(-735_160), "0044-03-15 BC"),
            (T::Date, Cell::Date(i32::MIN), "-infinity"),
            (T::Timestamp, Cell::Micros(0), "1970-01-01 00:00:00"),
            (
                T::TimestampTz,
                Cell::Micros(1_709_279_999_999_999),
                "2024-03-01 07:59:59.999999+00",
            ),
            (T::TimestampTz, Cell::Micros(i64::MAX), "infinity"),
            (T::Time, Cell::Micros(86_400_000_000), "24:00:00"),
            (T::TimeTz, Cell::Micros(36_000_000_000), "10:00:00+00"),
            (
                T::Interval,
                Cell::Interval {
                    months: -10,
                    days: -3,
                    micros: 14_706_500_000,
                },
                "P-10M-3DT4H5M6.5S",
            ),
            (
                T::Interval,
                Cell::Interval {
                    months: 0,
                    days: 0,
                    micros: 0,
                },
                "PT0S",
            ),
            (
                T::Json,
                Cell::Str(r#"{"a":"x\ty"}"#.into()),
                r#"{"a":"x\\ty"}"#,
            ),
        ];
        for (ty, cell, want) in cases {
            assert_eq!(line(ty, cell.clone()), want, "{cell:?}");
        }
    }

    #[test]
    fn arrays_print_as_quoted_literals() {
        use ColumnType as T;
        let list = |t: T| T::List(Box::new(t));
        assert_eq!(
            line(
                list(T::Int32),
                Cell::List(vec![Cell::I32(1), Cell::Null, Cell::I32(3)])
            ),
            r#"{"1",NULL,"3"}"#
        );
        assert_eq!(
            line(
                list(T::Text),
                Cell::List(vec![
                    Cell::Str("a b".into()),
                    Cell::Null,
                    Cell::Str(String::new()),
                    Cell::Str("NULL".into()),
                    Cell::Str("q\"\\".into())
                ])
            ),
            r#"{"a b",NULL,"","NULL","q\\"\\\\"}"#
        );
        assert_eq!(line(list(T::Int32), Cell::List(vec![])), "{}");
        assert_eq!(
            line(list(T::Binary), Cell::List(vec![Cell::Bin(vec![0, 255])])),
            r#"{"\\\\x00ff"}"#
        );
        assert_eq!(
            line(T::ArrayJson, Cell::Str("[[1,2],[3,4]]".into())),
            r#"{{"1","2"},{"3","4"}}"#
        );
        assert_eq!(
            line(T::ArrayJson, Cell::Str("[[null,null]]".into())),
            "{{NULL,NULL}}"
        );
        assert_eq!(
            line(
                T::ArrayJson,
                Cell::Str(r#"[["a\"b",{"k":1}],[true,1.50]]"#.into())
            ),
            r#"{{"a\\"b","{\\"k\\":1}"},{t,"1.50"}}"#
        );
    }

    #[test]
    fn wrong_cells_and_bad_json_are_errors() {
        let mut out = String::new();
        let s = schema(vec![ColumnType::Int32]);
        let e = copy_line(&s, &[Cell::Str("1".into())], &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column c0: a Str cell cannot be stored as Int32"
        );
        let s = schema(vec![ColumnType::ArrayJson]);
        assert!(copy_line(&s, &[Cell::Str("{}".into())], &mut out).is_err());
        let s = schema(vec![ColumnType::Time]);
        assert!(copy_line(&s, &[Cell::Micros(-1)], &mut out).is_err());
        assert!(copy_line(&s, &[], &mut out).is_err());
    }
}
