//! The records of the control table as Rust values, and the conversions
//! between a stored item and its record.
//!
//! The conversions are pure (no I/O), so what a stored attribute means is
//! decided here and nowhere else. Stored names and values never change:
//! a table written by an older build reads the same.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_job::JobMessage;

use crate::{ControlError, RUN_SK};

/// A DynamoDB item as the SDK holds it.
pub(crate) type Item = HashMap<String, AttributeValue>;

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
    /// The state as stored in the `state` attribute.
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

    pub(crate) fn parse(s: &str) -> Option<Self> {
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

/// Where a run stands: `planned → producing → produced → finished |
/// cancelled`. An ended run (finished, cancelled) is never reopened.
/// Serialized (for `status --json`) as the stored string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Its plan is stored; nothing enqueued yet.
    Planned,
    /// A producer is enqueueing its jobs.
    Producing,
    /// Every job is enqueued.
    Produced,
    /// Every job is done (set by the last job to finish).
    Finished,
    /// An operator cancelled it.
    Cancelled,
}

impl RunState {
    /// The state as stored in the `state` attribute (the strings of the
    /// tables written before this type existed, byte for byte).
    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::Producing => "producing",
            RunState::Produced => "produced",
            RunState::Finished => "finished",
            RunState::Cancelled => "cancelled",
        }
    }

    /// The state a stored string names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => RunState::Planned,
            "producing" => RunState::Producing,
            "produced" => RunState::Produced,
            "finished" => RunState::Finished,
            "cancelled" => RunState::Cancelled,
            _ => return None,
        })
    }

    /// Whether the run has ended (finished or cancelled): workers take none
    /// of its jobs, and no state change reopens it.
    pub fn has_ended(&self) -> bool {
        matches!(self, RunState::Finished | RunState::Cancelled)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// Where the job ends now (exclusive) when it handed the rest of its
    /// range back to other jobs; `None`: its range's own end.
    pub ends_at: Option<backfill_job::KeyTuple>,
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
    pub state: RunState,
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
        !self.state.has_ended()
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
    /// The most WCU/s the key layout lets the copy write (its distinct
    /// partition-key values, each at most a partition's rate), when the
    /// catalog knew them; `None` in runs planned before it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ceiling_wcu: Option<f64>,
}

/// What a run is planned with, besides its jobs.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    pub tables: Vec<RunTable>,
    pub config: Option<String>,
}

