//! Which messages a worker acts on: a message becomes a job only when it
//! is small enough, signed when signing is on, well formed, and planned in
//! the control table exactly so. Anyone who may send to the queue can write
//! a well-formed message, so nothing short of the control table vouches for
//! one. A refused message goes to the DLQ as it is, never recorded against
//! a job.

use std::sync::Arc;

use backfill_control::{ControlError, Rejection, RunRecord};
use backfill_job::JobMessage;
use backfill_queue::ReceivedMessage;

use crate::outcome::Outcome;
use crate::policy::{self, Action, DeadLetterKind};
use crate::Worker;

/// Why a received message is not taken as a job.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// It never will be: to the DLQ at once, as it is.
    Permanent {
        kind: &'static str,
        reason: String,
        /// What the message claims to be, when it parsed: context for the
        /// DLQ's attributes, not trusted.
        job: Option<JobMessage>,
    },
    /// The control table could not answer: the message comes back if that
    /// may change, to the DLQ if not.
    Unavailable(ControlError),
}

impl Worker {
    /// Takes a message as a job only if it is one: not oversized, signed
    /// when signing is on, well formed, and planned in the control table
    /// exactly so (run, table, key columns, range).
    pub(crate) async fn admit(&self, msg: &ReceivedMessage) -> Result<JobMessage, Refusal> {
        let refuse = |kind, reason: String, job| Refusal::Permanent { kind, reason, job };
        let at_fault =
            |reason: &dyn std::fmt::Display| format!("message {}: {reason}", msg.message_id);
        // The size first: nothing else is worth computing over a huge body.
        if msg.body.len() > backfill_job::MAX_BODY_BYTES {
            let e = backfill_job::JobError::Oversized {
                bytes: msg.body.len(),
                max: backfill_job::MAX_BODY_BYTES,
            };
            return Err(refuse(e.kind(), at_fault(&e), None));
        }
        if let Some(signer) = self.queue.signer() {
            if let Err(e) = signer.verify(&msg.body, msg.signature.as_deref()) {
                let claimed = JobMessage::from_body(&msg.body).ok();
                return Err(refuse("forged", at_fault(&e), claimed));
            }
        }
        let job =
            JobMessage::from_body(&msg.body).map_err(|e| refuse(e.kind(), at_fault(&e), None))?;
        let run = self
            .run_record(&job.run_id)
            .await
            .map_err(Refusal::Unavailable)?;
        let planned = self
            .control
            .job(&job.run_id, &job.job_id)
            .await
            .map_err(Refusal::Unavailable)?;
        let checked = backfill_control::check_planned(
            self.control.table_name(),
            &job,
            run.as_deref(),
            planned.as_ref().map(|r| &r.job),
        );
        checked.map_err(|e: Rejection| refuse("forged", at_fault(&e), Some(job.clone())))?;
        Ok(job)
    }

    /// The run's record, read once per run and process.
    async fn run_record(&self, run_id: &str) -> Result<Option<Arc<RunRecord>>, ControlError> {
        if let Some(r) = self.runs.lock().expect("runs lock").get(run_id) {
            return Ok(Some(r.clone()));
        }
        let Some(run) = self.control.get_run(run_id).await? else {
            return Ok(None);
        };
        let run = Arc::new(run);
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run_id.to_string(), run.clone());
        Ok(Some(run))
    }

    /// A refused message goes to the DLQ as it is; one the control table
    /// could not vouch for comes back, until its last receive.
    pub(crate) async fn refuse(&self, msg: &ReceivedMessage, refusal: Refusal) -> Outcome {
        match refusal {
            Refusal::Permanent { kind, reason, job } => {
                self.dead_letter(msg, job.as_ref(), &reason, kind).await
            }
            // A corrupt record or a request DynamoDB refuses will not change
            // on the next receive; an outage may, until the last receive.
            Refusal::Unavailable(e) => {
                let max = self.cfg.queue.max_receive_count;
                match policy::after_failure(e.is_retryable(), msg.receive_count, max) {
                    Action::DeadLetter(DeadLetterKind::RetriesExhausted) => {
                        let reason = format!(
                            "message {}: gave up after {} receives: cannot check it against the control table: {e}",
                            msg.message_id, msg.receive_count
                        );
                        self.dead_letter(
                            msg,
                            None,
                            &reason,
                            DeadLetterKind::RetriesExhausted.as_str(),
                        )
                        .await
                    }
                    Action::DeadLetter(DeadLetterKind::Permanent) => {
                        let reason = format!(
                            "message {}: cannot check it against the control table: {e}",
                            msg.message_id
                        );
                        self.dead_letter(msg, None, &reason, DeadLetterKind::Permanent.as_str())
                            .await
                    }
                    _ => {
                        tracing::warn!(error = %e, receive_count = msg.receive_count, "cannot check the message against the control table, will be retried");
                        Outcome::Retry
                    }
                }
            }
        }
    }
}
