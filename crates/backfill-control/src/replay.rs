//! Operator actions on dead jobs: resetting a job for a replay from the DLQ,
//! and the audit trail of every replay and purge.
//!
//! Audit records live beside the run's jobs (`pk = RUN#<run>`,
//! `sk = AUDIT#<time>#<job>`), so a run's history is one query; a DLQ
//! message that is not a job at all has no run and goes under `pk = DLQ`.
//! Job queries ask for `begins_with(sk, "JOB#")`, so audit records never
//! show up as jobs.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::ReturnValue;
use backfill_job::JobMessage;

use crate::{
    get_n, get_s, job_sk, n, now, run_pk, s, ControlError, ControlTable, JobState, Update, Written,
};

/// The partition of audit records for DLQ messages that are not jobs.
pub const DLQ_AUDIT_PK: &str = "DLQ";
const AUDIT_PREFIX: &str = "AUDIT#";

/// What an operator did to a dead message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Sent back to the job queue.
    Replay,
    /// Deleted from the DLQ for good.
    Purge,
    /// A job's rejects read again and written (`message_id` is empty).
    RejectRetry,
    /// A verified range with missing or different items copied again in a
    /// repair run (`verify repair`; `message_id` is empty).
    Repair,
}

impl AuditAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::Replay => "replay",
            AuditAction::Purge => "purge",
            AuditAction::RejectRetry => "reject_retry",
            AuditAction::Repair => "repair",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "replay" => Some(AuditAction::Replay),
            "purge" => Some(AuditAction::Purge),
            "reject_retry" => Some(AuditAction::RejectRetry),
            "repair" => Some(AuditAction::Repair),
            _ => None,
        }
    }
}

/// One operator action, as written to and read from the control table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub action: AuditAction,
    /// The run, or `None` for a message that is not a job.
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub table: Option<String>,
    /// The DLQ message acted on.
    pub message_id: String,
    /// Who did it, and why.
    pub by: String,
    pub why: String,
    /// The job's error at the time (from the message or the control table).
    pub error: Option<String>,
    /// When (RFC 3339, milliseconds); set by [`ControlTable::record_audit`].
    pub at: String,
}

/// What [`ControlTable::reset_for_replay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayReset {
    /// Attempts are 0 and the job is `queued` again; its checkpoint is kept,
    /// so the replayed job resumes where it stopped.
    Reset {
        /// Attempts before the reset (0 for a job the table did not know).
        attempts_before: u64,
        /// Replays so far, this one included.
        replays: u64,
    },
    /// The job is finished (`done`) or its run cancelled: the DLQ message is
    /// stale and must not run again. Nothing was changed.
    Refused { state: JobState },
}

