//! The proxy's errors, and the DynamoDB-shaped answers they become.

use hyper::StatusCode;
use serde_json::Value;

use crate::size::SizeError;

/// The exact body DynamoDB answers a throttled write with.
pub const THROTTLED_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}"#;

/// The message DynamoDB gives a write throttled by a partition.
pub const KEY_RANGE_MESSAGE: &str = "Throughput exceeds the current capacity for one or more partitions of your table. Consider spreading writes across more partition key values.";

/// The message DynamoDB gives a write over an on-demand table's capacity.
pub const ON_DEMAND_MESSAGE: &str = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot partition.";

/// The ARN a throttle's reason names: the emulator's account and region.
pub const TABLE_ARN_PREFIX: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/";

/// Which limit refused a write, as DynamoDB's `ThrottlingReasons` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The table's provisioned write rate.
    TableProvisioned,
    /// One partition's write rate (a hot key).
    KeyRange,
    /// What an on-demand table can absorb right now.
    MaxOnDemand,
}

impl ThrottleReason {
    /// The `reason` string of DynamoDB's `ThrottlingReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::TableProvisioned => "TableWriteProvisionedThroughputExceeded",
            ThrottleReason::KeyRange => "TableWriteKeyRangeThroughputExceeded",
            ThrottleReason::MaxOnDemand => "TableWriteMaxOnDemandThroughputExceeded",
        }
    }

    /// The exception's `message`.
    pub fn message(self) -> &'static str {
        match self {
            ThrottleReason::TableProvisioned => {
                "The level of configured provisioned throughput for the table was exceeded. \
                 Consider increasing your provisioning level with the UpdateTable API."
            }
            ThrottleReason::KeyRange => KEY_RANGE_MESSAGE,
            ThrottleReason::MaxOnDemand => ON_DEMAND_MESSAGE,
        }
    }
}

/// The body DynamoDB answers a throttled write with: [`THROTTLED_BODY`]'s
/// type, the reason's message, and `ThrottlingReasons` naming the table
/// (left out when the request named none, which is then [`THROTTLED_BODY`]
/// itself for the table's reason).
pub fn throttled_body(reason: ThrottleReason, table: &str) -> String {
    // Written out rather than built as a JSON map: the keys keep DynamoDB's
    // order whichever map features serde_json is built with.
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let mut body = format!(
        "{{\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\",\
         \"message\":{}",
        quote(reason.message())
    );
    if !table.is_empty() {
        body.push_str(&format!(
            ",\"ThrottlingReasons\":[{{\"reason\":{},\"resource\":{}}}]",
            quote(reason.as_str()),
            quote(&format!("{TABLE_ARN_PREFIX}{table}"))
        ));
    }
    body.push('}');
    body
}

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
    /// The write does not fit in the capacity right now: `reason` says
    /// which limit refused it, `table` is the table it was for ("" when the
    /// request named none).
    #[error("provisioned throughput exceeded ({})", reason.as_str())]
    Throttled {
        reason: ThrottleReason,
        table: String,
    },
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
            ProxyError::Throttled { reason, table } => {
                (StatusCode::BAD_REQUEST, throttled_body(*reason, table))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_bodies_carry_the_reason_and_the_table() {
        assert_eq!(
            throttled_body(ThrottleReason::TableProvisioned, ""),
            THROTTLED_BODY
        );
        let v: Value = serde_json::from_str(THROTTLED_BODY).unwrap();
        assert_eq!(v["message"], ThrottleReason::TableProvisioned.message());
        for r in [
            ThrottleReason::TableProvisioned,
            ThrottleReason::KeyRange,
            ThrottleReason::MaxOnDemand,
        ] {
            let body = throttled_body(r, "t\"1");
            assert!(body.starts_with("{\"__type\":"), "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["__type"],
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
            );
            assert_eq!(v["message"], r.message());
            assert_eq!(
                v["ThrottlingReasons"],
                serde_json::json!([{"reason": r.as_str(), "resource": "arn:aws:dynamodb:us-east-1:000000000000:table/t\"1"}])
            );
        }
    }
}
