//! Where a run stands, for `backfill status`: per table, jobs by state,
//! rows copied against the planning estimate, the copy rate, the fleet's
//! write capacity against the table's budget (and against what its key
//! layout can reach), what throttles it, and an ETA.
//!
//! Everything comes from what the fleet already writes: the control table's
//! run and job records (states, checkpoints, rows of finished jobs, the
//! plan's key-layout ceiling), the workers' heartbeats (each carries its
//! WCU rate, throttles and hot keys per target), and the queues'
//! approximate counts. Nothing is counted in Postgres or DynamoDB,
//! so `status --watch` costs a few reads however big the tables are.
//! [`summarize`] is pure so that its arithmetic is unit-tested.

use std::collections::HashMap;
use std::time::SystemTime;

use backfill_config::BackfillConfig;
use backfill_control::{
    Annotation, ControlError, ControlTable, JobRecord, JobState, RunRecord, RunState,
    VerifyFindings, WorkerBeat,
};
use backfill_queue::{JobQueue, QueueDepth};
use serde::Serialize;

mod load;

pub use load::{HotKeyStatus, Throttles, HOT_KEYS};

/// Why status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("control table {table} holds no run; start one with `backfill produce --run <id>`")]
    NoRuns { table: String },
    #[error("control table {table} has no run {run_id} (`backfill status` without --run shows the newest)")]
    NoSuchRun { table: String, run_id: String },
}

/// Jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub total: u64,
    pub done: u64,
    pub running: u64,
    pub failed: u64,
    /// Planned or on the queue, not yet taken.
    pub queued: u64,
    pub cancelled: u64,
    /// Recorded `running` by a worker that is no longer live.
    pub orphaned: u64,
}

impl JobCounts {
    /// Nothing left that will move by itself: no job queued, running or
    /// orphaned, and some failed (they wait for a `dlq replay`).
    pub fn is_stalled(&self) -> bool {
        self.failed > 0 && self.queued == 0 && self.running == 0 && self.orphaned == 0
    }
}

impl JobCounts {
    /// Counts a job; a `running` job whose worker is not live (`live`
    /// holds the live workers' ids) is `orphaned`: its message comes back
    /// after its visibility timeout and another worker resumes it.
    fn add(&mut self, j: &JobRecord, live: &std::collections::HashSet<&str>) {
        let orphaned =
            j.state == JobState::Running && !j.worker.as_deref().is_some_and(|w| live.contains(w));
        if orphaned {
            self.total += 1;
            self.orphaned += 1;
            return;
        }
        self.add_state(j.state);
    }

    fn add_state(&mut self, state: JobState) {
        self.total += 1;
        match state {
            JobState::Done => self.done += 1,
            JobState::Running => self.running += 1,
            JobState::Failed => self.failed += 1,
            JobState::Planned | JobState::Queued => self.queued += 1,
            JobState::Cancelled => self.cancelled += 1,
        }
    }
}

/// One table of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableStatus {
    pub source: String,
    pub target: String,
    pub jobs: JobCounts,
    /// Rows of finished jobs plus the checkpointed rows of the others.
    pub rows_copied: u64,
    /// The planning sample's estimate, when the run stored one.
    pub estimated_rows: Option<u64>,
    /// Rows per second since the table's first job started (to its last
    /// finish, once every job is done).
    pub rows_per_sec: Option<f64>,
    /// WCU per second the live workers report writing to the target.
    pub wcu_per_sec: f64,
    /// The fleet's write budget for the target, when one is set.
    pub budget_wcu: Option<f64>,
    /// The most WCU/s the table's key layout lets the copy write, as
    /// planned: few partition-key values, or values spread unevenly over
    /// the partitions of a given budget (`None`: the catalog did not know
    /// its partition-key values, or the run was planned before this was
    /// stored).
    pub key_ceiling_wcu: Option<f64>,
    /// Throttles by reason, summed over the live workers.
    pub throttles: Throttles,
    /// The most throttled partition-key values, merged over the live
    /// workers (at most [`HOT_KEYS`]).
    pub hot_keys: Vec<HotKeyStatus>,
    /// Seconds left at the current rate; 0 when every job is done.
    pub eta_secs: Option<f64>,
    /// Rows of finished jobs that could not become items (`rejects list`).
    pub rejects: u64,
}

impl TableStatus {
    /// The key layout's ceiling when it is below the budget: the copy
    /// cannot reach its budget however many workers write, and a rate
    /// short of the budget is the layout's doing, not the fleet's.
    pub fn key_layout_limit(&self) -> Option<f64> {
        let (ceiling, budget) = (self.key_ceiling_wcu?, self.budget_wcu?);
        (ceiling < budget).then_some(ceiling)
    }
}

/// A job that failed, for the operator to look at first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedJob {
    pub table: String,
    pub job_id: String,
    pub range: String,
    pub attempts: u64,
    pub error: String,
    pub at: Option<String>,
}

