//! The DynamoDB sink: batched puts that do not report success until every
//! item is written, plus the little table administration the tool needs.
//!
//! `BatchWriteItem` may accept a request and leave part of it unwritten
//! (`UnprocessedItems`); the classic way such tools lose data is to count
//! those as written. Here they are resent with exponential backoff and
//! jitter until none is left, or the call fails with the count still owed.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnConsumedCapacity, ScalarAttributeType, Select, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use backfill_aws::{backoff_delay, describe, is_retryable, is_throttling};
use backfill_capacity::{estimate_wcu, WriteLimiter};
use backfill_item::{Shape, ShapedItem};
use std::sync::Arc;

mod resend;
mod wire;
use resend::{replace_body, BodySlot};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

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

/// Items in batches of [`MAX_BATCH_ITEMS`], each with its summed estimate.
fn in_batches<T>(items: Vec<(T, u64)>) -> Vec<(Vec<T>, u64)> {
    let mut batches = Vec::with_capacity(items.len() / MAX_BATCH_ITEMS + 1);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut batch = Vec::with_capacity(MAX_BATCH_ITEMS);
        let mut estimated = 0u64;
        for (item, wcu) in items.by_ref().take(MAX_BATCH_ITEMS) {
            batch.push(item);
            estimated += wcu;
        }
        batches.push((batch, estimated));
    }
    batches
}

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
}

