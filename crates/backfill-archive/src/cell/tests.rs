use backfill_job::KeyTuple;
use backfill_model::{ColumnKind, ColumnSchema, TableRef, TableSchema};
use serde_json::json;

use super::*;
use crate::types::archive_schema;

fn schema(cols: &[(&str, &str, ColumnKind)], text: &[&str]) -> ArchiveSchema {
    let t = TableSchema {
        table: TableRef::parse("app.t"),
        columns: cols
            .iter()
            .map(|(name, pg_type, kind)| ColumnSchema {
                name: name.to_string(),
                pg_type: pg_type.to_string(),
                kind: kind.clone(),
                not_null: false,
                precision: None,
            })
            .collect(),
        key: vec![0],
        reltuples: -1.0,
        relpages: 0,
        pages: 0,
    };
    let text: Vec<String> = text.iter().map(|s| s.to_string()).collect();
    archive_schema(&t, &text).unwrap()
}

fn one(pg_type: &str, kind: ColumnKind, v: Value) -> Result<Cell, ArchiveError> {
    let s = schema(&[("c", pg_type, kind)], &[]);
    let row = SourceRow {
        key: KeyTuple::default(),
        values: vec![v],
    };
    row_cells(&s, &row).map(|mut cells| cells.remove(0))
}

