//! Parquet parts: many row groups drained in uneven pieces read back to
//! the same cells (every column type, the limits included), the checksum
//! covers exactly the bytes taken, and the writer's memory stays about one
//! row group however many rows go through it.

use std::io::Write;

use backfill_archive::file::{PartOptions, PartReader, PartWriter};
use backfill_archive::types::{archive_schema, ArchiveSchema};
use backfill_archive::{ArchiveError, Cell};
use backfill_model::{ColumnKind, ColumnSchema, TableRef, TableSchema};
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};

fn table(cols: &[(&str, &str, ColumnKind)]) -> TableSchema {
    TableSchema {
        table: TableRef::parse("app.every"),
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

fn every_type() -> ArchiveSchema {
    use ColumnKind::*;
    let arr = |k: ColumnKind| Array(Box::new(k));
    archive_schema(
        &table(&[
            ("id", "bigint", Int8),
            ("i2", "smallint", Int2),
            ("i4", "integer", Int4),
            ("dec", "numeric(38,38)", Numeric),
            ("r", "real", Float4),
            ("d", "double precision", Float8),
            ("b", "boolean", Bool),
            ("t", "text", Text),
            ("by", "bytea", Bytea),
            ("dt", "date", Date),
            ("ts", "timestamp without time zone", Timestamp),
            ("tstz", "timestamp with time zone", TimestampTz),
            ("tm", "time without time zone", Time),
            ("tz", "time with time zone", TimeTz),
            ("iv", "interval", Interval),
            ("j", "jsonb", Jsonb),
            ("ai", "numeric(5,2)[]", arr(Numeric)),
            ("aiv", "interval[]", arr(Interval)),
            ("ab", "bytea[]", arr(Bytea)),
            ("a2", "integer[]", arr(Int4)),
        ]),
        &["a2".to_string()],
    )
    .expect("schema")
}

/// Row `i`: the columns' limits, NULLs and ordinary values in turn.
fn row(i: u64) -> Vec<Cell> {
    let k = i % 4;
    let pick = |cells: [Cell; 4]| cells[k as usize].clone();
    let max38 = 10i128.pow(38) - 1;
    vec![
        Cell::I64(i as i64),
        pick([
            Cell::I16(i16::MIN),
            Cell::I16(i16::MAX),
            Cell::Null,
            Cell::I16(7),
        ]),
        pick([
            Cell::I32(i32::MIN),
            Cell::I32(i as i32),
            Cell::Null,
            Cell::I32(i32::MAX),
        ]),
        pick([
            Cell::Decimal(-max38),
            Cell::Decimal(max38),
            Cell::Decimal(0),
            Cell::Null,
        ]),
        pick([
            Cell::F32(-0.0),
            Cell::F32(f32::NAN),
            Cell::F32(f32::from_bits(1)),
            Cell::F32(f32::NEG_INFINITY),
        ]),
        pick([
            Cell::F64(f64::from_bits(1)),
            Cell::F64(-0.0),
            Cell::F64(f64::MIN),
            Cell::F64(f64::NAN),
        ]),
        pick([
            Cell::Bool(true),
            Cell::Bool(false),
            Cell::Null,
            Cell::Bool(true),
        ]),
        pick([
            Cell::Str(String::new()),
            Cell::Str(format!("row {i} ü\t😀")),
            Cell::Null,
            Cell::Str("\\N".into()),
        ]),
        pick([
            Cell::Bin(vec![]),
            Cell::Bin(vec![0, 255, i as u8]),
            Cell::Null,
            Cell::Bin(vec![0; 3]),
        ]),
        pick([
            Cell::Date(i32::MIN),
            Cell::Date(i32::MAX),
            Cell::Date(-2_440_588),
            Cell::Date(2_145_042_905),
        ]),
        pick([
            Cell::Micros(i64::MIN),
            Cell::Micros(i64::MAX),
            Cell::Micros(i64::MAX - 1),
            Cell::Micros(-210_866_803_200_000_000),
        ]),
        pick([
            Cell::Micros(0),
            Cell::Null,
            Cell::Micros(i64::MIN),
            Cell::Micros(i as i64),
        ]),
        pick([
            Cell::Micros(86_400_000_000),
            Cell::Micros(0),
            Cell::Null,
            Cell::Micros(86_399_999_999),
        ]),
        pick([
            Cell::Micros(36_000_000_000),
            Cell::Null,
            Cell::Micros(86_400_000_000),
            Cell::Micros(1),
        ]),
        pick([
            Cell::Interval {
                months: i32::MIN,
                days: i32::MIN,
                micros: i64::MIN,
            },
            Cell::Interval {
                months: i32::MAX,
                days: i32::MAX,
                micros: i64::MAX,
            },
            Cell::Null,
            Cell::Interval {
                months: 0,
                days: -1,
                micros: 0,
            },
        ]),
        pick([
            Cell::Str("{}".into()),
            Cell::Null,
            Cell::Str(r#"{"a":[1,2]}"#.into()),
            Cell::Str("[]".into()),
        ]),
        pick([
            Cell::List(vec![]),
            Cell::Null,
            Cell::List(vec![Cell::Decimal(-99_999), Cell::Null, Cell::Decimal(150)]),
            Cell::List(vec![Cell::Null]),
        ]),
        pick([
            Cell::List(vec![
                Cell::Interval {
                    months: 1,
                    days: 2,
                    micros: 3,
                },
                Cell::Null,
            ]),
            Cell::List(vec![]),
            Cell::Null,
            Cell::List(vec![Cell::Null, Cell::Null]),
        ]),
        pick([
            Cell::List(vec![Cell::Bin(vec![]), Cell::Null]),
            Cell::Null,
            Cell::List(vec![Cell::Bin(vec![1, 2])]),
            Cell::List(vec![]),
        ]),
        pick([
            Cell::Str("[[1,2],[3,4]]".into()),
            Cell::Str("[]".into()),
            Cell::Null,
            Cell::Str("[[null]]".into()),
        ]),
    ]
}

fn same(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
}

#[test]
fn many_row_groups_drained_in_pieces_read_back_exactly() -> Result<(), ArchiveError> {
    let s = every_type();
    let opts = PartOptions {
        row_group_rows: 1000,
        zstd_level: 1,
        key_value_metadata: vec![],
    };
    let mut w = PartWriter::new(&s, opts)?;
    let mut file = tempfile::tempfile()?;
    let mut taken = Vec::new();
    let rows = 3_500u64;
    for i in 0..rows {
        w.push(&row(i))?;
        // Uneven pieces: sometimes after a push, sometimes not for a while.
        if i % 7 == 3 || i % 1000 == 999 {
            let piece = w.take_bytes();
            file.write_all(&piece)?;
            taken.extend(piece);
        }
    }
    let (rest, stats) = w.finish()?;
    file.write_all(&rest)?;
    taken.extend(rest);
    assert_eq!(stats.rows, rows);
    assert_eq!(stats.bytes, taken.len() as u64);
    assert_eq!(stats.sha256_hex, hex::encode(Sha256::digest(&taken)));

    let meta = SerializedFileReader::new(file.try_clone()?)?;
    assert_eq!(
        meta.metadata().num_row_groups(),
        4,
        "1000-row groups and the rest"
    );
    assert_eq!(meta.metadata().file_metadata().num_rows(), rows as i64);

    let r = PartReader::open(file, Some(&s))?;
    let mut i = 0u64;
    for batch in r {
        let batch = batch?;
        assert!(batch.len() <= 1024);
        for cells in batch {
            assert!(same(&cells, &row(i)), "row {i}: {cells:?}");
            i += 1;
        }
    }
    assert_eq!(i, rows);
    Ok(())
}

#[test]
fn an_empty_part_is_a_valid_file_with_the_schema() -> Result<(), ArchiveError> {
    let s = every_type();
    let w = PartWriter::new(&s, PartOptions::default())?;
    let (bytes, stats) = w.finish()?;
    assert_eq!((stats.rows, stats.bytes), (0, bytes.len() as u64));
    let r = PartReader::open(bytes::Bytes::from(bytes), None)?;
    assert_eq!(r.schema().columns, s.columns);
    assert_eq!(
        r.columns()[3],
        ("dec".to_string(), "numeric(38,38)".to_string())
    );
    assert_eq!(r.count(), 0);
    Ok(())
}

#[test]
fn a_part_of_other_columns_is_refused_by_name() -> Result<(), ArchiveError> {
    let s = every_type();
    let (bytes, _) = PartWriter::new(&s, PartOptions::default())?.finish()?;
    let other = archive_schema(&table(&[("id", "bigint", ColumnKind::Int8)]), &[])?;
    let e = PartReader::open(bytes::Bytes::from(bytes.clone()), Some(&other))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("columns expected"), "{e}");
    let mut t = table(&[("id", "bigint", ColumnKind::Int8)]);
    t.columns[0].pg_type = "integer".into();
    t.columns[0].kind = ColumnKind::Int4;
    let mut cols = every_type();
    cols.columns[0] = archive_schema(&t, &[])?.columns[0].clone();
    let e = PartReader::open(bytes::Bytes::from(bytes), Some(&cols))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("column id"), "{e}");
    Ok(())
}

#[test]
fn memory_stays_about_one_row_group() -> Result<(), ArchiveError> {
    let s = archive_schema(
        &table(&[
            ("id", "bigint", ColumnKind::Int8),
            ("t", "text", ColumnKind::Text),
        ]),
        &[],
    )?;
    let opts = PartOptions {
        row_group_rows: 5_000,
        zstd_level: 1,
        key_value_metadata: vec![],
    };
    let mut w = PartWriter::new(&s, opts)?;
    let mut total = 0usize;
    let mut peak = 0usize;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000i64 {
        // Text that does not compress away: 96 hex digits of an LCG.
        let mut t = String::with_capacity(96);
        for _ in 0..6 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            t.push_str(&format!("{x:016x}"));
        }
        w.push(&[Cell::I64(i), Cell::Str(t)])?;
        peak = peak.max(w.memory_size());
        total += w.take_bytes().len();
    }
    let (rest, stats) = w.finish()?;
    total += rest.len();
    assert_eq!(stats.bytes, total as u64);
    assert!(total > 10 << 20, "the file is {total} bytes");
    // A row group is 5,000 rows of ~100 bytes (~0.5 MB raw); the batch,
    // the encoder's pages and the untaken bytes together stay near that.
    // (1.7 MB measured, for an 11 MB file.)
    assert!(peak < 3 << 20, "peak {peak} bytes for a {total}-byte file");
    Ok(())
}

#[test]
fn a_bad_zstd_level_is_an_error() {
    let s = every_type();
    let opts = PartOptions {
        zstd_level: 99,
        ..PartOptions::default()
    };
    assert!(PartWriter::new(&s, opts).is_err());
}
