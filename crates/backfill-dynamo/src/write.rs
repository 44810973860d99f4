//! The write paths: batches of 25 resent until nothing is unprocessed, and
//! conditional single puts that never overwrite a newer item. Every
//! attempt is admitted by the write limiter first, and every throttle
//! reaches it on the attempt that got it.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{PutRequest, ReturnConsumedCapacity, ThrottlingReason, WriteRequest};
use backfill_aws::{backoff_delay, describe, is_retryable, is_throttling};
use backfill_capacity::estimate_wcu;
use backfill_item::{Shape, ShapedItem};

use crate::keys::ThrottleReason;
use crate::resend::{replace_body, BodySlot};
use crate::wire;
use crate::{service_error, DynamoSink, Item, SinkError, WriteOutcome};

/// What one `BatchWriteItem` attempt sends.
enum Attempt {
    /// Requests not sent yet (the first attempt, or the unprocessed ones).
    Requests(Vec<WriteRequest>),
    /// A body written by `wire`, or the bytes of an attempt that failed
    /// as a whole, sent again.
    Body(aws_smithy_types::body::SdkBody),
}

/// Most items in one `BatchWriteItem` (DynamoDB limit).
pub const MAX_BATCH_ITEMS: usize = 25;

/// The items of one batch: the SDK's maps, or items of a job's shape.
// The shape is shared, not borrowed: with a lifetime in the batches, rustc
// could not prove the worker's job futures `Send`.
enum BatchItems {
    Maps(Vec<Item>),
    Shaped(Arc<Shape>, Vec<ShapedItem>),
}

impl BatchItems {
    fn len(&self) -> usize {
        match self {
            BatchItems::Maps(items) => items.len(),
            BatchItems::Shaped(_, items) => items.len(),
        }
    }

    /// The request body `wire` writes, or `None` when it cannot.
    fn body(&self, table: &str) -> Option<Vec<u8>> {
        match self {
            BatchItems::Maps(items) => wire::batch_put_body(table, items),
            BatchItems::Shaped(shape, items) => wire::batch_put_body_shaped(table, shape, items),
        }
    }

    fn into_maps(self) -> Vec<Item> {
        match self {
            BatchItems::Maps(items) => items,
            BatchItems::Shaped(shape, items) => {
                items.into_iter().map(|i| shape.into_item(i)).collect()
            }
        }
    }
}

/// Items in batches of [`MAX_BATCH_ITEMS`], each with its items' estimates.
fn in_batches<T>(items: Vec<(T, u64)>) -> Vec<(Vec<T>, Vec<u64>)> {
    let mut batches = Vec::with_capacity(items.len() / MAX_BATCH_ITEMS + 1);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        batches.push(items.by_ref().take(MAX_BATCH_ITEMS).unzip());
    }
    batches
}

/// One batch to write: its items, their summed estimate, and the
/// `(key, wcu)` of each for per-key pacing (empty when not paced).
struct Batch {
    items: BatchItems,
    estimated: u64,
    keys: Vec<(u64, u64)>,
}

/// The reasons a capacity refusal gave (empty for other errors).
fn batch_reasons(
    e: &SdkError<BatchWriteItemError, aws_smithy_runtime_api::http::Response>,
) -> Option<&[ThrottlingReason]> {
    match e.as_service_error()? {
        BatchWriteItemError::ProvisionedThroughputExceededException(t) => {
            Some(t.throttling_reasons())
        }
        BatchWriteItemError::RequestLimitExceeded(t) => Some(t.throttling_reasons()),
        BatchWriteItemError::ThrottlingException(t) => Some(t.throttling_reasons()),
        _ => None,
    }
}

fn put_reasons(
    e: &SdkError<PutItemError, aws_smithy_runtime_api::http::Response>,
) -> Option<&[ThrottlingReason]> {
    match e.as_service_error()? {
        PutItemError::ProvisionedThroughputExceededException(t) => Some(t.throttling_reasons()),
        PutItemError::RequestLimitExceeded(t) => Some(t.throttling_reasons()),
        PutItemError::ThrottlingException(t) => Some(t.throttling_reasons()),
        _ => None,
    }
}

impl DynamoSink {
    /// Puts every item (full-item, idempotent puts) in batches of 25, up to
    /// `concurrency` batches in flight. Returns only when all are written; on
    /// error nothing is claimed (the caller retries the whole set, which is
    /// safe because puts are idempotent).
    pub async fn put_items(
        &self,
        table: &str,
        items: Vec<Item>,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        let items = items
            .into_iter()
            .map(|item| {
                let wcu = estimate_wcu(&item);
                (item, wcu)
            })
            .collect();
        self.put_items_estimated(table, items, concurrency).await
    }

    /// [`DynamoSink::put_items`] for items that come with their write
    /// capacity estimate (as [`backfill_capacity::estimate_wcu`] gives it):
    /// the worker sizes every item for the 400 KB check anyway, and sizing
    /// is not free.
    pub async fn put_items_estimated(
        &self,
        table: &str,
        items: Vec<(Item, u64)>,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        let batches = in_batches(items)
            .into_iter()
            .map(|(b, wcus)| Batch {
                keys: match &self.pacing {
                    Some(p) => p.costs_of_items(b.iter().zip(wcus.iter().copied())),
                    None => Vec::new(),
                },
                estimated: wcus.iter().sum(),
                items: BatchItems::Maps(b),
            })
            .collect();
        self.write_batches(table, batches, concurrency).await
    }

