//! The producer: plans each table into key-range jobs and enqueues them.
//!
//! Planning reads only the catalog and a seeded sample of each key, never a
//! full count or scan ([`plan`]). Producing stores the plan in the control
//! table before anything is enqueued, so producing the same run again reuses
//! the same jobs and enqueues only those never enqueued ([`produce`]).

use backfill_config::BackfillConfig;
use backfill_control::{ControlError, ControlTable, JobState, RunPlan, RunState, RunTable};
use backfill_job::{JobMessage, KeyRange};
use backfill_queue::{JobQueue, QueueError};
use backfill_source::reader::SampleSpec;
use backfill_source::{PgSource, SourceError, TableRef};
use rand::seq::SliceRandom;

mod archive;
mod verify;
pub use archive::produce_archive;
pub use verify::{produce_repair, produce_verification, RepairPlan};

/// Why planning or producing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("the plan has problems; nothing was enqueued:\n  {}", .0.join("\n  "))]
    Problems(Vec<String>),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("run {run_id} was cancelled{detail}; it is not produced again (start a new run)")]
    Cancelled { run_id: String, detail: String },
    #[error("run {run_id}: the control table holds {found} job records but the run's plan has {planned}; nothing more was enqueued (is the control table the one the run was planned in?)")]
    PlanMismatch {
        run_id: String,
        planned: u64,
        found: usize,
    },
}

/// The plan of one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub source: String,
    pub target: String,
    /// Rows estimated from the sample (or the catalog when there was no sample).
    pub estimated_rows: u64,
    /// Rows estimated from the catalog alone (`None`: never analysed).
    pub catalog_rows: Option<u64>,
    pub sampled_rows: u64,
    pub sample_percent: f64,
    pub jobs: Vec<JobMessage>,
    /// What stops this table from being copied, each naming table and column.
    pub problems: Vec<String>,
    /// Columns whose values may not all have a faithful form, and what happens to them.
    pub notes: Vec<String>,
    /// Mean item size in bytes (DynamoDB's rules) over a sample of rows.
    pub avg_item_bytes: f64,
    /// Mean write capacity units one item costs.
    pub wcu_per_item: f64,
    /// Distinct values of the target's partition key, as `ANALYZE`
    /// estimated its columns (`None` when not analysed): each value lives
    /// in one DynamoDB partition, so few values cap the copy's rate.
    pub partition_key_values: Option<f64>,
}

impl TablePlan {
    /// Write capacity units the copy of this table needs in all.
    pub fn wcu_needed(&self) -> f64 {
        self.estimated_rows as f64 * self.wcu_per_item
    }

    /// The fewest partitions the target has while the copy writes at
    /// `write_units` WCU/s: by that rate and by the table's estimated size.
    pub fn partitions_at_least(&self, write_units: f64) -> u32 {
        backfill_capacity::cost::partitions_at_least(
            write_units,
            self.estimated_rows as f64 * self.avg_item_bytes,
        )
    }

    /// The most WCU/s the partition-key layout lets the copy write over
    /// its run ([`backfill_capacity::cost::key_layout_reach`]), the target
    /// taking `write_units` WCU/s when known; `None` when the catalog did
    /// not know the partition key's values.
    pub fn key_reach(&self, key_wcu_per_sec: f64, write_units: Option<f64>) -> Option<f64> {
        let keys = self.partition_key_values.filter(|k| *k > 0.0)?;
        Some(backfill_capacity::cost::key_layout_reach(
            keys,
            key_wcu_per_sec,
            write_units.map(|w| self.partitions_at_least(w)),
        ))
    }
}

/// Rows whose items are sized to estimate a table's write cost.
const SIZE_SAMPLE_ROWS: u32 = 500;

/// The plan of a run: every table's jobs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_id: String,
    pub tables: Vec<TablePlan>,
}

