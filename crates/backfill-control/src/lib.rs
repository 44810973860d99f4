//! The control table: each run and each of its jobs, in one DynamoDB table
//! (`pk` = `RUN#<run>`, `sk` = `RUN` or `JOB#<job>`).
//!
//! It is what makes the producer idempotent (a run's plan is stored once and
//! re-producing enqueues only what was never enqueued) and what lets two
//! workers that received the same message (SQS delivers at least once) agree
//! that a finished job stays finished: state changes are conditional writes,
//! never transactions (the emulator has none, and none are needed).

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use backfill_aws::{describe, is_retryable};
use backfill_dynamo::{DynamoSink, Item, SinkError};
use backfill_job::JobMessage;

mod accept;
mod rejects;
mod replay;
pub use accept::{check_planned, Rejection};
pub use rejects::{RejectProblem, RejectRecord};
pub use replay::{AuditAction, AuditRecord, ReplayReset, DLQ_AUDIT_PK};

/// Why a control-table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control table {table}: {op} failed: {message}")]
    Service {
        table: String,
        op: &'static str,
        message: String,
        retryable: bool,
    },
    #[error("control table {table}: run {run_id}: record {sk} is corrupt: {reason}")]
    Corrupt {
        table: String,
        run_id: String,
        sk: String,
        reason: String,
    },
    #[error(transparent)]
    Write(#[from] SinkError),
    #[error("job {job_id} was claimed by another worker (a redelivery); this worker stops it")]
    Superseded { job_id: String },
    #[error("run {run_id} was cancelled: job {job_id} is dropped")]
    Cancelled { run_id: String, job_id: String },
    #[error("control table {table}: run {run_id} does not exist")]
    NoSuchRun { table: String, run_id: String },
    #[error("run {run_id} is being produced by another producer (its plan was stored meanwhile); `backfill status --run {run_id}` shows it, and producing it again later enqueues only what is left")]
    RunBeingProduced { run_id: String },
    #[error("control table {table}: run {run_id} has no job {job_id}")]
    NoSuchJob {
        table: String,
        run_id: String,
        job_id: String,
    },
}

impl ControlError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ControlError::Service { retryable, .. } => *retryable,
            ControlError::Corrupt { .. }
            | ControlError::Superseded { .. }
            | ControlError::Cancelled { .. }
            | ControlError::NoSuchRun { .. }
            | ControlError::RunBeingProduced { .. }
            | ControlError::NoSuchJob { .. } => false,
            ControlError::Write(e) => e.is_retryable(),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Stored with its run's plan, not yet on the queue.
    Planned,
    /// Sent to the queue.
    Queued,
    /// A worker copies it.
    Running,
    /// Every row written; never regressed.
    Done,
    /// Sent to the DLQ.
    Failed,
    /// Its run was cancelled before it finished; never taken again.
    Cancelled,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Planned => "planned",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => JobState::Planned,
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

/// A job as the control table knows it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub job: JobMessage,
    pub state: JobState,
    pub attempts: u64,
    pub rows: u64,
    /// Digest of the job's items (hex), once done.
    pub digest: Option<String>,
    pub last_error: Option<String>,
    /// When the last error was recorded (RFC 3339).
    pub last_error_at: Option<String>,
    /// The worker that claimed it last.
    pub worker: Option<String>,
    /// Rows its checkpoint covers (0 without one).
    pub checkpoint_rows: u64,
    /// First claimed, finished and last changed (RFC 3339).
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
    /// Times an operator replayed it from the DLQ.
    pub replays: u64,
    /// When it was last replayed (RFC 3339).
    pub last_replay_at: Option<String>,
    /// Its rows that could not become items and are recorded as rejects
    /// (not yet written by `rejects retry`).
    pub rejects: u64,
}

