//! Why an item could not be offloaded or a pointer resolved, naming table and key.
//!
//! Shared by the offloader and the pointer parsing; the key is shown as
//! canonical DynamoDB JSON so a failure can be traced to its source row.

use backfill_item::Item;

use crate::canonical_json;

/// Why an item could not be offloaded or a pointer could not be resolved.
///
/// Every variant about an item names its target table and its key (the key
/// as DynamoDB JSON), so a failure can be traced to the source row.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// An S3 call failed; [`OffloadError::is_retryable`] says whether trying
    /// again may help.
    #[error("table {table}, key {key}: S3 {operation} of {object} failed: {message}")]
    Storage {
        table: String,
        key: String,
        operation: &'static str,
        /// `s3://bucket/key`.
        object: String,
        message: String,
        retryable: bool,
    },
    /// The item, key or pointer given cannot be used as it is.
    #[error("table {table}, key {key}: {reason}")]
    Invalid {
        table: String,
        key: String,
        reason: String,
    },
    /// The object a pointer names is not the one the pointer describes.
    #[error("table {table}, key {key}: {object} does not match its pointer: {reason}")]
    Corrupt {
        table: String,
        key: String,
        /// `s3://bucket/key`.
        object: String,
        reason: String,
    },
    /// The bucket could not be created.
    #[error("S3 bucket {bucket}: {message}")]
    Bucket {
        bucket: String,
        message: String,
        retryable: bool,
    },
}

impl OffloadError {
    /// Whether the same call may succeed if made again: S3 throttling,
    /// timeouts, transport failures and 5xx. A bad item or pointer will be
    /// just as bad next time, and an object that does not match its pointer
    /// needs the pointer read again, not the object.
    pub fn is_retryable(&self) -> bool {
        match self {
            OffloadError::Storage { retryable, .. } | OffloadError::Bucket { retryable, .. } => {
                *retryable
            }
            OffloadError::Invalid { .. } | OffloadError::Corrupt { .. } => false,
        }
    }
}

/// A key as DynamoDB JSON, for messages; a key that has none (an unknown
/// attribute type) is shown by its attribute names.
pub(crate) fn display_key(key: &Item) -> String {
    canonical_json(key).unwrap_or_else(|_| {
        let mut names: Vec<&str> = key.keys().map(String::as_str).collect();
        names.sort_unstable();
        format!("<{}>", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_table_and_key_and_say_whether_to_retry() {
        let e = OffloadError::Storage {
            table: "orders".into(),
            key: r#"{"id":{"N":"1"}}"#.into(),
            operation: "PutObject",
            object: "s3://b/orders/x.json".into(),
            message: "SlowDown".into(),
            retryable: true,
        };
        assert!(e
            .to_string()
            .contains("table orders, key {\"id\":{\"N\":\"1\"}}"));
        assert!(e.is_retryable());
        let e = OffloadError::Invalid {
            table: "orders".into(),
            key: "k".into(),
            reason: "r".into(),
        };
        assert!(!e.is_retryable());
    }
}
