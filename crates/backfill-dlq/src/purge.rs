//! Purge: deleting dead messages that must never run, each one audited.
//!
//! Apart from replay because its guarantee is another one: no message
//! disappears without its audit record.

use std::fmt;

use backfill_control::{AuditAction, AuditRecord};
use backfill_job::JobMessage;
use backfill_queue::DlqMessage;
use tracing::Instrument;

use crate::error::check_audit_fields;
use crate::{DeadJob, Dlq, DlqError, Filter, Selection};

/// Settings of a purge.
#[derive(Debug, Clone)]
pub struct PurgeOptions {
    pub by: String,
    pub why: String,
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

impl Dlq {
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
