//! Reading a table: a sample of its key for planning, and its rows page by
//! page within a key range for copying.
//!
//! Every page is one statement `WHERE (t.k1, t.k2) > ($1, $2) AND (t.k1,
//! t.k2) < (...) ORDER BY t.k1, t.k2 LIMIT n`: row-value comparisons
//! Postgres answers from the key's index, in Postgres' own order and
//! collation, so ranges planned from a sample and pages read later agree on
//! what lies where.
//!
//! Key columns are always named qualified by the table's alias
//! ([`TABLE_ALIAS`]) where they order or compare. The select list reads
//! keys in another form (`"id"::text` for a numeric key), and an unqualified
//! `ORDER BY "id"` binds to that *output* column: pages then come back in
//! text order while the next page starts after the last key compared as a
//! number, and whole runs of keys are skipped. Qualified, the name can only
//! mean the table's own column, which also lets Postgres use the key's
//! index (a cast output column has none).

use backfill_job::{KeyRange, KeyTuple, KeyValue};
use backfill_model::{ColumnKind, ColumnSchema, TableSchema};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::{quote_ident, PgSource, SourceError};

// Rows and values are plain data in `backfill-model`; re-exported so
// `reader::Value` paths keep working.
pub use backfill_model::{SourceRow, Value};

/// The boundaries the producer cuts a table at, from a sample of its key.
#[derive(Debug, Clone)]
pub struct KeySample {
    /// Strictly increasing key tuples; `n` boundaries make `n + 1` jobs.
    pub boundaries: Vec<KeyTuple>,
    /// Rows in the sample.
    pub sampled_rows: u64,
    /// Percentage of the table's pages read (TABLESAMPLE SYSTEM).
    pub percent: f64,
    /// Rows in the table, estimated from the sample.
    pub estimated_rows: u64,
}

/// What the producer asks of a sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleSpec {
    pub rows_per_job: u64,
    /// Sampled pages wanted per job: more gives more even jobs.
    pub samples_per_job: u64,
    /// Upper bound on the rows the sample may hold.
    pub max_sample_rows: u64,
    /// Parts each job is cut into at the sample's finer quantiles (1: no
    /// cuts): the boundaries come back `parts_per_job` times as many, and
    /// every `parts_per_job`-th is a job's.
    pub parts_per_job: u64,
    /// Seed of `REPEATABLE`, so planning the same run twice samples the same pages.
    pub seed: i32,
}

/// Rows per page assumed for a table never analysed.
const GUESSED_ROWS_PER_PAGE: f64 = 100.0;
/// Tables this small (8 MB) are read whole: a sample would save nothing.
const READ_WHOLE_PAGES: u64 = 1024;

/// The percentage of pages to sample: enough sampled pages per job that the
/// boundaries fall evenly, never more rows than `max_sample_rows`.
pub fn sample_percent(schema: &TableSchema, spec: &SampleSpec) -> f64 {
    let pages = schema.pages.max(1) as f64;
    if schema.pages <= READ_WHOLE_PAGES {
        return 100.0;
    }
    let rows = schema
        .catalog_row_estimate()
        .map(|r| r as f64)
        .unwrap_or(pages * GUESSED_ROWS_PER_PAGE)
        .max(1.0);
    let jobs = (rows / spec.rows_per_job.max(1) as f64).ceil().max(1.0);
    let want_pages = jobs * spec.samples_per_job.max(1) as f64;
    let by_pages = want_pages / pages * 100.0;
    let by_rows = spec.max_sample_rows as f64 / rows * 100.0;
    by_pages.min(by_rows).clamp(0.0001, 100.0)
}

/// The alias every row read gives its table, so key columns in `WHERE` and
/// `ORDER BY` name the table's own column and never a select-list output.
pub const TABLE_ALIAS: &str = "t__";