fn num(s: &str) -> Value {
    Value::Number(s.to_string())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn arr(elem: ColumnKind) -> ColumnKind {
    ColumnKind::Array(Box::new(elem))
}

#[test]
fn integers_keep_their_limits_and_refuse_overflow() {
    use ColumnKind::*;
    assert_eq!(
        one("smallint", Int2, Value::Int(-32768)).unwrap(),
        Cell::I16(i16::MIN)
    );
    assert_eq!(
        one("integer", Int4, Value::Int(2147483647)).unwrap(),
        Cell::I32(i32::MAX)
    );
    assert_eq!(
        one("bigint", Int8, Value::Int(i64::MIN)).unwrap(),
        Cell::I64(i64::MIN)
    );
    let e = one("smallint", Int2, Value::Int(32768)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column c: outside smallint's range (value \"32768\")"
    );
}

#[test]
fn numerics_are_decimals_or_text_and_nan_is_an_error_in_a_decimal() {
    use ColumnKind::Numeric;
    assert_eq!(
        one("numeric(12,2)", Numeric, num("-1234.56")).unwrap(),
        Cell::Decimal(-123456)
    );
    let nines = "9".repeat(38);
    assert_eq!(
        one("numeric(38,0)", Numeric, num(&format!("-{nines}"))).unwrap(),
        Cell::Decimal(1 - 10i128.pow(38))
    );
    let e = one("numeric(12,2)", Numeric, num("NaN")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column c: NaN has no decimal form (value \"NaN\")"
    );
    let e = one("numeric(12,2)", Numeric, num("0.125")).unwrap_err();
    assert!(e.to_string().contains("scale (2)"), "{e}");
    let tiny = format!("-0.{}1", "0".repeat(129));
    assert_eq!(
        one("numeric", Numeric, num(&tiny)).unwrap(),
        Cell::Str(tiny)
    );
    assert_eq!(
        one("numeric", Numeric, num("NaN")).unwrap(),
        Cell::Str("NaN".into())
    );
    assert_eq!(
        one("money", ColumnKind::Money, num("92233720368547758.07")).unwrap(),
        Cell::Str("92233720368547758.07".into())
    );
}

#[test]
fn floats_keep_nan_infinities_negative_zero_and_subnormals() {
    use ColumnKind::*;
    let bits = |c: Cell| match c {
        Cell::F64(v) => v.to_bits(),
        Cell::F32(v) => u64::from(v.to_bits()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bits(one("double precision", Float8, num("-0")).unwrap()),
        (-0.0f64).to_bits()
    );
    assert_eq!(
        bits(one("double precision", Float8, num("5e-324")).unwrap()),
        1
    );
    assert!(
        matches!(one("double precision", Float8, num("NaN")).unwrap(), Cell::F64(v) if v.is_nan())
    );
    assert_eq!(
        one("real", Float4, num("-Infinity")).unwrap(),
        Cell::F32(f32::NEG_INFINITY)
    );
    assert_eq!(
        bits(one("real", Float4, num("-0")).unwrap()),
        u64::from((-0.0f32).to_bits())
    );
    assert!(one("real", Float4, num("inf")).is_err());
}

#[test]
fn times_and_dates_from_their_json_text() {
    use ColumnKind::*;
    assert_eq!(
        one("date", Date, text("0044-03-15 BC")).unwrap(),
        Cell::Date(-735_160)
    );
    assert_eq!(
        one("date", Date, text("infinity")).unwrap(),
        Cell::Date(i32::MAX)
    );
    assert_eq!(
        one("time without time zone", Time, text("24:00:00")).unwrap(),
        Cell::Micros(86_400_000_000)
    );
    assert_eq!(
        one("time with time zone", TimeTz, text("10:00:00+00")).unwrap(),
        Cell::Micros(36_000_000_000)
    );
    assert_eq!(
        one("timestamp with time zone", TimestampTz, text("-infinity")).unwrap(),
        Cell::Micros(i64::MIN)
    );
    let e = one(
        "timestamp without time zone",
        Timestamp,
        text("294276-12-31T23:59:59.999999"),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("column c: beyond the range"),
        "{e}"
    );
    assert_eq!(
        one("interval", Interval, text("P178000000Y")).unwrap(),
        Cell::Interval {
            months: 2_136_000_000,
            days: 0,
            micros: 0
        }
    );
    let e = one("interval", Interval, text("1 day")).unwrap_err();
    assert!(e.to_string().contains("\"1 day\""), "{e}");
}

#[test]
fn text_kinds_json_and_bytes_are_kept_as_read() {
    use ColumnKind::*;
    assert_eq!(
        one("character(5)", Char, text("a    ")).unwrap(),
        Cell::Str("a    ".into())
    );
    assert_eq!(
        one("inet", Other, text("::1")).unwrap(),
        Cell::Str("::1".into())
    );
    assert_eq!(
        one("bytea", Bytea, Value::Bytes(vec![])).unwrap(),
        Cell::Bin(vec![])
    );
    assert_eq!(
        one("boolean", Bool, Value::Bool(false)).unwrap(),
        Cell::Bool(false)
    );
    let big: serde_json::Value =
        serde_json::from_str(r#"{"big": 12345678901234567890123456789.123456789}"#).unwrap();
    assert_eq!(
        one("jsonb", Jsonb, Value::Json(big)).unwrap(),
        Cell::Str(r#"{"big":12345678901234567890123456789.123456789}"#.into())
    );
    assert_eq!(one("text", Text, Value::Null).unwrap(), Cell::Null);
    let e = one("text", Text, Value::Bool(true)).unwrap();
    assert_eq!(e, Cell::Str("true".into()));
    assert!(one("bytea", Bytea, text("\\x00")).is_ok());
    assert!(one("boolean", Bool, Value::Int(1)).is_err());
}

#[test]
fn one_dimensional_arrays_become_lists_of_typed_elements() {
    use ColumnKind::*;
    let v = |j: serde_json::Value| Value::Json(j);
    assert_eq!(
        one("integer[]", arr(Int4), v(json!([1, null, 3]))).unwrap(),
        Cell::List(vec![Cell::I32(1), Cell::Null, Cell::I32(3)])
    );
    assert_eq!(
        one("text[]", arr(Text), v(json!(["a b", null, ""]))).unwrap(),
        Cell::List(vec![
            Cell::Str("a b".into()),
            Cell::Null,
            Cell::Str(String::new())
        ])
    );
    assert_eq!(
        one("integer[]", arr(Int4), v(json!([]))).unwrap(),
        Cell::List(vec![])
    );
    let nums: serde_json::Value = serde_json::from_str(r#"["NaN",-0,5e-324,"Infinity"]"#).unwrap();
    let Cell::List(fs) = one("double precision[]", arr(Float8), v(nums)).unwrap() else {
        panic!()
    };
    assert!(matches!(fs[0], Cell::F64(x) if x.is_nan()));
    assert_eq!(fs[1], Cell::F64(-0.0));
    assert_eq!(fs[3], Cell::F64(f64::INFINITY));
    let dec: serde_json::Value = serde_json::from_str("[1.50, -0.05]").unwrap();
    assert_eq!(
        one("numeric(10,2)[]", arr(Numeric), v(dec)).unwrap(),
        Cell::List(vec![Cell::Decimal(150), Cell::Decimal(-5)])
    );
    assert_eq!(
        one("bytea[]", arr(Bytea), v(json!(["\\x00ff", null]))).unwrap(),
        Cell::List(vec![Cell::Bin(vec![0, 255]), Cell::Null])
    );
    assert_eq!(
        one(
            "time with time zone[]",
            arr(TimeTz),
            v(json!(["12:00:00+05:30"]))
        )
        .unwrap(),
        Cell::List(vec![Cell::Micros(23_400_000_000)])
    );
    assert_eq!(
        one("jsonb[]", arr(Jsonb), v(json!([[1, 2], {"a": 1}]))).unwrap(),
        Cell::List(vec![
            Cell::Str("[1,2]".into()),
            Cell::Str(r#"{"a":1}"#.into())
        ])
    );
    assert_eq!(
        one("record[]", arr(Other), v(json!([{"f1": 1}]))).unwrap(),
        Cell::List(vec![Cell::Str(r#"{"f1":1}"#.into())])
    );
}

#[test]
fn a_multi_dimensional_value_fails_unless_the_column_is_kept_as_json() {
    let v = Value::Json(json!([[1, 2], [3, 4]]));
    let e = one("integer[]", arr(ColumnKind::Int4), v.clone()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("column c: a multi-dimensional array"),
        "{e}"
    );
    assert!(e.to_string().contains("[1,2]"), "{e}");
    let s = schema(&[("c", "integer[]", arr(ColumnKind::Int4))], &["c"]);
    let row = SourceRow {
        key: KeyTuple::default(),
        values: vec![v],
    };
    assert_eq!(
        row_cells(&s, &row).unwrap(),
        vec![Cell::Str("[[1,2],[3,4]]".into())]
    );
}

#[test]
fn a_row_of_the_wrong_width_is_refused() {
    let s = schema(&[("c", "integer", ColumnKind::Int4)], &[]);
    let row = SourceRow {
        key: KeyTuple::default(),
        values: vec![],
    };
    assert!(matches!(
        row_cells(&s, &row),
        Err(ArchiveError::Arity { got: 0, want: 1 })
    ));
}

#[test]
fn same_compares_floats_by_bits() {
    assert!(Cell::F64(f64::NAN).same(&Cell::F64(f64::NAN)));
    assert!(!Cell::F64(0.0).same(&Cell::F64(-0.0)));
    assert!(Cell::List(vec![Cell::F32(f32::NAN)]).same(&Cell::List(vec![Cell::F32(f32::NAN)])));
    assert!(!Cell::I32(1).same(&Cell::I64(1)));
}