    /// [`DynamoSink::put_items_estimated`] for items of `shape`, as the
    /// worker makes them.
    pub async fn put_shaped_estimated(
        &self,
        table: &str,
        shape: &Arc<Shape>,
        items: Vec<(ShapedItem, u64)>,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        let batches = in_batches(items)
            .into_iter()
            .map(|(b, wcus)| Batch {
                keys: match &self.pacing {
                    Some(p) => p.costs_of_shaped(shape, b.iter().zip(wcus.iter().copied())),
                    None => Vec::new(),
                },
                estimated: wcus.iter().sum(),
                items: BatchItems::Shaped(Arc::clone(shape), b),
            })
            .collect();
        self.write_batches(table, batches, concurrency).await
    }

    async fn write_batches(
        &self,
        table: &str,
        batches: Vec<Batch>,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(batches)
            .map(|b| self.write_batch(table, b))
            .buffer_unordered(concurrency.max(1))
            .try_fold(WriteOutcome::default(), |mut total, o| async move {
                total.add(&o);
                Ok(total)
            })
            .await
    }

    /// Puts items only where DynamoDB holds no newer version: each item is a
    /// `PutItem` with `attribute_not_exists(<key>) OR <version> < :v`, so an
    /// item the application wrote with a newer or equal version is left as
    /// it is. Conditions cannot go in `BatchWriteItem`, hence one request per
    /// item, `concurrency` in flight. An item without a version attribute is
    /// written only where no item exists. Each item comes with its write
    /// capacity estimate, as for [`DynamoSink::put_items_estimated`].
    pub async fn put_items_if_newer(
        &self,
        table: &str,
        items: Vec<(Item, u64)>,
        key_attribute: &str,
        version_attribute: &str,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(items.into_iter().enumerate())
            .map(|(i, (item, estimated))| async move {
                let mut o = self
                    .put_if_newer(table, item, estimated, key_attribute, version_attribute)
                    .await?;
                if o.skipped_newer > 0 {
                    o.skipped_indexes.push(i);
                }
                Ok::<_, SinkError>(o)
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold(WriteOutcome::default(), |mut total, o| async move {
                total.add(&o);
                Ok(total)
            })
            .await
    }

    async fn put_if_newer(
        &self,
        table: &str,
        item: Item,
        estimated: u64,
        key_attribute: &str,
        version_attribute: &str,
    ) -> Result<WriteOutcome, SinkError> {
        let version = item.get(version_attribute).cloned();
        let keys = match &self.pacing {
            Some(p) => p.costs_of_items(std::iter::once((&item, estimated))),
            None => Vec::new(),
        };
        let mut outcome = WriteOutcome {
            items: 1,
            ..Default::default()
        };
        let mut req = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .expression_attribute_names("#k", key_attribute);
        req = match version {
            Some(v) => req
                .condition_expression("attribute_not_exists(#k) OR #v < :v")
                .expression_attribute_names("#v", version_attribute)
                .expression_attribute_values(":v", v),
            None => req.condition_expression("attribute_not_exists(#k)"),
        };
        let result = backfill_aws::retry_observed(
            self.retry,
            || async {
                self.admit(estimated, &keys).await;
                req.clone().send().await
            },
            // Heard on the attempt that got it, so the limiter slows at once.
            |e, again| {
                if is_throttling(e) {
                    outcome.throttled += 1;
                    let reason = ThrottleReason::of(put_reasons(e).unwrap_or_default());
                    if self.throttled_for(reason, &keys, estimated) {
                        outcome.throttled_key_range += 1;
                    }
                }
                if again {
                    outcome.retries += 1;
                }
            },
        )
        .await;
        match result {
            Ok(resp) => {
                let reported = resp.consumed_capacity().and_then(|c| c.capacity_units());
                outcome.consumed_wcu += reported.unwrap_or(0.0);
                self.settle(estimated, reported, false).await;
                Ok(outcome)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                // A failed condition still consumes capacity (at least 1 WCU).
                self.settle(estimated, Some(1.0), false).await;
                outcome.skipped_newer = 1;
                Ok(outcome)
            }
            Err(e) => Err(service_error(table, "PutItem", &e)),
        }
    }

    /// One batch of at most 25 requests, resent until nothing is unprocessed.
    async fn write_batch(&self, table: &str, batch: Batch) -> Result<WriteOutcome, SinkError> {
        let Batch {
            items,
            mut estimated,
            mut keys,
        } = batch;
        let mut outcome = WriteOutcome {
            items: items.len(),
            ..Default::default()
        };
        let estimate = |p: &[WriteRequest]| -> u64 {
            p.iter()
                .filter_map(|w| w.put_request().map(|p| estimate_wcu(p.item())))
                .sum()
        };
        let mut pending_len = items.len();
        // The body is written from the items here (`wire`), and a request
        // that fails whole is resent from those bytes (`resend`); the
        // unprocessed rest of a batch, or an item this writer cannot
        // write, goes through the SDK's own serializer.
        let mut next = match items.body(table) {
            Some(body) => {
                // Freed here, while they are still in this core's cache,
                // rather than held until the request is answered.
                drop(items);
                Attempt::Body(body.into())
            }
            None => Attempt::Requests(
                items
                    .into_maps()
                    .into_iter()
                    .map(|item| {
                        WriteRequest::builder()
                            .put_request(
                                PutRequest::builder()
                                    .set_item(Some(item))
                                    .build()
                                    .expect("item is set"),
                            )
                            .build()
                    })
                    .collect(),
            ),
        };
        let mut attempt = 0u32;
        // Whether the last refusal was of keys the pacer now slows: then
        // the pacer spaces the resend, and an exponential backoff on top
        // only stalls the job's other keys.
        let mut paced_resend;
        loop {
            paced_resend = false;
            self.admit(estimated, &keys).await;
            let sent = BodySlot::default();
            let request = self
                .client
                .batch_write_item()
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            let result = match next {
                Attempt::Requests(requests) => {
                    request
                        .request_items(table, requests)
                        .customize()
                        .mutate_request(sent.capture())
                        .send()
                        .await
                }
                Attempt::Body(body) => {
                    let again = body.try_clone();
                    let r = request
                        .set_request_items(Some(HashMap::new()))
                        .customize()
                        .mutate_request(replace_body(body))
                        .send()
                        .await;
                    if let Some(b) = again {
                        sent.keep(b);
                    }
                    r
                }
            };
            attempt += 1;
            match result {
                Ok(resp) => {
                    // `None` when the answer carries no consumed capacity.
                    let reported = resp
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .reduce(|a, b| a + b);
                    outcome.consumed_wcu += reported.unwrap_or(0.0);
                    let left = resp
                        .unprocessed_items
                        .and_then(|mut m| m.remove(table))
                        .unwrap_or_default();
                    // Items left unprocessed slow their keys when they are a
                    // few hot ones; else the fleet.
                    let left_items = left
                        .iter()
                        .filter_map(|w| w.put_request().map(|p| p.item()));
                    let by_key = match &self.pacing {
                        Some(p) if !left.is_empty() => {
                            p.unprocessed(left_items.clone().map(|i| (i, estimate_wcu(i))), &keys)
                        }
                        _ => false,
                    };
                    let left_estimate = estimate(&left);
                    // What DynamoDB consumed is what was written; without
                    // that figure, the items it sent back were not.
                    if reported.is_none() {
                        self.refund(left_estimate as f64);
                    }
                    self.settle(estimated, reported, !left.is_empty() && !by_key)
                        .await;
                    if left.is_empty() {
                        return Ok(outcome);
                    }
                    outcome.throttled += 1;
                    if by_key {
                        outcome.throttled_key_range += 1;
                        paced_resend = true;
                    }
                    tracing::debug!(
                        table,
                        unprocessed = left.len(),
                        attempt,
                        "unprocessed items, resending"
                    );
                    estimated = left_estimate;
                    keys = match &self.pacing {
                        Some(p) => p.costs_of_items(left_items.map(|i| (i, estimate_wcu(i)))),
                        None => Vec::new(),
                    };
                    pending_len = left.len();
                    next = Attempt::Requests(left);
                }
                Err(e) => {
                    let retryable = is_retryable(&e);
                    if is_throttling(&e) {
                        outcome.throttled += 1;
                        let reason = ThrottleReason::of(batch_reasons(&e).unwrap_or_default());
                        if self.throttled_for(reason, &keys, estimated) {
                            outcome.throttled_key_range += 1;
                            paced_resend = true;
                        }
                    }
                    if !retryable || attempt >= self.retry.max_attempts {
                        return Err(SinkError::Service {
                            table: table.to_string(),
                            op: "BatchWriteItem",
                            message: describe(&e),
                            retryable,
                        });
                    }
                    tracing::debug!(table, attempt, error = %describe(&e), "batch write failed, retrying");
                    next = match sent.take() {
                        Some(body) => Attempt::Body(body),
                        // Nothing was serialized (or it cannot be read
                        // again): the batch is owed whole, and the job's
                        // retry resends it from the source.
                        None => {
                            return Err(SinkError::Service {
                                table: table.to_string(),
                                op: "BatchWriteItem",
                                message: format!(
                                    "{} (the request could not be kept for resending)",
                                    describe(&e)
                                ),
                                retryable,
                            })
                        }
                    };
                }
            }
            if attempt >= self.retry.max_attempts {
                return Err(SinkError::Unprocessed {
                    table: table.to_string(),
                    remaining: pending_len,
                    attempts: attempt,
                });
            }
            outcome.retries += 1;
            let delay = if paced_resend {
                self.retry.base_delay
            } else {
                backoff_delay(attempt - 1, self.retry.base_delay, self.retry.max_delay)
            };
            tokio::time::sleep(delay).await;
        }
    }
}
