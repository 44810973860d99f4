//! Interleaved stripes of one job's range.
//!
//! Rows are read in Postgres key order. Where the target's partition key is
//! a leading key column (the demo's `inventory`, keyed `tenant, sku`, with
//! partition key `tenant`), consecutive rows share a partition-key value,
//! and a job would write one DynamoDB partition at a time: at most 1,000
//! WCU/s whatever the table's budget, and the bulk-load anti-pattern AWS
//! names ("load one item from each partition key value, then another").
//! So such a job cuts its range into stripes of about equal rows and copies
//! them side by side (`pages`): at any moment the job writes several keys,
//! each at the pace its partition lets through.

use backfill_item::ItemMapper;
use backfill_job::{JobMessage, KeyTuple};
use backfill_source::TableSchema;

use crate::{JobError, Worker};

/// Whether rows next to each other in key order share a partition-key
/// value: the partition key is built from key columns only, and not from
/// the last one (which alone changes from one row to the next).
pub(crate) fn clusters(schema: &TableSchema, mapper: &ItemMapper) -> bool {
    let pk = mapper.partition_key_columns();
    let key = schema.key_names();
    match key.last() {
        Some(last) => !pk.is_empty() && pk.iter().all(|c| key.contains(c)) && !pk.contains(last),
        None => false,
    }
}

/// Where a job's stripes start: the cuts its message carries, planned from
/// the producer's sample and checked in Postgres (no table row read), or,
/// for a job planned without them, cuts found by one pass over its keys.
pub(crate) async fn starts(
    w: &Worker,
    job: &JobMessage,
    schema: &TableSchema,
) -> Result<Vec<KeyTuple>, JobError> {
    if job.cuts.is_empty() {
        return Ok(w
            .source
            .split_range(schema, &job.range, w.cfg.worker.stripes)
            .await?);
    }
    if !w
        .source
        .cuts_in_order(schema, &job.range, &job.cuts)
        .await?
    {
        return Err(JobError::BadCuts {
            table: job.table.clone(),
            job: job.job_id.clone(),
            range: job.range.to_string(),
        });
    }
    Ok(job.cuts.clone())
}
