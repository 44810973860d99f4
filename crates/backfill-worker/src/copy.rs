//! Copying one job's range: keyset pages from Postgres, mapped to items,
//! written to DynamoDB. The next page is read while the current one is
//! written (a channel of one page bounds the memory to two pages).

use std::collections::HashMap;

use backfill_control::{Checkpoint, RejectProblem};
use backfill_item::compare::{diff_items, display_item_key, key_id, newer_in_target, ItemDigest};
use backfill_item::size::attributes_size_upper_bound;
use backfill_item::{Item, ItemMapper, MapError, ShapedItem};
use backfill_job::{JobMessage, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::handback::{maybe_hand_back, HandBacks};
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
fn reject_limit(cfg: &backfill_config::WorkerConfig, rows: u64) -> u64 {
    let by_fraction = (rows as f64 * cfg.max_reject_fraction).floor() as u64;
    by_fraction.max(cfg.reject_allowance)
}

/// Item key ids of a job's rows (already hashes: hashed again by identity).
type Claimed = HashMap<u128, KeyTuple, std::hash::BuildHasherDefault<IdHasher>>;

/// A hasher for keys that are already uniform hashes: their low 64 bits.
#[derive(Default)]
struct IdHasher(u64);

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
fn split_rejects(
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
    let query = PageQuery::new(&schema, &job.range);
    // A resumed job goes on in key order from its checkpoint; a fresh one
    // of a clustered table reads interleaved stripes (and checkpoints none).
    let stripes = if checkpoint.is_none()
        && w.cfg.worker.stripes > 1
        && crate::stripes::clusters(&schema, &mapper)
    {
        job.range
            .cut(crate::stripes::starts(w, job, &schema).await?)
    } else {
        Vec::new()
    };
    let striped = stripes.len() > 1;
    if striped {
        tracing::debug!(stripes = stripes.len(), "reading interleaved stripes");
    }
    let page_rows = w.cfg.worker.page_rows;
    let page_bytes = w.cfg.worker.page_bytes;

    // Reader task: pages in key order into a channel of one, so reading the
    // next page overlaps with writing this one.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<SourceRow>, JobError>>(1);
    // A resumed job starts after its checkpoint: the rows before it are not read again.
    let start_after = checkpoint.as_ref().map(|c| c.last_key.clone());
    // It owns the sender, so the channel closes when it stops.
    let reader = {
        let (schema, query, stripes) = (&schema, &query, &stripes);
        async move {
            if striped {
                return crate::stripes::read_striped(w, job, schema, stripes, tx, cancel).await;
            }
            let mut after: Option<KeyTuple> = start_after;
            // Pages are sized in bytes as well as rows, so big rows make
            // small pages: the first is small, later ones follow the rows seen.
            let mut limit = page_rows.min(FIRST_PAGE_ROWS);
            let mut hand_backs = HandBacks::new(job.range.clone(), job.cuts.clone());
            let mut narrowed: Option<PageQuery> = None;
            loop {
                if cancel.is_cancelled() || !w.source_open(cancel).await {
                    return;
                }
                let at = after.as_ref();
                if let Some(q) = maybe_hand_back(w, job, &mut hand_backs, schema, at).await {
                    narrowed = Some(q);
                }
                let query = narrowed.as_ref().unwrap_or(query);
                let page = w
                    .source
                    .read_page(schema, query, after.as_ref(), limit)
                    .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                w.metrics.rows_read(&job.table, page.len() as u64);
                // Fewer rows than asked for: the range is exhausted.
                let last = page.len() < limit as usize;
                after = page.last().map(|r| r.key.clone());
                limit = next_page_rows(&page, page_rows, page_bytes);
                if page.is_empty() || tx.send(Ok(page)).await.is_err() || last {
                    return;
                }
            }
        }
    };
    // The reader runs beside the writer below; when the writer stops (done,
    // failed or cancelled) the reader is dropped wherever it is.
    let reader = async {
        reader.await;
        std::future::pending::<()>().await
    };
    tokio::pin!(reader);

    let shape = mapper.shape();
    let mut progress = CopyProgress::default();
    if let Some(ck) = &checkpoint {
        progress.rows = ck.rows;
        progress.last_key = Some(ck.last_key.clone());
        progress.digest = ItemDigest {
            count: ck.digest_count,
            sum: ck.digest_sum,
        };
    }
    // The item key of every row of this attempt, with the row's key: two
    // rows that would be one item are caught here, not merged in DynamoDB.
    let mut claimed: Claimed = HashMap::default();
    // The first reject, to name in the error when there are too many.
    let mut first_reject: Option<String> = None;
    let writer = async {
        loop {
            if cancel.is_cancelled() {
                break Ok(());
            }
            let page = match rx.recv().await {
                None => {
                    progress.complete = !cancel.is_cancelled();
                    break Ok(());
                }
                Some(Err(e)) => break Err(e),
                Some(Ok(p)) => p,
            };
            // The rows move into their items; only the keys stay, for the
            // checkpoint and for naming an item that is too big.
            let rows_in_page = page.len() as u64;
            // Items are made in the job's shape (values in name order, no
            // map per item), which the digest, the size and the body writer
            // walk directly.
            // A row that cannot become an item is a reject: recorded, and
            // the rest of the page is written.
            let page_last = page.last().map(|r| r.key.clone());
            let (keys, items, mut rejects) =
                match split_rejects(&mapper, page, &mut claimed, &tcfg.source) {
                    Ok(split) => split,
                    Err(e) => break Err(e),
                };
            let Fitted { items, pointers } = match fit_items(
                w,
                tcfg,
                &mapper,
                items,
                &keys,
                &mut rejects,
                &mut progress.digest,
            )
            .await
            {
                Ok(fitted) => fitted,
                Err(e) => break Err(e),
            };
            let rows_in_items = (items.len() + pointers.len()) as u64;
            progress.rejects += rejects.len() as u64;
            if first_reject.is_none() {
                first_reject = rejects.first().map(|(key, problems)| {
                    let why: Vec<String> = problems
                        .iter()
                        .map(|p| format!("column {}: {}", p.column, p.reason))
                        .collect();
                    format!("key {}, {}", backfill_job::display_key(key), why.join("; "))
                });
            }
            if let Err(e) = w.control.record_rejects(job, &w.worker_id, rejects).await {
                break Err(e.into());
            }
            // Too many rejects is a wrong mapping, not bad rows: stop early.
            let limit = reject_limit(&w.cfg.worker, progress.rows_read + rows_in_page);
            if progress.rejects > limit {
                break Err(JobError::TooManyRejects {
                    table: job.table.clone(),
                    rejects: progress.rejects,
                    rows: progress.rows_read + rows_in_page,
                    limit,
                    first: first_reject.clone().unwrap_or_default(),
                });
            }
            // Only the items to read back are kept (as maps, to compare
            // with what is read); the rest move into the write. Positions
            // count the shaped items, then the pointers.
            let sample: Vec<(usize, Item)> = verify_sample(
                w.cfg.worker.verify_sample_rate,
                items.len() + pointers.len(),
            )
            .into_iter()
            .filter_map(|i| match items.get(i) {
                Some((item, _)) => Some((i, shape.to_item(item))),
                None => pointers
                    .get(i - items.len())
                    .map(|(item, _)| (i, item.clone())),
            })
            .collect();
            let sink = w.sink_for(&tcfg.target, &mapper.partition_key().attribute);
            let written = match mapper.version_attribute() {
                Some(version) => {
                    let all = items
                        .into_iter()
                        .map(|(item, wcu)| (shape.into_item(item), wcu))
                        .chain(pointers)
                        .collect();
                    sink.put_items_if_newer(
                        &tcfg.target,
                        all,
                        &mapper.partition_key().attribute,
                        version,
                        w.cfg.worker.write_concurrency * backfill_dynamo::MAX_BATCH_ITEMS,
                    )
                    .await
                }
                None => {
                    let concurrency = w.cfg.worker.write_concurrency;
                    async {
                        let mut total = sink
                            .put_shaped_estimated(&tcfg.target, shape, items, concurrency)
                            .await?;
                        if !pointers.is_empty() {
                            let o = sink
                                .put_items_estimated(&tcfg.target, pointers, concurrency)
                                .await?;
                            total.add(&o);
                        }
                        Ok(total)
                    }
                    .await
                }
            };
            let written = match written {
                Ok(o) => o,
                Err(e) => break Err(e.into()),
            };
            w.metrics.write(
                &tcfg.target,
                written.consumed_wcu,
                u64::from(written.throttled),
                u64::from(written.retries),
            );
            w.metrics
                .key_range_throttles(&tcfg.target, u64::from(written.throttled_key_range));
            let rows_now = rows_in_items.saturating_sub(written.skipped_newer as u64);
            w.metrics.rows_written(&job.table, rows_now);
            progress.skipped_newer += written.skipped_newer as u64;
            match verify_page(w, &tcfg.target, &mapper, sample, &written.skipped_indexes).await {
                Ok(n) => {
                    progress.verified += n;
                    w.metrics.items_verified(&job.table, n);
                }
                Err(e) => break Err(e),
            }
            progress.rows += rows_in_items;
            progress.rows_read += rows_in_page;
            progress.last_key = page_last;
            // The page is durable and verified: record how far the job got,
            // so a redelivery resumes here instead of at the start. (A
            // striped job's pages are no prefix of its range.)
            if let (Some(last_key), false) = (&progress.last_key, striped) {
                let ck = Checkpoint {
                    last_key: last_key.clone(),
                    rows: progress.rows,
                    digest_count: progress.digest.count,
                    digest_sum: progress.digest.sum,
                };
                if let Err(e) = w.control.checkpoint(job, &w.worker_id, &ck).await {
                    break Err(e.into());
                }
            }
            tracing::debug!(rows = progress.rows, "page written");
        }
    };
    let result = tokio::select! {
        r = writer => r,
        _ = &mut reader => unreachable!("the reader future never completes"),
    };
    result.map(|()| progress)
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
async fn verify_page(
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
fn verify_sample(rate: f64, len: usize) -> Vec<usize> {
    if rate <= 0.0 {
        return Vec::new();
    }
    (0..len)
        .filter(|_| rate >= 1.0 || rand::random::<f64>() < rate)
        .collect()
}

/// A page's items ready to write, each with its write capacity estimate.
struct Fitted {
    /// The items that fit, in page order.
    items: Vec<(ShapedItem, u64)>,
    /// Pointer items standing in for offloaded ones (not of the job's shape).
    pointers: Vec<(Item, u64)>,
}

/// Items over DynamoDB's 400 KB limit (by the size upper bound, so nothing
/// DynamoDB would refuse gets through) fail the job naming the key, or go to
/// S3 whole with a pointer item in their place, as the table's config says.
/// Each item comes out with its write capacity estimate, from the same
/// size, so the sink need not size the items again.
async fn fit_items(
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
