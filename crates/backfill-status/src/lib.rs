//! Where a run stands, for `backfill status`: per table, jobs by state,
//! rows copied against the planning estimate, the copy rate, the fleet's
//! write capacity against the table's budget, and an ETA.
//!
//! Everything comes from what the fleet already writes: the control table's
//! run and job records (states, checkpoints, rows of finished jobs), the
//! workers' heartbeats (each carries its WCU rate per target), and the
//! queues' approximate counts. Nothing is counted in Postgres or DynamoDB,
//! so `status --watch` costs a few reads however big the tables are.
//! [`summarize`] is pure so that its arithmetic is unit-tested.

use std::collections::HashMap;
use std::time::SystemTime;

use backfill_config::BackfillConfig;
use backfill_control::{
    Annotation, ControlError, ControlTable, JobRecord, JobState, RunRecord, RunState, WorkerBeat,
};
use backfill_queue::{JobQueue, QueueDepth};
use serde::Serialize;

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
    /// Seconds left at the current rate; 0 when every job is done.
    pub eta_secs: Option<f64>,
    /// Rows of finished jobs that could not become items (`rejects list`).
    pub rejects: u64,
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
        let estimated_rows = run
            .tables
            .iter()
            .find(|t| t.source == source)
            .map(|t| t.estimated_rows);
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
    if let Some(q) = queue {
        status.queue = q.depth().await.ok().map(Into::into);
        status.dlq = q.depth_of(q.dlq_url()).await.ok().map(Into::into);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_control::RunTable;
    use backfill_job::{JobMessage, KeyRange};
    use std::time::Duration;

    fn job(table: &str, id: &str) -> JobMessage {
        JobMessage {
            version: backfill_job::MESSAGE_VERSION,
            run_id: "r".into(),
            job_id: id.into(),
            table: table.into(),
            key_columns: vec!["id".into()],
            range: KeyRange::all(),
        }
    }

    fn rec(table: &str, id: &str, state: JobState, rows: u64, ck: u64) -> JobRecord {
        JobRecord {
            job: job(table, id),
            state,
            attempts: 1,
            rows,
            digest: None,
            last_error: None,
            last_error_at: None,
            worker: None,
            checkpoint_rows: ck,
            started_at: Some("2026-11-25T10:00:00.000Z".into()),
            finished_at: (state == JobState::Done).then(|| "2026-11-25T10:01:40.000Z".into()),
            updated_at: None,
            replays: 0,
            last_replay_at: None,
            rejects: 0,
        }
    }

    fn run(tables: Vec<RunTable>) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            state: RunState::Produced,
            jobs_planned: 4,
            jobs_done: 0,
            rows_copied: 0,
            created_at: "2026-11-25T09:59:00.000Z".into(),
            started_at: None,
            finished_at: None,
            cancelled: None,
            tables,
            config: None,
        }
    }

    fn at(secs_after_ten: u64) -> SystemTime {
        humantime::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
            + Duration::from_secs(secs_after_ten)
    }

    #[test]
    fn counts_rows_rate_capacity_and_eta_per_table() {
        let run = run(vec![RunTable {
            source: "public.t".into(),
            target: "T".into(),
            jobs: 4,
            estimated_rows: 1000,
            wcu_per_item: 1.0,
        }]);
        let mut running = rec("public.t", "2", JobState::Running, 0, 150);
        running.worker = Some("a".into());
        let jobs = vec![
            rec("public.t", "1", JobState::Done, 250, 0),
            running,
            rec("public.t", "3", JobState::Queued, 0, 0),
            rec("public.t", "4", JobState::Failed, 0, 0),
        ];
        let fleet = vec![
            WorkerBeat {
                worker: "a".into(),
                busy: true,
                heartbeat_ms: 0,
                wcu_per_sec: HashMap::from([("T".to_string(), 30.0)]),
            },
            WorkerBeat {
                worker: "b".into(),
                busy: false,
                heartbeat_ms: 0,
                wcu_per_sec: HashMap::from([("other".to_string(), 99.0)]),
            },
        ];
        let budgets = HashMap::from([("T".to_string(), 100.0)]);
        let s = summarize(&run, &jobs, &fleet, &budgets, at(200));
        let t = &s.tables[0];
        assert_eq!(
            t.jobs,
            JobCounts {
                total: 4,
                done: 1,
                running: 1,
                failed: 1,
                queued: 1,
                cancelled: 0,
                orphaned: 0,
            }
        );
        assert_eq!(t.rows_copied, 400, "done rows plus checkpointed rows");
        assert_eq!(t.rows_per_sec, Some(2.0));
        assert_eq!(t.wcu_per_sec, 30.0, "only heartbeats for this target");
        assert_eq!(t.budget_wcu, Some(100.0));
        // 40% of the estimate in 200 s: 300 s more.
        assert_eq!(t.eta_secs, Some(300.0));
        assert_eq!((s.workers_live, s.workers_busy), (2, 1));
        let failed: Vec<&str> = s.failures.iter().map(|f| f.job_id.as_str()).collect();
        assert_eq!(
            failed,
            ["4"],
            "the failed job, even before its error is recorded"
        );
    }

    #[test]
    fn a_finished_table_has_no_time_left_and_its_rate_ends_at_its_last_job() {
        let run = run(vec![]);
        let jobs = vec![
            rec("public.t", "1", JobState::Done, 500, 0),
            rec("public.t", "2", JobState::Done, 500, 0),
        ];
        let s = summarize(&run, &jobs, &[], &HashMap::new(), at(10_000));
        let t = &s.tables[0];
        assert_eq!(t.eta_secs, Some(0.0));
        assert_eq!(t.rows_per_sec, Some(10.0), "1000 rows over 100 s");
        assert!(
            t.wcu_per_sec == 0.0 && t.wcu_per_sec.is_sign_positive(),
            "no heartbeat is +0 WCU/s, never printed as -0"
        );
        assert_eq!(s.estimated_rows, None, "no plan tables stored");
        assert_eq!(s.eta_secs, Some(0.0));
    }

    /// A job `running` on a worker that is gone is `orphaned`, not running;
    /// a run with only failed jobs left has no ETA; a replayed job's old
    /// error is not listed as a failure.
    #[test]
    fn orphans_stalls_and_replays_are_told_apart() {
        let run = run(vec![]);
        let mut orphan = rec("public.t", "1", JobState::Running, 0, 10);
        orphan.worker = Some("gone".into());
        let mut replayed = rec("public.t", "2", JobState::Queued, 0, 0);
        replayed.last_error = Some("was dead".into());
        replayed.last_error_at = Some("2026-11-25T10:00:01.000Z".into());
        replayed.last_replay_at = Some("2026-11-25T10:00:05.000Z".into());
        let jobs = vec![orphan, replayed, rec("public.t", "3", JobState::Done, 5, 0)];
        let fleet = vec![WorkerBeat {
            worker: "alive".into(),
            busy: false,
            heartbeat_ms: 0,
            wcu_per_sec: HashMap::new(),
        }];
        let s = summarize(&run, &jobs, &fleet, &HashMap::new(), at(100));
        assert_eq!((s.jobs.running, s.jobs.orphaned), (0, 1));
        assert!(s.failures.is_empty(), "{:?}", s.failures);

        let jobs = vec![
            rec("public.t", "1", JobState::Failed, 0, 0),
            rec("public.t", "2", JobState::Done, 500, 0),
        ];
        let s = summarize(&run, &jobs, &fleet, &HashMap::new(), at(100));
        assert!(s.jobs.is_stalled());
        // An ended run's fleet line is current: no worker busy with it,
        // even while the last heartbeats still say busy.
        let mut ended = run.clone();
        ended.state = RunState::Finished;
        let busy = vec![WorkerBeat {
            busy: true,
            ..fleet[0].clone()
        }];
        assert_eq!(
            summarize(&run, &jobs, &busy, &HashMap::new(), at(100)).workers_busy,
            1
        );
        assert_eq!(
            summarize(&ended, &jobs, &busy, &HashMap::new(), at(100)).workers_busy,
            0
        );
        assert_eq!(s.tables[0].eta_secs, None, "no ETA while nothing can move");
        assert_eq!(s.eta_secs, None);
    }

    #[test]
    fn past_the_estimate_the_eta_follows_finished_jobs() {
        let counts = JobCounts {
            total: 4,
            done: 3,
            queued: 1,
            ..Default::default()
        };
        // 1500 rows copied of an estimate of 1000: jobs say 3 of 4 in 300 s.
        assert_eq!(eta(1500, Some(1000), &counts, Some(300.0)), Some(100.0));
        assert_eq!(eta(0, Some(1000), &counts, None), None, "not started");
    }

    #[test]
    fn failures_are_listed_newest_first() {
        let run = run(vec![]);
        let mut a = rec("public.t", "1", JobState::Failed, 0, 0);
        a.last_error = Some("old".into());
        a.last_error_at = Some("2026-11-25T10:00:01.000Z".into());
        let mut b = rec("public.t", "2", JobState::Queued, 0, 0);
        b.last_error = Some("new, will be retried".into());
        b.last_error_at = Some("2026-11-25T10:00:09.000Z".into());
        let s = summarize(&run, &[a, b], &[], &HashMap::new(), at(10));
        let errors: Vec<&str> = s.failures.iter().map(|f| f.error.as_str()).collect();
        assert_eq!(errors, ["new, will be retried", "old"]);
    }
}
