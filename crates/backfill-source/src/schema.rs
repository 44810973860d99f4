//! Table introspection from the catalog: columns, the key used for ranges,
//! and a size estimate that never counts rows. The [`TableSchema`] it fills
//! is plain data from `backfill-model`.

use sqlx::Row;

use crate::{PgSource, SourceError};

// The table's name, columns, kinds and key are plain data in
// `backfill-model`; re-exported so `schema::TableSchema` paths keep working.
pub use backfill_model::{ColumnKind, ColumnSchema, TableRef, TableSchema};

impl PgSource {
    /// Reads a table's columns, key and size estimate from the catalog.
    ///
    /// The key is the primary key or, failing that, the first unique index
    /// over plain NOT NULL columns (no expressions, no predicate).
    pub async fn describe(&self, table: &TableRef) -> Result<TableSchema, SourceError> {
        let q = |source| SourceError::Query {
            table: table.to_string(),
            source,
        };
        let rel = sqlx::query(
            "SELECT c.oid::int8 AS oid, c.reltuples::float8 AS reltuples, c.relpages::int8 AS relpages, \
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8) AS pages \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        )
        .bind(&table.schema)
        .bind(&table.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(q)?
        .ok_or_else(|| SourceError::TableNotFound {
            table: table.to_string(),
        })?;
        let oid: i64 = rel.get("oid");
        let reltuples: f64 = rel.get("reltuples");
        let pages: i64 = rel.get("pages");
        let relpages: i64 = rel.get("relpages");

        let columns: Vec<ColumnSchema> = sqlx::query(
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS pg_type, \
                    t.typname::text AS typname, t.typtype::text AS typtype, a.attnotnull AS not_null, \
                    e.typname::text AS elem_name, e.typtype::text AS elem_type, \
                    information_schema._pg_numeric_precision(a.atttypid, a.atttypmod) AS precision \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(q)?
        .iter()
        .map(|r| {
            let elem_name: Option<&str> = r.get("elem_name");
            let elem_type: Option<&str> = r.get("elem_type");
            ColumnSchema {
                name: r.get("name"),
                pg_type: r.get("pg_type"),
                kind: ColumnKind::from_catalog(
                    r.get::<&str, _>("typname"),
                    r.get::<&str, _>("typtype"),
                    elem_name.zip(elem_type),
                ),
                not_null: r.get("not_null"),
                precision: r.get::<Option<i32>, _>("precision"),
            }
        })
        .collect();

        // Candidate keys, best first: the primary key, then unique indexes
        // without expressions or predicates.
        let candidates = sqlx::query(
            "SELECT i.indisprimary AS primary, \
                    array_agg(a.attname::text ORDER BY k.ord) AS cols, \
                    bool_and(a.attnotnull) AS all_not_null \
             FROM pg_index i \
             JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indisvalid \
               AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid, i.indisprimary \
             ORDER BY i.indisprimary DESC, count(*), i.indexrelid",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(q)?;
        let key_cols: Vec<String> = candidates
            .iter()
            .find(|r| r.get::<bool, _>("primary") || r.get::<bool, _>("all_not_null"))
            .map(|r| r.get("cols"))
            .ok_or_else(|| SourceError::NoUsableKey {
                table: table.to_string(),
                reason: "no primary key and no unique index over NOT NULL columns".into(),
            })?;
        let key = key_cols
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .position(|c| &c.name == k)
                    .ok_or_else(|| SourceError::NoUsableKey {
                        table: table.to_string(),
                        reason: format!("key column {k} is not among the table's columns"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = TableSchema {
            table: table.clone(),
            columns,
            key,
            reltuples,
            relpages: relpages.max(0) as u64,
            pages: pages.max(0) as u64,
        };
        Ok(schema)
    }
}
