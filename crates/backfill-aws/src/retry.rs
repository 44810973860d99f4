//! The one retry layer for AWS calls.
//!
//! The SDK's own retries are off in every client ([`crate::shared_config`]),
//! so this is where a failed call is tried again: on the errors
//! [`crate::is_retryable`] names, with exponential backoff and full jitter,
//! a capped number of attempts. [`retry_observed`] lets the caller hear of
//! every failed attempt as it happens, so a throttle reaches the write
//! limiter and the metrics on the attempt that got it.

use std::future::Future;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{backoff_delay, is_retryable, HasStatus};

/// How persistently a call is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled each time after.
    pub base_delay: Duration,
    /// Longest backoff between two attempts.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// For single control-plane calls (control table, queue, S3): a few
    /// attempts over about a second and a half, what the SDK's standard mode
    /// gave them before (3 attempts) with two more for a brief outage.
    pub const CALL: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(2),
    };
}

impl Default for RetryPolicy {
    /// The data path's policy (batch writes and reads): many short waits,
    /// since a throttled batch is the normal case under a tight budget.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 15,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Sends `call` until it succeeds, fails with an error that is not
/// retryable, or `policy.max_attempts` attempts have failed; returns the
/// last error then.
pub async fn retry<T, E, R, F, Fut>(policy: RetryPolicy, call: F) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    retry_observed(policy, call, |_, _| {}).await
}

/// [`retry`], telling `observe` of every failed attempt (the error, and
/// whether another attempt follows) before backing off.
pub async fn retry_observed<T, E, R, F, Fut, O>(
    policy: RetryPolicy,
    mut call: F,
    mut observe: O,
) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
    R: HasStatus,
    O: FnMut(&SdkError<E, R>, bool),
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let again = is_retryable(&e) && attempt < policy.max_attempts.max(1);
                observe(&e, again);
                if !again {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(backoff_delay(
            attempt - 1,
            policy.base_delay,
            policy.max_delay,
        ))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type Err = SdkError<ErrorMetadata, Response>;

    fn service(code: &str, status: u16) -> Err {
        SdkError::service_error(
            ErrorMetadata::builder().code(code).build(),
            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };

    #[tokio::test(start_paused = true)]
    async fn a_throttle_is_retried_and_every_attempt_is_heard() {
        let calls = Cell::new(0);
        let mut heard = Vec::new();
        let r = retry_observed(
            FAST,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err(service("ProvisionedThroughputExceededException", 400))
                    } else {
                        Ok(n)
                    }
                }
            },
            |e: &Err, again| heard.push((crate::is_throttling(e), again)),
        )
        .await;
        assert_eq!(r.ok(), Some(3));
        assert_eq!(heard, vec![(true, true), (true, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let calls = Cell::new(0);
        let mut heard = Vec::new();
        let r: Result<(), Err> = retry_observed(
            FAST,
            || {
                calls.set(calls.get() + 1);
                async { Err(service("ValidationException", 400)) }
            },
            |_, again| heard.push(again),
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);
        assert_eq!(heard, vec![false]);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_capped_and_the_last_error_returned() {
        let calls = Cell::new(0);
        let r: Result<(), Err> = retry(FAST, || {
            calls.set(calls.get() + 1);
            async { Err(service("InternalServerError", 500)) }
        })
        .await;
        let e = r.expect_err("always failing");
        assert_eq!(e.code(), Some("InternalServerError"));
        assert_eq!(calls.get(), FAST.max_attempts);
        // Zero attempts configured still makes one.
        calls.set(0);
        let none = RetryPolicy {
            max_attempts: 0,
            ..FAST
        };
        let _ = retry(none, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(service("InternalServerError", 500)) }
        })
        .await;
        assert_eq!(calls.get(), 1);
    }
}
