//! The PostgreSQL source: what a table looks like, a sample of its key, and
//! its rows read range by range.
//!
//! Layout: [`schema`] introspects a table (columns, key, size estimate);
//! [`reader`] builds and runs the keyset queries (row-value comparisons over
//! the key tuple, which Postgres turns into index conditions). Every session
//! is read-only and uses UTC and ISO styles, so text forms are stable.
//!
//! What it reads into (rows, values, table schemas) is plain data from
//! `backfill-model`, re-exported here; this crate is what touches sqlx.

pub mod count;
pub mod lookup;
pub mod reader;
pub mod restore;
pub mod schema;
pub mod split;
pub mod versions;

// The plain data this crate reads into lives in `backfill-model`, so that
// the mapper and the layers below the worker need not link sqlx.
pub use backfill_model::{
    quote_ident, ColumnKind, ColumnSchema, SchemaError, SourceRow, TableRef, TableSchema, Value,
};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Why reading the source failed. Each variant names the table or column.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("table {table} does not exist in the source database")]
    TableNotFound { table: String },
    #[error("table {table} has no usable key: {reason}")]
    NoUsableKey { table: String, reason: String },
    /// A key that cannot bound ranges, or is not the job's: never retryable.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("table {table}: cannot decode column {column}: {reason}")]
    Decode {
        table: String,
        column: String,
        reason: String,
    },
    #[error("cannot connect to the source database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("query on {table} failed: {source}")]
    Query {
        table: String,
        #[source]
        source: sqlx::Error,
    },
}

impl SourceError {
    /// Whether the same work may succeed later (connection lost, server
    /// restarting, serialization failure) rather than fail again identically.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Connect(_) => true,
            SourceError::Query { source, .. } => is_retryable_sqlx(source),
            _ => false,
        }
    }
}

fn is_retryable_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception, 40: transaction rollback, 53: insufficient
            // resources, 57: operator intervention (shutdown, cancel), 58: system error.
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// How long the first connection may take before `connect` gives up.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of read-only connections to the source.
#[derive(Clone, Debug)]
pub struct PgSource {
    pool: PgPool,
}

impl PgSource {
    /// Connects lazily-checked: the first connection is made now so that a
    /// wrong URL fails at start. `max_connections` caps concurrent queries.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SourceError> {
        install_tls_provider();
        let opts = PgConnectOptions::from_str(url)
            .map_err(SourceError::Connect)?
            .application_name("backfill");
        // One plain attempt first: a pool retries a refused connection
        // until its acquire timeout and then says only "pool timed out",
        // where the operator needs "connection refused" within a second.
        let first = tokio::time::timeout(FIRST_CONNECT_TIMEOUT, opts.connect())
            .await
            .map_err(|_| {
                SourceError::Connect(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", FIRST_CONNECT_TIMEOUT.as_secs()),
                )))
            })?
            .map_err(SourceError::Connect)?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Stable text forms for keys and values, and a guarantee
                    // that this tool never writes to the source. No JIT:
                    // every query here reads a bounded key range, and the
                    // planner, which overestimates row-comparison ranges,
                    // compiled the stripe split of a 6,000-row job for 1
                    // to 3 s.
                    conn.execute(
                        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
                         SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 1; \
                         SET default_transaction_read_only = on; SET jit = off",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(SourceError::Connect)?;
        Ok(PgSource { pool })
    }

    /// The pool, for callers that run their own statements (tests, counts).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The number the operator's `pause_query` returns (replica lag, load).
    pub async fn gauge(&self, sql: &str) -> Result<f64, SourceError> {
        let v: Option<f64> = sqlx::query_scalar(&format!("SELECT ({sql})::float8"))
            .fetch_one(&self.pool)
            .await
            .map_err(|source| SourceError::Query {
                table: "(source.pause_query)".into(),
                source,
            })?;
        Ok(v.unwrap_or(0.0))
    }

    /// Exact row count of a table: for `verify` only, never for planning.
    pub async fn count_rows(&self, table: &TableRef) -> Result<u64, SourceError> {
        let sql = format!("SELECT count(*) FROM {}", table.quoted());
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(|source| SourceError::Query {
                table: table.to_string(),
                source,
            })?;
        Ok(n.max(0) as u64)
    }

    /// The distinct values of `column` as `ANALYZE` estimated them
    /// (`pg_stats.n_distinct`): a count when positive, minus a fraction of
    /// the rows when negative; `None` when the column was never analysed.
    pub async fn distinct_values(
        &self,
        table: &TableRef,
        column: &str,
    ) -> Result<Option<f64>, SourceError> {
        let n: Option<f32> = sqlx::query_scalar(
            "SELECT n_distinct FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3",
        )
        .bind(&table.schema)
        .bind(&table.name)
        .bind(column)
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| SourceError::Query {
            table: table.to_string(),
            source,
        })?;
        Ok(n.map(f64::from))
    }
}

/// Chooses rustls' cryptography for the whole process. The AWS SDK and
/// sqlx together enable two providers (aws-lc-rs and ring), and rustls then
/// refuses to guess: without this, `sslmode=verify-ca` with an
/// `sslrootcert` panics when the first connection is made. ring is what
/// sqlx's TLS feature names; a provider installed before is kept.
pub(crate) fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_error_is_a_permanent_source_error_with_its_own_message() {
        let e = SchemaError::KeyMismatch {
            table: "public.t".into(),
            job: "id".into(),
            actual: "id, at".into(),
        };
        let text = e.to_string();
        let e = SourceError::from(e);
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), text);
        assert_eq!(
            text,
            "table public.t: the job's key columns (id) are not the table's key (id, at)"
        );
    }
}