impl ControlTable {
    /// Makes a dead job runnable again: attempts 0, state `queued`, one more
    /// replay, who replayed it, when and why. The checkpoint stays. Refused,
    /// changing nothing, when the job is `done` or `cancelled`. A job the
    /// table does not know fails with [`ControlError::NoSuchJob`]: replaying
    /// it must not create the record a worker takes as proof it was planned.
    pub async fn reset_for_replay(
        &self,
        job: &JobMessage,
        by: &str,
        why: &str,
    ) -> Result<ReplayReset, ControlError> {
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: job_sk(&job.job_id),
            set: "SET #s = :queued, attempts = :zero, replays = if_not_exists(replays, :zero) + :one, \
                 last_replay_at = :now, last_replay_by = :by, last_replay_why = :why, updated_at = :now, \
                 body = if_not_exists(body, :body), #t = if_not_exists(#t, :table)",
            condition: "attribute_exists(#s) AND #s <> :done AND #s <> :cancelled",
            names: &[("#s", "state"), ("#t", "table")],
            values: vec![
                (":queued", s(JobState::Queued.as_str())),
                (":done", s(JobState::Done.as_str())),
                (":cancelled", s(JobState::Cancelled.as_str())),
                (":zero", n(0)),
                (":one", n(1)),
                (":now", s(now())),
                (":by", s(by)),
                (":why", s(why)),
                (":body", s(job.to_body())),
                (":table", s(job.table.clone())),
            ],
            returns: Some(ReturnValue::AllOld),
        };
        match self.update(update).await? {
            Written::Applied(old) => Ok(ReplayReset::Reset {
                attempts_before: get_n(&old, "attempts"),
                replays: get_n(&old, "replays") + 1,
            }),
            Written::ConditionFailed => match self.job(&job.run_id, &job.job_id).await? {
                Some(r) => Ok(ReplayReset::Refused { state: r.state }),
                None => Err(ControlError::NoSuchJob {
                    table: self.table.clone(),
                    run_id: job.run_id.clone(),
                    job_id: job.job_id.clone(),
                }),
            },
        }
    }

    /// Writes an audit record, stamped now; returns it as stored. Never
    /// overwrites one: a record whose key is taken (the same job in the same
    /// millisecond) is written again with a fresh time, which a round trip
    /// to DynamoDB has moved on.
    pub async fn record_audit(&self, rec: &AuditRecord) -> Result<AuditRecord, ControlError> {
        let pk = rec
            .run_id
            .as_deref()
            .map_or(DLQ_AUDIT_PK.to_string(), run_pk);
        let subject = rec.job_id.as_deref().unwrap_or(&rec.message_id);
        let mut attempt = 0;
        loop {
            let at = now();
            let mut item = HashMap::from([
                ("pk".to_string(), s(pk.clone())),
                ("sk".to_string(), s(format!("{AUDIT_PREFIX}{at}#{subject}"))),
                ("action".to_string(), s(rec.action.as_str())),
                ("message_id".to_string(), s(rec.message_id.clone())),
                ("by".to_string(), s(rec.by.clone())),
                ("why".to_string(), s(rec.why.clone())),
                ("at".to_string(), s(at.clone())),
            ]);
            for (k, v) in [
                ("run_id", &rec.run_id),
                ("job_id", &rec.job_id),
                ("table", &rec.table),
                ("error", &rec.error),
            ] {
                if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                    item.insert(k.to_string(), s(v.chars().take(4000).collect::<String>()));
                }
            }
            let put = self.put(
                item,
                Some("attribute_not_exists(sk)"),
                backfill_aws::RetryPolicy::CALL,
            );
            match put.await {
                Ok(Written::Applied(_)) => return Ok(AuditRecord { at, ..rec.clone() }),
                Ok(Written::ConditionFailed) if attempt < 3 => attempt += 1,
                Ok(Written::ConditionFailed) => {
                    return Err(ControlError::Service {
                        table: self.table.clone(),
                        op: "PutItem",
                        message: format!(
                            "audit record of {subject}: its key was taken {} times",
                            attempt + 1
                        ),
                        retryable: false,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The audit records of a run, oldest first; with `None`, those of DLQ
    /// messages that were not jobs.
    pub async fn audit(&self, run_id: Option<&str>) -> Result<Vec<AuditRecord>, ControlError> {
        let pk = run_id.map_or(DLQ_AUDIT_PK.to_string(), run_pk);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :audit)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":audit", s(AUDIT_PREFIX))
            .consistent_read(true);
        let mut out = Vec::new();
        for item in &self.query_all(query).await? {
            let sk = get_s(item, "sk").unwrap_or_default();
            let action_text = get_s(item, "action").unwrap_or_default();
            let action = AuditAction::parse(&action_text).ok_or_else(|| ControlError::Corrupt {
                table: self.table.clone(),
                run_id: run_id.unwrap_or(DLQ_AUDIT_PK).to_string(),
                sk: sk.clone(),
                reason: format!("unknown audit action {action_text:?}"),
            })?;
            out.push(AuditRecord {
                action,
                run_id: get_s(item, "run_id"),
                job_id: get_s(item, "job_id"),
                table: get_s(item, "table"),
                message_id: get_s(item, "message_id").unwrap_or_default(),
                by: get_s(item, "by").unwrap_or_default(),
                why: get_s(item, "why").unwrap_or_default(),
                error: get_s(item, "error"),
                at: get_s(item, "at").unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
