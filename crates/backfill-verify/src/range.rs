//! The row side of a verification: the rows of one key range, read in
//! counted pages, each compared with its item.
//!
//! Nothing outlives a page. Two rows that claim one item are found within
//! a page by their keys, and across pages and ranges by the item itself: an
//! item that differs from a row is read for the source key columns it
//! holds, and when those name another row of the table that maps to the
//! same item, the item is reported as claimed by both rows (a collision),
//! not as a difference.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use backfill_config::{Oversize, TableConfig};
use backfill_item::compare::{diff_items, key_id};
use backfill_item::{Item, ItemMapper, MapError};
use backfill_job::{KeyRange, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableSchema};

use crate::claims::KeyReader;
use crate::{display_item_key, newer_in_target, TableReport, Verifier, VerifyError};

/// Parallel Scan segments `verify_table` reads, one after the other: the
/// same code a fleet of scan jobs runs, each on its own segment.
pub const TABLE_SCAN_SEGMENTS: u32 = 4;

/// Missing and different rows of one range read again before they are
/// reported; more are reported as first seen.
const MAX_RECHECK_ROWS: usize = 10_000;

impl Verifier {
    /// Re-reads every row and every item of a table; reports each missing,
    /// extra and different item by key (and attribute): the whole key
    /// range, then every segment of a parallel Scan. Its memory is bounded
    /// by a page, whatever the size of the table.
    pub async fn verify_table(&self, t: &TableConfig) -> Result<TableReport, VerifyError> {
        let mut report = self.verify_range(t, &KeyRange::all()).await?;
        for segment in 0..TABLE_SCAN_SEGMENTS {
            let part = self.scan_segment(t, segment, TABLE_SCAN_SEGMENTS).await?;
            report.merge(part, self.opts.max_listed);
        }
        Ok(report)
    }

    /// Compares the rows of the half-open key range `range` with their
    /// items: missing, different (by attribute), unmappable rows, items
    /// newer in DynamoDB, and items two rows claim. Reads the range in
    /// counted pages of `page_rows`; memory is bounded by the page.
    ///
    /// A collision across pages or ranges is found from the item: when it
    /// differs from its row, the source key columns it holds name the row
    /// that wrote it, and if that row exists and maps to the same item the
    /// item is reported claimed by both. Where a key column cannot be read
    /// back from the item (not copied to an attribute nor a key attribute
    /// of its own, or held in a form no cast reads: see `claims.rs`), or the
    /// text it holds is not a value of the column's type, such an item is
    /// reported as a difference instead.
    pub async fn verify_range(
        &self,
        t: &TableConfig,
        range: &KeyRange,
    ) -> Result<TableReport, VerifyError> {
        let (schema, mapper) = self.prepare(t).await?;
        let reader = KeyReader::new(t, &schema, &mapper);
        let columns: Vec<&str> = mapper.column_attributes().collect();
        let mut report = TableReport {
            source: t.source.clone(),
            target: t.target.clone(),
            ..Default::default()
        };
        let query = PageQuery::new(&schema, range);
        let mut after: Option<KeyTuple> = None;
        let mut suspects: Vec<SourceRow> = Vec::new();
        loop {
            let rows = self
                .read_counted_page(&schema, &query, range, after.as_ref(), &mut report)
                .await?;
            let full = rows.len() == self.opts.page_rows as usize;
            let Some(last) = rows.last() else { break };
            after = Some(last.key.clone());
            let claims = Claims {
                schema: &schema,
                reader: &reader,
            };
            let mut page = TableReport::default();
            let differing = self
                .check_rows(t, &mapper, &columns, &rows, &mut page, Some(claims))
                .await?;
            // Missing and different rows are read again at the end (up to a
            // bound, so memory stays bounded on a badly broken range; past
            // it they are reported as first seen). Collisions and rows that
            // cannot be mapped do not settle: they stand as found.
            if !differing.is_empty() && suspects.len() + differing.len() <= MAX_RECHECK_ROWS {
                page.missing_count = 0;
                page.missing.clear();
                page.different_count = 0;
                page.different.clear();
                suspects.extend(differing);
            }
            report.merge(page, self.opts.max_listed);
            if !full {
                break;
            }
        }
        if !suspects.is_empty() {
            self.recheck(
                t,
                &schema,
                &mapper,
                &reader,
                &columns,
                &suspects,
                &mut report,
            )
            .await?;
        }
        Ok(report)
    }

