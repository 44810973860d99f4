//! Why a job could not be copied, and whether trying again may help: the
//! one place a job's failure is classified (the failure policy in
//! [`crate::policy`] decides what follows from it).

use backfill_control::ControlError;
use backfill_dynamo::SinkError;
use backfill_item::MapError;
use backfill_queue::QueueError;
use backfill_source::{SchemaError, SourceError};

/// Why a job could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("table {0} is not in this worker's configuration")]
    UnknownTable(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("table {table}, key {key}: the item is {size} bytes, over DynamoDB's 400 KB limit (set `oversize = \"s3\"` to offload such items)")]
    Oversize {
        table: String,
        key: String,
        size: usize,
    },
    #[error(transparent)]
    Offload(#[from] backfill_offload::OffloadError),
    #[error("table {table} has `oversize = \"s3\"` but this worker has no S3 offloader ([offload] section)")]
    NoOffloader { table: String },
    #[error("table {table}: {rejects} of {rows} rows read cannot become items (more than the {limit} allowed by worker.max_reject_fraction and worker.reject_allowance): is the mapping wrong? The first: {first}; `backfill rejects list` names them all")]
    TooManyRejects {
        table: String,
        rejects: u64,
        rows: u64,
        limit: u64,
        first: String,
    },
    #[error("table {table}, job {job}: the message's cuts do not lie inside its range {range} in key order; the job is not copied from them")]
    BadCuts {
        table: String,
        job: String,
        range: String,
    },
    #[error("archive: {reason}")]
    Archive { reason: String, retryable: bool },
    #[error("table {table}, key {key}: cannot archive the row: {reason}")]
    ArchiveRow {
        table: String,
        key: String,
        reason: String,
    },
    #[error("table {table}: cannot verify: {reason}")]
    VerifyUsage { table: String, reason: String },
    #[error(
        "DynamoDB table {table}: {mismatches} items differ from their rows after writing: {detail}"
    )]
    Verify {
        table: String,
        mismatches: usize,
        detail: String,
    },
}

/// A key that cannot bound ranges, or is not the job's, fails the job as
/// the source error it was before the schema checks moved to
/// `backfill-model`: same message, never retryable.
impl From<SchemaError> for JobError {
    fn from(e: SchemaError) -> Self {
        JobError::Source(SourceError::from(e))
    }
}

impl JobError {
    /// Whether trying the same job again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::UnknownTable(_)
            | JobError::Map(_)
            | JobError::Verify { .. }
            | JobError::VerifyUsage { .. }
            | JobError::TooManyRejects { .. }
            | JobError::Oversize { .. }
            | JobError::BadCuts { .. }
            | JobError::ArchiveRow { .. }
            | JobError::NoOffloader { .. } => false,
            JobError::Offload(e) => e.is_retryable(),
            JobError::Archive { retryable, .. } => *retryable,
            JobError::Source(e) => e.is_retryable(),
            JobError::Sink(e) => e.is_retryable(),
            JobError::Control(e) => e.is_retryable(),
            JobError::Queue(e) => e.is_retryable(),
        }
    }
}
