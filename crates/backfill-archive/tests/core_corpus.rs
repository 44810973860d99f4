//! The edge-value corpus of `backfill-testkit/tests/types.rs`, as the
//! source reader hands it over (each value in the text Postgres 15 prints
//! for the reader's expressions), through every step of the pure core:
//! cells, Arrow batches, a Parquet part drained in pieces, the digest and
//! `COPY` text.

use std::io::Write;

use backfill_archive::batch::{batch_cells, BatchBuilder};
use backfill_archive::cell::row_cells;
use backfill_archive::copy_text::copy_line;
use backfill_archive::digest::add_row;
use backfill_archive::file::{PartOptions, PartReader, PartWriter};
use backfill_archive::types::{archive_schema, ArchiveSchema, ColumnType};
use backfill_archive::{ArchiveError, Cell};
use backfill_item::compare::ItemDigest;
use backfill_model::{ColumnKind, ColumnSchema, SourceRow, TableRef, TableSchema, Value};
use sha2::{Digest, Sha256};

fn corpus_table() -> TableSchema {
    use ColumnKind::*;
    let arr = |k: ColumnKind| Array(Box::new(k));
    let cols = [
        ("id", "integer", Int4),
        ("i2", "smallint", Int2),
        ("i4", "integer", Int4),
        ("i8", "bigint", Int8),
        ("n", "numeric", Numeric),
        ("n38", "numeric(38,0)", Numeric),
        ("r", "real", Float4),
        ("d", "double precision", Float8),
        ("t", "text", Text),
        ("vc", "character varying(20)", Text),
        ("ch", "character(5)", Char),
        ("b", "boolean", Bool),
        ("by", "bytea", Bytea),
        ("u", "uuid", Uuid),
        ("dt", "date", Date),
        ("tm", "time without time zone", Time),
        ("tz", "time with time zone", TimeTz),
        ("ts", "timestamp without time zone", Timestamp),
        ("tstz", "timestamp with time zone", TimestampTz),
        ("iv", "interval", Interval),
        ("j", "json", Json),
        ("jb", "jsonb", Jsonb),
        ("ai", "integer[]", arr(Int4)),
        ("at", "text[]", arr(Text)),
        ("a2", "integer[]", arr(Int4)),
        ("e", "corpus.mood", Enum),
        ("ip", "inet", Other),
        ("cidr_", "cidr", Other),
        ("mac", "macaddr", Other),
        ("m", "money", Money),
        ("pt", "point", Other),
    ];
    TableSchema {
        table: TableRef::parse("corpus.c"),
        columns: cols
            .into_iter()
            .map(|(name, pg_type, kind)| ColumnSchema {
                name: name.to_string(),
                pg_type: pg_type.to_string(),
                kind,
                not_null: name == "id",
                precision: (name == "n38").then_some(38),
            })
            .collect(),
        key: vec![0],
        reltuples: -1.0,
        relpages: 0,
        pages: 0,
    }
}

fn json(s: &str) -> Value {
    Value::Json(serde_json::from_str(s).expect("test JSON"))
}

