//! Walking the DLQ: the [`Dlq`] handle, selecting, listing and releasing.
//!
//! Every operation starts here: the walk holds each message invisible so
//! it is seen once, and describes it from its body, its attributes and
//! the control table; replay and purge act on what it selected.

use std::time::{Duration, SystemTime};

use backfill_control::ControlTable;
use backfill_job::JobMessage;
use backfill_queue::{DlqMessage, JobQueue};

use crate::{DeadJob, DlqError, ErrorSource, Filter};

/// How long a walk holds each message invisible, by default. A hold is
/// extended while a slow replay still has the message to act on.
pub const DEFAULT_HOLD_SECS: i32 = 300;

pub(crate) struct Entry {
    pub(crate) dead: DeadJob,
    pub(crate) job: Option<JobMessage>,
    pub(crate) msg: DlqMessage,
}

/// The messages a filter selected, held invisible until acted on or
/// released with [`Dlq::release`].
pub struct Selection {
    pub(crate) entries: Vec<Entry>,
    pub(crate) walked: usize,
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
    pub(crate) queue: JobQueue,
    pub(crate) control: ControlTable,
    pub(crate) hold_secs: i32,
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

    pub(crate) async fn release_handles(&self, handles: &[String]) {
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
}
