//! Fixtures the unit tests of the mapper, the row mapping and the keys share.
//!
//! A schema of named columns, a row keyed `1`, and a mapper over columns
//! `a` and `b`: each test then states only its key and its values.

use backfill_config::{KeyAttribute, TableConfig};
use backfill_job::KeyValue;
use backfill_model::{ColumnKind, ColumnSchema, SourceRow, TableRef, TableSchema, Value};

use crate::ItemMapper;

pub(crate) fn schema(cols: &[(&str, ColumnKind)]) -> TableSchema {
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

pub(crate) fn row(values: Vec<Value>) -> SourceRow {
    SourceRow {
        key: vec![KeyValue::Int(1)],
        values,
    }
}

pub(crate) fn mapper(pk: KeyAttribute, sk: Option<KeyAttribute>) -> ItemMapper {
    let mut cfg = TableConfig::new("public.t", "target", pk);
    cfg.sort_key = sk;
    ItemMapper::new(
        &cfg,
        &schema(&[("a", ColumnKind::Text), ("b", ColumnKind::Text)]),
    )
    .unwrap()
}
