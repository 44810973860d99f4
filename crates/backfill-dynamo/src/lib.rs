//! The DynamoDB sink: batched puts that do not report success until every
//! item is written, plus the little table administration the tool needs.
//!
//! `BatchWriteItem` may accept a request and leave part of it unwritten
//! (`UnprocessedItems`); the classic way such tools lose data is to count
//! those as written. Here they are resent with exponential backoff and
//! jitter until none is left, or the call fails with the count still owed.

//!
//! Layout: `write` (the batch and conditional write paths), `read` (reads
//! back by key and scans), `admin` (table administration and the budget's
//! DescribeTable read), `wire` and `resend` (the batch body written by the
//! sink itself and resent from its bytes).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use backfill_aws::{describe, is_retryable};
use backfill_capacity::WriteLimiter;

mod admin;
mod keys;
mod read;
pub use read::ScanPage;
mod resend;
mod wire;
mod write;

pub use admin::{prewarm, target_capacity, write_budget, TargetCapacity};
pub use keys::{key_hash, key_label, KeyPacing, ThrottleReason};
pub use write::MAX_BATCH_ITEMS;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Why a write or table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("DynamoDB {op} on table {table} failed: {message}")]
    Service {
        table: String,
        op: &'static str,
        message: String,
        retryable: bool,
    },
    #[error(
        "DynamoDB table {table}: {remaining} items still unprocessed after {attempts} attempts"
    )]
    Unprocessed {
        table: String,
        remaining: usize,
        attempts: u32,
    },
}

impl SinkError {
    /// Whether the same write may succeed later (throttling, a network
    /// failure), rather than being refused again (validation, missing table).
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Service { retryable, .. } => *retryable,
            SinkError::Unprocessed { .. } => true,
        }
    }
}

/// What writing a set of items took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    pub items: usize,
    /// Write capacity DynamoDB reports as consumed.
    pub consumed_wcu: f64,
    /// Requests sent again (unprocessed items or a retryable error).
    pub retries: u32,
    /// Requests refused or partly unprocessed for capacity.
    pub throttled: u32,
    /// Of those, refused for a hot key range or answered with items
    /// unprocessed while paced by key: slowed by key, not fleet-wide.
    pub throttled_key_range: u32,
    /// Conditional puts not made because DynamoDB held a newer or equal version.
    pub skipped_newer: usize,
    /// Indexes (in the order given) of the items skipped as newer.
    pub skipped_indexes: Vec<usize>,
}

impl WriteOutcome {
    pub fn add(&mut self, other: &WriteOutcome) {
        self.items += other.items;
        self.consumed_wcu += other.consumed_wcu;
        self.retries += other.retries;
        self.throttled += other.throttled;
        self.throttled_key_range += other.throttled_key_range;
        self.skipped_newer += other.skipped_newer;
        self.skipped_indexes
            .extend(other.skipped_indexes.iter().copied());
    }
}

/// How persistently a write is retried: the one policy type of the retry
/// layer (`backfill_aws`), whose default is the data path's.
pub use backfill_aws::RetryPolicy;

/// Writes items to DynamoDB tables.
#[derive(Debug, Clone)]
pub struct DynamoSink {
    client: Client,
    retry: RetryPolicy,
    /// Admission of writes to the table this sink is used for, when it has a budget.
    limiter: Option<Arc<WriteLimiter>>,
    /// Pacing of each partition-key value, when the caller knows the key.
    pacing: Option<KeyPacing>,
}

impl DynamoSink {
    pub fn new(client: Client, retry: RetryPolicy) -> Self {
        DynamoSink {
            client,
            retry,
            limiter: None,
            pacing: None,
        }
    }

    /// The same sink, with every write first admitted by `limiter` (debited
    /// by estimated WCU, corrected by consumed WCU, told of throttles).
    pub fn limited(&self, limiter: Arc<WriteLimiter>) -> Self {
        DynamoSink {
            limiter: Some(limiter),
            ..self.clone()
        }
    }

    /// The same sink, with each partition-key value paced under a
    /// partition's limit and slowed alone when DynamoDB names it hot.
    pub fn paced(&self, pacing: KeyPacing) -> Self {
        DynamoSink {
            pacing: Some(pacing),
            ..self.clone()
        }
    }

    /// Waits for the keys' pacing, then for the fleet share.
    async fn admit(&self, estimated: u64, keys: &[(u64, u64)]) {
        if let (Some(p), false) = (&self.pacing, keys.is_empty()) {
            p.pacer.acquire(keys).await;
        }
        if let Some(l) = &self.limiter {
            l.acquire(estimated).await;
        }
    }

    /// After a write: debit what DynamoDB consumed beyond the estimate, or
    /// give back what it did not (when it said: an answer without consumed
    /// capacity changes nothing), and let AIMD know whether the write was
    /// throttled.
    async fn settle(&self, estimated: u64, consumed: Option<f64>, throttled: bool) {
        if let Some(l) = &self.limiter {
            if let Some(consumed) = consumed.filter(|c| c.is_finite() && *c >= 0.0) {
                let extra = consumed.ceil() as u64;
                if extra > estimated {
                    l.acquire(extra - estimated).await;
                } else {
                    l.refund(estimated as f64 - consumed);
                }
            }
            if throttled {
                l.on_throttle();
            } else {
                l.on_success();
            }
        }
    }

    /// A request was throttled: the limiter hears of it now, on the
    /// attempt that got it (nothing was consumed, so nothing is debited). A
    /// hot key range slows the call's keys alone when the sink paces keys
    /// (returns true); any other reason slows the fleet's share.
    /// What the refused request was admitted for (`estimated` WCU) was
    /// not written, and is given back.
    fn throttled_for(&self, reason: ThrottleReason, keys: &[(u64, u64)], estimated: u64) -> bool {
        self.refund(estimated as f64);
        match (&self.pacing, reason) {
            (Some(p), ThrottleReason::KeyRange) if !keys.is_empty() => {
                p.throttled_keys(keys);
                true
            }
            _ => {
                if let Some(l) = &self.limiter {
                    l.on_throttle();
                }
                false
            }
        }
    }

    /// `wcu` admitted was not written: the fleet share may spend it again.
    fn refund(&self, wcu: f64) {
        if let Some(l) = &self.limiter {
            l.refund(wcu);
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn service_error<E, R>(
    table: &str,
    op: &'static str,
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> SinkError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + backfill_aws::HasStatus,
{
    SinkError::Service {
        table: table.to_string(),
        op,
        message: describe(e),
        retryable: is_retryable(e),
    }
}