    /// Reads the suspect rows and their items again after
    /// `recheck_after` and reports what still differs: a row the
    /// application changed (in both stores) or deleted while the range was
    /// read is no finding.
    #[allow(clippy::too_many_arguments)]
    async fn recheck(
        &self,
        t: &TableConfig,
        schema: &TableSchema,
        mapper: &ItemMapper,
        reader: &KeyReader,
        columns: &[&str],
        suspects: &[SourceRow],
        report: &mut TableReport,
    ) -> Result<(), VerifyError> {
        tracing::info!(table = %t.source, suspects = suspects.len(), "re-checking differences after a pause");
        tokio::time::sleep(self.opts.recheck_after).await;
        for chunk in suspects.chunks(self.opts.page_rows.max(1) as usize) {
            let mut now_rows = Vec::with_capacity(chunk.len());
            for r in chunk {
                if let Some(row) = self.source.read_key(schema, &r.key).await? {
                    now_rows.push(row);
                }
            }
            let claims = Claims { schema, reader };
            let mut second = TableReport::default();
            self.check_rows(t, mapper, columns, &now_rows, &mut second, Some(claims))
                .await?;
            // Only what still differs: the rest of the second look was
            // counted by the first.
            report.merge(
                TableReport {
                    missing_count: second.missing_count,
                    missing: second.missing,
                    different_count: second.different_count,
                    different: second.different,
                    ..Default::default()
                },
                self.opts.max_listed,
            );
        }
        Ok(())
    }

    /// Reads the page of `range` after `after` and checks its row count
    /// against an independent count of the same key span, so a reader that
    /// skipped rows cannot pass. A disagreement is read and counted once
    /// more (a row the application inserted or deleted in between settles)
    /// before it is reported.
    async fn read_counted_page(
        &self,
        schema: &TableSchema,
        query: &PageQuery,
        range: &KeyRange,
        after: Option<&KeyTuple>,
        report: &mut TableReport,
    ) -> Result<Vec<SourceRow>, VerifyError> {
        let limit = self.opts.page_rows;
        let mut attempt = 0;
        loop {
            let rows = self.source.read_page(schema, query, after, limit).await?;
            // A full page covers the span up to its last key; a short one
            // the rest of the range.
            let through = (rows.len() == limit as usize)
                .then(|| rows.last().map(|r| r.key.clone()))
                .flatten();
            let lower = match (after, &range.lo) {
                (Some(a), _) => Bound::Excluded(a),
                (None, Some(lo)) => Bound::Included(lo),
                (None, None) => Bound::Unbounded,
            };
            let upper = match (&through, &range.hi) {
                (Some(k), _) => Bound::Included(k),
                (None, Some(hi)) => Bound::Excluded(hi),
                (None, None) => Bound::Unbounded,
            };
            let counted = self.source.count_between(schema, lower, upper).await?;
            if counted == rows.len() as u64 {
                return Ok(rows);
            }
            attempt += 1;
            if attempt == 2 {
                let show = |k: Option<&KeyTuple>, open: &str| {
                    k.map(|k| backfill_job::display_key(k))
                        .unwrap_or_else(|| open.to_string())
                };
                let from = match after {
                    Some(a) => format!("after {}", backfill_job::display_key(a)),
                    None => format!("from {}", show(range.lo.as_ref(), "the start")),
                };
                let to = match &through {
                    Some(k) => format!("through {}", backfill_job::display_key(k)),
                    None => format!("before {}", show(range.hi.as_ref(), "the end")),
                };
                TableReport::note(
                    &mut report.count_mismatch_count,
                    &mut report.count_mismatches,
                    self.opts.max_listed,
                    || {
                        format!(
                            "keys {from} {to}: the source holds {counted} rows, the page reader returned {}",
                            rows.len()
                        )
                    },
                );
                return Ok(rows);
            }
        }
    }

