//! Verification: the copy proved, down to the key and attribute.
//!
//! [`Verifier::verify_table`] re-reads a whole table from both sides: every
//! source row is mapped to the item it should be and compared with what
//! DynamoDB holds (missing, different: [`Verifier::verify_range`], `range.rs`),
//! then the target is scanned for items no row produces (extra:
//! [`Verifier::scan_segment`], `extras.rs`), a page at a time on both sides,
//! so memory is bounded by a page whatever the table's size.
//! [`Verifier::audit`] compares a sample of rows,
//! or the rows changed since a version value, while the application still
//! dual-writes; a difference is re-read from both sides after a pause before
//! it is reported, so a write in flight is not reported as an error.
//! Every DynamoDB read goes through one rate limiter (governor), so a
//! verification never takes the capacity the application needs.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use backfill_config::TableConfig;
use backfill_dynamo::{DynamoSink, SinkError};
use backfill_item::compare::{AttributeDiff, ItemDigest};
use backfill_item::{Item, ItemMapper, MapError};
use backfill_source::{PgSource, SourceError, TableRef, TableSchema};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub use budget::ReadBudgets;

mod budget;
mod claims;
mod confirm;
mod extras;
mod range;

pub use range::TABLE_SCAN_SEGMENTS;

/// Why a verification could not run (a difference is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Offload(#[from] backfill_offload::OffloadError),
    #[error("table {table}: {reason}")]
    Usage { table: String, reason: String },
}

/// How a verification reads.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Rows per source page (and keys per round of reads).
    pub page_rows: u32,
    /// DynamoDB read requests per second, at most.
    pub max_reads_per_sec: NonZeroU32,
    /// Findings listed per kind; the counts are always complete.
    pub max_listed: usize,
    /// How long a range's missing and different rows get to settle (a
    /// write of the application in flight between the two stores) before
    /// they are read again and reported.
    pub recheck_after: std::time::Duration,
    /// Strongly consistent reads (twice the read capacity); by default
    /// eventually consistent, which the re-check of every difference
    /// makes safe.
    pub consistent_reads: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            page_rows: 500,
            max_reads_per_sec: NonZeroU32::new(50).expect("50 is not zero"),
            max_listed: 100,
            recheck_after: std::time::Duration::from_secs(2),
            consistent_reads: false,
        }
    }
}

/// What a verification found in one table.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    pub source: String,
    pub target: String,
    pub rows_checked: u64,
    pub items_scanned: u64,
    pub missing_count: u64,
    pub extra_count: u64,
    pub different_count: u64,
    /// Keys of rows with no item.
    pub missing: Vec<String>,
    /// Keys of items no row produces.
    pub extra: Vec<String>,
    /// Keys of items that differ, and how.
    pub different: Vec<(String, Vec<AttributeDiff>)>,
    /// Digest of the items the source rows produce.
    pub source_digest: ItemDigest,
    /// Items whose version attribute differs from the row's: written by the
    /// application, not a difference (only with a version column).
    pub newer_in_target: u64,
    /// Rows that cannot become an item (a reject of the copy).
    pub unmappable_count: u64,
    /// Keys of unmappable rows, and why.
    pub unmappable: Vec<(String, String)>,
    /// Items that two source rows map to (one of them is lost in DynamoDB).
    pub collision_count: u64,
    /// Each collision: the item's key and both rows' keys.
    pub collisions: Vec<String>,
    /// Key spans where the rows read disagree with a count of the source
    /// (a reader that skipped or repeated rows).
    pub count_mismatch_count: u64,
    pub count_mismatches: Vec<String>,
    /// An audit of the rows since a version: the highest version among the
    /// rows it read (as text a cast reads back), where the next one goes on.
    pub version_high: Option<String>,
    /// The range was confirmed by what its copy recorded (count and
    /// digest on both sides), not item by item.
    pub confirmed_by_digest: bool,
}

