//! The SQS job queue and its dead-letter queue.
//!
//! Jobs go on the queue in batches of ten (`SendMessageBatch`, entries that
//! fail are resent); a worker receives with long polling, extends the
//! visibility of a long job, deletes a job once it is done, and moves a job
//! that can never succeed to the DLQ with the reason in message attributes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use backfill_aws::{backoff_delay, describe, is_retryable};
use backfill_job::signing::{MessageSigner, SIGNATURE_ATTRIBUTE};
use backfill_job::JobMessage;

mod dlq;
pub use dlq::DlqMessage;

/// Most entries in one `SendMessageBatch` (SQS limit).
pub const MAX_SEND_BATCH: usize = 10;
/// Longest reason kept in a message attribute.
const MAX_REASON_CHARS: usize = 4000;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {op} on {queue} failed: {message}")]
    Service {
        queue: String,
        op: &'static str,
        message: String,
        retryable: bool,
    },
    #[error("SQS SendMessageBatch on {queue}: {failed} messages still refused after {attempts} attempts: {reason}")]
    SendRefused {
        queue: String,
        failed: usize,
        attempts: u32,
        reason: String,
    },
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Service { retryable, .. } => *retryable,
            QueueError::SendRefused { .. } => true,
        }
    }
}

fn service_error<E, R>(
    queue: &str,
    op: &'static str,
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + backfill_aws::HasStatus,
{
    QueueError::Service {
        queue: queue.to_string(),
        op,
        message: describe(e),
        retryable: is_retryable(e),
    }
}

/// A message taken from the queue, not yet acknowledged.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    /// The body's signature attribute, when the sender signed it.
    pub signature: Option<String>,
}

/// Why a job went to the DLQ, carried as message attributes.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub reason: &'a str,
    /// `malformed_message`, `permanent`, ...
    pub kind: &'a str,
    pub run_id: Option<&'a str>,
    pub table: Option<&'a str>,
    pub job_id: Option<&'a str>,
}

fn string_attribute(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("type and value are set")
}

/// Counts SQS reports for a queue (approximate, as SQS says).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// The job queue and its DLQ.
#[derive(Debug, Clone)]
pub struct JobQueue {
    client: Client,
    url: String,
    dlq_url: String,
    /// Signs every body sent to the job queue, and is what workers check
    /// received bodies against; `None`: signing is off.
    signer: Option<MessageSigner>,
}

impl JobQueue {
    pub fn new(client: Client, url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        JobQueue {
            client,
            url: url.into(),
            dlq_url: dlq_url.into(),
            signer: None,
        }
    }

    /// Signs what this queue sends to the job queue (jobs, raw bodies,
    /// replays) with `signer`; workers check with the same key.
    pub fn with_signer(mut self, signer: Option<MessageSigner>) -> Self {
        self.signer = signer;
        self
    }

    /// The signer, when signing is on.
    pub fn signer(&self) -> Option<&MessageSigner> {
        self.signer.as_ref()
    }

