//! Arrow batches: a refused row leaves the batch as it was, and what is
//! read back is what was pushed.

use backfill_archive::batch::{batch_cells, BatchBuilder};
use backfill_archive::types::{archive_schema, ArchiveSchema};
use backfill_archive::{ArchiveError, Cell};
use backfill_model::{ColumnKind, ColumnSchema, TableRef, TableSchema};

fn schema() -> ArchiveSchema {
    use ColumnKind::*;
    let cols = [
        ("id", "integer", Int4),
        ("amount", "numeric(4,2)", Numeric),
        ("tags", "text[]", Array(Box::new(Text))),
        ("iv", "interval", Interval),
    ];
    let t = TableSchema {
        table: TableRef::parse("app.b"),
        columns: cols
            .into_iter()
            .map(|(name, pg_type, kind)| ColumnSchema {
                name: name.to_string(),
                pg_type: pg_type.to_string(),
                kind,
                not_null: name == "id",
                precision: None,
            })
            .collect(),
        key: vec![0],
        reltuples: -1.0,
        relpages: 0,
        pages: 0,
    };
    archive_schema(&t, &[]).expect("schema")
}

fn good(id: i32) -> Vec<Cell> {
    vec![
        Cell::I32(id),
        Cell::Decimal(-9999),
        Cell::List(vec![Cell::Str("a".into()), Cell::Null]),
        Cell::Interval {
            months: 1,
            days: -1,
            micros: i64::MIN,
        },
    ]
}

#[test]
fn refused_rows_leave_the_batch_as_it_was() -> Result<(), ArchiveError> {
    let s = schema();
    let mut b = BatchBuilder::new(&s);
    b.push(&good(1))?;
    let before = b.approx_bytes();

    let mut null_id = good(2);
    null_id[0] = Cell::Null;
    let e = b.push(&null_id).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column id: NULL in a NOT NULL column (value \"NULL\")"
    );

    let mut wide = good(3);
    wide[1] = Cell::Decimal(10_000);
    let e = b.push(&wide).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column amount: a Decimal cell cannot be stored as Decimal { precision: 4, scale: 2 }"
    );

    // The bad cell is the list's second element: nothing of the row may stay.
    let mut bad_elem = good(4);
    bad_elem[2] = Cell::List(vec![Cell::Str("x".into()), Cell::I32(1)]);
    assert!(matches!(
        b.push(&bad_elem),
        Err(ArchiveError::CellType { .. })
    ));
    assert!(matches!(
        b.push(&good(5)[..3]),
        Err(ArchiveError::Arity { got: 3, want: 4 })
    ));

    assert_eq!((b.len(), b.approx_bytes()), (1, before));
    let mut nulls = good(6);
    nulls[1..].fill(Cell::Null);
    b.push(&nulls)?;
    let batch = b.finish()?;
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch_cells(&s, &batch)?, vec![good(1), nulls]);

    // A finished builder starts over and can be used again.
    b.push(&good(7))?;
    assert_eq!(batch_cells(&s, &b.finish()?)?, vec![good(7)]);
    Ok(())
}

#[test]
fn a_batch_of_another_schema_is_refused_when_read() -> Result<(), ArchiveError> {
    let s = schema();
    let mut b = BatchBuilder::new(&s);
    b.push(&good(1))?;
    let batch = b.finish()?;
    let mut other = s.clone();
    other.columns.swap(0, 1);
    let e = batch_cells(&other, &batch).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column id (integer): the batch holds Int32, not Decimal { precision: 4, scale: 2 }"
    );
    Ok(())
}
