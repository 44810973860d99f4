//! One lane of a copy: keyset pages of a key range read from Postgres in
//! key order, mapped to items, written and verified. The next page is read
//! while the current one is written (a channel of one page bounds the
//! memory to two pages a lane).
//!
//! An unstriped job is one lane over its whole range: it checkpoints each
//! page and may hand the rest of its range back. A striped job (a table
//! whose partition key leads its primary key) runs one lane per stripe,
//! side by side, each with its share of the job's page and write
//! concurrency: a stripe goes as fast as its own partition-key values are
//! let through, so a key DynamoDB slows holds back its stripe and not the
//! job's other keys. (Read as interleaved slices of every stripe in one
//! page, every page waited for its slowest key, and so did the job.)

use std::sync::Mutex;

use backfill_config::TableConfig;
use backfill_control::Checkpoint;
use backfill_item::{Item, ItemMapper};
use backfill_job::{JobMessage, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableSchema};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::copy::{
    fit_items, next_page_rows, reject_limit, split_rejects, verify_page, verify_sample, Claimed,
    CopyProgress, Fitted, FIRST_PAGE_ROWS,
};
use crate::handback::{maybe_hand_back, HandBacks};
use crate::{JobError, Worker};

/// One lane's range and how it runs.
pub(crate) struct Lane {
    pub query: PageQuery,
    /// Where a resumed job goes on (the rows up to it are not read again).
    pub start_after: Option<KeyTuple>,
    /// The lane is the whole job: it records each page as the job's
    /// checkpoint and may hand the rest of its range back in the run's
    /// tail. A stripe does neither: its pages are no prefix of the job's
    /// range, which both rest on.
    pub whole_job: bool,
    pub page_rows: u32,
    pub write_concurrency: usize,
}

/// What every lane of one job shares: the item keys its rows claimed (two
/// rows that would be one item are caught whichever lanes read them), and
/// the counts the reject limit reads.
#[derive(Default)]
struct Shared {
    claimed: Claimed,
    first_reject: Option<String>,
    rejects: u64,
    rows_read: u64,
}

/// One job's copy: what its lanes read, map and write with.
pub(crate) struct JobCopy<'a> {
    pub w: &'a Worker,
    pub job: &'a JobMessage,
    pub tcfg: &'a TableConfig,
    pub schema: &'a TableSchema,
    pub mapper: &'a ItemMapper,
    pub cancel: &'a CancellationToken,
    shared: Mutex<Shared>,
}

