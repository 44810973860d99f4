//! Copying one job's range: keyset pages from Postgres, mapped to items,
//! written to DynamoDB, in one lane or, for a clustered table, one lane per
//! stripe (`pages`). Here: the job's set-up, and what a page goes through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use backfill_control::{Checkpoint, RejectProblem};
use backfill_item::compare::{diff_items, display_item_key, key_id, newer_in_target, ItemDigest};
use backfill_item::size::attributes_size_upper_bound;
use backfill_item::{Item, ItemMapper, MapError, ShapedItem};
use backfill_job::{JobMessage, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableRef};
use tokio_util::sync::CancellationToken;

use crate::pages::{merge, JobCopy, Lane};
use crate::{JobError, Worker};

/// How far a job got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Rows written to DynamoDB.
    pub rows: u64,
    /// The last key written, when any.
    pub last_key: Option<KeyTuple>,
    /// Whether the whole range was copied (false: stopped by shutdown).
    pub complete: bool,
    /// Digest of the items the rows became (skipped-as-newer ones included:
    /// the digest describes the source).
    pub digest: ItemDigest,
    /// Items not written because DynamoDB held a newer or equal version.
    pub skipped_newer: u64,
    /// Items read back and compared.
    pub verified: u64,
    /// Rows read from the source in this attempt (not those a checkpoint covered).
    pub rows_read: u64,
    /// Rows of this attempt recorded as rejects.
    pub rejects: u64,
}

/// Rejects a job may have after `rows` rows before it fails.
pub(crate) fn reject_limit(cfg: &backfill_config::WorkerConfig, rows: u64) -> u64 {
    let by_fraction = (rows as f64 * cfg.max_reject_fraction).floor() as u64;
    by_fraction.max(cfg.reject_allowance)
}

/// Item key ids of a job's rows (already hashes: hashed again by identity).
pub(crate) type Claimed = HashMap<u128, KeyTuple, std::hash::BuildHasherDefault<IdHasher>>;

/// A hasher for keys that are already uniform hashes: their low 64 bits.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A row's mapping problems as its reject record keeps them.
pub(crate) fn reject_problems(problems: Vec<backfill_item::RowProblem>) -> Vec<RejectProblem> {
    problems
        .into_iter()
        .map(|p| RejectProblem {
            column: p.column,
            reason: p.reason,
        })
        .collect()
}

/// The reject of a row whose item is over 400 KB with nowhere to go.
pub(crate) fn oversize_reject(table: &str, key: &KeyTuple, size: usize) -> Vec<RejectProblem> {
    vec![RejectProblem {
        column: "*".into(),
        reason: JobError::Oversize {
            table: table.to_string(),
            key: backfill_job::display_key(key),
            size,
        }
        .to_string(),
    }]
}

type Split = (
    Vec<KeyTuple>,
    Vec<ShapedItem>,
    Vec<(KeyTuple, Vec<RejectProblem>)>,
);

