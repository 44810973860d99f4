//! What the archive needs of Postgres beyond reading rows: the declared
//! dimensions of array columns (which decide a column's Parquet type
//! before any row is read), and a writer that loads an archive back into a
//! new table with COPY.
//!
//! The writer is the one place this tool writes to Postgres, so it is its
//! own connection, not the read-only pool: it creates one new table (never
//! an existing one: `CREATE TABLE` without `IF NOT EXISTS`) and fills it in
//! one transaction, so a failed restore leaves nothing behind.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, Row};

use crate::{quote_ident, PgSource, SourceError, TableRef};

impl PgSource {
    /// Each array column's declared dimensions (`int[][]` is 2): Postgres
    /// keeps what the DDL said though it does not enforce it.
    pub async fn array_dims(&self, table: &TableRef) -> Result<HashMap<String, i32>, SourceError> {
        let rows = sqlx::query(
            "SELECT a.attname::text AS name, a.attndims::int4 AS dims \
             FROM pg_attribute a \
             WHERE a.attrelid = CAST($1 AS regclass) AND a.attnum > 0 \
               AND NOT a.attisdropped AND a.attndims > 0",
        )
        .bind(table.quoted())
        .fetch_all(self.pool())
        .await
        .map_err(|source| SourceError::Query {
            table: table.to_string(),
            source,
        })?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name").map_err(|source| SourceError::Query {
                    table: table.to_string(),
                    source,
                })?;
                let dims: i32 = r.try_get("dims").map_err(|source| SourceError::Query {
                    table: table.to_string(),
                    source,
                })?;
                Ok((name, dims))
            })
            .collect()
    }
}

/// A new table being filled from an archive, inside one transaction.
pub struct RestoreWriter {
    conn: PgConnection,
    table: TableRef,
    copy_sql: String,
    rows: u64,
}

impl RestoreWriter {
    /// Connects, begins a transaction and creates `table` with `columns`
    /// (name and Postgres type as `format_type` wrote them) and a primary
    /// key over `key`. Fails, naming the table, if it already exists.
    pub async fn create(
        url: &str,
        table: &TableRef,
        columns: &[(String, String)],
        key: &[String],
    ) -> Result<Self, SourceError> {
        crate::install_tls_provider();
        let opts = PgConnectOptions::from_str(url)
            .map_err(SourceError::Connect)?
            .application_name("backfill-restore");
        let mut conn = opts.connect().await.map_err(SourceError::Connect)?;
        let q = |source| SourceError::Query {
            table: table.to_string(),
            source,
        };
        // The archive's text forms are read in the styles they were written in.
        conn.execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; BEGIN",
        )
        .await
        .map_err(q)?;
        let mut defs: Vec<String> = columns
            .iter()
            .map(|(name, ty)| format!("{} {ty}", quote_ident(name)))
            .collect();
        if !key.is_empty() {
            let cols: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
            defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
        }
        conn.execute(format!("CREATE TABLE {} ({})", table.quoted(), defs.join(", ")).as_str())
            .await
            .map_err(q)?;
        let names: Vec<String> = columns.iter().map(|(n, _)| quote_ident(n)).collect();
        Ok(RestoreWriter {
            conn,
            table: table.clone(),
            copy_sql: format!("COPY {} ({}) FROM STDIN", table.quoted(), names.join(", ")),
            rows: 0,
        })
    }

    /// Loads `data`, lines of COPY's text format, in one COPY statement.
    pub async fn copy(&mut self, data: &[u8]) -> Result<u64, SourceError> {
        let q = |source| SourceError::Query {
            table: self.table.to_string(),
            source,
        };
        let mut copy = self.conn.copy_in_raw(&self.copy_sql).await.map_err(q)?;
        if let Err(e) = copy.send(data).await {
            let _ = copy.abort(e.to_string()).await;
            return Err(q(e));
        }
        let n = copy.finish().await.map_err(q)?;
        self.rows += n;
        Ok(n)
    }

    /// Commits the table and its rows; returns the rows loaded.
    pub async fn commit(mut self) -> Result<u64, SourceError> {
        self.conn
            .execute("COMMIT")
            .await
            .map_err(|source| SourceError::Query {
                table: self.table.to_string(),
                source,
            })?;
        let _ = self.conn.close().await;
        Ok(self.rows)
    }
}
