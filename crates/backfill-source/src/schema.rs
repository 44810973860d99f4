//! Table introspection from the catalog: columns, the key used for ranges,
//! and a size estimate that never counts rows.

use std::fmt;

use sqlx::Row;

use crate::{quote_ident, PgSource, SourceError};

/// A table named `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    /// Parses `table` (schema `public`) or `schema.table`.
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((schema, name)) => TableRef {
                schema: schema.to_string(),
                name: name.to_string(),
            },
            None => TableRef {
                schema: "public".to_string(),
                name: s.to_string(),
            },
        }
    }

    /// `"schema"."name"`, safe to splice into SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The family of a column's type, which decides how it is read and mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Bool,
    /// text, varchar, char, name, citext
    Text,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    Json,
    Jsonb,
    Bytea,
    /// char(n): read with its padding.
    Char,
    Money,
    Time,
    TimeTz,
    Interval,
    /// An enum type: its label.
    Enum,
    /// An array (any dimensions) of the given element kind.
    Array(Box<ColumnKind>),
    /// Any other type (inet, cidr, macaddr, xml, geometric, ranges, ...), read in its text form.
    Other,
}

impl ColumnKind {
    fn from_catalog(typname: &str, typtype: &str, elem: Option<(&str, &str)>) -> Self {
        if let Some((elem_name, elem_type)) = elem {
            return ColumnKind::Array(Box::new(Self::from_catalog(elem_name, elem_type, None)));
        }
        if typtype == "e" {
            return ColumnKind::Enum;
        }
        match typname {
            "int2" => ColumnKind::Int2,
            "int4" => ColumnKind::Int4,
            "int8" => ColumnKind::Int8,
            "numeric" => ColumnKind::Numeric,
            "float4" => ColumnKind::Float4,
            "float8" => ColumnKind::Float8,
            "bool" => ColumnKind::Bool,
            "text" | "varchar" | "name" | "citext" => ColumnKind::Text,
            "bpchar" => ColumnKind::Char,
            "money" => ColumnKind::Money,
            "time" => ColumnKind::Time,
            "timetz" => ColumnKind::TimeTz,
            "interval" => ColumnKind::Interval,
            "uuid" => ColumnKind::Uuid,
            "date" => ColumnKind::Date,
            "timestamp" => ColumnKind::Timestamp,
            "timestamptz" => ColumnKind::TimestampTz,
            "json" => ColumnKind::Json,
            "jsonb" => ColumnKind::Jsonb,
            "bytea" => ColumnKind::Bytea,
            _ => ColumnKind::Other,
        }
    }

    /// Whether values of this kind can bound a key range (they have a total
    /// order in Postgres and a text form that casts back exactly).
    pub fn can_bound_range(&self) -> bool {
        matches!(
            self,
            ColumnKind::Int2
                | ColumnKind::Int4
                | ColumnKind::Int8
                | ColumnKind::Numeric
                | ColumnKind::Text
                | ColumnKind::Char
                | ColumnKind::Uuid
                | ColumnKind::Date
                | ColumnKind::Timestamp
                | ColumnKind::TimestampTz
        )
    }
}

/// One column of a source table.
#[derive(Debug, Clone)]
pub struct ColumnSchema {
    pub name: String,
    /// `format_type()` of the column, e.g. `numeric(12,2)`; used in casts.
    pub pg_type: String,
    pub kind: ColumnKind,
    pub not_null: bool,
    /// Declared precision of a numeric column (`None`: unconstrained or not numeric).
    pub precision: Option<i32>,
}

/// What a worker and the producer know of a table.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub table: TableRef,
    pub columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the key, in key order.
    pub key: Vec<usize>,
    /// `pg_class.reltuples`; negative when the table was never analysed.
    pub reltuples: f64,
    /// `pg_class.relpages`: the pages `reltuples` was counted over.
    pub relpages: u64,
    /// Pages of the table on disk now (from its size, not from statistics).
    pub pages: u64,
}

impl TableSchema {
    pub fn key_columns(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    pub fn key_names(&self) -> Vec<String> {
        self.key_columns().map(|c| c.name.clone()).collect()
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Rows now, estimated from the catalog without reading the table: the
    /// density of the last ANALYZE times the table's current size (as the
    /// planner does). `None` when the table was never analysed.
    pub fn catalog_row_estimate(&self) -> Option<u64> {
        if self.reltuples < 0.0 {
            return None;
        }
        if self.relpages == 0 {
            return Some(self.reltuples as u64);
        }
        Some((self.reltuples / self.relpages as f64 * self.pages as f64).round() as u64)
    }

    /// Fails unless every key column can bound a range.
    pub fn check_key_types(&self) -> Result<(), SourceError> {
        for c in self.key_columns() {
            if !c.kind.can_bound_range() {
                return Err(SourceError::UnsupportedKeyType {
                    table: self.table.to_string(),
                    column: c.name.clone(),
                    pg_type: c.pg_type.clone(),
                });
            }
        }
        Ok(())
    }

    /// Fails unless `job_key` is this table's key, column for column.
    pub fn check_job_key(&self, job_key: &[String]) -> Result<(), SourceError> {
        let actual = self.key_names();
        if actual != job_key {
            return Err(SourceError::KeyMismatch {
                table: self.table.to_string(),
                job: job_key.join(", "),
                actual: actual.join(", "),
            });
        }
        Ok(())
    }
}

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