/// What a worker learns when it claims a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The job is this worker's to copy, from its checkpoint if it has one.
    Started {
        attempts: u64,
        checkpoint: Option<Checkpoint>,
        /// Where an earlier owner ended the job, and the jobs it handed
        /// the rest of the range back as.
        handed_back: crate::HandedBack,
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

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n(item: &Item, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A run record from its item (`sk = RUN`) in control table `table`.
pub(crate) fn run_record(
    table: &str,
    run_id: &str,
    item: &Item,
) -> Result<RunRecord, ControlError> {
    let corrupt = |reason: String| ControlError::Corrupt {
        table: table.to_string(),
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
    let state_text = get_s(item, "state").unwrap_or_default();
    let state = RunState::parse(&state_text)
        .ok_or_else(|| corrupt(format!("unknown state {state_text:?}")))?;
    Ok(RunRecord {
        run_id: run_id.to_string(),
        state,
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

/// A job record and its position in the plan (`ordinal`), from its item
/// (`sk = JOB#<job>`) in control table `table`.
pub(crate) fn job_record(
    table: &str,
    run_id: &str,
    item: &Item,
) -> Result<(u64, JobRecord), ControlError> {
    let sk = get_s(item, "sk").unwrap_or_default();
    let corrupt = |reason: String| ControlError::Corrupt {
        table: table.to_string(),
        run_id: run_id.to_string(),
        sk: sk.clone(),
        reason,
    };
    let body = get_s(item, "body").ok_or_else(|| corrupt("no body".into()))?;
    let job = JobMessage::from_body(&body).map_err(|e| corrupt(e.to_string()))?;
    let state_text = get_s(item, "state").unwrap_or_default();
    let state = JobState::parse(&state_text)
        .ok_or_else(|| corrupt(format!("unknown state {state_text:?}")))?;
    let ends_at = crate::handback::handed_back(table, &job, item)?.hi;
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
            ends_at,
        },
    ))
}

/// The checkpoint a claim's returned attributes hold, if the job has one.
pub(crate) fn checkpoint(
    table: &str,
    job: &JobMessage,
    attrs: &Item,
) -> Result<Option<Checkpoint>, ControlError> {
    let Some(k) = get_s(attrs, "ck_key") else {
        return Ok(None);
    };
    Ok(Some(Checkpoint {
        last_key: serde_json::from_str(&k).map_err(|e| ControlError::Corrupt {
            table: table.to_string(),
            run_id: job.run_id.clone(),
            sk: crate::job_sk(&job.job_id),
            reason: format!("checkpoint key: {e}"),
        })?,
        rows: get_n(attrs, "ck_rows"),
        digest_count: get_n(attrs, "ck_count"),
        digest_sum: get_s(attrs, "ck_sum")
            .and_then(|h| u128::from_str_radix(&h, 16).ok())
            .unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_are_stored_as_before() {
        for (state, text) in [
            (RunState::Planned, "planned"),
            (RunState::Producing, "producing"),
            (RunState::Produced, "produced"),
            (RunState::Finished, "finished"),
            (RunState::Cancelled, "cancelled"),
        ] {
            assert_eq!(state.as_str(), text);
            assert_eq!(RunState::parse(text), Some(state));
        }
        assert_eq!(RunState::parse("done"), None);
        assert!(RunState::Finished.has_ended() && RunState::Cancelled.has_ended());
        assert!(!RunState::Produced.has_ended());
        assert_eq!(
            serde_json::to_string(&RunState::Producing).expect("json"),
            "\"producing\""
        );
    }

    #[test]
    fn a_run_record_reads_its_item() {
        let item = Item::from([
            ("state".to_string(), s("producing")),
            ("jobs_planned".to_string(), n(3)),
            ("created_at".to_string(), s("t0")),
            ("cancelled_at".to_string(), s("t1")),
            ("cancelled_by".to_string(), s("op")),
        ]);
        let r = run_record("ctl", "r", &item).expect("record");
        assert_eq!(r.state, RunState::Producing);
        assert_eq!(r.jobs_planned, 3);
        assert_eq!(r.cancelled.expect("cancelled").by, "op");

        assert!(r.tables.is_empty());

        let bad = Item::from([("state".to_string(), s("paused"))]);
        let e = run_record("ctl", "r", &bad).unwrap_err().to_string();
        assert!(e.contains("control table ctl: run r: record RUN"), "{e}");
    }

    #[test]
    fn a_run_table_keeps_its_key_ceiling_and_older_ones_read_without() {
        let table = RunTable {
            source: "public.t".into(),
            target: "T".into(),
            jobs: 2,
            estimated_rows: 10,
            wcu_per_item: 1.0,
            key_ceiling_wcu: Some(10_800.0),
        };
        let item = |tables: String| {
            Item::from([
                ("state".to_string(), s("planned")),
                ("tables".to_string(), s(tables)),
            ])
        };
        let stored = serde_json::to_string(&[&table]).expect("json");
        let r = run_record("ctl", "r", &item(stored)).expect("record");
        assert_eq!(r.tables, std::slice::from_ref(&table));

        let older = r#"[{"source":"public.t","target":"T","jobs":2,"estimated_rows":10,"wcu_per_item":1.0}]"#;
        let r = run_record("ctl", "r", &item(older.into())).expect("record");
        assert_eq!(
            r.tables,
            [RunTable {
                key_ceiling_wcu: None,
                ..table
            }]
        );
    }
}
