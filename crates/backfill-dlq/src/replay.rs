//! Replay: sending dead jobs back to the job queue once their cause is fixed.
//!
//! The one DLQ action with an ordering that matters (reset and audit,
//! then send, then delete: a crash leaves a duplicate, never a lost job),
//! so it has its own module with its outcomes and report.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;

use backfill_control::{AuditAction, AuditRecord, ReplayReset};
use backfill_job::JobMessage;
use backfill_queue::DlqMessage;
use governor::{Quota, RateLimiter};
use tracing::Instrument;

use crate::error::check_audit_fields;
use crate::{DeadJob, Dlq, DlqError, Filter, Selection};

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

impl Dlq {
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
}
