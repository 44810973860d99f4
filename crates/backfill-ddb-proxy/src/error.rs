//! The proxy's errors, and the DynamoDB-shaped answers they become.

use hyper::StatusCode;

use crate::size::SizeError;

/// The exact body DynamoDB answers a throttled write with.
pub const THROTTLED_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}"#;

/// Everything that can go wrong in the proxy. Request errors are answered
/// the way DynamoDB answers them; none of them panics.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration cannot work (raised by `start`).
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// The body is not JSON, or a value has the wrong JSON type.
    #[error("{0}")]
    Serialization(String),
    /// The JSON is well formed but not a valid request.
    #[error("{0}")]
    Validation(String),
    /// The write does not fit in the provisioned capacity right now.
    #[error("provisioned throughput exceeded")]
    Throttled,
    /// The request body could not be read (client went away, too large).
    #[error("request body could not be read: {0}")]
    Body(String),
    /// The upstream could not be reached or did not answer in time.
    #[error("upstream request failed: {0}")]
    Upstream(String),
    /// A server error injected on purpose ([`crate::Faults`]).
    #[error("injected internal server error")]
    InjectedServerError,
}

impl From<SizeError> for ProxyError {
    fn from(e: SizeError) -> Self {
        match e {
            SizeError::Serialization(m) => ProxyError::Serialization(m),
            SizeError::Validation(m) => ProxyError::Validation(m),
        }
    }
}

impl ProxyError {
    /// The HTTP status and DynamoDB error body for this error.
    pub fn status_and_body(&self) -> (StatusCode, String) {
        let body =
            |ty: &str, msg: &str| serde_json::json!({ "__type": ty, "message": msg }).to_string();
        match self {
            ProxyError::Throttled => (StatusCode::BAD_REQUEST, THROTTLED_BODY.to_string()),
            ProxyError::Serialization(m) | ProxyError::Body(m) => (
                StatusCode::BAD_REQUEST,
                body("com.amazon.coral.service#SerializationException", m),
            ),
            ProxyError::Validation(m) => (
                StatusCode::BAD_REQUEST,
                body("com.amazon.coral.validate#ValidationException", m),
            ),
            ProxyError::InjectedServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body(
                    "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    "Internal server error (injected by backfill-ddb-proxy)",
                ),
            ),
            ProxyError::Upstream(m) | ProxyError::Config(m) => (
                StatusCode::BAD_GATEWAY,
                body(
                    "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    &format!("backfill-ddb-proxy: {m}"),
                ),
            ),
        }
    }
}
