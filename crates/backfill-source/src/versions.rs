//! Reading rows by their version column, for the audits of a dual-write
//! period: a sample, the rows changed since a version, and the newest row.
//!
//! The version values travel as the text the reader decodes them to (an
//! integer's digits, a numeric's exact text, a timestamp's ISO 8601), which
//! `CAST($1 AS <type>)` reads back exactly; so a watermark stored as text
//! in the control table bounds the next query without knowing its type.

use backfill_model::{ColumnSchema, TableSchema};

use crate::reader::select_list;
use crate::{quote_ident, PgSource, SourceError, SourceRow, Value};

impl PgSource {
    /// Rows for an audit: a Bernoulli sample of `percent` of the rows, and/or
    /// the rows whose `since.0` column is at least `since.1`; at most `limit`.
    ///
    /// With `since`, the rows come in order of that column, lowest first:
    /// when more than `limit` rows changed, the highest version read is
    /// where the next audit goes on, and no changed row is skipped.
    pub async fn read_audit(
        &self,
        schema: &TableSchema,
        percent: Option<f64>,
        since: Option<(&ColumnSchema, &str)>,
        limit: u32,
    ) -> Result<Vec<SourceRow>, SourceError> {
        let sample = percent
            .map(|p| format!(" TABLESAMPLE BERNOULLI ({})", p.clamp(0.0, 100.0)))
            .unwrap_or_default();
        let (where_, order) = since
            .map(|(c, _)| {
                let col = quote_ident(&c.name);
                (
                    format!(" WHERE {col} >= CAST($1 AS {})", c.pg_type),
                    format!(" ORDER BY {col}"),
                )
            })
            .unwrap_or_default();
        let sql = format!(
            "SELECT {} FROM {}{sample}{where_}{order} LIMIT {limit}",
            select_list(schema),
            schema.table.quoted()
        );
        let mut q = sqlx::query(&sql);
        if let Some((_, v)) = since {
            q = q.bind(v.to_string());
        }
        self.fetch_rows(schema, &schema.table.to_string(), q).await
    }

    /// The row with the highest value of `version` (NULLs aside), if any:
    /// where an audit that has no watermark yet starts watching.
    pub async fn read_newest(
        &self,
        schema: &TableSchema,
        version: &ColumnSchema,
    ) -> Result<Option<SourceRow>, SourceError> {
        let col = quote_ident(&version.name);
        let sql = format!(
            "SELECT {} FROM {} WHERE {col} IS NOT NULL ORDER BY {col} DESC LIMIT 1",
            select_list(schema),
            schema.table.quoted()
        );
        let rows = self
            .fetch_rows(schema, &schema.table.to_string(), sqlx::query(&sql))
            .await?;
        Ok(rows.into_iter().next())
    }
}

/// The text of a row's value of `column`, as a version bound: `None` when
/// the column is not the table's, the value is NULL, or its type has no
/// text a cast reads back (bytes, booleans, JSON are no versions).
pub fn version_text(schema: &TableSchema, column: &str, row: &SourceRow) -> Option<String> {
    let idx = schema.columns.iter().position(|c| c.name == column)?;
    match row.values.get(idx)? {
        Value::Int(i) => Some(i.to_string()),
        Value::Number(s) | Value::Text(s) => Some(s.clone()),
        Value::Null | Value::Bool(_) | Value::Bytes(_) | Value::Json(_) => None,
    }
}
