//! The dead-letter queue for on-call engineers: what is dead and why,
//! sending dead jobs back once their cause is fixed, and deleting those that
//! must never run, each action recorded in the control table.
//!
//! Every operation walks the whole DLQ once, holding each message invisible
//! while it runs, so a message is seen once; the messages a filter does not
//! select are released as soon as the walk is over, the rest when their
//! action is done. A replay resets the job's attempts (and writes its audit
//! record), sends the body to the job queue, and only then deletes the DLQ
//! message: a crash in between leaves a duplicate, which the control
//! table's claim turns into a no-op, never a lost job.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use backfill_control::{AuditAction, AuditRecord, ControlError, ControlTable, ReplayReset};
use backfill_job::JobMessage;
use backfill_queue::{DlqMessage, JobQueue, QueueError};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use tracing::Instrument;

/// How long a walk holds each message invisible, by default. A hold is
/// extended while a slow replay still has the message to act on.
pub const DEFAULT_HOLD_SECS: i32 = 300;

/// Why a DLQ operation failed as a whole (a failure with one message is
/// reported in that message's outcome instead).
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("a {action} needs {what}: the audit record says who did it and why")]
    MissingAuditField {
        action: &'static str,
        what: &'static str,
    },
}

impl DlqError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DlqError::Queue(e) => e.is_retryable(),
            DlqError::Control(e) => e.is_retryable(),
            DlqError::MissingAuditField { .. } => false,
        }
    }
}

/// Where a dead job's error was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// The worker sent the job to the DLQ with the reason attached.
    MessageAttributes,
    /// SQS moved the message itself after `maxReceiveCount` receives; the
    /// last error the worker recorded is in the job's record.
    ControlTable,
    /// Neither knows one.
    Unknown,
}

impl ErrorSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorSource::MessageAttributes => "message",
            ErrorSource::ControlTable => "control-table",
            ErrorSource::Unknown => "unknown",
        }
    }
}

/// One DLQ message, with what the message and the control table say of it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    pub message_id: String,
    pub run_id: Option<String>,
    pub table: Option<String>,
    pub job_id: Option<String>,
    /// The job's half-open key range, as `[lo, hi)`.
    pub range: Option<String>,
    /// Attempts the control table counted (reset to 0 by a replay).
    pub attempts: Option<u64>,
    /// Times SQS handed the message out before it died.
    pub receive_count: Option<u32>,
    pub error: Option<String>,
    /// `permanent`, `retries_exhausted`, `malformed_message` (from the worker).
    pub error_kind: Option<String>,
    pub error_source: ErrorSource,
    /// When the control table recorded the error (RFC 3339), if it did.
    pub error_at: Option<String>,
    /// The job's state in the control table (`failed`, `done`, ...).
    pub job_state: Option<String>,
    /// Replays so far.
    pub replays: Option<u64>,
    /// When the message was sent (RFC 3339): to the DLQ by a worker, or to
    /// the job queue when SQS moved it.
    pub sent_at: Option<String>,
    /// Why the body is not a job, for a message that is not one.
    pub not_a_job: Option<String>,
}

impl DeadJob {
    /// The error to show: the known one, else why the body is not a job.
    pub fn error_text(&self) -> &str {
        self.error
            .as_deref()
            .or(self.not_a_job.as_deref())
            .unwrap_or("")
    }
}

/// Which dead messages an operation takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only jobs of this run.
    pub run: Option<String>,
    /// Only jobs of this table: its configured source name (`schema.table`),
    /// or the name without the schema.
    pub table: Option<String>,
    /// Only messages whose error contains this text (any case).
    pub error: Option<String>,
    /// At most this many messages (the first the walk finds).
    pub max: Option<usize>,
}