impl<'a> JobCopy<'a> {
    pub(crate) fn new(
        w: &'a Worker,
        job: &'a JobMessage,
        tcfg: &'a TableConfig,
        schema: &'a TableSchema,
        mapper: &'a ItemMapper,
        cancel: &'a CancellationToken,
    ) -> Self {
        JobCopy {
            w,
            job,
            tcfg,
            schema,
            mapper,
            cancel,
            shared: Mutex::new(Shared::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Held for map lookups and additions only, never across an await.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the lane's pages in key order; returns when the writer stops.
    async fn read(&self, lane: &Lane, tx: mpsc::Sender<Result<Vec<SourceRow>, JobError>>) {
        let (w, job) = (self.w, self.job);
        let mut after = lane.start_after.clone();
        // Pages are sized in bytes as well as rows, so big rows make small
        // pages: the first is small, later ones follow the rows seen.
        let mut limit = lane.page_rows.min(FIRST_PAGE_ROWS);
        let mut hand_backs = lane
            .whole_job
            .then(|| HandBacks::new(job.range.clone(), job.cuts.clone()));
        let mut narrowed: Option<PageQuery> = None;
        loop {
            if self.cancel.is_cancelled() || !w.source_open(self.cancel).await {
                return;
            }
            if let Some(hb) = hand_backs.as_mut() {
                let at = after.as_ref();
                if let Some(q) = maybe_hand_back(w, job, hb, self.schema, at).await {
                    narrowed = Some(q);
                }
            }
            let query = narrowed.as_ref().unwrap_or(&lane.query);
            let page = match w
                .source
                .read_page(self.schema, query, after.as_ref(), limit)
                .await
            {
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
            limit = next_page_rows(&page, lane.page_rows, w.cfg.worker.page_bytes);
            if page.is_empty() || tx.send(Ok(page)).await.is_err() || last {
                return;
            }
        }
    }

    /// Copies one lane: `progress` is where it starts (a checkpoint's
    /// counts, or nothing) and what it returns, grown by the lane's pages.
    pub(crate) async fn run(
        &self,
        lane: Lane,
        mut progress: CopyProgress,
    ) -> Result<CopyProgress, JobError> {
        let (tx, mut rx) = mpsc::channel::<Result<Vec<SourceRow>, JobError>>(1);
        // The reader owns the sender, so the channel closes when it stops;
        // when the writer stops (done, failed or cancelled) the reader is
        // dropped wherever it is.
        let reader = async {
            self.read(&lane, tx).await;
            std::future::pending::<()>().await
        };
        tokio::pin!(reader);
        let writer = async {
            loop {
                if self.cancel.is_cancelled() {
                    break Ok(());
                }
                let page = match rx.recv().await {
                    None => {
                        progress.complete = !self.cancel.is_cancelled();
                        break Ok(());
                    }
                    Some(Err(e)) => break Err(e),
                    Some(Ok(p)) => p,
                };
                if let Err(e) = self.write_page(&lane, page, &mut progress).await {
                    break Err(e);
                }
            }
        };
        let result = tokio::select! {
            r = writer => r,
            _ = &mut reader => unreachable!("the reader future never completes"),
        };
        result.map(|()| progress)
    }

    /// Maps, writes and verifies one page, and records how far the lane got.
    async fn write_page(
        &self,
        lane: &Lane,
        page: Vec<SourceRow>,
        progress: &mut CopyProgress,
    ) -> Result<(), JobError> {
        let (w, job, tcfg, mapper) = (self.w, self.job, self.tcfg, self.mapper);
        let rows_in_page = page.len() as u64;
        let page_last = page.last().map(|r| r.key.clone());
        // The rows move into their items (in the job's shape: values in
        // name order, no map per item); only the keys stay, for the
        // checkpoint and for naming an item that is too big. A row that
        // cannot become an item is a reject: recorded, and the rest of the
        // page is written.
        let (keys, items, mut rejects) = {
            let mut shared = self.lock();
            split_rejects(mapper, page, &mut shared.claimed, &tcfg.source)?
        };
        let Fitted { items, pointers } = fit_items(
            w,
            tcfg,
            mapper,
            items,
            &keys,
            &mut rejects,
            &mut progress.digest,
        )
        .await?;
        let rows_in_items = (items.len() + pointers.len()) as u64;
        progress.rejects += rejects.len() as u64;
        let (job_rejects, job_rows, first_reject) = {
            let mut shared = self.lock();
            shared.rejects += rejects.len() as u64;
            shared.rows_read += rows_in_page;
            if shared.first_reject.is_none() {
                shared.first_reject = rejects.first().map(|(key, problems)| {
                    let why: Vec<String> = problems
                        .iter()
                        .map(|p| format!("column {}: {}", p.column, p.reason))
                        .collect();
                    format!("key {}, {}", backfill_job::display_key(key), why.join("; "))
                });
            }
            (
                shared.rejects,
                shared.rows_read,
                shared.first_reject.clone(),
            )
        };
        w.control.record_rejects(job, &w.worker_id, rejects).await?;
        // Too many rejects is a wrong mapping, not bad rows: stop early.
        let limit = reject_limit(&w.cfg.worker, job_rows);
        if job_rejects > limit {
            return Err(JobError::TooManyRejects {
                table: job.table.clone(),
                rejects: job_rejects,
                rows: job_rows,
                limit,
                first: first_reject.unwrap_or_default(),
            });
        }
        let shape = mapper.shape();
        // Only the items to read back are kept (as maps, to compare with
        // what is read); the rest move into the write. Positions count the
        // shaped items, then the pointers.
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
        let concurrency = lane.write_concurrency;
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
                    concurrency * backfill_dynamo::MAX_BATCH_ITEMS,
                )
                .await?
            }
            None => {
                let mut total = sink
                    .put_shaped_estimated(&tcfg.target, shape, items, concurrency)
                    .await?;
                if !pointers.is_empty() {
                    let o = sink
                        .put_items_estimated(&tcfg.target, pointers, concurrency)
                        .await?;
                    total.add(&o);
                }
                total
            }
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
        let n = verify_page(w, &tcfg.target, mapper, sample, &written.skipped_indexes).await?;
        progress.verified += n;
        w.metrics.items_verified(&job.table, n);
        progress.rows += rows_in_items;
        progress.rows_read += rows_in_page;
        progress.last_key = page_last;
        // The page is durable and verified: record how far the job got, so
        // a redelivery resumes here instead of at the start.
        if let (Some(last_key), true) = (&progress.last_key, lane.whole_job) {
            let ck = Checkpoint {
                last_key: last_key.clone(),
                rows: progress.rows,
                digest_count: progress.digest.count,
                digest_sum: progress.digest.sum,
            };
            w.control.checkpoint(job, &w.worker_id, &ck).await?;
        }
        tracing::debug!(rows = progress.rows, "page written");
        Ok(())
    }
}

/// The lanes' progress as the job's: counts added, digests merged, whole
/// only when every lane is.
pub(crate) fn merge(lanes: Vec<CopyProgress>) -> CopyProgress {
    let mut total = CopyProgress {
        complete: !lanes.is_empty(),
        ..CopyProgress::default()
    };
    for p in lanes {
        total.rows += p.rows;
        total.complete &= p.complete;
        total.digest.merge(&p.digest);
        total.skipped_newer += p.skipped_newer;
        total.verified += p.verified;
        total.rows_read += p.rows_read;
        total.rejects += p.rejects;
    }
    total
}
