//! Plain data the layers share: a source row and its values ([`row`]), and
//! what a table looks like ([`schema`]: its name, columns, column kinds and
//! key).
//!
//! The reader (`backfill-source`) fills these from Postgres; the mapper
//! (`backfill-item`) and everything below the worker only read them, so they
//! depend on this crate and not on the reader.
//!
//! *Invariant:* knows nothing of sqlx (or any Postgres driver), DynamoDB or
//! SQS; `scripts/check-layers.sh` fails the build if it ever links one.

pub mod row;
pub mod schema;

pub use row::{SourceRow, Value};
pub use schema::{ColumnKind, ColumnSchema, SchemaError, TableRef, TableSchema};

/// Quotes an identifier for SQL, doubling embedded quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