impl Filter {
    /// Whether a message passes the run, table and error conditions.
    pub fn matches(&self, d: &DeadJob) -> bool {
        let run_ok = self
            .run
            .as_deref()
            .is_none_or(|r| d.run_id.as_deref() == Some(r));
        let table_ok = self.table.as_deref().is_none_or(|want| {
            d.table.as_deref().is_some_and(|t| {
                t == want || t.rsplit_once('.').is_some_and(|(_, name)| name == want)
            })
        });
        let error_ok = self
            .error
            .as_deref()
            .is_none_or(|want| d.error_text().to_lowercase().contains(&want.to_lowercase()));
        run_ok && table_ok && error_ok
    }
}

/// Settings of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// Messages sent back per second, at most; `None`: as fast as possible.
    pub rate: Option<NonZeroU32>,
    /// Who replays, and why (the audit record).
    pub by: String,
    pub why: String,
}

/// Settings of a purge.
#[derive(Debug, Clone)]
pub struct PurgeOptions {
    pub by: String,
    pub why: String,
}

/// What a replay did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Attempts reset, sent to the job queue, deleted from the DLQ.
    Replayed {
        attempts_before: u64,
        replays: u64,
        new_message_id: String,
        /// Set when the DLQ copy could not be deleted: it stays, and a
        /// later replay of it is refused or a no-op once the job is done.
        dlq_delete_error: Option<String>,
    },
    /// Dry run: would be replayed.
    WouldReplay,
    /// The body is not a job: left in the DLQ (purge it).
    NotAJob { reason: String },
    /// The job is already `done` (or its run cancelled): this message is a
    /// stale duplicate, left in the DLQ.
    Finished { state: String },
    /// Another message of this pass carries the same job: left in the DLQ.
    Duplicate {
        of_message_id: String,
        /// A dry run: the other message would be replayed, not was.
        dry_run: bool,
    },
    /// Something failed; the message stays in the DLQ.
    Failed { error: String },
}

impl ReplayOutcome {
    pub fn is_replayed(&self) -> bool {
        matches!(self, ReplayOutcome::Replayed { .. })
    }
}

impl fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayOutcome::Replayed {
                attempts_before,
                replays,
                new_message_id,
                dlq_delete_error,
            } => {
                write!(
                    f,
                    "replayed as message {new_message_id} (attempts {attempts_before} -> 0, replay #{replays})"
                )?;
                if let Some(e) = dlq_delete_error {
                    write!(f, "; the DLQ copy could not be deleted and stays: {e}")?;
                }
                Ok(())
            }
            ReplayOutcome::WouldReplay => write!(f, "would be replayed (dry run)"),
            ReplayOutcome::NotAJob { reason } => {
                write!(f, "skipped: not a job ({reason}); purge it")
            }
            ReplayOutcome::Finished { state } => write!(
                f,
                "left: the job is already {state}, this message is a stale duplicate"
            ),
            ReplayOutcome::Duplicate {
                of_message_id,
                dry_run: false,
            } => write!(
                f,
                "left: same job as message {of_message_id}, replayed in this pass"
            ),
            ReplayOutcome::Duplicate {
                of_message_id,
                dry_run: true,
            } => write!(
                f,
                "would be left (dry run): same job as message {of_message_id}, which this pass would replay"
            ),
            ReplayOutcome::Failed { error } => write!(f, "FAILED, left in the DLQ: {error}"),
        }
    }
}

/// What a purge did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeOutcome {
    Purged,
    /// The message stays in the DLQ (an audit record may already say purge).
    Failed {
        error: String,
    },
}

impl fmt::Display for PurgeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PurgeOutcome::Purged => write!(f, "purged"),
            PurgeOutcome::Failed { error } => write!(f, "FAILED, left in the DLQ: {error}"),
        }
    }
}

/// A replay's result, message by message.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub dry_run: bool,
    /// Messages in the DLQ when it was walked.
    pub walked: usize,
    pub results: Vec<(DeadJob, ReplayOutcome)>,
}

impl ReplayReport {
    pub fn replayed(&self) -> usize {
        self.count(ReplayOutcome::is_replayed)
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, ReplayOutcome::Failed { .. }))
    }

    pub fn count(&self, f: impl Fn(&ReplayOutcome) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
}

