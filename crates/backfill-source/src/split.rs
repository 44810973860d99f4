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

impl PgSource {
    /// Whether `cuts` lie strictly inside `range` in strictly increasing key
    /// order, compared as pages compare keys: Postgres' row-value order
    /// under each key column's own collation. A job's cuts come from a
    /// message; stripes cut at cuts out of order would read some rows twice.
    /// No table row is read.
    pub async fn cuts_in_order(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
        cuts: &[KeyTuple],
    ) -> Result<bool, SourceError> {
        if cuts.is_empty() {
            return Ok(true);
        }
        let mut tuples: Vec<&KeyTuple> = Vec::with_capacity(cuts.len() + 2);
        tuples.extend(range.lo.iter());
        tuples.extend(cuts.iter());
        tuples.extend(range.hi.iter());
        let Some(exprs) = self.key_rows(schema, &tuples).await? else {
            return Ok(false);
        };
        let mut checks: Vec<String> = exprs
            .windows(2)
            .map(|w| format!("{} < {}", w[0], w[1]))
            .collect();
        // One cut in a range open at both ends: nothing to compare it with.
        if checks.is_empty() {
            checks.push(format!("{} IS NOT NULL", exprs[0]));
        }
        let sql = format!("SELECT COALESCE({}, false)", checks.join(" AND "));
        self.scalar_over(schema, &sql, &tuples).await
    }

    /// The cuts that lie after `after` (all of them without it), in their
    /// order, compared as [`PgSource::cuts_in_order`] compares: where a job
    /// that has read up to `after` may still be split.
    pub async fn cuts_after(
        &self,
        schema: &TableSchema,
        after: Option<&KeyTuple>,
        cuts: &[KeyTuple],
    ) -> Result<Vec<KeyTuple>, SourceError> {
        let Some(after) = after else {
            return Ok(cuts.to_vec());
        };
        if cuts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tuples: Vec<&KeyTuple> = vec![after];
        tuples.extend(cuts.iter());
        let Some(exprs) = self.key_rows(schema, &tuples).await? else {
            return Ok(Vec::new());
        };
        let checks: Vec<String> = exprs[1..]
            .iter()
            .map(|c| format!("COALESCE({} < {c}, false)", exprs[0]))
            .collect();
        let sql = format!("SELECT ARRAY[{}]", checks.join(", "));
        let later: Vec<bool> = self.scalar_over(schema, &sql, &tuples).await?;
        Ok(cuts
            .iter()
            .zip(later)
            .filter(|(_, l)| *l)
            .map(|(c, _)| c.clone())
            .collect())
    }

    /// `ROW(...)` expressions of `tuples`, parameters `$1...` in order, each
    /// key column cast to its type under its own collation (so text keys
    /// compare here as the index orders them); `None` when a tuple has the
    /// wrong arity.
    async fn key_rows(
        &self,
        schema: &TableSchema,
        tuples: &[&KeyTuple],
    ) -> Result<Option<Vec<String>>, SourceError> {
        schema.check_key_types()?;
        let key_cols: Vec<&ColumnSchema> = schema.key_columns().collect();
        if tuples.iter().any(|t| t.len() != key_cols.len()) {
            return Ok(None);
        }
        let names: Vec<String> = key_cols.iter().map(|c| c.name.clone()).collect();
        let collations: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT a.attname::text, \
                    CASE WHEN a.attcollation = 0 THEN NULL \
                         ELSE quote_ident(n.nspname) || '.' || quote_ident(c.collname) END \
             FROM pg_attribute a \
             LEFT JOIN pg_collation c ON c.oid = a.attcollation \
             LEFT JOIN pg_namespace n ON n.oid = c.collnamespace \
             WHERE a.attrelid = to_regclass($1) AND a.attname = ANY($2)",
        )
        .bind(schema.table.quoted())
        .bind(&names)
        .fetch_all(self.pool())
        .await
        .map_err(|source| SourceError::Query {
            table: schema.table.to_string(),
            source,
        })?;
        let collate = |name: &str| {
            collations
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, c)| c.as_deref())
                .map(|c| format!(" COLLATE {c}"))
                .unwrap_or_default()
        };
        let mut next = 1;
        let mut exprs = Vec::with_capacity(tuples.len());
        for _ in tuples {
            let cols: Vec<String> = key_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("CAST(${} AS {}){}", next + i, c.pg_type, collate(&c.name)))
                .collect();
            next += key_cols.len();
            exprs.push(format!("ROW({})", cols.join(", ")));
        }
        Ok(Some(exprs))
    }

    /// One value of `sql`, with every value of `tuples` bound in order.
    async fn scalar_over<T>(
        &self,
        schema: &TableSchema,
        sql: &str,
        tuples: &[&KeyTuple],
    ) -> Result<T, SourceError>
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let mut q = sqlx::query_scalar::<_, T>(sql);
        for t in tuples {
            for v in t.iter() {
                q = q.bind(v.to_pg_text());
            }
        }
        q.fetch_one(self.pool())
            .await
            .map_err(|source| SourceError::Query {
                table: schema.table.to_string(),
                source,
            })
    }
}
