//! The failure policy: what becomes of a message after its job failed.
//!
//! A pure function of the error, the message's receive count and the
//! queue's `max_receive_count`, so every case is tested here without a
//! server (as vector tests its batch status). The worker carries the
//! decision out; nothing else decides it.
//!
//! Order of precedence: a job another delivery owns now is left to it; a
//! cancelled run's job is dropped; a failure that cannot pass goes to the
//! DLQ at once; one that may pass comes back after its visibility timeout,
//! except on the last receive SQS allows, where it goes to the DLQ with its
//! reason rather than being redriven without one.

use backfill_control::ControlError;

use crate::JobError;

/// What the worker does with a message whose job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Another delivery claimed the job since: stop, neither acknowledge nor
    /// fail it (its owner will).
    LeaveToOwner,
    /// The job's run was cancelled: delete the message so the queue drains.
    DropCancelled,
    /// Leave the message to come back after its visibility timeout.
    Retry,
    /// Send the message to the DLQ now, with this `error_kind`.
    DeadLetter(DeadLetterKind),
}

/// Why a message went to the DLQ (its `error_kind` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The job can never succeed as it is.
    Permanent,
    /// It might, but the queue allows no more receives.
    RetriesExhausted,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Permanent => "permanent",
            DeadLetterKind::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// The action for a copy that ended in `e`, on the message's
/// `receive_count`-th receive.
pub fn after_error(e: &JobError, receive_count: u32, max_receive_count: u32) -> Action {
    match e {
        JobError::Control(ControlError::Superseded { .. }) => Action::LeaveToOwner,
        JobError::Control(ControlError::Cancelled { .. }) => Action::DropCancelled,
        _ => after_failure(e.is_retryable(), receive_count, max_receive_count),
    }
}

/// The action for any other failure of a message: a claim, a finish or an
/// admission check that failed (retryable or not).
pub fn after_failure(retryable: bool, receive_count: u32, max_receive_count: u32) -> Action {
    if !retryable {
        Action::DeadLetter(DeadLetterKind::Permanent)
    } else if receive_count >= max_receive_count {
        Action::DeadLetter(DeadLetterKind::RetriesExhausted)
    } else {
        Action::Retry
    }
}

#[cfg(test)]
mod tests {
    use backfill_dynamo::SinkError;

    use super::*;
    use Action::*;
    use DeadLetterKind::*;

    const MAX: u32 = 5;

    fn throttled() -> JobError {
        JobError::Sink(SinkError::Service {
            table: "t".into(),
            op: "BatchWriteItem",
            message: "ProvisionedThroughputExceededException".into(),
            retryable: true,
        })
    }

    fn refused() -> JobError {
        JobError::Sink(SinkError::Service {
            table: "t".into(),
            op: "BatchWriteItem",
            message: "ValidationException".into(),
            retryable: false,
        })
    }

    #[test]
    fn a_retryable_failure_comes_back_until_the_last_receive() {
        assert_eq!(after_error(&throttled(), 1, MAX), Retry);
        assert_eq!(after_error(&throttled(), MAX - 1, MAX), Retry);
        assert_eq!(
            after_error(&throttled(), MAX, MAX),
            DeadLetter(RetriesExhausted)
        );
        // A count past the limit (the redrive policy was changed) is the last too.
        assert_eq!(
            after_error(&throttled(), MAX + 3, MAX),
            DeadLetter(RetriesExhausted)
        );
        let unprocessed = JobError::Sink(SinkError::Unprocessed {
            table: "t".into(),
            remaining: 3,
            attempts: 15,
        });
        assert_eq!(after_error(&unprocessed, 1, MAX), Retry);
    }

    #[test]
    fn a_permanent_failure_goes_to_the_dlq_on_its_first_receive() {
        assert_eq!(after_error(&refused(), 1, MAX), DeadLetter(Permanent));
        assert_eq!(after_error(&refused(), MAX, MAX), DeadLetter(Permanent));
        for e in [
            JobError::UnknownTable("public.gone".into()),
            JobError::Oversize {
                table: "t".into(),
                key: "id=1".into(),
                size: 500_000,
            },
            JobError::NoOffloader { table: "t".into() },
            JobError::TooManyRejects {
                table: "t".into(),
                rejects: 11,
                rows: 100,
                limit: 10,
                first: "id=1".into(),
            },
            JobError::Verify {
                table: "t".into(),
                mismatches: 1,
                detail: "id=1: name differs".into(),
            },
            JobError::Control(ControlError::NoSuchRun {
                table: "control".into(),
                run_id: "r".into(),
            }),
        ] {
            assert_eq!(after_error(&e, 1, MAX), DeadLetter(Permanent), "{e}");
        }
    }

    #[test]
    fn a_job_claimed_by_another_delivery_is_left_to_it_on_any_receive() {
        let e = JobError::Control(ControlError::Superseded { job_id: "j".into() });
        assert_eq!(after_error(&e, 1, MAX), LeaveToOwner);
        // Even on the last receive: the new owner holds the message now.
        assert_eq!(after_error(&e, MAX, MAX), LeaveToOwner);
    }

    #[test]
    fn a_cancelled_runs_job_is_dropped_not_dead_lettered() {
        let e = JobError::Control(ControlError::Cancelled {
            run_id: "r".into(),
            job_id: "j".into(),
        });
        assert_eq!(after_error(&e, 1, MAX), DropCancelled);
        assert_eq!(after_error(&e, MAX, MAX), DropCancelled);
    }

    #[test]
    fn other_failures_follow_retryability_and_the_receive_count() {
        assert_eq!(after_failure(true, 1, MAX), Retry);
        assert_eq!(after_failure(true, MAX, MAX), DeadLetter(RetriesExhausted));
        assert_eq!(after_failure(false, 1, MAX), DeadLetter(Permanent));
        // A queue that allows one receive: a retryable failure is its last.
        assert_eq!(after_failure(true, 1, 1), DeadLetter(RetriesExhausted));
        assert_eq!(DeadLetterKind::Permanent.as_str(), "permanent");
        assert_eq!(
            DeadLetterKind::RetriesExhausted.as_str(),
            "retries_exhausted"
        );
    }
}