/// A purge's result, message by message.
#[derive(Debug, Clone)]
pub struct PurgeReport {
    pub walked: usize,
    pub results: Vec<(DeadJob, PurgeOutcome)>,
}

impl PurgeReport {
    pub fn purged(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, o)| *o == PurgeOutcome::Purged)
            .count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.purged()
    }
}

struct Entry {
    dead: DeadJob,
    job: Option<JobMessage>,
    msg: DlqMessage,
}

/// The messages a filter selected, held invisible until acted on or
/// released with [`Dlq::release`].
pub struct Selection {
    entries: Vec<Entry>,
    walked: usize,
}

impl Selection {
    pub fn jobs(&self) -> impl Iterator<Item = &DeadJob> {
        self.entries.iter().map(|e| &e.dead)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages in the DLQ when it was walked, selected or not.
    pub fn walked(&self) -> usize {
        self.walked
    }
}

/// The DLQ tools over a job queue and its control table.
#[derive(Debug, Clone)]
pub struct Dlq {
    queue: JobQueue,
    control: ControlTable,
    hold_secs: i32,
}

impl Dlq {
    pub fn new(queue: JobQueue, control: ControlTable) -> Self {
        Dlq {
            queue,
            control,
            hold_secs: DEFAULT_HOLD_SECS,
        }
    }

    /// How long each walked message is held invisible (extended while a
    /// replay still needs it).
    pub fn with_hold_secs(mut self, secs: i32) -> Self {
        self.hold_secs = secs.clamp(2, 43_200);
        self
    }

    /// Every dead message the filter selects, with its last error; holds
    /// nothing afterwards.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<DeadJob>, DlqError> {
        let sel = self.select(filter).await?;
        let jobs = sel.jobs().cloned().collect();
        self.release(sel).await?;
        Ok(jobs)
    }

    /// Walks the DLQ and keeps what the filter selects, held; the rest is
    /// released at once.
    pub async fn select(&self, filter: &Filter) -> Result<Selection, DlqError> {
        let walked = self.queue.walk_dead(self.hold_secs).await?;
        let total = walked.len();
        let mut selected = Vec::new();
        let mut unselected = Vec::new();
        let mut pending = walked.into_iter();
        for msg in pending.by_ref() {
            let (dead, job) = match self.describe(&msg).await {
                Ok(d) => d,
                Err(e) => {
                    // Give back everything still held before failing.
                    let mut held: Vec<String> = selected
                        .iter()
                        .map(|e: &Entry| e.msg.receipt_handle.clone())
                        .chain(unselected)
                        .collect();
                    held.push(msg.receipt_handle.clone());
                    held.extend(pending.map(|m| m.receipt_handle));
                    self.release_handles(&held).await;
                    return Err(e);
                }
            };
            let room = filter.max.is_none_or(|m| selected.len() < m);
            if room && filter.matches(&dead) {
                selected.push(Entry { dead, job, msg });
            } else {
                unselected.push(msg.receipt_handle);
            }
        }
        self.release_handles(&unselected).await;
        Ok(Selection {
            entries: selected,
            walked: total,
        })
    }

    /// Makes the selected messages visible again, untouched.
    pub async fn release(&self, sel: Selection) -> Result<(), DlqError> {
        let handles: Vec<&str> = sel
            .entries
            .iter()
            .map(|e| e.msg.receipt_handle.as_str())
            .collect();
        let refused = self.queue.release_dead(&handles).await?;
        if refused > 0 {
            tracing::warn!(
                refused,
                "some DLQ messages could not be released; they reappear when their hold ends"
            );
        }
        Ok(())
    }

    async fn release_handles(&self, handles: &[String]) {
        let refs: Vec<&str> = handles.iter().map(String::as_str).collect();
        match self.queue.release_dead(&refs).await {
            Ok(0) => {}
            Ok(refused) => tracing::warn!(
                refused,
                "some DLQ messages could not be released; they reappear when their hold ends"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "releasing DLQ messages failed; they reappear when their hold ends"
            ),
        }
    }