    /// The signature attribute of `body`, for a message to `queue_url`.
    /// Only the job queue's messages are signed: a DLQ copy is evidence of
    /// what arrived, and is signed again if it is ever replayed.
    fn signature_attributes(
        &self,
        queue_url: &str,
        body: &str,
    ) -> Option<HashMap<String, MessageAttributeValue>> {
        let signer = self.signer.as_ref().filter(|_| queue_url == self.url)?;
        Some(HashMap::from([(
            SIGNATURE_ATTRIBUTE.to_string(),
            string_attribute(&signer.sign(body)),
        )]))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Enqueues jobs, ten to a request, in the order given. Entries SQS
    /// refuses are resent with backoff; the call fails only if some remain
    /// refused. Returns how many were sent.
    pub async fn send_jobs(&self, jobs: &[JobMessage]) -> Result<usize, QueueError> {
        for chunk in jobs.chunks(MAX_SEND_BATCH) {
            let bodies: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, j)| (i.to_string(), j.to_body()))
                .collect();
            self.send_batch(&self.url, bodies).await?;
        }
        Ok(jobs.len())
    }

    /// Sends raw bodies (ids unique within the call), resending refused entries.
    pub async fn send_raw(&self, queue_url: &str, bodies: Vec<String>) -> Result<(), QueueError> {
        let entries: Vec<(String, String)> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        for chunk in entries.chunks(MAX_SEND_BATCH) {
            self.send_batch(queue_url, chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        mut pending: Vec<(String, String)>,
    ) -> Result<(), QueueError> {
        const ATTEMPTS: u32 = 8;
        let mut last_reason = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff_delay(
                    attempt,
                    Duration::from_millis(50),
                    Duration::from_secs(5),
                ))
                .await;
            }
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .set_message_attributes(self.signature_attributes(queue_url, body))
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            // This loop is the retry layer here: it resends only the
            // entries SQS refused.
            let resp = match self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if is_retryable(&e) => {
                    last_reason = describe(&e);
                    continue;
                }
                Err(e) => return Err(service_error(queue_url, "SendMessageBatch", &e)),
            };
            let failed: Vec<&str> = resp.failed().iter().map(|f| f.id()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = resp.failed().first() {
                last_reason = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                if f.sender_fault() {
                    return Err(QueueError::SendRefused {
                        queue: queue_url.to_string(),
                        failed: failed.len(),
                        attempts: attempt + 1,
                        reason: last_reason,
                    });
                }
            }
            pending.retain(|(id, _)| failed.contains(&id.as_str()));
        }
        Err(QueueError::SendRefused {
            queue: queue_url.to_string(),
            failed: pending.len(),
            attempts: ATTEMPTS,
            reason: last_reason,
        })
    }

    /// Long-polls for up to `max` messages (1 to 10), hiding them for
    /// `visibility_secs`.
    pub async fn receive(
        &self,
        max: i32,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        // One attempt: the worker's receive loop backs off and polls again.
        let resp = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_secs.clamp(0, 20))
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| service_error(&self.url, "ReceiveMessage", &e))?;
        Ok(resp
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let signature = m
                    .message_attributes()
                    .and_then(|a| a.get(SIGNATURE_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                Some(ReceivedMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                    signature,
                })
            })
            .collect())
    }

    /// Acknowledges a message: it is done and will not come back.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(receipt_handle)
                .send()
        })
        .await
        .map_err(|e| service_error(&self.url, "DeleteMessage", &e))?;
        Ok(())
    }

    /// Hides a message for `secs` more seconds from now (0 hands it back at once).
    pub async fn set_visibility(&self, receipt_handle: &str, secs: i32) -> Result<(), QueueError> {
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(receipt_handle)
                .visibility_timeout(secs)
                .send()
        })
        .await
        .map_err(|e| service_error(&self.url, "ChangeMessageVisibility", &e))?;
        Ok(())
    }

    /// Moves a message to the DLQ with the reason attached, then deletes the
    /// original. The DLQ copy is written first, so a failure in between
    /// leaves a duplicate in the DLQ, never a lost job.
    pub async fn dead_letter(
        &self,
        msg: &ReceivedMessage,
        dl: &DeadLetter<'_>,
    ) -> Result<(), QueueError> {
        let s = string_attribute;
        let reason: String = dl.reason.chars().take(MAX_REASON_CHARS).collect();
        let mut attrs: HashMap<String, MessageAttributeValue> = HashMap::new();
        attrs.insert(
            "error".into(),
            s(if reason.is_empty() {
                "(no reason)"
            } else {
                &reason
            }),
        );
        attrs.insert("error_kind".into(), s(dl.kind));
        attrs.insert("receive_count".into(), s(&msg.receive_count.to_string()));
        attrs.insert("original_message_id".into(), s(&msg.message_id));
        for (k, v) in [
            ("run_id", dl.run_id),
            ("table", dl.table),
            ("job_id", dl.job_id),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                attrs.insert(k.into(), s(v));
            }
        }
        // SQS refuses an empty body; a malformed message may be empty.
        let body = if msg.body.is_empty() {
            "(empty body)"
        } else {
            &msg.body
        };
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .send_message()
                .queue_url(&self.dlq_url)
                .message_body(body)
                .set_message_attributes(Some(attrs.clone()))
                .send()
        })
        .await
        .map_err(|e| service_error(&self.dlq_url, "SendMessage", &e))?;
        self.delete(&msg.receipt_handle).await
    }

    /// Approximate counts of the job queue.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.depth_of(&self.url).await
    }

    /// Approximate counts of any queue (the DLQ, for instance).
    pub async fn depth_of(&self, url: &str) -> Result<QueueDepth, QueueError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
        })
        .await
        .map_err(|e| service_error(url, "GetQueueAttributes", &e))?;
        let get = |n: QueueAttributeName| {
            resp.attributes()
                .and_then(|a| a.get(&n))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}

/// Creates the DLQ and the job queue with a redrive policy to it (SQS moves
/// a message after `max_receive_count` receives). Idempotent: existing
/// queues with the same attributes are returned. Returns `(queue, dlq)` URLs.
pub async fn create_queues(
    client: &Client,
    name: &str,
    dlq_name: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> Result<(String, String), QueueError> {
    let dlq_url = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
        client
            .create_queue()
            .queue_name(dlq_name)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
    })
    .await
    .map_err(|e| service_error(dlq_name, "CreateQueue", &e))?
    .queue_url
    .unwrap_or_default();
    let dlq_arn = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
        client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
    })
    .await
    .map_err(|e| service_error(&dlq_url, "GetQueueAttributes", &e))?
    .attributes
    .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
    .unwrap_or_default();
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#);
    let url = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
        client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .send()
    })
    .await
    .map_err(|e| service_error(name, "CreateQueue", &e))?
    .queue_url
    .unwrap_or_default();
    Ok((url, dlq_url))
}

/// The queue name at the end of a queue URL.
pub fn queue_name_from_url(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}
