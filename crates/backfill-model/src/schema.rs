//! What a table looks like: its name, its columns and their kinds, and its
//! key; and the checks that a key can bound ranges and is the job's key.
//!
//! Plain data: `backfill-source` fills a [`TableSchema`] from the catalog
//! (`describe`); nothing here knows sqlx, DynamoDB or SQS.

use std::fmt;

use crate::quote_ident;

/// Why a table's key cannot be used as it is: the table and column named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("table {table}: key column {column} has type {pg_type}, which cannot bound a key range (supported: integer, numeric, text, uuid, date, timestamp)")]
    UnsupportedKeyType {
        table: String,
        column: String,
        pg_type: String,
    },
    #[error("table {table}: the job's key columns ({job}) are not the table's key ({actual})")]
    KeyMismatch {
        table: String,
        job: String,
        actual: String,
    },
}

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
    /// The kind of a type as the catalog names it: `pg_type.typname` and
    /// `typtype` (`e` for an enum), and for an array its element's.
    pub fn from_catalog(typname: &str, typtype: &str, elem: Option<(&str, &str)>) -> Self {
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
    pub fn check_key_types(&self) -> Result<(), SchemaError> {
        for c in self.key_columns() {
            if !c.kind.can_bound_range() {
                return Err(SchemaError::UnsupportedKeyType {
                    table: self.table.to_string(),
                    column: c.name.clone(),
                    pg_type: c.pg_type.clone(),
                });
            }
        }
        Ok(())
    }

    /// Fails unless `job_key` is this table's key, column for column.
    pub fn check_job_key(&self, job_key: &[String]) -> Result<(), SchemaError> {
        let actual = self.key_names();
        if actual != job_key {
            return Err(SchemaError::KeyMismatch {
                table: self.table.to_string(),
                job: job_key.join(", "),
                actual: actual.join(", "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cols: &[(&str, &str, ColumnKind)], key: &[usize]) -> TableSchema {
        TableSchema {
            table: TableRef::parse("app.orders"),
            columns: cols
                .iter()
                .map(|(name, pg_type, kind)| ColumnSchema {
                    name: name.to_string(),
                    pg_type: pg_type.to_string(),
                    kind: kind.clone(),
                    not_null: true,
                    precision: None,
                })
                .collect(),
            key: key.to_vec(),
            reltuples: -1.0,
            relpages: 0,
            pages: 0,
        }
    }

    #[test]
    fn table_names_parse_print_and_quote() {
        let t = TableRef::parse("orders");
        assert_eq!((t.schema.as_str(), t.name.as_str()), ("public", "orders"));
        let t = TableRef::parse("app.we\"ird");
        assert_eq!(t.to_string(), "app.we\"ird");
        assert_eq!(t.quoted(), "\"app\".\"we\"\"ird\"");
    }

    #[test]
    fn catalog_names_map_to_kinds() {
        assert_eq!(
            ColumnKind::from_catalog("int8", "b", None),
            ColumnKind::Int8
        );
        assert_eq!(
            ColumnKind::from_catalog("bpchar", "b", None),
            ColumnKind::Char
        );
        assert_eq!(
            ColumnKind::from_catalog("mood", "e", None),
            ColumnKind::Enum
        );
        assert_eq!(
            ColumnKind::from_catalog("inet", "b", None),
            ColumnKind::Other
        );
        assert_eq!(
            ColumnKind::from_catalog("_int4", "b", Some(("int4", "b"))),
            ColumnKind::Array(Box::new(ColumnKind::Int4))
        );
    }

    #[test]
    fn key_checks_name_table_column_and_type() {
        let s = schema(
            &[
                ("id", "bigint", ColumnKind::Int8),
                ("at", "inet", ColumnKind::Other),
            ],
            &[0, 1],
        );
        let e = s.check_key_types().unwrap_err();
        assert_eq!(
            e.to_string(),
            "table app.orders: key column at has type inet, which cannot bound a key range (supported: integer, numeric, text, uuid, date, timestamp)"
        );
        assert!(s.check_job_key(&["id".into(), "at".into()]).is_ok());
        let e = s.check_job_key(&["id".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "table app.orders: the job's key columns (id) are not the table's key (id, at)"
        );
        let ok = schema(&[("id", "bigint", ColumnKind::Int8)], &[0]);
        assert!(ok.check_key_types().is_ok());
    }
}