/// Maps a page: the items of the rows that map, and the rows that do not
/// (an unmappable value, or an item key an earlier row of the job already
/// has) with every problem. A mapping that fails for the table, not the
/// row, fails the job.
pub(crate) fn split_rejects(
    mapper: &ItemMapper,
    page: Vec<SourceRow>,
    claimed: &mut Claimed,
    table: &str,
) -> Result<Split, JobError> {
    let mut keys = Vec::with_capacity(page.len());
    let mut items = Vec::with_capacity(page.len());
    let mut rejects = Vec::new();
    for row in page {
        match mapper.map_row_shaped(row) {
            Ok((key, item)) => match claimed.entry(mapper.shaped_key_id(&item)) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    let shown = display_item_key(&mapper.key_of(&mapper.shape().to_item(&item)));
                    let reason = format!(
                        "rows {} and {} of table {table} both map to item {shown}: one would overwrite the other",
                        backfill_job::display_key(first.get()),
                        backfill_job::display_key(&key),
                    );
                    rejects.push((
                        key,
                        vec![RejectProblem {
                            column: mapper.partition_key().attribute.clone(),
                            reason,
                        }],
                    ));
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(key.clone());
                    keys.push(key);
                    items.push(item);
                }
            },
            Err((key, MapError::Row { problems, .. })) => {
                rejects.push((key, reject_problems(problems)))
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
    Ok((keys, items, rejects))
}

pub(crate) async fn copy_range(
    w: &Worker,
    job: &JobMessage,
    cancel: &CancellationToken,
    checkpoint: Option<Checkpoint>,
) -> Result<CopyProgress, JobError> {
    let tcfg = w
        .cfg
        .table(&job.table)
        .ok_or_else(|| JobError::UnknownTable(job.table.clone()))?;
    let schema = w.source.describe(&TableRef::parse(&job.table)).await?;
    schema.check_job_key(&job.key_columns)?;
    schema.check_key_types()?;
    let mapper = ItemMapper::new(tcfg, &schema)?;
    // A resumed job goes on in key order from its checkpoint; a fresh one
    // of a clustered table copies its stripes side by side (and
    // checkpoints none).
    let stripes = if checkpoint.is_none()
        && w.cfg.worker.stripes > 1
        && crate::stripes::clusters(&schema, &mapper)
    {
        job.range
            .cut(crate::stripes::starts(w, job, &schema).await?)
    } else {
        Vec::new()
    };
    let cx = JobCopy::new(w, job, tcfg, &schema, &mapper, cancel);
    let wc = &w.cfg.worker;
    if stripes.len() > 1 {
        // One lane per stripe, side by side, each with its part of the
        // job's page and write concurrency.
        let n = stripes.len();
        tracing::debug!(stripes = n, "copying stripes side by side");
        let left = AtomicUsize::new(n);
        let (cx, schema, left) = (&cx, &schema, &left);
        let lanes = stripes.iter().map(|range| {
            async move {
                let lane = cx
                    .run(
                        Lane {
                            query: PageQuery::new(schema, range),
                            start_after: None,
                            whole_job: false,
                            page_rows: (wc.page_rows / n as u32).max(1),
                            write_concurrency: wc.write_concurrency.div_ceil(n),
                        },
                        CopyProgress::default(),
                    )
                    .await;
                // Most lanes done: the job's place goes to the next job
                // while the rest finish (`slot`), unless the worker already
                // runs twice its concurrency.
                let now_left = left.fetch_sub(1, Ordering::Relaxed) - 1;
                if crate::slot::mostly_done(n, now_left)
                    && w.in_hand.load(Ordering::Relaxed) < 2 * wc.concurrency
                    && crate::slot::give_up()
                {
                    tracing::debug!(
                        lanes_left = now_left,
                        "most stripes done: the next job may start"
                    );
                }
                lane
            }
        });
        // The first lane to fail stops the others (they are dropped).
        return Ok(merge(futures::future::try_join_all(lanes).await?));
    }
    let mut progress = CopyProgress::default();
    if let Some(ck) = &checkpoint {
        progress.rows = ck.rows;
        progress.last_key = Some(ck.last_key.clone());
        progress.digest = ItemDigest {
            count: ck.digest_count,
            sum: ck.digest_sum,
        };
    }
    let lane = Lane {
        query: PageQuery::new(&schema, &job.range),
        start_after: checkpoint.map(|c| c.last_key),
        whole_job: true,
        page_rows: wc.page_rows,
        write_concurrency: wc.write_concurrency,
    };
    cx.run(lane, progress).await
}

/// The rows of a job's first page, before any row size is known.
pub(crate) const FIRST_PAGE_ROWS: u32 = 64;

/// Rows for the next page: `page_bytes` of rows the size of this page's,
/// between one and `page_rows`.
pub(crate) fn next_page_rows(page: &[SourceRow], page_rows: u32, page_bytes: u64) -> u32 {
    let bytes: usize = page.iter().map(SourceRow::approx_bytes).sum();
    if page.is_empty() || bytes == 0 {
        return page_rows;
    }
    let per_row = (bytes / page.len()).max(1) as u64;
    (page_bytes / per_row).clamp(1, u64::from(page_rows)) as u32
}

/// Reads back (a sample of) the items just written and compares each with
/// what its row should produce. Items skipped as newer are not compared, and
/// neither is one whose version grew in between: the application wrote it
/// after us, which conditional writes allow.
pub(crate) async fn verify_page(
    w: &Worker,
    target: &str,
    mapper: &ItemMapper,
    sample: Vec<(usize, Item)>,
    skipped: &[usize],
) -> Result<u64, JobError> {
    let chosen: Vec<Item> = sample
        .into_iter()
        .filter(|(i, _)| !skipped.contains(i))
        .map(|(_, it)| it)
        .collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let keys: Vec<Item> = chosen.iter().map(|i| mapper.key_of(i)).collect();
    let found = w.sink.get_items(target, keys.clone()).await?;
    let by_key: std::collections::HashMap<String, Item> = found
        .into_iter()
        .map(|it| (key_id(&mapper.key_of(&it)), it))
        .collect();
    let mut problems = Vec::new();
    for (expected, key) in chosen.iter().zip(&keys) {
        let shown = display_item_key(key);
        match by_key.get(&key_id(key)) {
            None => problems.push(format!("{shown}: missing after write")),
            Some(actual) => {
                if newer_in_target(mapper.version_attribute(), expected, actual) {
                    continue;
                }
                let diffs = diff_items(expected, actual);
                if !diffs.is_empty() {
                    let d: Vec<String> = diffs.iter().map(ToString::to_string).collect();
                    problems.push(format!("{shown}: {}", d.join("; ")));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(chosen.len() as u64)
    } else {
        Err(JobError::Verify {
            table: target.to_string(),
            mismatches: problems.len(),
            detail: problems
                .into_iter()
                .take(10)
                .collect::<Vec<_>>()
                .join(" | "),
        })
    }
}

/// The positions of the items of a page to read back after writing (each
/// with probability `rate`), chosen before the page moves into the write.
pub(crate) fn verify_sample(rate: f64, len: usize) -> Vec<usize> {
    if rate <= 0.0 {
        return Vec::new();
    }
    (0..len)
        .filter(|_| rate >= 1.0 || rand::random::<f64>() < rate)
        .collect()
}

/// A page's items ready to write, each with its write capacity estimate.
pub(crate) struct Fitted {
    /// The items that fit, in page order.
    pub items: Vec<(ShapedItem, u64)>,
    /// Pointer items standing in for offloaded ones (not of the job's shape).
    pub pointers: Vec<(Item, u64)>,
}

/// Items over DynamoDB's 400 KB limit (by the size upper bound, so nothing
/// DynamoDB would refuse gets through) fail the job naming the key, or go to
/// S3 whole with a pointer item in their place, as the table's config says.
/// Each item comes out with its write capacity estimate, from the same
/// size, so the sink need not size the items again.
pub(crate) async fn fit_items(
    w: &Worker,
    tcfg: &backfill_config::TableConfig,
    mapper: &ItemMapper,
    items: Vec<ShapedItem>,
    keys: &[KeyTuple],
    rejects: &mut Vec<(KeyTuple, Vec<RejectProblem>)>,
    digest: &mut ItemDigest,
) -> Result<Fitted, JobError> {
    use backfill_item::size::{write_capacity_units, MAX_ITEM_BYTES};
    let shape = mapper.shape();
    let mut out = Fitted {
        items: Vec::with_capacity(items.len()),
        pointers: Vec::new(),
    };
    for (item, key) in items.into_iter().zip(keys) {
        let size = attributes_size_upper_bound(shape.attributes(&item));
        // The digest describes the items written (offloaded ones whole).
        if size <= MAX_ITEM_BYTES || tcfg.oversize == backfill_config::Oversize::S3 {
            digest.add_shaped(shape, &item);
        }
        if size <= MAX_ITEM_BYTES {
            out.items.push((item, write_capacity_units(size)));
            continue;
        }
        match tcfg.oversize {
            backfill_config::Oversize::Fail => {
                rejects.push((key.clone(), oversize_reject(&tcfg.source, key, size)))
            }
            backfill_config::Oversize::S3 => {
                let off = w.offloader.as_ref().ok_or_else(|| JobError::NoOffloader {
                    table: tcfg.source.clone(),
                })?;
                let item = shape.into_item(item);
                let pointer = off
                    .offload(&tcfg.target, &mapper.key_of(&item), &item)
                    .await?;
                let wcu = backfill_capacity::estimate_wcu(&pointer);
                out.pointers.push((pointer, wcu));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_job::KeyValue;
    use backfill_source::reader::Value;

    fn rows(n: usize, text: usize) -> Vec<SourceRow> {
        (0..n)
            .map(|i| SourceRow {
                key: vec![KeyValue::Int(i as i64)],
                values: vec![Value::Int(i as i64), Value::Text("x".repeat(text))],
            })
            .collect()
    }

    #[test]
    fn pages_shrink_for_big_rows_and_stay_within_bounds() {
        // Small rows: the row limit binds.
        assert_eq!(next_page_rows(&rows(10, 100), 1000, 2 << 20), 1000);
        // 100 KB rows and 2 MiB pages: about 20 rows.
        let n = next_page_rows(&rows(4, 100_000), 1000, 2 << 20);
        assert!((19..=21).contains(&n), "{n}");
        // A row bigger than a page still makes a page of one.
        assert_eq!(next_page_rows(&rows(1, 10 << 20), 1000, 2 << 20), 1);
        // Nothing seen yet: the row limit.
        assert_eq!(next_page_rows(&[], 500, 2 << 20), 500);
    }
}
