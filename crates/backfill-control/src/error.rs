//! Why a control-table operation failed. Every variant names the control
//! table, the run or the job it concerns, so an operator reading the error
//! knows where to look without the log around it.

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
    /// Whether the same operation may succeed later (a throttle, a network
    /// failure); a state the table refuses never becomes acceptable by waiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            ControlError::Service { retryable, .. } => *retryable,
            ControlError::Corrupt { .. }
            | ControlError::Superseded { .. }
            | ControlError::Cancelled { .. }
            | ControlError::NoSuchRun { .. }
            | ControlError::RunBeingProduced { .. }
            | ControlError::NoSuchJob { .. } => false,
        }
    }
}