impl JobRecord {
    /// The state as operators see it: a done job with rejects left is
    /// `done_with_rejects` (stored as `done` with a count, so every rule
    /// that a finished job stays finished holds for it unchanged).
    pub fn state_label(&self) -> &'static str {
        if self.state == JobState::Done && self.rejects > 0 {
            "done_with_rejects"
        } else {
            self.state.as_str()
        }
    }
}

/// A run as the control table knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    /// `planned`, `producing`, `produced`, then `finished` or `cancelled`.
    pub state: String,
    pub jobs_planned: u64,
    /// Jobs finished so far (each counted once, at its first finish).
    pub jobs_done: u64,
    /// Rows of the finished jobs.
    pub rows_copied: u64,
    pub created_at: String,
    /// When the producer first started enqueueing it.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Who cancelled it, when and why.
    pub cancelled: Option<Annotation>,
    /// The tables of the run as planned.
    pub tables: Vec<RunTable>,
    /// The effective config the run was planned with (secrets redacted).
    pub config: Option<String>,
}

impl RunRecord {
    /// Whether workers may still take its jobs.
    pub fn is_active(&self) -> bool {
        !matches!(self.state.as_str(), RUN_FINISHED | RUN_CANCELLED)
    }
}

/// Who did something to a run or a job, when and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Annotation {
    pub by: String,
    pub at: String,
    pub why: String,
}

/// A table of a run as planned: what status measures progress against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunTable {
    pub source: String,
    pub target: String,
    pub jobs: u64,
    /// Rows estimated from the planning sample.
    pub estimated_rows: u64,
    /// Mean write capacity units one item costs (from the planning sample).
    pub wcu_per_item: f64,
}

/// What a run is planned with, besides its jobs.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    pub tables: Vec<RunTable>,
    pub config: Option<String>,
}

/// Run states that end a run.
pub const RUN_FINISHED: &str = "finished";
pub const RUN_CANCELLED: &str = "cancelled";

/// What a worker learns when it claims a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The job is this worker's to copy, from its checkpoint if it has one.
    Started {
        attempts: u64,
        checkpoint: Option<Checkpoint>,
    },
    /// Another delivery already finished it: acknowledge and skip.
    AlreadyDone,
    /// Its run was cancelled: acknowledge and drop.
    Cancelled,
}

/// How far a job got: every row up to `last_key` is written (and verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_key: backfill_job::KeyTuple,
    pub rows: u64,
    /// The digest so far: its item count and 128-bit sum.
    pub digest_count: u64,
    pub digest_sum: u128,
}

/// Access to the control table.
#[derive(Debug, Clone)]
pub struct ControlTable {
    client: Client,
    sink: DynamoSink,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

const RUN_SK: &str = "RUN";

fn job_sk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

impl ControlTable {
    pub fn new(sink: DynamoSink, table: impl Into<String>) -> Self {
        ControlTable {
            client: sink.client().clone(),
            sink,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Every item a query finds, page after page (the SDK's paginator). A
    /// page that fails retryably reads the whole listing again: these are
    /// one run's records, and a listing half read is no answer.
    pub(crate) async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, ControlError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            let mut pages = query.clone().into_paginator().items().send();
            async move {
                let mut out = Vec::new();
                while let Some(item) = pages.next().await {
                    out.push(item?);
                }
                Ok(out)
            }
        })
        .await
        .map_err(|e| self.err("Query", &e))
    }

    fn err<E, R>(
        &self,
        op: &'static str,
        e: &aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> ControlError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + backfill_aws::HasStatus,
    {
        ControlError::Service {
            table: self.table.clone(),
            op,
            message: describe(e),
            retryable: is_retryable(e),
        }
    }

    /// The run's record, if the run was planned before.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, ControlError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(run_id)))
                .key("sk", s(RUN_SK))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| self.err("GetItem", &e))?;
        resp.item
            .map(|item| self.run_record(run_id, &item))
            .transpose()
    }