impl DynamoSink {
    pub fn new(client: Client, retry: RetryPolicy) -> Self {
        DynamoSink {
            client,
            retry,
            limiter: None,
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

    async fn admit(&self, estimated: u64) {
        if let Some(l) = &self.limiter {
            l.acquire(estimated).await;
        }
    }

    /// After a write: debit what DynamoDB consumed beyond the estimate, and
    /// let AIMD know whether the write was throttled.
    async fn settle(&self, estimated: u64, consumed: f64, throttled: bool) {
        if let Some(l) = &self.limiter {
            let extra = consumed.ceil() as u64;
            if extra > estimated {
                l.acquire(extra - estimated).await;
            }
            if throttled {
                l.on_throttle();
            } else {
                l.on_success();
            }
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

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
            .map(|(b, estimated)| (BatchItems::Maps(b), estimated))
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
            .map(|(b, estimated)| (BatchItems::Shaped(Arc::clone(shape), b), estimated))
            .collect();
        self.write_batches(table, batches, concurrency).await
    }

    async fn write_batches(
        &self,
        table: &str,
        batches: Vec<(BatchItems, u64)>,
        concurrency: usize,
    ) -> Result<WriteOutcome, SinkError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(batches)
            .map(|(b, estimated)| self.write_batch(table, b, estimated))
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
        let limiter = self.limiter.as_deref();
        let result = backfill_aws::retry_observed(
            self.retry,
            || async {
                self.admit(estimated).await;
                req.clone().send().await
            },
            // Heard on the attempt that got it, so the limiter slows at once.
            |e, again| {
                if is_throttling(e) {
                    outcome.throttled += 1;
                    if let Some(l) = limiter {
                        l.on_throttle();
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
                let consumed = resp
                    .consumed_capacity()
                    .and_then(|c| c.capacity_units())
                    .unwrap_or(0.0);
                outcome.consumed_wcu += consumed;
                self.settle(estimated, consumed, false).await;
                Ok(outcome)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                // A failed condition still consumes capacity (at least 1 WCU).
                self.settle(estimated, 1.0, false).await;
                outcome.skipped_newer = 1;
                Ok(outcome)
            }
            Err(e) => Err(service_error(table, "PutItem", &e)),
        }
    }

    /// One batch of at most 25 requests, resent until nothing is unprocessed.
    async fn write_batch(
        &self,
        table: &str,
        items: BatchItems,
        mut estimated: u64,
    ) -> Result<WriteOutcome, SinkError> {
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
        loop {
            self.admit(estimated).await;
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
                    let consumed = resp
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .sum::<f64>();
                    outcome.consumed_wcu += consumed;
                    let left = resp
                        .unprocessed_items
                        .and_then(|mut m| m.remove(table))
                        .unwrap_or_default();
                    self.settle(estimated, consumed, !left.is_empty()).await;
                    if left.is_empty() {
                        return Ok(outcome);
                    }
                    outcome.throttled += 1;
                    tracing::debug!(
                        table,
                        unprocessed = left.len(),
                        attempt,
                        "unprocessed items, resending"
                    );
                    estimated = estimate(&left);
                    pending_len = left.len();
                    next = Attempt::Requests(left);
                }
                Err(e) => {
                    let retryable = is_retryable(&e);
                    if is_throttling(&e) {
                        outcome.throttled += 1;
                        self.settle(0, 0.0, true).await;
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
            tokio::time::sleep(backoff_delay(
                attempt - 1,
                self.retry.base_delay,
                self.retry.max_delay,
            ))
            .await;
        }
    }

    /// Reads items back by key (BatchGetItem, 100 keys a request, strongly
    /// consistent), resending unprocessed keys with backoff until every key
    /// is answered. Returns the items found; a key with no item is absent.
    pub async fn get_items(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, SinkError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| SinkError::Service {
                    table: table.to_string(),
                    op: "BatchGetItem",
                    message: e.to_string(),
                    retryable: false,
                })?;
            // Each request is retried by the retry layer; this loop only
            // resends the keys DynamoDB left unprocessed, a capped number of
            // rounds.
            let mut round = 0u32;
            loop {
                round += 1;
                let resp = backfill_aws::retry(self.retry, || {
                    self.client
                        .batch_get_item()
                        .request_items(table, pending.clone())
                        .send()
                })
                .await
                .map_err(|e| service_error(table, "BatchGetItem", &e))?;
                if let Some(mut r) = resp.responses {
                    found.extend(r.remove(table).unwrap_or_default());
                }
                match resp.unprocessed_keys.and_then(|mut u| u.remove(table)) {
                    Some(left) if !left.keys().is_empty() => pending = left,
                    _ => break,
                }
                if round >= self.retry.max_attempts {
                    return Err(SinkError::Unprocessed {
                        table: table.to_string(),
                        remaining: pending.keys().len(),
                        attempts: round,
                    });
                }
                tokio::time::sleep(backoff_delay(
                    round - 1,
                    self.retry.base_delay,
                    self.retry.max_delay,
                ))
                .await;
            }
        }
        Ok(found)
    }

    /// One page of a table's items (a `Scan` page), from `start`; returns the
    /// items and where the next page starts (`None` at the end).
    pub async fn scan_page(
        &self,
        table: &str,
        start: Option<Item>,
        projection: Option<&[&str]>,
    ) -> Result<(Vec<Item>, Option<Item>), SinkError> {
        let mut req = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start);
        if let Some(attrs) = projection {
            let names: Vec<String> = (0..attrs.len()).map(|i| format!("#p{i}")).collect();
            req = req.projection_expression(names.join(", "));
            for (n, a) in names.iter().zip(attrs) {
                req = req.expression_attribute_names(n, *a);
            }
        }
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || req.clone().send())
            .await
            .map_err(|e| service_error(table, "Scan", &e))?;
        let next = resp.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((resp.items.unwrap_or_default(), next))
    }

    /// Items in a table, by a paginated `Scan` with `Select=COUNT`. For
    /// verification of small and demo tables; it reads the whole table.
    pub async fn count_items(&self, table: &str) -> Result<u64, SinkError> {
        let mut count = 0u64;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .scan()
                    .table_name(table)
                    .select(Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
            })
            .await
            .map_err(|e| service_error(table, "Scan", &e))?;
            count += resp.count().max(0) as u64;
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(count),
            }
        }
    }

    /// Deletes a table and waits until it is gone; `false` when there was none.
    /// For local demos only.
    pub async fn delete_table(&self, table: &str) -> Result<bool, SinkError> {
        match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client.delete_table().table_name(table).send()
        })
        .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(service_error(table, "DeleteTable", &e)),
        }
        for _ in 0..300 {
            match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client.describe_table().table_name(table).send()
            })
            .await
            {
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(true)
                }
                Err(e) => return Err(service_error(table, "DescribeTable", &e)),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Err(SinkError::Service {
            table: table.to_string(),
            op: "DeleteTable",
            message: "table was not deleted within 30 s".into(),
            retryable: true,
        })
    }

    /// Creates an on-demand table with the given key unless one exists, and
    /// waits until it is active. For local stacks and tests; production
    /// tables are created by their owners.
    pub async fn ensure_table(
        &self,
        table: &str,
        partition: (&str, ScalarAttributeType),
        sort: Option<(&str, ScalarAttributeType)>,
    ) -> Result<(), SinkError> {
        let exists = match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client.describe_table().table_name(table).send()
        })
        .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => return Err(service_error(table, "DescribeTable", &e)),
        };
        if !exists {
            let mut req = self
                .client
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest);
            for (name, ty, kt) in std::iter::once((partition.0, partition.1, KeyType::Hash))
                .chain(sort.map(|(n, t)| (n, t, KeyType::Range)))
            {
                req = req
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(name)
                            .attribute_type(ty)
                            .build()
                            .expect("name and type are set"),
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(name)
                            .key_type(kt)
                            .build()
                            .expect("name and type are set"),
                    );
            }
            match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || req.clone().send()).await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(service_error(table, "CreateTable", &e)),
            }
        }
        for _ in 0..300 {
            let d = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client.describe_table().table_name(table).send()
            })
            .await
            .map_err(|e| service_error(table, "DescribeTable", &e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(SinkError::Service {
            table: table.to_string(),
            op: "DescribeTable",
            message: "table did not become ACTIVE within 30 s".into(),
            retryable: true,
        })
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