    /// What the message and the control table say of a DLQ message.
    async fn describe(&self, msg: &DlqMessage) -> Result<(DeadJob, Option<JobMessage>), DlqError> {
        let attr = |k: &str| msg.attribute(k).map(str::to_string);
        let (job, not_a_job) = match JobMessage::from_body(&msg.body) {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let record = match &job {
            Some(j) => self.control.job(&j.run_id, &j.job_id).await?,
            None => None,
        };
        let (error, error_source) = match (attr("error"), record.as_ref()) {
            (Some(e), _) => (Some(e), ErrorSource::MessageAttributes),
            (None, Some(r)) if r.last_error.is_some() => {
                (r.last_error.clone(), ErrorSource::ControlTable)
            }
            _ => (None, ErrorSource::Unknown),
        };
        // The worker's count at the time it dead-lettered the job; without
        // it, SQS's own count, less the receive of this walk.
        let receive_count = attr("receive_count")
            .and_then(|c| c.parse().ok())
            .or(Some(msg.approximate_receive_count.saturating_sub(1)));
        let dead = DeadJob {
            message_id: msg.message_id.clone(),
            run_id: job.as_ref().map(|j| j.run_id.clone()).or(attr("run_id")),
            table: job.as_ref().map(|j| j.table.clone()).or(attr("table")),
            job_id: job.as_ref().map(|j| j.job_id.clone()).or(attr("job_id")),
            range: job.as_ref().map(|j| j.range.to_string()),
            attempts: record.as_ref().map(|r| r.attempts),
            receive_count,
            error,
            error_kind: attr("error_kind"),
            error_source,
            error_at: record.as_ref().and_then(|r| r.last_error_at.clone()),
            job_state: record.as_ref().map(|r| r.state.as_str().to_string()),
            replays: record.as_ref().map(|r| r.replays),
            sent_at: msg.sent_timestamp_ms.map(|ms| {
                humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            }),
            not_a_job,
        };
        Ok((dead, job))
    }

    /// Walks, selects and replays (see [`Dlq::replay_selection`]).
    pub async fn replay(
        &self,
        filter: &Filter,
        opts: &ReplayOptions,
    ) -> Result<ReplayReport, DlqError> {
        check_audit_fields("replay", &opts.by, &opts.why)?;
        let sel = self.select(filter).await?;
        self.replay_selection(sel, opts).await
    }

    /// Sends each selected job back to the job queue, at most `rate` a
    /// second: its attempts are reset and an audit record written, its body
    /// sent, and only then its DLQ message deleted. Messages that are not
    /// jobs, jobs already done and second copies of a job are left in the
    /// DLQ and reported. A dry run changes nothing.
    pub async fn replay_selection(
        &self,
        sel: Selection,
        opts: &ReplayOptions,
    ) -> Result<ReplayReport, DlqError> {
        check_audit_fields("replay", &opts.by, &opts.why)?;
        let limiter = opts
            .rate
            .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::MIN)));
        let mut first_of_job: HashMap<(String, String), String> = HashMap::new();
        let mut results = Vec::with_capacity(sel.entries.len());
        let mut to_release = Vec::new();
        for mut e in sel.entries {
            let span = tracing::info_span!(
                "dlq_replay",
                message_id = %e.msg.message_id,
                run = e.dead.run_id.as_deref().unwrap_or(""),
                table = e.dead.table.as_deref().unwrap_or(""),
                job = e.dead.job_id.as_deref().unwrap_or(""),
            );
            let outcome = async {
                let Some(job) = &e.job else {
                    return ReplayOutcome::NotAJob {
                        reason: e.dead.not_a_job.clone().unwrap_or_default(),
                    };
                };
                let key = (job.run_id.clone(), job.job_id.clone());
                if let Some(first) = first_of_job.get(&key) {
                    return ReplayOutcome::Duplicate {
                        of_message_id: first.clone(),
                        dry_run: opts.dry_run,
                    };
                }
                first_of_job.insert(key, e.msg.message_id.clone());
                if opts.dry_run {
                    return match e.dead.job_state.as_deref() {
                        Some(s @ ("done" | "cancelled")) => ReplayOutcome::Finished {
                            state: s.to_string(),
                        },
                        _ => ReplayOutcome::WouldReplay,
                    };
                }
                if let Some(l) = &limiter {
                    l.until_ready().await;
                }
                let outcome = self.replay_one(job, &mut e.msg, &e.dead, opts).await;
                tracing::info!(outcome = %outcome, "dead job replay");
                outcome
            }
            .instrument(span)
            .await;
            if !outcome.is_replayed() {
                to_release.push(e.msg.receipt_handle.clone());
            }
            results.push((e.dead, outcome));
        }
        self.release_handles(&to_release).await;
        Ok(ReplayReport {
            dry_run: opts.dry_run,
            walked: sel.walked,
            results,
        })
    }

    async fn replay_one(
        &self,
        job: &JobMessage,
        msg: &mut DlqMessage,
        dead: &DeadJob,
        opts: &ReplayOptions,
    ) -> ReplayOutcome {
        let failed = |error: String| ReplayOutcome::Failed { error };
        if let Err(e) = self.queue.keep_held(msg, self.hold_secs).await {
            return failed(format!("extending its hold: {e}"));
        }
        let (attempts_before, replays) = match self
            .control
            .reset_for_replay(job, &opts.by, &opts.why)
            .await
        {
            Ok(ReplayReset::Reset {
                attempts_before,
                replays,
            }) => (attempts_before, replays),
            Ok(ReplayReset::Refused { state }) => {
                return ReplayOutcome::Finished {
                    state: state.as_str().to_string(),
                }
            }
            Err(e) => return failed(format!("resetting the job: {e}")),
        };
        let audit = AuditRecord {
            action: AuditAction::Replay,
            run_id: Some(job.run_id.clone()),
            job_id: Some(job.job_id.clone()),
            table: Some(job.table.clone()),
            message_id: msg.message_id.clone(),
            by: opts.by.clone(),
            why: opts.why.clone(),
            error: dead.error.clone(),
            at: String::new(),
        };
        if let Err(e) = self.control.record_audit(&audit).await {
            return failed(format!(
                "attempts were reset, but the audit record failed: {e}; not sent"
            ));
        }
        let new_message_id = match self.queue.send_body(&msg.body).await {
            Ok(id) => id,
            Err(e) => {
                return failed(format!(
                    "attempts were reset and the replay audited, but sending to the job queue failed: {e}"
                ))
            }
        };
        let dlq_delete_error = self
            .queue
            .delete_dead(&msg.receipt_handle)
            .await
            .err()
            .map(|e| e.to_string());
        ReplayOutcome::Replayed {
            attempts_before,
            replays,
            new_message_id,
            dlq_delete_error,
        }
    }

    /// Walks, selects and purges (see [`Dlq::purge_selection`]).
    pub async fn purge(
        &self,
        filter: &Filter,
        opts: &PurgeOptions,
    ) -> Result<PurgeReport, DlqError> {
        check_audit_fields("purge", &opts.by, &opts.why)?;
        let sel = self.select(filter).await?;
        self.purge_selection(sel, opts).await
    }

    /// Deletes each selected message from the DLQ, after writing its audit
    /// record (so no message disappears without one).
    pub async fn purge_selection(
        &self,
        sel: Selection,
        opts: &PurgeOptions,
    ) -> Result<PurgeReport, DlqError> {
        check_audit_fields("purge", &opts.by, &opts.why)?;
        let mut results = Vec::with_capacity(sel.entries.len());
        let mut to_release = Vec::new();
        for mut e in sel.entries {
            let span = tracing::info_span!(
                "dlq_purge",
                message_id = %e.msg.message_id,
                run = e.dead.run_id.as_deref().unwrap_or(""),
                table = e.dead.table.as_deref().unwrap_or(""),
                job = e.dead.job_id.as_deref().unwrap_or(""),
            );
            let outcome = self
                .purge_one(&mut e.msg, &e.dead, &e.job, opts)
                .instrument(span)
                .await;
            if outcome != PurgeOutcome::Purged {
                to_release.push(e.msg.receipt_handle.clone());
            }
            results.push((e.dead, outcome));
        }
        self.release_handles(&to_release).await;
        Ok(PurgeReport {
            walked: sel.walked,
            results,
        })
    }

    async fn purge_one(
        &self,
        msg: &mut DlqMessage,
        dead: &DeadJob,
        job: &Option<JobMessage>,
        opts: &PurgeOptions,
    ) -> PurgeOutcome {
        let failed = |error: String| PurgeOutcome::Failed { error };
        if let Err(e) = self.queue.keep_held(msg, self.hold_secs).await {
            return failed(format!("extending its hold: {e}"));
        }
        // Only a parsed job vouches for its run: attributes of a message
        // that is not a job go under the DLQ partition with it.
        let audit = AuditRecord {
            action: AuditAction::Purge,
            run_id: job.as_ref().map(|j| j.run_id.clone()),
            job_id: job.as_ref().map(|j| j.job_id.clone()),
            table: dead.table.clone(),
            message_id: msg.message_id.clone(),
            by: opts.by.clone(),
            why: opts.why.clone(),
            error: dead.error.clone().or(dead.not_a_job.clone()),
            at: String::new(),
        };
        if let Err(e) = self.control.record_audit(&audit).await {
            return failed(format!("the audit record failed: {e}; not deleted"));
        }
        match self.queue.delete_dead(&msg.receipt_handle).await {
            Ok(()) => {
                tracing::info!("dead message purged");
                PurgeOutcome::Purged
            }
            Err(e) => failed(format!("deleting it: {e} (its audit record says purged)")),
        }
    }
}