    fn run_record(&self, run_id: &str, item: &Item) -> Result<RunRecord, ControlError> {
        let corrupt = |reason: String| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: run_id.to_string(),
            sk: RUN_SK.to_string(),
            reason,
        };
        let tables = match get_s(item, "tables") {
            None => Vec::new(),
            Some(t) => serde_json::from_str(&t).map_err(|e| corrupt(format!("tables: {e}")))?,
        };
        let cancelled = get_s(item, "cancelled_at").map(|at| Annotation {
            at,
            by: get_s(item, "cancelled_by").unwrap_or_default(),
            why: get_s(item, "cancelled_why").unwrap_or_default(),
        });
        Ok(RunRecord {
            run_id: run_id.to_string(),
            state: get_s(item, "state").unwrap_or_default(),
            jobs_planned: get_n(item, "jobs_planned"),
            jobs_done: get_n(item, "jobs_done"),
            rows_copied: get_n(item, "rows_copied"),
            created_at: get_s(item, "created_at").unwrap_or_default(),
            started_at: get_s(item, "started_at"),
            finished_at: get_s(item, "finished_at"),
            cancelled,
            tables,
            config: get_s(item, "config"),
        })
    }

    /// Every run in the table, newest first.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, ControlError> {
        let mut out = Vec::new();
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :run")
            .expression_attribute_values(":run", s(RUN_SK))
            .consistent_read(true);
        let items = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            let mut pages = scan.clone().into_paginator().items().send();
            async move {
                let mut items = Vec::new();
                while let Some(item) = pages.next().await {
                    items.push(item?);
                }
                Ok(items)
            }
        })
        .await
        .map_err(|e| self.err("Scan", &e))?;
        for item in items {
            let pk = get_s(&item, "pk").unwrap_or_default();
            if let Some(run_id) = pk.strip_prefix("RUN#") {
                out.push(self.run_record(run_id, &item)?);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    /// Stores a run's plan: every job (state `planned`), then the run record.
    ///
    /// The run record is written last, so a run record means a complete
    /// plan; a producer that died before writing it left only unqueued job
    /// records, which [`ControlTable::save_plan`] replaces on the next try.
    pub async fn save_plan(
        &self,
        run_id: &str,
        jobs: &[JobMessage],
        plan: &RunPlan,
    ) -> Result<(), ControlError> {
        let tables = serde_json::to_string(&plan.tables).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: run_id.to_string(),
            sk: RUN_SK.to_string(),
            reason: format!("tables: {e}"),
        })?;
        // Another producer may have stored this run while this one planned
        // it: its job records must not be deleted under it.
        if self.get_run(run_id).await?.is_some() {
            return Err(ControlError::RunBeingProduced {
                run_id: run_id.to_string(),
            });
        }
        self.delete_jobs(run_id).await?;
        let items: Vec<Item> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                HashMap::from([
                    ("pk".to_string(), s(run_pk(run_id))),
                    ("sk".to_string(), s(job_sk(&j.job_id))),
                    ("state".to_string(), s(JobState::Planned.as_str())),
                    ("table".to_string(), s(j.table.clone())),
                    ("ordinal".to_string(), AttributeValue::N(i.to_string())),
                    ("body".to_string(), s(j.to_body())),
                    ("updated_at".to_string(), s(now())),
                ])
            })
            .collect();
        self.sink.put_items(&self.table, items, 4).await?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(run_pk(run_id)))
            .item("sk", s(RUN_SK))
            .item("state", s("planned"))
            .item("jobs_planned", AttributeValue::N(jobs.len().to_string()))
            .item("jobs_done", AttributeValue::N("0".into()))
            .item("rows_copied", AttributeValue::N("0".into()))
            .item("tables", s(tables))
            .item("created_at", s(now()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(c) = &plan.config {
            put = put.item("config", s(c.clone()));
        }
        match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || put.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(ControlError::RunBeingProduced {
                run_id: run_id.to_string(),
            }),
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    async fn delete_jobs(&self, run_id: &str) -> Result<(), ControlError> {
        for rec in self.jobs(run_id).await? {
            backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(run_pk(run_id)))
                    .key("sk", s(job_sk(&rec.job.job_id)))
                    .send()
            })
            .await
            .map_err(|e| self.err("DeleteItem", &e))?;
        }
        Ok(())
    }

    /// Every job of a run, in plan order.
    pub async fn jobs(&self, run_id: &str) -> Result<Vec<JobRecord>, ControlError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :job)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":job", s("JOB#"))
            .consistent_read(true);
        let mut out = Vec::new();
        for item in self.query_all(query).await? {
            out.push(self.job_record(run_id, &item)?);
        }
        out.sort_by_key(|(ordinal, _)| *ordinal);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    fn job_record(&self, run_id: &str, item: &Item) -> Result<(u64, JobRecord), ControlError> {
        let sk = get_s(item, "sk").unwrap_or_default();
        let corrupt = |reason: String| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: run_id.to_string(),
            sk: sk.clone(),
            reason,
        };
        let body = get_s(item, "body").ok_or_else(|| corrupt("no body".into()))?;
        let job = JobMessage::from_body(&body).map_err(|e| corrupt(e.to_string()))?;
        let state_text = get_s(item, "state").unwrap_or_default();
        let state = JobState::parse(&state_text)
            .ok_or_else(|| corrupt(format!("unknown state {state_text:?}")))?;
        Ok((
            get_n(item, "ordinal"),
            JobRecord {
                job,
                state,
                attempts: get_n(item, "attempts"),
                rows: get_n(item, "rows"),
                digest: get_s(item, "digest"),
                last_error: get_s(item, "last_error"),
                last_error_at: get_s(item, "last_error_at"),
                worker: get_s(item, "worker"),
                checkpoint_rows: get_n(item, "ck_rows"),
                started_at: get_s(item, "started_at"),
                finished_at: get_s(item, "finished_at"),
                updated_at: get_s(item, "updated_at"),
                replays: get_n(item, "replays"),
                last_replay_at: get_s(item, "last_replay_at"),
                rejects: get_n(item, "rejects"),
            },
        ))
    }

    /// One job of a run, if the control table has it.
    pub async fn job(&self, run_id: &str, job_id: &str) -> Result<Option<JobRecord>, ControlError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(run_id)))
                .key("sk", s(job_sk(job_id)))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| self.err("GetItem", &e))?;
        match resp.item {
            None => Ok(None),
            Some(item) => Ok(Some(self.job_record(run_id, &item)?.1)),
        }
    }

    /// Marks planned jobs as sent to the queue.
    pub async fn mark_queued(&self, run_id: &str, job_ids: &[&str]) -> Result<(), ControlError> {
        for id in job_ids {
            let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(run_pk(run_id)))
                    .key("sk", s(job_sk(id)))
                    .update_expression("SET #s = :queued, updated_at = :now")
                    .condition_expression("#s = :planned")
                    .expression_attribute_names("#s", "state")
                    .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
                    .expression_attribute_values(":planned", s(JobState::Planned.as_str()))
                    .expression_attribute_values(":now", s(now()))
                    .send()
            })
            .await;
            match r {
                Ok(_) => {}
                // Already past `planned` (a worker took it): nothing to do.
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(self.err("UpdateItem", &e)),
            }
        }
        Ok(())
    }

    /// Sets the run's state (`producing`, `produced`), unless the run has
    /// ended: a run its workers finished while the producer was still
    /// enqueueing stays `finished`, and a cancelled one stays cancelled.
    /// Returns whether the state was set.
    pub async fn set_run_state(&self, run_id: &str, state: &str) -> Result<bool, ControlError> {
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(run_id)))
                .key("sk", s(RUN_SK))
                // The first state after `planned` is the producer starting to
                // enqueue: the run's start.
                .update_expression(
                    "SET #s = :s, updated_at = :now, started_at = if_not_exists(started_at, :now)",
                )
                .condition_expression(
                    "attribute_exists(pk) AND #s <> :finished AND #s <> :cancelled",
                )
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":s", s(state))
                .expression_attribute_values(":finished", s(RUN_FINISHED))
                .expression_attribute_values(":cancelled", s(RUN_CANCELLED))
                .expression_attribute_values(":now", s(now()))
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => match self.get_run(run_id).await? {
                None => Err(ControlError::NoSuchRun {
                    table: self.table.clone(),
                    run_id: run_id.to_string(),
                }),
                Some(_) => Ok(false),
            },
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    /// Cancels a run: the run is marked `cancelled` (by whom, when, why),
    /// then every job not finished is marked `cancelled` too. A worker
    /// then drops such a job when it receives it (the claim fails) or at
    /// its next checkpoint if it holds it (the checkpoint fails). Returns
    /// how many jobs were cancelled now. Cancelling twice is harmless.
    pub async fn cancel_run(&self, run_id: &str, by: &str, why: &str) -> Result<u64, ControlError> {
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(run_id)))
            .key("sk", s(RUN_SK))
            .update_expression(
                "SET #s = :cancelled, cancelled_at = if_not_exists(cancelled_at, :now), \
                 cancelled_by = if_not_exists(cancelled_by, :by), cancelled_why = if_not_exists(cancelled_why, :why), updated_at = :now",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":cancelled", s(RUN_CANCELLED))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":why", s(why))
            .expression_attribute_values(":now", s(now()))
            .send())
            .await;
        match r {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => {
                return Err(ControlError::NoSuchRun {
                    table: self.table.clone(),
                    run_id: run_id.to_string(),
                })
            }
            Err(e) => return Err(self.err("UpdateItem", &e)),
        }
        let mut cancelled = 0;
        for rec in self.jobs(run_id).await? {
            if matches!(rec.state, JobState::Done | JobState::Cancelled) {
                continue;
            }
            let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(run_pk(run_id)))
                    .key("sk", s(job_sk(&rec.job.job_id)))
                    .update_expression("SET #s = :cancelled, updated_at = :now")
                    .condition_expression("#s <> :done")
                    .expression_attribute_names("#s", "state")
                    .expression_attribute_values(":cancelled", s(JobState::Cancelled.as_str()))
                    .expression_attribute_values(":done", s(JobState::Done.as_str()))
                    .expression_attribute_values(":now", s(now()))
                    .send()
            })
            .await;
            match r {
                Ok(_) => cancelled += 1,
                // Finished in the meantime: it stays done.
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(self.err("UpdateItem", &e)),
            }
        }
        Ok(cancelled)
    }

    /// Takes a job for `worker`: counts the attempt, unless the job is done.
    /// Only a job the control table holds (a planned one) can be claimed: a
    /// claim never creates a record, so a made-up message cannot make one.
    pub async fn claim(&self, job: &JobMessage, worker: &str) -> Result<Claim, ControlError> {
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&job.run_id)))
            .key("sk", s(job_sk(&job.job_id)))
            .update_expression(
                "SET #s = :running, worker = :w, updated_at = :now, started_at = if_not_exists(started_at, :now), attempts = if_not_exists(attempts, :zero) + :one",
            )
            .condition_expression("attribute_exists(#s) AND #s <> :done AND #s <> :cancelled")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":done", s(JobState::Done.as_str()))
            .expression_attribute_values(":cancelled", s(JobState::Cancelled.as_str()))
            .expression_attribute_values(":w", s(worker))
            .expression_attribute_values(":now", s(now()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send())
            .await;
        match r {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                let checkpoint = match get_s(&attrs, "ck_key") {
                    None => None,
                    Some(k) => Some(Checkpoint {
                        last_key: serde_json::from_str(&k).map_err(|e| ControlError::Corrupt {
                            table: self.table.clone(),
                            run_id: job.run_id.clone(),
                            sk: job_sk(&job.job_id),
                            reason: format!("checkpoint key: {e}"),
                        })?,
                        rows: get_n(&attrs, "ck_rows"),
                        digest_count: get_n(&attrs, "ck_count"),
                        digest_sum: get_s(&attrs, "ck_sum")
                            .and_then(|h| u128::from_str_radix(&h, 16).ok())
                            .unwrap_or(0),
                    }),
                };
                Ok(Claim::Started {
                    attempts: get_n(&attrs, "attempts").max(1),
                    checkpoint,
                })
            }
            Err(e) if is_condition_failed(&e) => {
                // Done, cancelled or never planned; which one decides what the worker does.
                match self.job_state(job).await? {
                    Some(JobState::Cancelled) => Ok(Claim::Cancelled),
                    Some(_) => Ok(Claim::AlreadyDone),
                    None => Err(ControlError::NoSuchJob {
                        table: self.table.clone(),
                        run_id: job.run_id.clone(),
                        job_id: job.job_id.clone(),
                    }),
                }
            }
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    async fn job_state(&self, job: &JobMessage) -> Result<Option<JobState>, ControlError> {
        Ok(self.job(&job.run_id, &job.job_id).await?.map(|r| r.state))
    }

    /// Records how far `worker` got with a job, after a page is durable. Fails
    /// with [`ControlError::Superseded`] when another worker has claimed the
    /// job since (a redelivery): this worker must stop, and its checkpoint
    /// never overwrites the new owner's.
    pub async fn checkpoint(
        &self,
        job: &JobMessage,
        worker: &str,
        ck: &Checkpoint,
    ) -> Result<(), ControlError> {
        let key = serde_json::to_string(&ck.last_key).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: job.run_id.clone(),
            sk: job_sk(&job.job_id),
            reason: e.to_string(),
        })?;
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&job.run_id)))
                .key("sk", s(job_sk(&job.job_id)))
                .update_expression(
                    "SET ck_key = :k, ck_rows = :r, ck_count = :c, ck_sum = :h, updated_at = :now",
                )
                .condition_expression("worker = :w AND #s = :running")
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":k", s(key.clone()))
                .expression_attribute_values(":r", AttributeValue::N(ck.rows.to_string()))
                .expression_attribute_values(":c", AttributeValue::N(ck.digest_count.to_string()))
                .expression_attribute_values(":h", s(format!("{:032x}", ck.digest_sum)))
                .expression_attribute_values(":w", s(worker))
                .expression_attribute_values(":running", s(JobState::Running.as_str()))
                .expression_attribute_values(":now", s(now()))
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => match self.job_state(job).await? {
                Some(JobState::Cancelled) => Err(ControlError::Cancelled {
                    run_id: job.run_id.clone(),
                    job_id: job.job_id.clone(),
                }),
                _ => Err(ControlError::Superseded {
                    job_id: job.job_id.clone(),
                }),
            },
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    /// Records a job as done with the rows it copied and the digest (an
    /// order-independent hash sum) of the items those rows became, and
    /// counts it in its run; the run's last job marks the run `finished`.
    /// A job finished before (a redelivery) is counted once.
    pub async fn finish(
        &self,
        job: &JobMessage,
        rows: u64,
        digest: &str,
        rejects: u64,
    ) -> Result<(), ControlError> {
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&job.run_id)))
            .key("sk", s(job_sk(&job.job_id)))
            .update_expression(
                "SET #s = :done, #r = :rows, digest = :digest, rejects = :rejects, updated_at = :now, finished_at = :now REMOVE last_error",
            )
            .expression_attribute_values(":digest", s(digest))
            .expression_attribute_values(":rejects", AttributeValue::N(rejects.to_string()))
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#r", "rows")
            .expression_attribute_values(":done", s(JobState::Done.as_str()))
            .expression_attribute_values(":rows", AttributeValue::N(rows.to_string()))
            .expression_attribute_values(":now", s(now()))
            .condition_expression("attribute_exists(#s) AND #s <> :done")
            .send())
            .await;
        match r {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => return Ok(()),
            Err(e) => return Err(self.err("UpdateItem", &e)),
        }
        self.count_finished(job, rows).await
    }

    async fn count_finished(&self, job: &JobMessage, rows: u64) -> Result<(), ControlError> {
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&job.run_id)))
                .key("sk", s(RUN_SK))
                .update_expression("ADD jobs_done :one, rows_copied :rows SET updated_at = :now")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":rows", AttributeValue::N(rows.to_string()))
                .expression_attribute_values(":now", s(now()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
        })
        .await;
        let run = match r {
            Ok(out) => out.attributes.unwrap_or_default(),
            // A job enqueued by hand, with no run record: nothing to count.
            Err(e) if is_condition_failed(&e) => return Ok(()),
            Err(e) => return Err(self.err("UpdateItem", &e)),
        };
        if get_n(&run, "jobs_done") < get_n(&run, "jobs_planned") {
            return Ok(());
        }
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&job.run_id)))
                .key("sk", s(RUN_SK))
                .update_expression("SET #s = :finished, finished_at = :now, updated_at = :now")
                .condition_expression("#s <> :finished AND #s <> :cancelled")
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":finished", s(RUN_FINISHED))
                .expression_attribute_values(":cancelled", s(RUN_CANCELLED))
                .expression_attribute_values(":now", s(now()))
                .send()
        })
        .await;
        match r {
            Ok(_) => {
                tracing::info!(run = %job.run_id, "every job of the run is done: run finished");
                Ok(())
            }
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    /// Records why a job failed; `dead` when it went to the DLQ. Never
    /// regresses a finished job.
    pub async fn record_failure(
        &self,
        job: &JobMessage,
        error: &str,
        dead: bool,
    ) -> Result<(), ControlError> {
        let state = if dead {
            JobState::Failed
        } else {
            JobState::Queued
        };
        let r = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&job.run_id)))
                .key("sk", s(job_sk(&job.job_id)))
                .update_expression(
                    "SET #s = :state, last_error = :e, last_error_at = :now, updated_at = :now",
                )
                .condition_expression("attribute_exists(#s) AND #s <> :done")
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":state", s(state.as_str()))
                .expression_attribute_values(":done", s(JobState::Done.as_str()))
                .expression_attribute_values(":e", s(error.chars().take(4000).collect::<String>()))
                .expression_attribute_values(":now", s(now()))
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }
}

