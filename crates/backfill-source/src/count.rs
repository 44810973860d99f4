//! Counting the rows of a key span, independently of the page reader.
//!
//! `verify` checks every page it read against a count of the same span of
//! keys, so a reader that skips rows (as one that ordered by a key's text
//! form once did) cannot pass verification. The SQL here is built on its
//! own, not from the page query: a shared mistake would hide itself.

use std::ops::Bound;

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
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = through.map_or(Bound::Unbounded, Bound::Included);
        self.count_between(schema, lower, upper).await
    }

    /// Rows whose key lies between `lower` and `upper`, each bound inclusive,
    /// exclusive or open: a page of a half-open range `[lo, hi)` starts at
    /// `lo` included and, when it is the range's last, ends at `hi` excluded.
    pub async fn count_between(
        &self,
        schema: &TableSchema,
        lower: Bound<&KeyTuple>,
        upper: Bound<&KeyTuple>,
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
        let mut binds: Vec<&KeyTuple> = Vec::new();
        for (bound, inclusive, exclusive) in [(lower, ">=", ">"), (upper, "<=", "<")] {
            let (op, k) = match bound {
                Bound::Included(k) => (inclusive, k),
                Bound::Excluded(k) => (exclusive, k),
                Bound::Unbounded => continue,
            };
            preds.push(format!("({key}) {op} ({})", tuple(next)));
            next += types.len();
            binds.push(k);
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
        for bound in binds {
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