impl TableReport {
    pub fn is_clean(&self) -> bool {
        self.missing_count == 0
            && self.extra_count == 0
            && self.different_count == 0
            && self.unmappable_count == 0
            && self.collision_count == 0
            && self.count_mismatch_count == 0
    }

    /// Adds another part's findings (a range, a scan segment) to this
    /// report, keeping at most `max` of each list.
    pub fn merge(&mut self, other: TableReport, max: usize) {
        fn take<T>(list: &mut Vec<T>, more: Vec<T>, max: usize) {
            let room = max.saturating_sub(list.len());
            list.extend(more.into_iter().take(room));
        }
        self.rows_checked += other.rows_checked;
        self.items_scanned += other.items_scanned;
        self.missing_count += other.missing_count;
        self.extra_count += other.extra_count;
        self.different_count += other.different_count;
        self.newer_in_target += other.newer_in_target;
        self.unmappable_count += other.unmappable_count;
        self.collision_count += other.collision_count;
        self.count_mismatch_count += other.count_mismatch_count;
        take(&mut self.missing, other.missing, max);
        take(&mut self.extra, other.extra, max);
        take(&mut self.different, other.different, max);
        take(&mut self.unmappable, other.unmappable, max);
        take(&mut self.collisions, other.collisions, max);
        take(&mut self.count_mismatches, other.count_mismatches, max);
        self.source_digest.merge(&other.source_digest);
        if self.version_high.is_none() {
            self.version_high = other.version_high;
        }
    }

    /// Records a finding of `kind`, listing it while the list has room.
    fn note<T>(count: &mut u64, list: &mut Vec<T>, max: usize, finding: impl FnOnce() -> T) {
        *count += 1;
        if list.len() < max {
            list.push(finding());
        }
    }
}

pub use backfill_item::compare::display_item_key;
use backfill_item::compare::key_id;

/// Whether the item holds a later version than the row would give it.
fn newer_in_target(mapper: &ItemMapper, expected: &Item, found: &Item) -> bool {
    backfill_item::compare::newer_in_target(mapper.version_attribute(), expected, found)
}

/// Verifies tables, reading DynamoDB at a bounded rate.
pub struct Verifier {
    source: PgSource,
    sink: DynamoSink,
    /// Resolves pointer items of offloaded (over 400 KB) items.
    offloader: Option<backfill_offload::S3Offloader>,
    limiter: DefaultDirectRateLimiter,
    /// Read capacity budgets per target (none: requests a second only).
    budgets: ReadBudgets,
    opts: VerifyOptions,
}

impl Verifier {
    pub fn new(source: PgSource, sink: DynamoSink, opts: VerifyOptions) -> Self {
        Verifier {
            source,
            sink,
            limiter: RateLimiter::direct(Quota::per_second(opts.max_reads_per_sec)),
            opts,
            offloader: None,
            budgets: ReadBudgets::default(),
        }
    }

