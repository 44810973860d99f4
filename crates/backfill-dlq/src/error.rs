//! Why a DLQ operation failed as a whole, and the audit fields it needs.
//!
//! Shared by the walk, the replay and the purge; a failure with one
//! message is not here but in that message's outcome.

use backfill_control::ControlError;
use backfill_queue::QueueError;

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

pub(crate) fn check_audit_fields(
    action: &'static str,
    by: &str,
    why: &str,
) -> Result<(), DlqError> {
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