/// Approximate queue counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl From<QueueDepth> for QueueCounts {
    fn from(d: QueueDepth) -> Self {
        QueueCounts {
            visible: d.visible,
            in_flight: d.in_flight,
            delayed: d.delayed,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    pub run_id: String,
    pub state: RunState,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub cancelled: Option<Annotation>,
    pub jobs: JobCounts,
    pub rows_copied: u64,
    pub estimated_rows: Option<u64>,
    pub rows_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
    pub tables: Vec<TableStatus>,
    pub workers_live: usize,
    pub workers_busy: usize,
    /// The job queue and the DLQ (shared by every run); `None` when unreadable.
    pub queue: Option<QueueCounts>,
    pub dlq: Option<QueueCounts>,
    /// The most recent failures (at most five).
    pub failures: Vec<FailedJob>,
    /// A verification run's findings so far, summed over its done jobs
    /// (`verify report` lists them by key); `None` for a copy run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyFindings>,
}

impl RunStatus {
    /// Whether the run has ended (finished or cancelled).
    pub fn is_over(&self) -> bool {
        self.state.has_ended()
    }
}

fn parse_time(t: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok()
}

fn secs_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Computes a run's status from its records. `budgets` maps target tables
/// to their fleet budget (WCU/s).
pub fn summarize(
    run: &RunRecord,
    jobs: &[JobRecord],
    fleet: &[WorkerBeat],
    budgets: &HashMap<String, f64>,
    now: SystemTime,
) -> RunStatus {
    // Tables in plan order; jobs of tables the plan did not list (enqueued
    // by hand) get their own entry.
    let mut order: Vec<(String, String)> = run
        .tables
        .iter()
        .map(|t| (t.source.clone(), t.target.clone()))
        .collect();
    for j in jobs {
        if !order.iter().any(|(s, _)| *s == j.job.table) {
            order.push((j.job.table.clone(), String::new()));
        }
    }
    let live: std::collections::HashSet<&str> = fleet.iter().map(|w| w.worker.as_str()).collect();
    let mut tables = Vec::new();
    for (source, target) in order {
        let mine: Vec<&JobRecord> = jobs.iter().filter(|j| j.job.table == source).collect();
        let mut counts = JobCounts::default();
        let mut rows = 0;
        let mut rejects = 0;
        let mut first_start: Option<SystemTime> = None;
        let mut last_finish: Option<SystemTime> = None;
        for j in &mine {
            counts.add(j, &live);
            rejects += j.rejects;
            rows += if j.state == JobState::Done {
                j.rows
            } else {
                j.checkpoint_rows
            };
            if let Some(t) = j.started_at.as_deref().and_then(parse_time) {
                first_start = Some(first_start.map_or(t, |f| f.min(t)));
            }
            if let Some(t) = j.finished_at.as_deref().and_then(parse_time) {
                last_finish = Some(last_finish.map_or(t, |f| f.max(t)));
            }
        }
        let all_done = counts.total > 0 && counts.done == counts.total;
        let end = if all_done {
            last_finish.unwrap_or(now)
        } else {
            now
        };
        let elapsed = first_start.map(|s| secs_between(s, end));
        let rows_per_sec = elapsed.filter(|e| *e > 0.0).map(|e| rows as f64 / e);
        let planned = run.tables.iter().find(|t| t.source == source);
        let estimated_rows = planned.map(|t| t.estimated_rows);
        let eta_secs = if all_done {
            Some(0.0)
        } else if counts.is_stalled() {
            // Nothing will finish the table until its failed jobs are replayed.
            None
        } else {
            eta(rows, estimated_rows, &counts, elapsed)
        };
        // A fold from +0, not `sum()`, whose empty total is -0 and prints so.
        let wcu_per_sec = fleet
            .iter()
            .filter_map(|w| w.wcu_per_sec.get(&target))
            .fold(0.0, |a, b| a + b);
        tables.push(TableStatus {
            budget_wcu: budgets.get(&target).copied(),
            key_ceiling_wcu: planned.and_then(|t| t.key_ceiling_wcu),
            throttles: load::throttles(fleet, &target),
            hot_keys: load::hot_keys(fleet, &target),
            source,
            target,
            jobs: counts,
            rows_copied: rows,
            estimated_rows,
            rows_per_sec,
            wcu_per_sec,
            eta_secs,
            rejects,
        });
    }
    let mut total = JobCounts::default();
    for j in jobs {
        total.add(j, &live);
    }
    let rows_copied = tables.iter().map(|t| t.rows_copied).sum();
    let estimated_rows = (!run.tables.is_empty())
        .then(|| tables.iter().filter_map(|t| t.estimated_rows).sum::<u64>());
    let rates: Vec<f64> = tables.iter().filter_map(|t| t.rows_per_sec).collect();
    let rows_per_sec = (!rates.is_empty()).then(|| rates.iter().sum());
    // Tables are copied side by side: the run ends with its slowest table.
    let eta_secs = tables
        .iter()
        .map(|t| t.eta_secs)
        .try_fold(0.0f64, |acc, e| e.map(|e| acc.max(e)));
    let mut failures: Vec<FailedJob> = jobs
        .iter()
        .filter(|j| j.state == JobState::Failed || j.last_error.is_some())
        .filter(|j| j.state != JobState::Done)
        // A job replayed since its error is queued again: that error is
        // no longer a failure.
        .filter(|j| {
            j.state == JobState::Failed
                || match (&j.last_replay_at, &j.last_error_at) {
                    (Some(replay), Some(error)) => replay < error,
                    (Some(_), None) => false,
                    _ => true,
                }
        })
        .map(|j| FailedJob {
            table: j.job.table.clone(),
            job_id: j.job.job_id.clone(),
            range: j.job.range.to_string(),
            attempts: j.attempts,
            error: j.last_error.clone().unwrap_or_default(),
            at: j.last_error_at.clone(),
        })
        .collect();
    failures.sort_by(|a, b| b.at.cmp(&a.at));
    failures.truncate(5);
    RunStatus {
        run_id: run.run_id.clone(),
        state: run.state,
        created_at: run.created_at.clone(),
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        cancelled: run.cancelled.clone(),
        jobs: total,
        rows_copied,
        estimated_rows,
        rows_per_sec,
        eta_secs,
        tables,
        workers_live: fleet.len(),
        // A heartbeat says "busy" until the worker's next beat, so when the
        // run has ended its last jobs' workers would still show busy; none
        // is busy with an ended run.
        workers_busy: if run.is_active() {
            fleet.iter().filter(|w| w.busy).count()
        } else {
            0
        },
        queue: None,
        dlq: None,
        failures,
        verification: None,
    }
}

/// Seconds left: by rows while the copy is under the planning estimate,
/// by finished jobs once the estimate (a sample's) has been passed.
fn eta(rows: u64, estimated: Option<u64>, counts: &JobCounts, elapsed: Option<f64>) -> Option<f64> {
    let elapsed = elapsed.filter(|e| *e > 0.0)?;
    let live = counts.total - counts.cancelled;
    let fraction = match estimated {
        Some(est) if est > 0 && rows < est => rows as f64 / est as f64,
        _ if live > 0 => counts.done as f64 / live as f64,
        _ => return None,
    };
    (fraction > 0.0).then(|| elapsed * (1.0 - fraction) / fraction)
}

/// Reads a run's status: `run_id`, or the newest run when `None`.
pub async fn gather(
    cfg: &BackfillConfig,
    control: &ControlTable,
    dynamodb: &aws_sdk_dynamodb::Client,
    queue: Option<&JobQueue>,
    run_id: Option<&str>,
) -> Result<RunStatus, StatusError> {
    let run = match run_id {
        Some(id) => control
            .get_run(id)
            .await?
            .ok_or_else(|| StatusError::NoSuchRun {
                table: control.table_name().to_string(),
                run_id: id.to_string(),
            })?,
        None => control
            .runs()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StatusError::NoRuns {
                table: control.table_name().to_string(),
            })?,
    };
    let jobs = control.jobs(&run.run_id).await?;
    let fleet = control.fleet(cfg.capacity.worker_expiry_secs).await?;
    let mut budgets = HashMap::new();
    for t in &cfg.tables {
        // A budget that cannot be read is shown as unknown, not an error:
        // status must work while DynamoDB is unhappy.
        if let Ok(Some(b)) = backfill_dynamo::write_budget(dynamodb, t).await {
            budgets.insert(t.target.clone(), b);
        }
    }
    let mut status = summarize(&run, &jobs, &fleet, &budgets, SystemTime::now());
    if jobs.iter().any(|j| !j.job.task.is_copy()) {
        status.verification = Some(sum_findings(&control.findings(&run.run_id).await?));
    }
    if let Some(q) = queue {
        status.queue = q.depth().await.ok().map(Into::into);
        status.dlq = q.depth_of(q.dlq_url()).await.ok().map(Into::into);
    }
    Ok(status)
}

/// Every job's findings added up (no listed lines: `verify report` has them).
pub fn sum_findings(all: &[VerifyFindings]) -> VerifyFindings {
    let mut s = VerifyFindings::default();
    for f in all {
        s.rows_checked += f.rows_checked;
        s.items_scanned += f.items_scanned;
        s.newer_in_target += f.newer_in_target;
        s.missing += f.missing;
        s.extra += f.extra;
        s.different += f.different;
        s.collisions += f.collisions;
        s.unmappable += f.unmappable;
        s.count_mismatches += f.count_mismatches;
    }
    s
}

#[cfg(test)]
mod tests;
