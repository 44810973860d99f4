//! Reading rows by key values that arrive as text from elsewhere: the key
//! columns an item carries, for `verify` to find the rows that claim a page
//! of items without holding every key of the table.
//!
//! The values are the items' text forms (an integer's digits, a numeric as
//! DynamoDB normalised it, a timestamp's ISO 8601), which `CAST(... AS
//! <type>)` reads back; equality is then Postgres' own, so `1.50` finds the
//! row keyed `1.5`. Values come from items anyone may have written, so a
//! value its column's type cannot read is "no such row", never an error.

use backfill_model::{quote_ident, TableSchema};

use crate::reader::{select_list, TABLE_ALIAS};
use crate::{PgSource, SourceError, SourceRow};

impl PgSource {
    /// The rows whose `columns` equal one of `tuples` (each tuple the
    /// columns' values as text, in the order of `columns`), in one statement
    /// for the lot. With the whole key as `columns` each tuple finds at most
    /// one row; with part of it, every row that shares those values.
    ///
    /// A tuple a column's type cannot read (`'x'` for an integer) finds no
    /// row: when the statement fails on such a value (SQLSTATE class 22),
    /// each tuple is looked up alone and the unreadable ones are skipped.
    pub async fn read_by_text(
        &self,
        schema: &TableSchema,
        columns: &[&str],
        tuples: &[Vec<String>],
    ) -> Result<Vec<SourceRow>, SourceError> {
        let table = schema.table.to_string();
        let cols = columns
            .iter()
            .map(|name| {
                schema.column(name).ok_or_else(|| SourceError::Decode {
                    table: table.clone(),
                    column: name.to_string(),
                    reason: "a lookup names a column the table does not have".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cols.is_empty() || tuples.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = tuples.iter().find(|t| t.len() != cols.len()) {
            return Err(SourceError::Decode {
                table,
                column: columns.join(", "),
                reason: format!(
                    "a lookup tuple has {} values for {} columns",
                    bad.len(),
                    cols.len()
                ),
            });
        }
        let params = (1..=cols.len())
            .map(|i| format!("${i}::text[]"))
            .collect::<Vec<_>>()
            .join(", ");
        let names = (0..cols.len())
            .map(|i| format!("k__{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let casts = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(k__.k__{i} AS {})", c.pg_type))
            .collect::<Vec<_>>()
            .join(", ");
        let key = cols
            .iter()
            .map(|c| format!("{TABLE_ALIAS}.{}", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH k__ AS (SELECT DISTINCT {names} FROM unnest({params}) AS u__({names})) \
             SELECT {} FROM {} AS {TABLE_ALIAS} WHERE ({key}) IN (SELECT {casts} FROM k__)",
            select_list(schema),
            schema.table.quoted()
        );
        let run = |batch: &[Vec<String>]| {
            let mut q = sqlx::query(&sql);
            for i in 0..cols.len() {
                let values: Vec<String> = batch.iter().map(|t| t[i].clone()).collect();
                q = q.bind(values);
            }
            self.fetch_rows(schema, &table, q)
        };
        match run(tuples).await {
            Err(e) if is_data_exception(&e) && tuples.len() > 1 => {
                let mut rows = Vec::new();
                for t in tuples {
                    match run(std::slice::from_ref(t)).await {
                        Ok(found) => rows.extend(found),
                        Err(e) if is_data_exception(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(rows)
            }
            Err(e) if is_data_exception(&e) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// A value its type cannot read (SQLSTATE class 22: invalid text, out of
/// range, bad date): the tuple names no row.
fn is_data_exception(e: &SourceError) -> bool {
    match e {
        SourceError::Query {
            source: sqlx::Error::Database(db),
            ..
        } => db.code().is_some_and(|c| c.starts_with("22")),
        _ => false,
    }
}