const FLEET_PK: &str = "FLEET";

/// The fleet as its heartbeats show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCount {
    pub live: usize,
    pub busy: usize,
}

/// One live worker as its last heartbeat says.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBeat {
    pub worker: String,
    pub busy: bool,
    pub heartbeat_ms: u64,
    /// WCU per second it wrote to each target table since its previous heartbeat.
    pub wcu_per_sec: HashMap<String, f64>,
}

impl FleetCount {
    /// How many ways a budget is divided, seen by a worker that is `busy` or
    /// not: among the busy workers (counting an idle one itself, so the job
    /// it may take next starts at a fair share), or among all when none is
    /// busy, so an idle fleet that gets work all at once never starts at
    /// the whole budget each.
    pub fn divisor(&self, busy: bool) -> usize {
        if self.busy == 0 {
            self.live.max(1)
        } else {
            self.busy + usize::from(!busy)
        }
    }
}

impl ControlTable {
    /// Registers or refreshes a worker: its heartbeat, in ms since the epoch.
    /// `expires_at` (epoch seconds) lets a DynamoDB TTL remove dead workers' records.
    /// `busy`: the worker holds a job, or held one or started within the
    /// expiry; only busy workers divide a budget, so at the end of a run the
    /// workers still copying take the share of those with nothing left to do.
    /// `wcu_per_sec`: what this worker wrote per target table since its last
    /// heartbeat, which `status` sums into the fleet's capacity use.
    pub async fn heartbeat(
        &self,
        worker: &str,
        expiry_secs: u64,
        busy: bool,
        wcu_per_sec: &HashMap<String, f64>,
    ) -> Result<(), ControlError> {
        let now = epoch_ms();
        let wcu: HashMap<String, AttributeValue> = wcu_per_sec
            .iter()
            .map(|(t, r)| (t.clone(), AttributeValue::N(format!("{r:.3}"))))
            .collect();
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .put_item()
                .item("wcu", AttributeValue::M(wcu.clone()))
                .table_name(&self.table)
                .item("pk", s(FLEET_PK))
                .item("sk", s(format!("WORKER#{worker}")))
                .item("heartbeat_ms", AttributeValue::N(now.to_string()))
                .item("busy", AttributeValue::Bool(busy))
                .item(
                    "expires_at",
                    AttributeValue::N((now / 1000 + expiry_secs * 10).to_string()),
                )
                .send()
        })
        .await
        .map_err(|e| self.err("PutItem", &e))?;
        Ok(())
    }

    /// Workers whose last heartbeat is younger than `expiry_secs`: all of
    /// them, and the busy ones.
    pub async fn live_workers(&self, expiry_secs: u64) -> Result<FleetCount, ControlError> {
        let fleet = self.fleet(expiry_secs).await?;
        Ok(FleetCount {
            live: fleet.len(),
            busy: fleet.iter().filter(|w| w.busy).count(),
        })
    }

    /// The live workers' heartbeats.
    pub async fn fleet(&self, expiry_secs: u64) -> Result<Vec<WorkerBeat>, ControlError> {
        let oldest = epoch_ms().saturating_sub(expiry_secs * 1000);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(FLEET_PK))
            .consistent_read(true);
        let mut out = Vec::new();
        for i in self
            .query_all(query)
            .await?
            .iter()
            .filter(|i| get_n(i, "heartbeat_ms") >= oldest)
        {
            let wcu_per_sec = match i.get("wcu") {
                Some(AttributeValue::M(m)) => m
                    .iter()
                    .filter_map(|(t, v)| Some((t.clone(), v.as_n().ok()?.parse().ok()?)))
                    .collect(),
                _ => HashMap::new(),
            };
            out.push(WorkerBeat {
                worker: get_s(i, "sk")
                    .and_then(|sk| sk.strip_prefix("WORKER#").map(str::to_string))
                    .unwrap_or_default(),
                busy: !matches!(i.get("busy"), Some(AttributeValue::Bool(false))),
                heartbeat_ms: get_n(i, "heartbeat_ms"),
                wcu_per_sec,
            });
        }
        Ok(out)
    }

    /// Removes a stopping worker at once, so its share goes to the others
    /// at their next heartbeat instead of after the expiry.
    pub async fn deregister(&self, worker: &str) -> Result<(), ControlError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(FLEET_PK))
                .key("sk", s(format!("WORKER#{worker}")))
                .send()
        })
        .await
        .map_err(|e| self.err("DeleteItem", &e))?;
        Ok(())
    }
}

fn is_condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|x| x.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::FleetCount;

    #[test]
    fn budgets_are_divided_among_busy_workers() {
        let f = FleetCount { live: 4, busy: 2 };
        assert_eq!(f.divisor(true), 2, "two busy workers share it");
        assert_eq!(f.divisor(false), 3, "an idle one counts itself");
        let idle = FleetCount { live: 3, busy: 0 };
        assert_eq!(idle.divisor(false), 3, "an idle fleet divides among all");
        assert_eq!(FleetCount::default().divisor(false), 1);
    }
}
