//! Confirmation by digest: a range its copy recorded (items written and
//! their order-independent digest) is confirmed when the source still
//! holds the same rows, counted independently, and the target's items add
//! up to the same digest; nothing is compared item by item then. Any
//! disagreement (a row changed, added or deleted since the copy, a row
//! that no longer maps, an item the application rewrote) sends the range
//! to the row-by-row comparison of [`Verifier::verify_range`], which names
//! what differs.

use std::ops::Bound;

use backfill_config::TableConfig;
use backfill_item::compare::ItemDigest;
use backfill_job::{Expect, KeyRange, KeyTuple};
use backfill_source::reader::PageQuery;

use crate::{TableReport, Verifier, VerifyError};

impl Verifier {
    /// [`Verifier::verify_range`], first trying to confirm the range by
    /// what its copy recorded (`expect`).
    pub async fn verify_range_expecting(
        &self,
        t: &TableConfig,
        range: &KeyRange,
        expect: Option<&Expect>,
    ) -> Result<TableReport, VerifyError> {
        if let Some(e) = expect {
            if let Some(report) = self.confirm(t, range, e).await? {
                return Ok(report);
            }
            tracing::info!(table = %t.source, %range, "the range differs from what its copy recorded: comparing row by row");
        }
        self.verify_range(t, range).await
    }

    /// The report of a range confirmed by digest, or `None` when anything
    /// disagrees with `expect`.
    async fn confirm(
        &self,
        t: &TableConfig,
        range: &KeyRange,
        expect: &Expect,
    ) -> Result<Option<TableReport>, VerifyError> {
        let (schema, mapper) = self.prepare(t).await?;
        let columns: Vec<&str> = mapper.column_attributes().collect();
        let query = PageQuery::new(&schema, range);
        let limit = self.opts.page_rows;
        let mut after: Option<KeyTuple> = None;
        let mut source = ItemDigest::default();
        let mut target = ItemDigest::default();
        loop {
            let rows = self
                .source
                .read_page(&schema, &query, after.as_ref(), limit)
                .await?;
            let full = rows.len() == limit as usize;
            let Some(last) = rows.last() else { break };
            after = Some(last.key.clone());
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                // A row that cannot become an item was no item of the copy.
                let Ok(item) = mapper.map_row(row) else {
                    return Ok(None);
                };
                source.add(&item, &columns);
                keys.push(mapper.key_of(&item));
            }
            if source.count > expect.rows {
                return Ok(None);
            }
            for item in self
                .read_items(&t.target, keys, &mapper)
                .await?
                .into_values()
            {
                target.add(&item, &columns);
            }
            if !full {
                break;
            }
        }
        // The page reader's rows against an independent count of the range,
        // as every verification checks them.
        let lower = range.lo.as_ref().map_or(Bound::Unbounded, Bound::Included);
        let upper = range.hi.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let counted = self.source.count_between(&schema, lower, upper).await?;
        let want = expect.digest.to_ascii_lowercase();
        let same = |d: &ItemDigest| d.count == expect.rows && d.sum_hex() == want;
        if counted != source.count || !same(&source) || !same(&target) {
            return Ok(None);
        }
        Ok(Some(TableReport {
            source: t.source.clone(),
            target: t.target.clone(),
            rows_checked: source.count,
            source_digest: source,
            confirmed_by_digest: true,
            ..Default::default()
        }))
    }
}