impl Plan {
    pub fn problems(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|t| t.problems.iter().cloned())
            .collect()
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobMessage> {
        self.tables.iter().flat_map(|t| t.jobs.iter())
    }
}

/// A stable 31-bit seed from the run id, for `TABLESAMPLE ... REPEATABLE`,
/// so that planning the same run twice samples the same pages.
pub fn seed_of(run_id: &str) -> i32 {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in run_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// Plans every configured table. Problems (a missing table, no usable key,
/// an unsupported key type, a key attribute naming a missing column) are
/// reported in the plan, not raised; only a failing connection is an error.
pub async fn plan(
    cfg: &BackfillConfig,
    source: &PgSource,
    run_id: &str,
) -> Result<Plan, ProducerError> {
    let spec = SampleSpec {
        rows_per_job: cfg.producer.rows_per_job,
        samples_per_job: cfg.producer.samples_per_job,
        max_sample_rows: cfg.producer.max_sample_rows,
        // Every job carries the cuts of its stripes (`worker.stripes`),
        // from the same sample: a worker then reads them instead of
        // scanning its range to find them.
        parts_per_job: u64::from(cfg.worker.stripes),
        seed: seed_of(run_id),
    };
    let mut tables = Vec::new();
    for t in &cfg.tables {
        let mut tp = TablePlan {
            source: t.source.clone(),
            target: t.target.clone(),
            estimated_rows: 0,
            catalog_rows: None,
            sampled_rows: 0,
            sample_percent: 0.0,
            jobs: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            avg_item_bytes: 0.0,
            wcu_per_item: 0.0,
            partition_key_values: None,
        };
        let schema = match source.describe(&TableRef::parse(&t.source)).await {
            Ok(s) => s,
            Err(e) if !e.is_retryable() => {
                tp.problems.push(e.to_string());
                tables.push(tp);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        tp.catalog_rows = schema.catalog_row_estimate();
        if let Err(e) = schema.check_key_types() {
            tp.problems.push(e.to_string());
        }
        if let Err(e) = backfill_item::ItemMapper::new(t, &schema) {
            tp.problems.push(e.to_string());
        }
        tp.notes = backfill_item::fidelity::fidelity_notes(t, &schema);
        if tp.problems.is_empty() {
            let sample = source.sample_boundaries(&schema, &spec).await?;
            tp.estimated_rows = sample.estimated_rows;
            tp.sampled_rows = sample.sampled_rows;
            tp.sample_percent = sample.percent;
            let key_columns = schema.key_names();
            // Item sizes from a few hundred sampled rows, never a scan.
            if let Ok(mapper) = backfill_item::ItemMapper::new(t, &schema) {
                tp.partition_key_values = partition_key_values(
                    source,
                    &schema.table,
                    &mapper.partition_key_columns(),
                    sample.estimated_rows,
                )
                .await?;
                let pct = (f64::from(SIZE_SAMPLE_ROWS) * 4.0 / sample.estimated_rows.max(1) as f64
                    * 100.0)
                    .min(100.0);
                let rows = source
                    .read_page_sample(&schema, pct, spec.seed, SIZE_SAMPLE_ROWS)
                    .await?;
                let mapped: Vec<_> = rows.iter().map(|r| mapper.map_row(r)).collect();
                tp.notes.extend(reject_notes(&t.source, &mapper, &mapped));
                let items: Vec<_> = mapped.into_iter().filter_map(Result::ok).collect();
                if !items.is_empty() {
                    let n = items.len() as f64;
                    tp.avg_item_bytes = items
                        .iter()
                        .map(|i| backfill_item::size::item_size(i) as f64)
                        .sum::<f64>()
                        / n;
                    tp.wcu_per_item = items
                        .iter()
                        .map(|i| backfill_capacity::estimate_wcu(i) as f64)
                        .sum::<f64>()
                        / n;
                }
            }
            tp.jobs = KeyRange::tile_parts(sample.boundaries, spec.parts_per_job as usize)
                .into_iter()
                .map(|(r, cuts)| {
                    let job = JobMessage::new(run_id, &t.source, key_columns.clone(), r);
                    with_cuts_that_fit(job, cuts)
                })
                .collect();
        }
        tables.push(tp);
    }
    Ok(Plan {
        run_id: run_id.to_string(),
        tables,
    })
}

/// The job with its cuts, unless they would take its message past half the
/// body limit (long text keys): a worker then finds its stripes itself.
fn with_cuts_that_fit(job: JobMessage, cuts: Vec<backfill_job::KeyTuple>) -> JobMessage {
    let cut = job.clone().with_cuts(cuts);
    if cut.to_body().len() <= backfill_job::MAX_BODY_BYTES / 2 {
        cut
    } else {
        job
    }
}

/// Distinct values of a key built from `columns`: each column's estimate
/// (a negative `n_distinct` is a fraction of the rows), multiplied for a
/// key of several columns, and never more than the rows.
async fn partition_key_values(
    source: &PgSource,
    table: &TableRef,
    columns: &[String],
    rows: u64,
) -> Result<Option<f64>, ProducerError> {
    if columns.is_empty() {
        return Ok(None);
    }
    let mut product = 1.0f64;
    for c in columns {
        match source.distinct_values(table, c).await? {
            Some(n) if n < 0.0 => product *= (-n * rows as f64).max(1.0),
            Some(n) if n > 0.0 => product *= n,
            _ => return Ok(None),
        }
    }
    Ok(Some(product.min(rows as f64)))
}

/// Warnings about rows that will be rejects, from the planning sample: a
/// joined key whose parts may contain its separator, and sampled rows that
/// cannot become items (the first one named).
fn reject_notes(
    table: &str,
    mapper: &backfill_item::ItemMapper,
    mapped: &[Result<backfill_item::Item, backfill_item::MapError>],
) -> Vec<String> {
    let mut notes = Vec::new();
    let failed: Vec<&backfill_item::MapError> =
        mapped.iter().filter_map(|r| r.as_ref().err()).collect();
    let ambiguous = failed
        .iter()
        .filter(|e| e.to_string().contains(backfill_item::AMBIGUOUS_KEY))
        .count();
    for (attribute, separators, columns) in mapper.rejecting_joined_keys() {
        notes.push(format!(
            "table {table}: key attribute {attribute} joins columns {} with {separators:?}: a value containing {separators:?} makes its row a reject ({ambiguous} of {} sampled rows do); set `ambiguous_keys = \"escape\"` if the application escapes such values",
            columns.join(", "),
            mapped.len()
        ));
    }
    if let Some(first) = failed.first() {
        notes.push(format!(
            "table {table}: {} of {} sampled rows cannot become items and will be rejects, e.g. {first}",
            failed.len(),
            mapped.len()
        ));
    }
    notes
}

/// What `produce` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceReport {
    pub run_id: String,
    pub jobs_total: usize,
    pub enqueued: usize,
    /// Jobs already enqueued (or further) by an earlier `produce` of this run.
    pub already_enqueued: usize,
    /// Whether the plan came from the control table (the run existed).
    pub reused_plan: bool,
}

/// Plans the run (or loads its stored plan) and enqueues, in shuffled order,
/// every job not yet enqueued. Refuses to start when the plan has problems.
pub async fn produce(
    cfg: &BackfillConfig,
    source: &PgSource,
    queue: &JobQueue,
    control: &ControlTable,
    run_id: &str,
) -> Result<ProduceReport, ProducerError> {
    let reused_plan = stored_run(control, run_id).await?;
    if !reused_plan {
        let plan = plan(cfg, source, run_id).await?;
        save_plan(cfg, control, run_id, &plan).await?;
    }
    enqueue_planned(control, queue, run_id, reused_plan).await
}

/// Whether the run's plan is stored already; a cancelled run is refused.
async fn stored_run(control: &ControlTable, run_id: &str) -> Result<bool, ProducerError> {
    let existing = control.get_run(run_id).await?;
    if let Some(run) = existing.as_ref().filter(|r| r.state == RunState::Cancelled) {
        return Err(ProducerError::Cancelled {
            run_id: run_id.to_string(),
            detail: run
                .cancelled
                .as_ref()
                .map(|c| format!(" by {} at {}: {}", c.by, c.at, c.why))
                .unwrap_or_default(),
        });
    }
    Ok(existing.is_some())
}

/// Stores a plan without problems as the run's, before anything is enqueued.
async fn save_plan(
    cfg: &BackfillConfig,
    control: &ControlTable,
    run_id: &str,
    plan: &Plan,
) -> Result<(), ProducerError> {
    {
        let problems = plan.problems();
        if !problems.is_empty() {
            return Err(ProducerError::Problems(problems));
        }
        let jobs: Vec<JobMessage> = plan.jobs().cloned().collect();
        let run_plan = RunPlan {
            tables: plan
                .tables
                .iter()
                .map(|t| RunTable {
                    source: t.source.clone(),
                    target: t.target.clone(),
                    jobs: t.jobs.len() as u64,
                    estimated_rows: t.estimated_rows,
                    wcu_per_item: t.wcu_per_item,
                    // The partitions of a given budget; a fraction of
                    // provisioned capacity is not read here.
                    key_ceiling_wcu: t.key_reach(
                        cfg.capacity.key_wcu_per_sec,
                        cfg.table(&t.source).and_then(|c| c.write_budget_wcu),
                    ),
                })
                .collect(),
            // JSON, which tools read back; the source URL's password is
            // redacted by `Secret`'s own serialization. Plain owned data
            // with string keys always serializes.
            config: serde_json::to_string(cfg).ok(),
        };
        control.save_plan(run_id, &jobs, &run_plan).await?;
        tracing::info!(run_id, jobs = jobs.len(), "plan stored");
    }
    Ok(())
}

/// Enqueues, in shuffled order, every job of the stored plan not yet enqueued.
async fn enqueue_planned(
    control: &ControlTable,
    queue: &JobQueue,
    run_id: &str,
    reused_plan: bool,
) -> Result<ProduceReport, ProducerError> {
    let records = control.jobs(run_id).await?;
    let jobs_total = records.len();
    // The jobs about to be enqueued must be the jobs the plan stored: a
    // plan of 52 jobs read back as 0 is a broken store, not "nothing to do".
    let planned = match control.get_run(run_id).await? {
        Some(run) => run.jobs_planned,
        None => jobs_total as u64,
    };
    if planned != jobs_total as u64 {
        return Err(ProducerError::PlanMismatch {
            run_id: run_id.to_string(),
            planned,
            found: jobs_total,
        });
    }
    let mut pending: Vec<JobMessage> = records
        .into_iter()
        .filter(|r| r.state == JobState::Planned)
        .map(|r| r.job)
        .collect();
    let already_enqueued = jobs_total - pending.len();
    // Shuffled so that the fleet spreads over tables and key ranges (and
    // so over DynamoDB partitions) instead of walking each table in order.
    pending.shuffle(&mut rand::rng());
    control.set_run_state(run_id, RunState::Producing).await?;
    for chunk in pending.chunks(backfill_queue::MAX_SEND_BATCH) {
        queue.send_jobs(chunk).await?;
        let ids: Vec<&str> = chunk.iter().map(|j| j.job_id.as_str()).collect();
        control.mark_queued(run_id, &ids).await?;
    }
    control.set_run_state(run_id, RunState::Produced).await?;
    tracing::info!(
        run_id,
        enqueued = pending.len(),
        already_enqueued,
        "produced"
    );
    Ok(ProduceReport {
        run_id: run_id.to_string(),
        jobs_total,
        enqueued: pending.len(),
        already_enqueued,
        reused_plan,
    })
}
