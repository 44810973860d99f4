//! Cutting one job's range into stripes of about equal rows.
//!
//! A table whose DynamoDB partition key is a leading key column (rows of
//! one tenant next to each other in key order) would be written one
//! partition at a time. The worker reads several stripes of its range side
//! by side and interleaves them, so each batch spans many partition-key
//! values; this finds where the stripes start.

use backfill_job::{KeyRange, KeyTuple};

use crate::reader::{decode_key, key_text_expr, qualified_key_list, TABLE_ALIAS};
use crate::{ColumnSchema, PgSource, SourceError, TableSchema};

impl PgSource {
    /// The keys that cut `range` into `parts` spans of about equal rows:
    /// the first key of every span but the first, in key order. Fewer (or
    /// none) when the range holds fewer rows than `parts`. One pass over
    /// the range's keys (an index-only scan where the visibility map
    /// allows), which a job of bounded size pays once.
    pub async fn split_range(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
        parts: u32,
    ) -> Result<Vec<KeyTuple>, SourceError> {
        if parts < 2 {
            return Ok(Vec::new());
        }
        schema.check_key_types()?;
        let key_cols: Vec<&ColumnSchema> = schema.key_columns().collect();
        let key_list = qualified_key_list(&key_cols);
        let n = key_cols.len();
        let params = |start: usize| {
            key_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("CAST(${} AS {})", start + i, c.pg_type))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut preds = Vec::new();
        let mut next = 1;
        for (bound, op) in [(&range.lo, ">="), (&range.hi, "<")] {
            if bound.is_some() {
                preds.push(format!("({key_list}) {op} ({})", params(next)));
                next += n;
            }
        }
        let where_ = if preds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", preds.join(" AND "))
        };
        // Each key comes out under a positional alias, cast as pages read
        // it, so decoding is the reader's own.
        let inner: Vec<String> = key_cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{TABLE_ALIAS}.{} AS k{i}__", key_text_expr(c)))
            .collect();
        let outer: Vec<String> = (0..n).map(|i| format!("k{i}__")).collect();
        let sql = format!(
            "WITH r AS (SELECT {inner}, (row_number() OVER (ORDER BY {key_list})) - 1 AS r__, \
                               count(*) OVER () AS n__ \
                        FROM {table} AS {TABLE_ALIAS}{where_}) \
             SELECT {outer} FROM r \
             WHERE r__ > 0 AND (r__ * ${next}) / n__ <> ((r__ - 1) * ${next}) / n__ \
             ORDER BY r__",
            inner = inner.join(", "),
            outer = outer.join(", "),
            table = schema.table.quoted(),
        );
        let mut q = sqlx::query(&sql);
        for bound in [&range.lo, &range.hi].into_iter().flatten() {
            for v in bound {
                q = q.bind(v.to_pg_text());
            }
        }
        let table = schema.table.to_string();
        let rows = q
            .bind(i64::from(parts))
            .fetch_all(self.pool())
            .await
            .map_err(|source| SourceError::Query {
                table: table.clone(),
                source,
            })?;
        rows.iter()
            .map(|row| {
                key_cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| decode_key(row, i, c, &table))
                    .collect::<Result<KeyTuple, _>>()
            })
            .collect()
    }
}
