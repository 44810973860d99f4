//! AWS SDK clients, built once from the config and passed down, and the one
//! place that decides whether a failed AWS call may be retried, and retries it.
//!
//! Every client (DynamoDB, SQS, S3) is built here with the SDK's own retries
//! switched off (`RetryConfig::disabled()`), as vector builds its clients:
//! retrying is done in one layer of ours ([`retry`], and the batch writer's
//! loop that knows partial results), so every throttle reaches the write
//! limiter and the metrics on the attempt that got it, not after the SDK has
//! quietly spent its own three attempts under each of ours.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::region::Region;
use aws_types::SdkConfig;
use backfill_config::AwsConfig;

mod retry;
pub use retry::{retry, retry_observed, RetryPolicy};

/// The clients every role uses.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

/// Credentials used only when talking to a local emulator.
#[derive(Clone, Debug)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl AwsClients {
    /// Builds the clients from the default credential chain (environment,
    /// profile, web identity on Kubernetes, instance metadata).
    pub async fn from_config(cfg: &AwsConfig) -> Self {
        Self::build(cfg, None).await
    }

    /// Builds the clients with fixed credentials (tests against emulators).
    pub async fn with_static_credentials(cfg: &AwsConfig, creds: StaticCredentials) -> Self {
        Self::build(cfg, Some(creds)).await
    }

    /// Clients of one local emulator (every service at `endpoint`), with
    /// test credentials, built exactly as production builds its clients:
    /// tests and benchmarks run the client the fleet runs.
    pub async fn for_emulator(endpoint: &str) -> Self {
        let cfg = AwsConfig {
            region: "us-east-1".to_string(),
            endpoint_url: Some(endpoint.to_string()),
            dynamodb_endpoint_url: None,
            sqs_endpoint_url: None,
            s3_endpoint_url: None,
            attempt_timeout_secs: 60,
        };
        let creds = StaticCredentials {
            access_key_id: "test".to_string(),
            secret_access_key: "test".to_string(),
        };
        Self::build(&cfg, Some(creds)).await
    }

    async fn build(cfg: &AwsConfig, creds: Option<StaticCredentials>) -> Self {
        let shared = shared_config(cfg, creds).await;
        AwsClients {
            dynamodb: dynamodb_client(&shared, cfg.dynamodb_endpoint()),
            sqs: sqs_client(&shared, cfg.sqs_endpoint()),
            s3: s3_client_from(&shared, cfg.s3_endpoint()),
        }
    }
}

/// The configuration every client starts from: region, credentials, the
/// attempt timeout, and no SDK retries (ours retry; see the module doc).
pub async fn shared_config(cfg: &AwsConfig, creds: Option<StaticCredentials>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .timeout_config(timeouts(cfg))
        .retry_config(RetryConfig::disabled());
    if let Some(c) = creds {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            None,
            None,
            "static",
        ));
    }
    loader.load().await
}

/// A DynamoDB client from `shared`, pointed at `endpoint` when one is given.
pub fn dynamodb_client(shared: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::config::Builder::from(shared);
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

/// An SQS client from `shared`, pointed at `endpoint` when one is given.
pub fn sqs_client(shared: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_sqs::Client {
    let mut b = aws_sdk_sqs::config::Builder::from(shared);
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_sqs::Client::from_conf(b.build())
}

/// An S3 client from `shared`. With an `endpoint` (an emulator) addressing
/// is path-style, since an emulator on `127.0.0.1` has no per-bucket host
/// names.
pub fn s3_client_from(shared: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::config::Builder::from(shared);
    if let Some(url) = endpoint {
        b = b.endpoint_url(url).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

/// The SDK's timeouts from the config: each attempt of a call is bounded
/// (`aws.attempt_timeout_secs`), so a request that is never answered is
/// abandoned and retried like any transport failure instead of holding its
/// job. Connecting keeps the SDK's own, shorter bound.
pub fn timeouts(cfg: &AwsConfig) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(cfg.attempt_timeout_secs))
        .build()
}

/// Error codes that mean "too fast, try again later".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
];

/// Error codes of a service that is briefly unable to answer.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "KMSThrottlingException",
];

/// Whether an AWS call that failed this way may succeed if tried again:
/// transport failures, timeouts, throttling and 5xx are retryable; a
/// validation error, a missing resource or a refused condition is not.
pub fn is_retryable<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            THROTTLING_CODES.contains(&code)
                || TRANSIENT_CODES.contains(&code)
                || se.raw().status_code() >= 500
        }
        _ => false,
    }
}

/// Whether the failure is the service saying "slow down".
pub fn is_throttling<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            THROTTLING_CODES.contains(&se.err().code().unwrap_or_default())
        }
        _ => false,
    }
}

/// A response whose HTTP status can be read.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// A one-line description of an AWS failure: code and message, or the
/// transport failure with its cause chain.
pub fn describe<
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
>(
    err: &SdkError<E, R>,
) -> String {
    match err {
        // An answer that is not the service's (a 404 from a wrong endpoint,
        // a proxy's page) has no error code: its HTTP status says more.
        SdkError::ServiceError(se) if se.err().code().is_none() => format!(
            "HTTP {} with no AWS error in the body{} (is the endpoint URL right?)",
            se.raw().status_code(),
            se.err()
                .message()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        SdkError::ServiceError(se) => format!(
            "{}: {}",
            se.err().code().unwrap_or("unknown error"),
            se.err().message().unwrap_or("(no message)")
        ),
        other => {
            let mut s = other.to_string();
            let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(other);
            while let Some(c) = cur {
                s.push_str(": ");
                s.push_str(&c.to_string());
                cur = c.source();
            }
            s
        }
    }
}

/// Exponential backoff with full jitter: a random delay in
/// `[0, min(cap, base * 2^attempt)]`, so that a fleet retrying together spreads out.
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let max = exp.min(cap);
    let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(jitter(nanos))
}

fn jitter(max: u64) -> u64 {
    rand::random_range(0..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        let base = Duration::from_millis(10);
        let cap = Duration::from_millis(500);
        for attempt in 0..40 {
            let d = backoff_delay(attempt, base, cap);
            assert!(d <= cap);
            assert!(d <= base * 2u32.saturating_pow(attempt.min(20)));
        }
    }
}
