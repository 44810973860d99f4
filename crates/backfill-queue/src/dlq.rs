//! The dead-letter queue as on-call tools see it: walk every message once
//! (each held invisible until the walk is over), then release, delete or
//! send its body back to the job queue.
//!
//! A walk holds what it received: SQS hands a message out again only once
//! its visibility timeout is over, so holding each message for the length of
//! the walk is what makes every message appear exactly once in it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};

use crate::{service_error, JobQueue, QueueError};

/// Most entries in one `ChangeMessageVisibilityBatch` (SQS limit).
const MAX_VISIBILITY_BATCH: usize = 10;

/// A message read from the DLQ and held invisible until it is released,
/// deleted or its hold runs out.
#[derive(Debug, Clone)]
pub struct DlqMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// The message attributes (`error`, `error_kind`, `run_id`, `table`,
    /// `job_id`, `receive_count`, `original_message_id` when a worker
    /// dead-lettered it; none when SQS moved it after `maxReceiveCount`).
    pub attributes: HashMap<String, String>,
    /// SQS's `SentTimestamp`, ms since the epoch: when a worker sent it to
    /// the DLQ, or when it was first enqueued if SQS moved it there.
    pub sent_timestamp_ms: Option<u64>,
    /// SQS's `ApproximateReceiveCount`, this walk's receive included.
    pub approximate_receive_count: u32,
    /// When this walk received it, to know when its hold needs extending.
    pub received_at: Instant,
}

impl DlqMessage {
    /// A string message attribute, if set.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

impl JobQueue {
    /// Receives up to `max` (1 to 10) DLQ messages with their attributes,
    /// hiding them for `hold_secs`.
    pub async fn receive_dead(
        &self,
        max: i32,
        wait_secs: i32,
        hold_secs: i32,
    ) -> Result<Vec<DlqMessage>, QueueError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(max.clamp(1, 10))
                .wait_time_seconds(wait_secs.clamp(0, 20))
                .visibility_timeout(hold_secs)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
        })
        .await
        .map_err(|e| service_error(&self.dlq_url, "ReceiveMessage", &e))?;
        let received_at = Instant::now();
        Ok(resp
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = |n: MessageSystemAttributeName| {
                    m.attributes()
                        .and_then(|a| a.get(&n))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                let approximate_receive_count =
                    system(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(1);
                let sent_timestamp_ms = system(MessageSystemAttributeName::SentTimestamp);
                let attributes = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| {
                                v.string_value().map(|s| (k.clone(), s.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(DlqMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    attributes,
                    sent_timestamp_ms,
                    approximate_receive_count,
                    received_at,
                })
            })
            .collect())
    }

    /// Every message in the DLQ, each once, all held for `hold_secs`.
    ///
    /// Stops at the first receive that brings nothing new: a long poll of one
    /// second asks every SQS server, so an empty answer means no visible
    /// message is left. A message seen twice (its hold ran out during a very
    /// long walk) is not returned twice.
    pub async fn walk_dead(&self, hold_secs: i32) -> Result<Vec<DlqMessage>, QueueError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        loop {
            let batch = self.receive_dead(10, 1, hold_secs).await?;
            let mut new = 0;
            for m in batch {
                if seen.insert(m.message_id.clone()) {
                    new += 1;
                    out.push(m);
                }
            }
            if new == 0 {
                return Ok(out);
            }
        }
    }

    /// Hides a DLQ message for `secs` more seconds from now (0 releases it).
    pub async fn hold_dead(&self, receipt_handle: &str, secs: i32) -> Result<(), QueueError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(receipt_handle)
                .visibility_timeout(secs)
                .send()
        })
        .await
        .map_err(|e| service_error(&self.dlq_url, "ChangeMessageVisibility", &e))?;
        Ok(())
    }

    /// Extends a held message's hold when more than half of it has passed,
    /// so a slow replay never lets a message reappear in the middle.
    pub async fn keep_held(&self, msg: &mut DlqMessage, hold_secs: i32) -> Result<(), QueueError> {
        let half = Duration::from_secs(u64::try_from(hold_secs.max(0)).unwrap_or(0) / 2);
        if msg.received_at.elapsed() >= half {
            self.hold_dead(&msg.receipt_handle, hold_secs).await?;
            msg.received_at = Instant::now();
        }
        Ok(())
    }

    /// Makes DLQ messages visible again at once, ten to a request. Returns
    /// how many SQS refused to release (they come back when their hold ends).
    pub async fn release_dead(&self, receipt_handles: &[&str]) -> Result<usize, QueueError> {
        let mut refused = 0;
        for chunk in receipt_handles.chunks(MAX_VISIBILITY_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .change_message_visibility_batch()
                    .queue_url(&self.dlq_url)
                    .set_entries(Some(entries.clone()))
                    .send()
            })
            .await
            .map_err(|e| service_error(&self.dlq_url, "ChangeMessageVisibilityBatch", &e))?;
            refused += resp.failed().len();
        }
        Ok(refused)
    }

    /// Deletes a message from the DLQ for good.
    pub async fn delete_dead(&self, receipt_handle: &str) -> Result<(), QueueError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .delete_message()
                .queue_url(&self.dlq_url)
                .receipt_handle(receipt_handle)
                .send()
        })
        .await
        .map_err(|e| service_error(&self.dlq_url, "DeleteMessage", &e))?;
        Ok(())
    }

    /// Sends one body to the job queue; returns the new message's id.
    pub async fn send_body(&self, body: &str) -> Result<String, QueueError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .set_message_attributes(self.signature_attributes(&self.url, body))
                .send()
        })
        .await
        .map_err(|e| service_error(&self.url, "SendMessage", &e))?;
        Ok(resp.message_id.unwrap_or_default())
    }
}
