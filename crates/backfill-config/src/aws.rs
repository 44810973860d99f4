//! `[aws]`: where the AWS services are and how long one call may take.
//!
//! Its own section because every AWS client is built from it alone, in
//! one place (backfill-aws), whatever service it talks to.

use serde::{Deserialize, Serialize};

/// Where the AWS services are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// One endpoint for every service (an emulator that serves all of them).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// DynamoDB endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub dynamodb_endpoint_url: Option<String>,
    /// SQS endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub sqs_endpoint_url: Option<String>,
    /// S3 endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub s3_endpoint_url: Option<String>,
    /// Longest one attempt of an AWS call may take, connecting included,
    /// before it is abandoned and retried: a request the service (or a
    /// proxy on the way) accepted but never answered would otherwise hold
    /// its job until the process is stopped. Must be longer than
    /// `queue.wait_time_secs`, SQS's long poll.
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: u64,
}

fn default_attempt_timeout() -> u64 {
    60
}

impl AwsConfig {
    pub fn dynamodb_endpoint(&self) -> Option<&str> {
        self.dynamodb_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.s3_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
    pub fn sqs_endpoint(&self) -> Option<&str> {
        self.sqs_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
}