    /// Compares rows with their items; records missing, different,
    /// unmappable rows and items two rows of the page claim. With `claims`,
    /// an item that differs from its row is also checked for a claim by
    /// another row of the table (a collision across pages). Returns the
    /// rows whose item is missing or different.
    pub(crate) async fn check_rows(
        &self,
        t: &TableConfig,
        mapper: &ItemMapper,
        columns: &[&str],
        rows: &[SourceRow],
        report: &mut TableReport,
        claims: Option<Claims<'_>>,
    ) -> Result<Vec<SourceRow>, VerifyError> {
        let max = self.opts.max_listed;
        let mut mapped: Vec<(&SourceRow, Item, Item, String)> = Vec::with_capacity(rows.len());
        // Two rows of one page may claim one item: it is read once.
        let mut page_keys: HashMap<String, (String, usize)> = HashMap::new();
        // Rows named with another of their page, both of them: their item
        // is one of theirs (which one depends on which the copy took
        // first: stripes copied side by side take either), and the other
        // row's values in it are not a difference too.
        let mut collided: HashSet<usize> = HashSet::new();
        let mut keys: Vec<Item> = Vec::with_capacity(rows.len());
        for row in rows {
            report.rows_checked += 1;
            let item = match mapper.map_row(row) {
                Ok(item) => item,
                // A row that cannot become an item is a finding, not a
                // reason to stop: the rest of the table is still checked.
                Err(e @ MapError::Row { .. }) => {
                    TableReport::note(
                        &mut report.unmappable_count,
                        &mut report.unmappable,
                        max,
                        || (backfill_job::display_key(&row.key), e.row_reason()),
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // The worker rejects an item over 400 KB that has nowhere to go.
            let size = backfill_item::size::item_size_upper_bound(&item);
            if size > backfill_item::size::MAX_ITEM_BYTES && t.oversize == Oversize::Fail {
                TableReport::note(
                    &mut report.unmappable_count,
                    &mut report.unmappable,
                    max,
                    || {
                        (
                            backfill_job::display_key(&row.key),
                            format!("the item is {size} bytes, over DynamoDB's 400 KB limit"),
                        )
                    },
                );
                continue;
            }
            let key = mapper.key_of(&item);
            let id = key_id(&key);
            let source_key = backfill_job::display_key(&row.key);
            if let Some((first, at)) = page_keys.get(&id) {
                TableReport::note(
                    &mut report.collision_count,
                    &mut report.collisions,
                    max,
                    || {
                        format!(
                            "item {} is claimed by rows {first} and {source_key}",
                            display_item_key(&key)
                        )
                    },
                );
                collided.insert(*at);
                collided.insert(mapped.len());
            } else {
                page_keys.insert(id.clone(), (source_key, mapped.len()));
                keys.push(key.clone());
            }
            mapped.push((row, item, key, id));
        }
        let actual = self.read_items(&t.target, keys, mapper).await?;
        let mut differing = Vec::new();
        // Items that differ from their row, to be checked for a claim by
        // another row before they are reported.
        let mut suspects = Vec::new();
        for (n, (row, item, key, id)) in mapped.into_iter().enumerate() {
            report.source_digest.add(&item, columns);
            match actual.get(&id) {
                None => {
                    TableReport::note(&mut report.missing_count, &mut report.missing, max, || {
                        display_item_key(&key)
                    });
                    differing.push(row.clone());
                }
                Some(found) if newer_in_target(mapper, &item, found) => {
                    report.newer_in_target += 1;
                }
                Some(found) => {
                    let diffs = diff_items(&item, found);
                    if diffs.is_empty() || (claims.is_some() && collided.contains(&n)) {
                        continue;
                    }
                    differing.push(row.clone());
                    suspects.push((row, key, id, diffs));
                }
            }
        }
        let claimed = match &claims {
            Some(c) => {
                let items = suspects.iter().filter_map(|(_, _, id, _)| actual.get(id));
                c.claimants(self, mapper, items).await?
            }
            None => HashMap::new(),
        };
        for (row, key, id, diffs) in suspects {
            let other = claimed
                .get(&id)
                .and_then(|rows| rows.iter().find(|k| **k != row.key));
            match other {
                Some(other) => TableReport::note(
                    &mut report.collision_count,
                    &mut report.collisions,
                    max,
                    || {
                        format!(
                            "item {} is claimed by rows {} and {}",
                            display_item_key(&key),
                            backfill_job::display_key(other),
                            backfill_job::display_key(&row.key)
                        )
                    },
                ),
                None => TableReport::note(
                    &mut report.different_count,
                    &mut report.different,
                    max,
                    || (display_item_key(&key), diffs),
                ),
            }
        }
        Ok(differing)
    }
}

/// What a range check needs to find the rows items name.
#[derive(Clone, Copy)]
pub(crate) struct Claims<'a> {
    pub(crate) schema: &'a TableSchema,
    pub(crate) reader: &'a KeyReader,
}

impl Claims<'_> {
    /// The rows of the table that the given items name by their source key
    /// columns, by the item key each maps to: one query for the lot. Empty
    /// when the key cannot be read back whole (a part of it would name
    /// rows that merely share it).
    async fn claimants(
        &self,
        v: &Verifier,
        mapper: &ItemMapper,
        items: impl Iterator<Item = &Item>,
    ) -> Result<HashMap<String, Vec<KeyTuple>>, VerifyError> {
        if !self.reader.is_complete() {
            return Ok(HashMap::new());
        }
        let tuples: Vec<Vec<String>> = items.filter_map(|i| self.reader.read(i)).collect();
        let columns = self.reader.columns();
        let rows = v
            .source
            .read_by_text(self.schema, &columns, &tuples)
            .await?;
        Ok(rows_by_item(mapper, rows))
    }
}

/// The rows by the key id of the item each maps to; a row that cannot
/// become an item claims none.
pub(crate) fn rows_by_item(
    mapper: &ItemMapper,
    rows: Vec<SourceRow>,
) -> HashMap<String, Vec<KeyTuple>> {
    let mut out: HashMap<String, Vec<KeyTuple>> = HashMap::new();
    for row in rows {
        if let Ok(item) = mapper.map_row(&row) {
            out.entry(key_id(&mapper.key_of(&item)))
                .or_default()
                .push(row.key);
        }
    }
    out
}