fn check_audit_fields(action: &'static str, by: &str, why: &str) -> Result<(), DlqError> {
    if by.trim().is_empty() {
        return Err(DlqError::MissingAuditField {
            action,
            what: "who does it (--by)",
        });
    }
    if why.trim().is_empty() {
        return Err(DlqError::MissingAuditField {
            action,
            what: "a reason (--reason)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(run: Option<&str>, table: Option<&str>, error: Option<&str>) -> DeadJob {
        DeadJob {
            message_id: "m".into(),
            run_id: run.map(Into::into),
            table: table.map(Into::into),
            job_id: None,
            range: None,
            attempts: None,
            receive_count: None,
            error: error.map(Into::into),
            error_kind: None,
            error_source: ErrorSource::Unknown,
            error_at: None,
            job_state: None,
            replays: None,
            sent_at: None,
            not_a_job: None,
        }
    }

    #[test]
    fn filters_match_run_table_with_or_without_schema_and_error_in_any_case() {
        let d = dead(
            Some("r1"),
            Some("public.orders"),
            Some("Value NaN in column d"),
        );
        let f = |run: Option<&str>, table: Option<&str>, error: Option<&str>| Filter {
            run: run.map(Into::into),
            table: table.map(Into::into),
            error: error.map(Into::into),
            max: None,
        };
        assert!(f(None, None, None).matches(&d));
        assert!(f(Some("r1"), Some("orders"), Some("nan")).matches(&d));
        assert!(f(None, Some("public.orders"), None).matches(&d));
        assert!(!f(Some("r2"), None, None).matches(&d));
        assert!(!f(None, Some("order"), None).matches(&d));
        assert!(!f(None, None, Some("timeout")).matches(&d));
        let not_a_job = DeadJob {
            not_a_job: Some("malformed job message: EOF".into()),
            ..dead(None, None, None)
        };
        assert!(!f(Some("r1"), None, None).matches(&not_a_job));
        assert!(f(None, None, Some("MALFORMED")).matches(&not_a_job));
    }
}