/// The corpus rows as `reader.rs` decodes them.
fn corpus_rows() -> Vec<SourceRow> {
    let n = |s: &str| Value::Number(s.to_string());
    let t = |s: &str| Value::Text(s.to_string());
    let i = Value::Int;
    let tiny = format!("-0.{}1", "0".repeat(129));
    let huge = format!("{}{}", "9".repeat(38), "0".repeat(88));
    let nines = "9".repeat(38);
    let rows = vec![
        vec![
            i(1),
            i(-32768),
            i(-2147483648),
            i(i64::MIN),
            n(&tiny),
            n(&format!("-{nines}")),
            n("-0"),
            n("-1.7976931348623157e+308"),
            t(""),
            t("ü"),
            t("a    "),
            Value::Bool(false),
            Value::Bytes(vec![]),
            t("00000000-0000-0000-0000-000000000000"),
            t("0001-01-01"),
            t("00:00:00"),
            t("10:00:00+00"),
            t("1970-01-01T00:00:00"),
            t("1970-01-01T00:00:00+00:00"),
            t("P-1D"),
            json(r#"{"a":[1,2.50,{"b":null}]}"#),
            json(r#"{"a": "x", "z": 1}"#),
            json("[1,null,3]"),
            json(r#"["a b",null,""]"#),
            json("[[1,2],[3,4]]"),
            t("sad"),
            t("::1"),
            t("10.0.0.0/8"),
            t("08:00:2b:01:02:03"),
            n("-1234.56"),
            t("(1,2)"),
        ],
        vec![
            i(2),
            i(32767),
            i(2147483647),
            i(i64::MAX),
            n(&huge),
            n(&nines),
            n("Infinity"),
            n("NaN"),
            t("😀 日本 \t\n \"quotes\" \\"),
            t("x"),
            t("abcde"),
            Value::Bool(true),
            Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
            t("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            t("infinity"),
            t("23:59:59.999999"),
            t("11:59:59.999999+00"),
            t("294276-12-31T23:59:59.999999"),
            t("2024-03-01T07:59:59.999999+00:00"),
            t("P178000000Y"),
            json("[]"),
            json(
                r#"{"big": 12345678901234567890123456789.123456789, "nested": {"deep": [true, false]}}"#,
            ),
            json("[]"),
            json("[]"),
            json("[[null,null]]"),
            t("happy"),
            t("192.168.0.1/24"),
            t("::/0"),
            t("ff:ff:ff:ff:ff:ff"),
            n("92233720368547758.07"),
            t("(-1.5,10000000000)"),
        ],
        vec![
            i(3),
            i(0),
            i(0),
            i(0),
            n("1234567890123456789012345678901234567890"),
            Value::Null,
            n("-Infinity"),
            n("5e-324"),
            t("é"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            t("2000-02-29"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            json(r#"{"x": 1e400}"#),
            json(&format!(r#"{{"x": 0.{}1}}"#, "0".repeat(399))),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    ];
    let mut rows: Vec<SourceRow> = rows
        .into_iter()
        .map(|values| SourceRow {
            key: Vec::new(),
            values,
        })
        .collect();
    let mut nulls = vec![Value::Null; 31];
    nulls[0] = i(4);
    rows.push(SourceRow {
        key: Vec::new(),
        values: nulls,
    });
    rows
}

/// The corpus' schema: `a2` (2-D values) as JSON and `ts` (a value after
/// 294247 AD) as text, as the caller decides by sampling the table.
fn corpus_schema() -> ArchiveSchema {
    archive_schema(&corpus_table(), &["a2".into(), "ts".into()]).expect("schema")
}

fn corpus_cells(schema: &ArchiveSchema) -> Vec<Vec<Cell>> {
    corpus_rows()
        .iter()
        .map(|r| row_cells(schema, r).expect("every corpus value converts"))
        .collect()
}

fn same_rows(a: &[Vec<Cell>], b: &[Vec<Cell>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(c, d)| c.same(d)))
}

#[test]
fn without_text_columns_the_two_unfit_columns_fail_by_name() {
    let s = archive_schema(&corpus_table(), &[]).unwrap();
    let rows = corpus_rows();
    let e = row_cells(&s, &rows[0]).unwrap_err().to_string();
    assert!(e.starts_with("column a2: a multi-dimensional array"), "{e}");
    let e = row_cells(&s, &rows[1]).unwrap_err().to_string();
    assert!(e.starts_with("column ts: beyond the range"), "{e}");
    assert!(e.contains("294276-12-31T23:59:59.999999"), "{e}");
}

#[test]
fn the_corpus_converts_to_the_expected_cells() {
    let s = corpus_schema();
    assert_eq!(s.columns[4], ColumnType::Text);
    assert_eq!(
        s.columns[5],
        ColumnType::Decimal {
            precision: 38,
            scale: 0
        }
    );
    let cells = corpus_cells(&s);
    assert_eq!(cells[1][5], Cell::Decimal(10i128.pow(38) - 1));
    assert_eq!(cells[0][6], Cell::F32(-0.0));
    assert!(matches!(cells[1][7], Cell::F64(v) if v.is_nan()));
    assert_eq!(cells[2][7], Cell::F64(5e-324));
    assert_eq!(cells[0][14], Cell::Date(-719_162));
    assert_eq!(cells[1][14], Cell::Date(i32::MAX));
    assert_eq!(
        cells[1][17],
        Cell::Str("294276-12-31T23:59:59.999999".into())
    );
    assert_eq!(cells[1][18], Cell::Micros(1_709_279_999_999_999));
    assert_eq!(cells[0][24], Cell::Str("[[1,2],[3,4]]".into()));
    assert_eq!(cells[2][20], Cell::Str(r#"{"x":1e+400}"#.into()));
    assert!(cells[3][1..].iter().all(|c| *c == Cell::Null));
}

#[test]
fn the_corpus_round_trips_through_a_batch() {
    let s = corpus_schema();
    let cells = corpus_cells(&s);
    let mut b = BatchBuilder::new(&s);
    for r in &cells {
        b.push(r).unwrap();
    }
    assert_eq!(b.len(), 4);
    let batch = b.finish().unwrap();
    assert!(b.is_empty());
    let back = batch_cells(&s, &batch).unwrap();
    assert!(same_rows(&cells, &back), "{back:#?}");
}

#[test]
fn the_corpus_round_trips_through_a_part_file() -> Result<(), ArchiveError> {
    let s = corpus_schema();
    let cells = corpus_cells(&s);
    let opts = PartOptions {
        row_group_rows: 2,
        zstd_level: 3,
        key_value_metadata: vec![("backfill.run".into(), "r1".into())],
    };
    let mut w = PartWriter::new(&s, opts)?;
    let mut file = tempfile::tempfile()?;
    let mut all = Vec::new();
    for r in &cells {
        w.push(r)?;
        let piece = w.take_bytes();
        file.write_all(&piece)?;
        all.extend(piece);
    }
    let (rest, stats) = w.finish()?;
    file.write_all(&rest)?;
    all.extend(rest);
    assert_eq!(stats.rows, 4);
    assert_eq!(stats.bytes, all.len() as u64);
    assert_eq!(stats.sha256_hex, hex::encode(Sha256::digest(&all)));
    let mut d = ItemDigest::default();
    for r in &cells {
        add_row(&mut d, r);
    }
    assert_eq!(stats.digest, d);

    let r = PartReader::open(file, Some(&s))?;
    assert_eq!(r.rows(), 4);
    assert_eq!(r.schema().columns, s.columns);
    let cols = r.columns();
    assert_eq!(cols[5], ("n38".to_string(), "numeric(38,0)".to_string()));
    assert_eq!(
        cols[16],
        ("tz".to_string(), "time with time zone".to_string())
    );
    let kv = r.key_value_metadata();
    assert!(kv.contains(&("backfill.run".to_string(), "r1".to_string())));
    assert!(kv.contains(&("backfill.table".to_string(), "corpus.c".to_string())));
    let columns = kv
        .iter()
        .find(|(k, _)| k == "backfill.columns")
        .expect("columns key");
    assert!(
        columns
            .1
            .contains(r#""name":"m","pg_kind":"money","pg_type":"money""#),
        "{}",
        columns.1
    );
    let mut back = Vec::new();
    for batch in r {
        back.extend(batch?);
    }
    assert!(same_rows(&cells, &back), "{back:#?}");
    Ok(())
}

/// Checked against Postgres 15 by `COPY` into a copy of the corpus table
/// with the restoring session in `DateStyle = 'SQL, DMY'`, `TimeZone =
/// 'America/New_York'`, `IntervalStyle = postgres`: every value compares
/// equal to the source's but the two the reader already changed, `tz`
/// (read in UTC, so `00:00+14` comes back as `10:00:00+00`) and json `j`
/// (read as parsed JSON, so its original spacing and `1e400` spelling
/// are gone).
const CORPUS_COPY: &str = concat!(
    "1\t-32768\t-2147483648\t-9223372036854775808\t-0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001\t-99999999999999999999999999999999999999\t",
    "-0\t-1.7976931348623157e308\t\tü\ta    \tf\t",
    "\\\\x\t00000000-0000-0000-0000-000000000000\t0001-01-01\t00:00:00\t10:00:00+00\t1970-01-01T00:00:00\t",
    "1970-01-01 00:00:00+00\tP-1D\t{\"a\":[1,2.50,{\"b\":null}]}\t{\"a\":\"x\",\"z\":1}\t{\"1\",NULL,\"3\"}\t{\"a b\",NULL,\"\"}\t",
    "{{\"1\",\"2\"},{\"3\",\"4\"}}\tsad\t::1\t10.0.0.0/8\t08:00:2b:01:02:03\t-1234.56\t",
    "(1,2)\n",
    "2\t32767\t2147483647\t9223372036854775807\t999999999999999999999999999999999999990000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\t99999999999999999999999999999999999999\t",
    "Infinity\tNaN\t😀 日本 \\t\\n \"quotes\" \\\\\tx\tabcde\tt\t",
    "\\\\xdeadbeef\tffffffff-ffff-ffff-ffff-ffffffffffff\tinfinity\t23:59:59.999999\t11:59:59.999999+00\t294276-12-31T23:59:59.999999\t",
    "2024-03-01 07:59:59.999999+00\tP178000000Y\t[]\t{\"big\":12345678901234567890123456789.123456789,\"nested\":{\"deep\":[true,false]}}\t{}\t{}\t",
    "{{NULL,NULL}}\thappy\t192.168.0.1/24\t::/0\tff:ff:ff:ff:ff:ff\t92233720368547758.07\t",
    "(-1.5,10000000000)\n",
    "3\t0\t0\t0\t1234567890123456789012345678901234567890\t\\N\t",
    "-Infinity\t5e-324\té\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t2000-02-29\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t{\"x\":1e+400}\t{\"x\":0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001}\t\\N\t\\N\t",
    "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\n",
    "4\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t",
    "\\N\n",
);

#[test]
fn the_corpus_prints_as_copy_text() {
    let s = corpus_schema();
    let mut out = String::new();
    for r in corpus_cells(&s) {
        copy_line(&s, &r, &mut out).unwrap();
    }
    assert_eq!(out, CORPUS_COPY);
}
