//! Counting the rows of a key span, independently of the page reader.
//!
//! `verify` checks every page it read against a count of the same span of
//! keys, so a reader that skips rows (as one that ordered by a key's text
//! form once did) cannot pass verification. The SQL here is built on its
//! own, not from the page query: a shared mistake would hide itself.

use backfill_job::KeyTuple;

use crate::{quote_ident, PgSource, SourceError, TableSchema};

impl PgSource {
    /// Rows whose key is after `after` (exclusive; from the start when
    /// `None`) and up to `through` (inclusive; to the end when `None`),
    /// compared as the table's own key columns.
    pub async fn count_span(
        &self,
        schema: &TableSchema,
        after: Option<&KeyTuple>,
        through: Option<&KeyTuple>,
    ) -> Result<u64, SourceError> {
        let cols: Vec<String> = schema
            .key_columns()
            .map(|c| format!("src.{}", quote_ident(&c.name)))
            .collect();
        let types: Vec<&str> = schema.key_columns().map(|c| c.pg_type.as_str()).collect();
        let tuple = |first: usize| {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("CAST(${} AS {t})", first + i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key = cols.join(", ");
        let mut preds = Vec::new();
        let mut next = 1;
        if after.is_some() {
            preds.push(format!("({key}) > ({})", tuple(next)));
            next += types.len();
        }
        if through.is_some() {
            preds.push(format!("({key}) <= ({})", tuple(next)));
        }
        let where_ = if preds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", preds.join(" AND "))
        };
        let sql = format!(
            "SELECT count(*) FROM {} AS src{where_}",
            schema.table.quoted()
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for bound in [after, through].into_iter().flatten() {
            for v in bound {
                q = q.bind(v.to_pg_text());
            }
        }
        let n = q
            .fetch_one(&self.pool)
            .await
            .map_err(|source| SourceError::Query {
                table: schema.table.to_string(),
                source,
            })?;
        Ok(n.max(0) as u64)
    }
}
