//! The check of the config against the source before a worker starts.

use backfill_config::BackfillConfig;
use backfill_source::{PgSource, SourceError};

/// Checks every configured table against the source's catalog before a
/// worker takes a job: the table exists, has a key that can bound ranges,
/// and every column the config names (keys, include, exclude, renames,
/// types, version) is the table's. Returns the problems, each naming the
/// table and column; an error only when the source cannot be asked.
///
/// A table dropped later still fails only its own jobs (to the DLQ); this
/// catches a wrong config before a fleet starts on it.
pub async fn preflight(
    cfg: &BackfillConfig,
    source: &PgSource,
) -> Result<Vec<String>, SourceError> {
    let mut problems = Vec::new();
    for t in &cfg.tables {
        let schema = match source
            .describe(&backfill_source::TableRef::parse(&t.source))
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if let Err(e) = schema.check_key_types() {
            problems.push(e.to_string());
        }
        if let Err(e) = backfill_item::ItemMapper::new(t, &schema) {
            problems.push(e.to_string());
        }
    }
    Ok(problems)
}
