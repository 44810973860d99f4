//! Interleaved stripes of one job's range.
//!
//! Rows are read in Postgres key order. Where the target's partition key is
//! a leading key column (the demo's `inventory`, keyed `tenant, sku`, with
//! partition key `tenant`), consecutive rows share a partition-key value,
//! and a job would write one DynamoDB partition at a time: at most 1,000
//! WCU/s whatever the table's budget, and the bulk-load anti-pattern AWS
//! names ("load one item from each partition key value, then another").
//! So such a job cuts its range into stripes of about equal rows, reads a
//! page slice from each in turn and interleaves them: every batch of 25
//! then spans several keys, and each key is written at the job's rate
//! divided by the stripes.

use backfill_item::ItemMapper;
use backfill_job::{JobMessage, KeyRange, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableSchema};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::copy::{next_page_rows, FIRST_PAGE_ROWS};
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

/// Rows of several stripes, one from each in turn.
pub(crate) fn interleave(parts: Vec<Vec<SourceRow>>) -> Vec<SourceRow> {
    let total = parts.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<_> = parts.into_iter().map(Vec::into_iter).collect();
    while out.len() < total {
        for it in iters.iter_mut() {
            if let Some(r) = it.next() {
                out.push(r);
            }
        }
    }
    out
}

/// The copy's reader for a striped job: pages made of a slice of every
/// stripe not yet exhausted, interleaved, sent until all are read.
pub(crate) async fn read_striped(
    w: &Worker,
    job: &JobMessage,
    schema: &TableSchema,
    stripes: &[KeyRange],
    tx: mpsc::Sender<Result<Vec<SourceRow>, JobError>>,
    cancel: &CancellationToken,
) {
    let queries: Vec<PageQuery> = stripes.iter().map(|r| PageQuery::new(schema, r)).collect();
    let mut after: Vec<Option<KeyTuple>> = vec![None; stripes.len()];
    let mut open: Vec<bool> = vec![true; stripes.len()];
    let mut limit = w.cfg.worker.page_rows.min(FIRST_PAGE_ROWS);
    while open.iter().any(|o| *o) {
        if cancel.is_cancelled() || !w.source_open(cancel).await {
            return;
        }
        let live = open.iter().filter(|o| **o).count() as u32;
        let per = (limit / live).max(1);
        let mut parts = Vec::with_capacity(live as usize);
        for (i, q) in queries.iter().enumerate() {
            if !open[i] {
                continue;
            }
            match w.source.read_page(schema, q, after[i].as_ref(), per).await {
                Ok(p) => {
                    // Fewer rows than asked for: this stripe is exhausted.
                    open[i] = p.len() >= per as usize;
                    if let Some(last) = p.last() {
                        after[i] = Some(last.key.clone());
                    }
                    parts.push(p);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
        let page = interleave(parts);
        w.metrics.rows_read(&job.table, page.len() as u64);
        limit = next_page_rows(&page, w.cfg.worker.page_rows, w.cfg.worker.page_bytes);
        if !page.is_empty() && tx.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_job::KeyValue;

    fn k(t: &str, n: i64) -> KeyTuple {
        vec![KeyValue::Text(t.into()), KeyValue::Int(n)]
    }

    fn row(t: &str, n: i64) -> SourceRow {
        SourceRow {
            key: k(t, n),
            values: Vec::new(),
        }
    }

    #[test]
    fn interleave_takes_one_from_each_in_turn() {
        let parts = vec![
            vec![row("a", 1), row("a", 2), row("a", 3)],
            vec![row("m", 1)],
            vec![],
            vec![row("x", 1), row("x", 2)],
        ];
        let keys: Vec<KeyTuple> = interleave(parts).into_iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            vec![
                k("a", 1),
                k("m", 1),
                k("x", 1),
                k("a", 2),
                k("x", 2),
                k("a", 3)
            ]
        );
        assert!(interleave(vec![]).is_empty());
    }
}
