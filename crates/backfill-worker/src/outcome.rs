//! What became of each received message, and a run's totals.

use backfill_metrics::JobOutcome;

/// What happened to one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done {
        rows: u64,
        rows_read: u64,
    },
    /// Another delivery had finished the job already.
    Duplicate,
    DeadLettered,
    /// Left on the queue to be retried after its visibility timeout.
    Retry,
    /// Handed back at shutdown.
    Released,
    /// Dropped because its run was cancelled.
    Cancelled,
}

/// Totals of one `run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkSummary {
    /// Why the worker could not start (a budget it could not resolve).
    pub fatal: Option<String>,
    pub jobs_done: u64,
    pub jobs_duplicate: u64,
    pub jobs_dead_lettered: u64,
    pub jobs_retried: u64,
    pub jobs_released: u64,
    /// Jobs dropped because their run was cancelled.
    pub jobs_cancelled: u64,
    /// Rows of finished jobs, checkpointed ones included.
    pub rows_copied: u64,
    /// Rows this worker read from the source (a resumed job skips what its
    /// checkpoint covers).
    pub rows_read: u64,
    /// Rows this worker wrote, in finished jobs or not (a job handed back
    /// at shutdown keeps its written rows, behind its checkpoint).
    pub rows_written: u64,
}

impl WorkSummary {
    pub(crate) fn record(&mut self, o: Outcome) {
        match o {
            Outcome::Done { rows, rows_read } => {
                self.rows_read += rows_read;
                self.jobs_done += 1;
                self.rows_copied += rows;
            }
            Outcome::Duplicate => self.jobs_duplicate += 1,
            Outcome::DeadLettered => self.jobs_dead_lettered += 1,
            Outcome::Retry => self.jobs_retried += 1,
            Outcome::Released => self.jobs_released += 1,
            Outcome::Cancelled => self.jobs_cancelled += 1,
        }
    }
}

impl Outcome {
    /// The `outcome` label of the job metrics.
    pub(crate) fn metric(self) -> JobOutcome {
        match self {
            Outcome::Done { .. } => JobOutcome::Done,
            Outcome::Duplicate => JobOutcome::Duplicate,
            Outcome::DeadLettered => JobOutcome::DeadLettered,
            Outcome::Retry => JobOutcome::Retried,
            Outcome::Released => JobOutcome::Released,
            Outcome::Cancelled => JobOutcome::Cancelled,
        }
    }
}