    /// Holds reads to these read capacity budgets, per target.
    pub fn with_read_budgets(mut self, budgets: ReadBudgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// Compares offloaded items with their S3 copy instead of their pointer.
    pub fn with_offloader(mut self, offloader: backfill_offload::S3Offloader) -> Self {
        self.offloader = Some(offloader);
        self
    }

    async fn prepare(&self, t: &TableConfig) -> Result<(TableSchema, ItemMapper), VerifyError> {
        let schema = self.source.describe(&TableRef::parse(&t.source)).await?;
        let mapper = ItemMapper::new(t, &schema)?;
        Ok((schema, mapper))
    }

    /// Reads the items of these keys, one rate-limited request per 100 keys.
    async fn read_items(
        &self,
        target: &str,
        keys: Vec<Item>,
        mapper: &ItemMapper,
    ) -> Result<HashMap<String, Item>, VerifyError> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            self.limiter.until_ready().await;
            let (items, rcu) = self
                .sink
                .get_items_costed(target, chunk.to_vec(), self.opts.consistent_reads)
                .await?;
            self.budgets.charge(target, rcu).await;
            for item in items {
                let item = match &self.offloader {
                    Some(off) if backfill_offload::is_pointer(&item) => off.fetch(&item).await?,
                    _ => item,
                };
                out.insert(key_id(&mapper.key_of(&item)), item);
            }
        }
        Ok(out)
    }

    /// The highest value of the table's `version_column` now (as text a
    /// cast reads back), or `None` for an empty table or one without a
    /// version column: where a drift watch with no watermark yet starts.
    pub async fn newest_version(&self, t: &TableConfig) -> Result<Option<String>, VerifyError> {
        let Some(name) = t.version_column.as_deref() else {
            return Ok(None);
        };
        let schema = self.source.describe(&TableRef::parse(&t.source)).await?;
        let col = schema.column(name).ok_or_else(|| VerifyError::Usage {
            table: t.source.clone(),
            reason: format!("version column {name} does not exist"),
        })?;
        let row = self.source.read_newest(&schema, col).await?;
        Ok(row.and_then(|r| backfill_source::versions::version_text(&schema, name, &r)))
    }

    /// Audits recently changed rows while the application dual-writes: a
    /// Bernoulli sample of `percent` of the rows and/or the rows whose
    /// version column is at least `since`, at most `limit`. A difference is
    /// checked again after `recheck_after`, from both sides, and reported
    /// only if it is still there (a write in flight settles in between).
    pub async fn audit(
        &self,
        t: &TableConfig,
        percent: Option<f64>,
        since: Option<&str>,
        limit: u32,
        recheck_after: Duration,
    ) -> Result<TableReport, VerifyError> {
        let (schema, mapper) = self.prepare(t).await?;
        let since_col = match since {
            None => None,
            Some(v) => {
                let name = t
                    .version_column
                    .as_deref()
                    .ok_or_else(|| VerifyError::Usage {
                        table: t.source.clone(),
                        reason: "`--since` needs a `version_column` in the table's config".into(),
                    })?;
                let col = schema.column(name).ok_or_else(|| VerifyError::Usage {
                    table: t.source.clone(),
                    reason: format!("version column {name} does not exist"),
                })?;
                Some((col, v))
            }
        };
        let columns: Vec<&str> = mapper.column_attributes().collect();
        let rows = self
            .source
            .read_audit(&schema, percent, since_col, limit)
            .await?;
        // The rows since a version come lowest version first.
        let version_high = since_col.and_then(|(col, _)| {
            rows.iter()
                .rev()
                .find_map(|r| backfill_source::versions::version_text(&schema, &col.name, r))
        });
        let mut first = TableReport::default();
        let mut suspects = Vec::new();
        for page in rows.chunks(self.opts.page_rows as usize) {
            suspects.extend(
                self.check_rows(t, &mapper, &columns, page, &mut first, None)
                    .await?,
            );
        }
        let mut report = TableReport {
            source: t.source.clone(),
            target: t.target.clone(),
            rows_checked: first.rows_checked,
            source_digest: first.source_digest,
            // A row that cannot become an item stays so: no write in flight
            // settles it, so it needs no second look.
            unmappable_count: first.unmappable_count,
            unmappable: first.unmappable,
            version_high,
            ..Default::default()
        };
        if suspects.is_empty() {
            return Ok(report);
        }
        tracing::info!(table = %t.source, suspects = suspects.len(), "re-checking differences after a pause");
        tokio::time::sleep(recheck_after).await;
        let mut now_rows = Vec::new();
        for r in &suspects {
            // A row deleted since is no longer a finding of this audit.
            if let Some(row) = self.source.read_key(&schema, &r.key).await? {
                now_rows.push(row);
            }
        }
        let mut scratch = TableReport::default();
        self.check_rows(t, &mapper, &columns, &now_rows, &mut scratch, None)
            .await?;
        report.missing_count = scratch.missing_count;
        report.missing = scratch.missing;
        report.different_count = scratch.different_count;
        report.different = scratch.different;
        Ok(report)
    }
}
