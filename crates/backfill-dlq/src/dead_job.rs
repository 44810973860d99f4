//! What is known of one dead message: the message's and the control table's word.
//!
//! The record every DLQ command shows and filters on, apart from the
//! code that reads it so that its fields (and where each comes from) can
//! be read alone.

use serde::Serialize;

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