/// The key columns as `t__."a", t__."b"`: what pages order and compare by.
pub(crate) fn qualified_key_list(key_cols: &[&ColumnSchema]) -> String {
    key_cols
        .iter()
        .map(|c| format!("{TABLE_ALIAS}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn key_text_expr(c: &ColumnSchema) -> String {
    let q = quote_ident(&c.name);
    match c.kind {
        ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8 => format!("{q}::int8"),
        _ => format!("{q}::text"),
    }
}

/// The type a selected column arrives in: what its select expression
/// (`key_text_expr`, `value_expr`) makes of it and its decoder reads. One
/// place, so the per-page check ([`check_column_types`]) and the unchecked
/// decoders cannot disagree.
#[derive(Debug, Clone, Copy)]
enum ReadAs {
    Int,
    Bool,
    Bytes,
    Text,
}

impl ReadAs {
    fn of(c: &ColumnSchema, is_key: bool) -> Self {
        match (&c.kind, is_key) {
            (ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8, _) => ReadAs::Int,
            // Other key columns are cast to text.
            (_, true) => ReadAs::Text,
            (ColumnKind::Bool, false) => ReadAs::Bool,
            (ColumnKind::Bytea, false) => ReadAs::Bytes,
            (_, false) => ReadAs::Text,
        }
    }

    /// Whether a column Postgres sent as `ti` is read this way.
    fn accepts(self, ti: &sqlx::postgres::PgTypeInfo) -> bool {
        use sqlx::{Postgres, Type};
        match self {
            ReadAs::Int => <i64 as Type<Postgres>>::compatible(ti),
            ReadAs::Bool => <bool as Type<Postgres>>::compatible(ti),
            ReadAs::Bytes => <Vec<u8> as Type<Postgres>>::compatible(ti),
            ReadAs::Text => <String as Type<Postgres>>::compatible(ti),
        }
    }
}

/// Reads a key column without sqlx's per-value type check: keys are always
/// selected with a cast (`key_text_expr`), which fixes their type even
/// where no page check runs (the planning sample).
pub(crate) fn decode_key(
    row: &PgRow,
    idx: usize,
    c: &ColumnSchema,
    table: &str,
) -> Result<KeyValue, SourceError> {
    let err = |e: sqlx::Error| SourceError::Decode {
        table: table.to_string(),
        column: c.name.clone(),
        reason: e.to_string(),
    };
    Ok(match ReadAs::of(c, true) {
        ReadAs::Int => KeyValue::Int(row.try_get_unchecked::<i64, _>(idx).map_err(err)?),
        ReadAs::Bool | ReadAs::Bytes | ReadAs::Text => {
            let s: String = row.try_get_unchecked(idx).map_err(err)?;
            match c.kind {
                ColumnKind::Numeric => KeyValue::Numeric(s),
                ColumnKind::Uuid => KeyValue::Uuid(s),
                ColumnKind::Date => KeyValue::Date(s),
                ColumnKind::Timestamp => KeyValue::Timestamp(s),
                ColumnKind::TimestampTz => KeyValue::TimestampTz(s),
                _ => KeyValue::Text(s),
            }
        }
    })
}

/// The expression a column is selected with: each type read in the form
/// that keeps it exactly (docs/TYPES.md lists them).
fn value_expr(c: &ColumnSchema) -> String {
    let q = quote_ident(&c.name);
    match c.kind {
        ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8 => format!("{q}::int8"),
        ColumnKind::Bool | ColumnKind::Bytea => q,
        // The exact amount, without the locale's currency formatting.
        ColumnKind::Money => format!("{q}::numeric::text"),
        // to_json gives ISO 8601 (a 'T', the session's zone UTC as +00:00)
        // and keeps char(n) padding, which a cast to text would strip.
        ColumnKind::Timestamp
        | ColumnKind::TimestampTz
        | ColumnKind::Date
        | ColumnKind::Time
        | ColumnKind::Interval
        | ColumnKind::Char => format!("to_json({q}) #>> '{{}}'"),
        // A time with zone is normalised to UTC like timestamps are.
        ColumnKind::TimeTz => format!("to_json({q} AT TIME ZONE 'UTC') #>> '{{}}'"),
        // Arrays become JSON (nested for several dimensions, null elements kept).
        ColumnKind::Array(_) => format!("to_json({q})::text"),
        // The type's own output form: a cast to text is not always that
        // (`'::1'::inet::text` is `::1/128`; the output is `::1`).
        ColumnKind::Other => format!("CASE WHEN {q} IS NULL THEN NULL ELSE format('%s', {q}) END"),
        _ => format!("{q}::text"),
    }
}

fn decode_value(
    row: &PgRow,
    idx: usize,
    c: &ColumnSchema,
    table: &str,
) -> Result<Value, SourceError> {
    let err = |reason: String| SourceError::Decode {
        table: table.to_string(),
        column: c.name.clone(),
        reason,
    };
    let e = |e: sqlx::Error| err(e.to_string());
    Ok(match ReadAs::of(c, false) {
        ReadAs::Int => row
            .try_get_unchecked::<Option<i64>, _>(idx)
            .map_err(e)?
            .map(Value::Int),
        ReadAs::Bool => row
            .try_get_unchecked::<Option<bool>, _>(idx)
            .map_err(e)?
            .map(Value::Bool),
        ReadAs::Bytes => row
            .try_get_unchecked::<Option<Vec<u8>>, _>(idx)
            .map_err(e)?
            .map(Value::Bytes),
        ReadAs::Text => match c.kind {
            ColumnKind::Numeric | ColumnKind::Float4 | ColumnKind::Float8 | ColumnKind::Money => {
                row.try_get_unchecked::<Option<String>, _>(idx)
                    .map_err(e)?
                    .map(Value::Number)
            }
            ColumnKind::Json | ColumnKind::Jsonb | ColumnKind::Array(_) => {
                // Parsed where it lies in the row, not copied out first.
                match row.try_get_unchecked::<Option<&str>, _>(idx).map_err(e)? {
                    None => None,
                    Some(text) => Some(Value::Json(
                        serde_json::from_str(text)
                            .map_err(|x| err(format!("invalid JSON: {x}")))?,
                    )),
                }
            }
            _ => row
                .try_get_unchecked::<Option<String>, _>(idx)
                .map_err(e)?
                .map(Value::Text),
        },
    }
    .unwrap_or(Value::Null))
}

/// The select list every row read uses: key columns (as key values), then
/// every column in its faithful form. [`decode_row`] reads it back.
pub(crate) fn select_list(schema: &TableSchema) -> String {
    schema
        .key_columns()
        .map(key_text_expr)
        .chain(schema.columns.iter().map(value_expr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether Postgres sent each column of a result in the type its decoder
/// reads. Every row of a result has the same columns, so this is checked
/// once per result and the values are then decoded without checking each
/// one's type again (that check was a tenth of decoding). A column whose
/// type changed since the table was described (an `ALTER TABLE` during a
/// run) fails here, naming it, rather than being misread.
fn check_column_types(schema: &TableSchema, table: &str, row: &PgRow) -> Result<(), SourceError> {
    use sqlx::{Column, TypeInfo};
    let columns = row.columns();
    let expected = schema.key.len() + schema.columns.len();
    if columns.len() != expected {
        return Err(SourceError::Decode {
            table: table.to_string(),
            column: "*".into(),
            reason: format!("{} columns read, {expected} expected", columns.len()),
        });
    }
    let kinds = schema
        .key_columns()
        .map(|c| (c, true))
        .chain(schema.columns.iter().map(|c| (c, false)));
    for ((c, is_key), col) in kinds.zip(columns) {
        let ti = col.type_info();
        if !ReadAs::of(c, is_key).accepts(ti) {
            return Err(SourceError::Decode {
                table: table.to_string(),
                column: c.name.clone(),
                reason: format!(
                    "Postgres sent type {}, not the {:?} the table was described with (was the table altered during the run?)",
                    ti.name(),
                    c.kind
                ),
            });
        }
    }
    Ok(())
}

fn decode_row(schema: &TableSchema, table: &str, row: &PgRow) -> Result<SourceRow, SourceError> {
    let nkey = schema.key.len();
    let key = schema
        .key_columns()
        .enumerate()
        .map(|(i, c)| decode_key(row, i, c, table))
        .collect::<Result<KeyTuple, _>>()?;
    let values = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| decode_value(row, nkey + i, c, table))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SourceRow { key, values })
}

/// The SQL of the pages of one range, built once per job.
#[derive(Debug, Clone)]
pub struct PageQuery {
    table: String,
    /// Query of the first page: bounds only.
    first: String,
    /// Query of the following pages: `key > $after` and the upper bound.
    next: String,
    lo: Option<KeyTuple>,
    hi: Option<KeyTuple>,
}

impl PageQuery {
    pub fn new(schema: &TableSchema, range: &KeyRange) -> Self {
        let key_cols: Vec<&ColumnSchema> = schema.key_columns().collect();
        let key_list = qualified_key_list(&key_cols);
        let params = |start: usize| {
            key_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("CAST(${} AS {})", start + i, c.pg_type))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let select: Vec<String> = key_cols
            .iter()
            .map(|c| key_text_expr(c))
            .chain(schema.columns.iter().map(value_expr))
            .collect();
        let head = format!(
            "SELECT {} FROM {} AS {TABLE_ALIAS}",
            select.join(", "),
            schema.table.quoted()
        );
        let n = key_cols.len();
        let build = |after: bool| {
            let mut preds = Vec::new();
            let mut next_param = 1;
            if after {
                preds.push(format!("({key_list}) > ({})", params(next_param)));
                next_param += n;
            } else if range.lo.is_some() {
                preds.push(format!("({key_list}) >= ({})", params(next_param)));
                next_param += n;
            }
            if range.hi.is_some() {
                preds.push(format!("({key_list}) < ({})", params(next_param)));
                next_param += n;
            }
            let where_ = if preds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", preds.join(" AND "))
            };
            format!("{head}{where_} ORDER BY {key_list} LIMIT ${next_param}")
        };
        PageQuery {
            table: schema.table.to_string(),
            first: build(false),
            next: build(true),
            lo: range.lo.clone(),
            hi: range.hi.clone(),
        }
    }

    /// The SQL of a page after a key, for tests and EXPLAIN.
    pub fn sql(&self, after: bool) -> &str {
        if after {
            &self.next
        } else {
            &self.first
        }
    }
}

impl PgSource {
    /// Up to `limit` rows of the range in key order, after `after` when given.
    pub async fn read_page(
        &self,
        schema: &TableSchema,
        query: &PageQuery,
        after: Option<&KeyTuple>,
        limit: u32,
    ) -> Result<Vec<SourceRow>, SourceError> {
        let mut q = sqlx::query(query.sql(after.is_some()));
        let first_bound = if after.is_some() {
            after
        } else {
            query.lo.as_ref()
        };
        for bound in [first_bound, query.hi.as_ref()].into_iter().flatten() {
            for v in bound {
                q = q.bind(v.to_pg_text());
            }
        }
        self.fetch_rows(schema, &query.table, q.bind(i64::from(limit)))
            .await
    }

    /// The row with exactly this key, if it exists now.
    pub async fn read_key(
        &self,
        schema: &TableSchema,
        key: &KeyTuple,
    ) -> Result<Option<SourceRow>, SourceError> {
        let q = PageQuery::new(
            schema,
            &KeyRange {
                lo: Some(key.clone()),
                hi: None,
            },
        );
        let rows = self.read_page(schema, &q, None, 1).await?;
        Ok(rows.into_iter().next().filter(|r| &r.key == key))
    }

    /// Up to `limit` rows from a page sample (TABLESAMPLE SYSTEM, seeded):
    /// cheap, for estimating item sizes; never a scan.
    pub async fn read_page_sample(
        &self,
        schema: &TableSchema,
        percent: f64,
        seed: i32,
        limit: u32,
    ) -> Result<Vec<SourceRow>, SourceError> {
        let sql = format!(
            "SELECT {} FROM {} TABLESAMPLE SYSTEM ($1) REPEATABLE ($2) LIMIT {limit}",
            select_list(schema),
            schema.table.quoted()
        );
        let q = sqlx::query(&sql)
            .bind(percent.clamp(0.0001, 100.0))
            .bind(seed);
        self.fetch_rows(schema, &schema.table.to_string(), q).await
    }

    /// Runs a query whose select list is [`select_list`] and decodes its rows.
    pub(crate) async fn fetch_rows(
        &self,
        schema: &TableSchema,
        table: &str,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<SourceRow>, SourceError> {
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(|source| SourceError::Query {
                table: table.to_string(),
                source,
            })?;
        if let Some(first) = rows.first() {
            check_column_types(schema, table, first)?;
        }
        rows.iter()
            .map(|row| decode_row(schema, table, row))
            .collect()
    }

    /// Samples the key (TABLESAMPLE SYSTEM, seeded) and picks the boundaries
    /// that cut the sample into jobs of about `rows_per_job` rows, each in
    /// `parts_per_job` parts (so the boundaries are the parts').
    ///
    /// Postgres sorts the sample and keeps only the first key of each
    /// quantile bucket, so the producer receives boundaries, not the sample.
    pub async fn sample_boundaries(
        &self,
        schema: &TableSchema,
        spec: &SampleSpec,
    ) -> Result<KeySample, SourceError> {
        schema.check_key_types()?;
        let percent = sample_percent(schema, spec);
        let key_cols: Vec<&ColumnSchema> = schema.key_columns().collect();
        let key_list = qualified_key_list(&key_cols);
        let out_list = key_cols
            .iter()
            .map(|c| key_text_expr(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH s AS (SELECT {key_list} FROM {table} AS {TABLE_ALIAS} TABLESAMPLE SYSTEM ($1) REPEATABLE ($2)), \
                  r AS (SELECT s.*, (row_number() OVER (ORDER BY {s_list})) - 1 AS r__, \
                               count(*) OVER () AS n__ FROM s), \
                  j AS (SELECT r.*, GREATEST(1, CEIL(n__ * $3::float8 / $4::float8))::int8 * $5 AS j__ FROM r) \
             SELECT {out_list}, n__, j__ FROM j \
             WHERE r__ = 0 OR (r__ * j__) / n__ <> ((r__ - 1) * j__) / n__ \
             ORDER BY r__",
            table = schema.table.quoted(),
            s_list = key_cols
                .iter()
                .map(|c| format!("s.{}", quote_ident(&c.name)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows = sqlx::query(&sql)
            .bind(percent)
            .bind(spec.seed)
            .bind(100.0 / percent)
            .bind(spec.rows_per_job.max(1) as f64)
            .bind(spec.parts_per_job.clamp(1, 64) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|source| SourceError::Query {
                table: schema.table.to_string(),
                source,
            })?;
        let table = schema.table.to_string();
        let nkey = key_cols.len();
        let sampled_rows = match rows.first() {
            Some(r) => r.try_get::<i64, _>(nkey).unwrap_or(0).max(0) as u64,
            None => 0,
        };
        // The first row of the sample only carries the counts: it is not a
        // boundary, since the first job is open below.
        let boundaries = rows
            .iter()
            .skip(1)
            .map(|row| {
                key_cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| decode_key(row, i, c, &table))
                    .collect::<Result<KeyTuple, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let estimated_rows = (sampled_rows as f64 * 100.0 / percent).round() as u64;
        Ok(KeySample {
            boundaries,
            sampled_rows,
            percent,
            estimated_rows,
        })
    }
}
