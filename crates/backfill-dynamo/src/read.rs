//! Reads: items back by key (the inline verification) and scans.

use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity, Select};
use backfill_aws::backoff_delay;

use crate::{service_error, DynamoSink, Item, SinkError};

/// One page of a Scan.
#[derive(Debug, Default)]
pub struct ScanPage {
    pub items: Vec<Item>,
    /// Where the next page starts (`None` at the end).
    pub next: Option<Item>,
    /// Read capacity units DynamoDB reported for the page (0 when it
    /// reported none).
    pub consumed_rcu: f64,
}

/// The capacity units of a call's consumed capacity, summed over tables.
fn units(c: &[ConsumedCapacity]) -> f64 {
    c.iter().filter_map(|c| c.capacity_units()).sum()
}

impl DynamoSink {
    /// Reads items back by key (BatchGetItem, 100 keys a request, strongly
    /// consistent), resending unprocessed keys with backoff until every key
    /// is answered. Returns the items found; a key with no item is absent.
    pub async fn get_items(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, SinkError> {
        Ok(self.get_items_costed(table, keys, true).await?.0)
    }

    /// [`DynamoSink::get_items`], strongly or eventually consistent (half
    /// the read capacity), with the read capacity units DynamoDB reports
    /// it consumed, for a caller that holds reads to a budget.
    pub async fn get_items_costed(
        &self,
        table: &str,
        keys: Vec<Item>,
        consistent: bool,
    ) -> Result<(Vec<Item>, f64), SinkError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(keys.len());
        let mut consumed = 0.0;
        for chunk in keys.chunks(100) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(consistent)
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
                        .return_consumed_capacity(ReturnConsumedCapacity::Total)
                        .send()
                })
                .await
                .map_err(|e| service_error(table, "BatchGetItem", &e))?;
                consumed += units(resp.consumed_capacity());
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
        Ok((found, consumed))
    }

    /// One page of a table's items (a `Scan` page), from `start`; returns the
    /// items and where the next page starts (`None` at the end).
    pub async fn scan_page(
        &self,
        table: &str,
        start: Option<Item>,
        projection: Option<&[&str]>,
    ) -> Result<(Vec<Item>, Option<Item>), SinkError> {
        let page = self
            .scan_segment_page(table, start, projection, None, None, true)
            .await?;
        Ok((page.items, page.next))
    }

    /// [`DynamoSink::scan_page`] within one segment `(segment,
    /// total_segments)` of a parallel Scan, at most `limit` items a page
    /// (so a reader's memory is bounded by its page, not by 1 MB of keys),
    /// strongly or eventually consistent, with the capacity it consumed.
    pub async fn scan_segment_page(
        &self,
        table: &str,
        start: Option<Item>,
        projection: Option<&[&str]>,
        segment: Option<(u32, u32)>,
        limit: Option<u32>,
        consistent: bool,
    ) -> Result<ScanPage, SinkError> {
        let mut req = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(consistent)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(start)
            .set_segment(segment.map(|(s, _)| s.min(i32::MAX as u32) as i32))
            .set_total_segments(segment.map(|(_, n)| n.min(i32::MAX as u32) as i32))
            .set_limit(limit.map(|l| l.clamp(1, i32::MAX as u32) as i32));
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
        let consumed_rcu = resp
            .consumed_capacity
            .as_ref()
            .map_or(0.0, |c| units([c.clone()].as_slice()));
        let next = resp.last_evaluated_key.filter(|k| !k.is_empty());
        Ok(ScanPage {
            items: resp.items.unwrap_or_default(),
            next,
            consumed_rcu,
        })
    }

    /// Items in a table, by a paginated `Scan` with `Select=COUNT`. For
    /// verification of small and demo tables; it reads the whole table.
    pub async fn count_items(&self, table: &str) -> Result<u64, SinkError> {
        // A page that fails retryably counts the table again: a count half
        // made is no answer.
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            let mut pages = self
                .client
                .scan()
                .table_name(table)
                .select(Select::Count)
                .into_paginator()
                .send();
            async move {
                let mut count = 0u64;
                while let Some(page) = pages.next().await {
                    count += page?.count().max(0) as u64;
                }
                Ok(count)
            }
        })
        .await
        .map_err(|e| service_error(table, "Scan", &e))
    }
}
