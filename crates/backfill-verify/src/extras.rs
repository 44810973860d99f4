//! The item side of a verification: extra items (items no row produces),
//! found one segment of a parallel Scan at a time.
//!
//! Each page of items is read with its key attributes and the attributes
//! the source key columns are copied to; those name the rows that could
//! have produced the items, which are looked up in Postgres in one query
//! per page and mapped. An item is extra when no row found maps to its key.
//! Nothing outlives a page, so no table-wide set of keys is ever held.

use std::collections::HashSet;

use backfill_config::TableConfig;
use backfill_item::compare::key_id;
use backfill_item::Item;

use crate::claims::KeyReader;
use crate::range::rows_by_item;
use crate::{display_item_key, TableReport, Verifier, VerifyError};

impl Verifier {
    /// Scans segment `segment` of `total_segments` of the target (DynamoDB's
    /// parallel Scan) in pages of `page_rows` items and counts the items no
    /// source row produces (`items_scanned`, `extra_count`, `extra`).
    ///
    /// An item is looked up by the source key columns it holds. When only
    /// some key columns are stored in attributes (`claims.rs`), it is looked
    /// up by those, and every row sharing them is mapped: memory is then
    /// bounded by the rows that share such a partial key. An item that
    /// lacks them, or holds text no cast to the column's type reads, names
    /// no row and is extra.
    pub async fn scan_segment(
        &self,
        t: &TableConfig,
        segment: u32,
        total_segments: u32,
    ) -> Result<TableReport, VerifyError> {
        if total_segments == 0 || segment >= total_segments {
            return Err(VerifyError::Usage {
                table: t.source.clone(),
                reason: format!(
                    "scan segment {segment} of {total_segments}: a segment must be below the number of segments, which must be at least 1"
                ),
            });
        }
        let (schema, mapper) = self.prepare(t).await?;
        let reader = KeyReader::new(t, &schema, &mapper);
        let columns = reader.columns();
        if columns.is_empty() {
            return Err(VerifyError::Usage {
                table: t.source.clone(),
                reason: format!(
                    "no key column ({}) is stored in an attribute of {}, so its items cannot name their rows; copy a key column to find extra items",
                    reader.unreadable().join(", "),
                    t.target
                ),
            });
        }
        let mut projection: Vec<&str> = std::iter::once(mapper.partition_key().attribute.as_str())
            .chain(mapper.sort_key().map(|k| k.attribute.as_str()))
            .chain(reader.attributes())
            .chain(std::iter::once(backfill_offload::POINTER_ATTRIBUTE))
            .collect();
        projection.sort_unstable();
        projection.dedup();
        let mut report = TableReport {
            source: t.source.clone(),
            target: t.target.clone(),
            ..Default::default()
        };
        let max = self.opts.max_listed;
        let mut start = None;
        loop {
            self.limiter.until_ready().await;
            let scanned = self
                .sink
                .scan_segment_page(
                    &t.target,
                    start.take(),
                    Some(&projection),
                    Some((segment, total_segments)),
                    Some(self.opts.page_rows),
                    self.opts.consistent_reads,
                )
                .await?;
            self.budgets.charge(&t.target, scanned.consumed_rcu).await;
            let (page, next) = (scanned.items, scanned.next);
            let mut items: Vec<(Item, Option<Vec<String>>)> = Vec::with_capacity(page.len());
            for item in page {
                let key = mapper.key_of(&item);
                let names = self.names_of(t, &reader, &key, &item).await?;
                items.push((key, names));
            }
            let tuples: Vec<Vec<String>> = items.iter().filter_map(|(_, n)| n.clone()).collect();
            let rows = self.source.read_by_text(&schema, &columns, &tuples).await?;
            let produced: HashSet<String> = rows_by_item(&mapper, rows).into_keys().collect();
            for (key, _) in &items {
                report.items_scanned += 1;
                if !produced.contains(&key_id(key)) {
                    TableReport::note(&mut report.extra_count, &mut report.extra, max, || {
                        display_item_key(key)
                    });
                }
            }
            match next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        Ok(report)
    }

    /// The source key values an item holds. An offloaded item's pointer
    /// holds only its key attributes: the whole item is read from S3 when
    /// they do not hold the source key.
    async fn names_of(
        &self,
        t: &TableConfig,
        reader: &KeyReader,
        key: &Item,
        item: &Item,
    ) -> Result<Option<Vec<String>>, VerifyError> {
        if let Some(names) = reader.read(item) {
            return Ok(Some(names));
        }
        if !backfill_offload::is_pointer(item) {
            return Ok(None);
        }
        match &self.offloader {
            Some(off) => Ok(reader.read(&off.fetch(item).await?)),
            None => Err(VerifyError::Usage {
                table: t.source.clone(),
                reason: format!(
                    "item {} of {} is offloaded to S3 and its pointer does not hold the source key; verify with the table's offload bucket",
                    display_item_key(key),
                    t.target
                ),
            }),
        }
    }
}
