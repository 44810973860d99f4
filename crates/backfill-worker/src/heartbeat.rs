//! The visibility heartbeat of a job in hand.
//!
//! While a job runs, its message is hidden again every third of the
//! visibility timeout, so no other worker takes it. The heartbeat belongs to
//! the job: it stops when its [`VisibilityHeartbeat`] is dropped, whether the
//! job ended, failed, panicked or was aborted at shutdown. A job that dies
//! therefore lets its message come back within one visibility timeout, which
//! is what the worker's logs promise; a detached task would keep it hidden
//! until the process exits.

use std::time::Duration;

use backfill_queue::JobQueue;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

/// Keeps one message hidden for as long as this value lives.
#[derive(Debug)]
pub struct VisibilityHeartbeat {
    _task: AbortOnDropHandle<()>,
}

impl VisibilityHeartbeat {
    /// Starts extending the visibility of `receipt_handle` to
    /// `visibility_secs` every third of that time (at least every half
    /// second), in the caller's span.
    pub fn start(queue: JobQueue, receipt_handle: String, visibility_secs: u32) -> Self {
        let period = heartbeat_period(visibility_secs);
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(period).await;
                    let secs = i32::try_from(visibility_secs).unwrap_or(i32::MAX);
                    if let Err(e) = queue.set_visibility(&receipt_handle, secs).await {
                        tracing::warn!(error = %e, "extending the job's visibility failed");
                    }
                }
            }
            .in_current_span(),
        );
        VisibilityHeartbeat {
            _task: AbortOnDropHandle::new(task),
        }
    }
}

/// A third of the visibility timeout: two beats may fail before the message
/// shows again.
fn heartbeat_period(visibility_secs: u32) -> Duration {
    Duration::from_secs_f64((f64::from(visibility_secs) / 3.0).max(0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_three_times_per_timeout_and_never_faster_than_twice_a_second() {
        assert_eq!(heartbeat_period(30), Duration::from_secs(10));
        assert_eq!(heartbeat_period(1), Duration::from_millis(500));
        assert_eq!(heartbeat_period(0), Duration::from_millis(500));
    }
}
