//! The drift watch's rounds: what each `backfill audit` round checked in one
//! table and what it found, and the version watermark it went on from.
//!
//! Rounds live under the source table, not a run (`pk = DRIFT#<source>`,
//! `sk = ROUND#<epoch ms, zero-padded>`): the watch outlives every run of a
//! copy and goes on through the weeks of dual-writes. The padding makes the
//! sort key order the rounds by time, so the newest round, whose watermark a
//! restarted watch resumes from, is one query read backwards.

use std::collections::HashMap;

use backfill_aws::RetryPolicy;

use crate::records::Item;
use crate::{get_n, get_s, n, s, ControlError, ControlTable, Written};

const DRIFT_PREFIX: &str = "DRIFT#";
const ROUND_PREFIX: &str = "ROUND#";

fn drift_pk(source: &str) -> String {
    format!("{DRIFT_PREFIX}{source}")
}

/// Fifteen digits hold epoch milliseconds until the year 33658.
fn round_sk(started_ms: u64) -> String {
    format!("{ROUND_PREFIX}{started_ms:015}")
}

/// One audit round of one table, as written to and read from the control table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftRound {
    /// The source table (`schema.table`) and its DynamoDB target.
    pub source: String,
    pub target: String,
    /// When the round started and finished (epoch milliseconds); the start
    /// is the round's key.
    pub started_ms: u64,
    pub finished_ms: u64,
    /// The version the round audited changed rows from (`>=`); `None` when
    /// it audited a sample only (the first round, or no version column).
    pub watermark_from: Option<String>,
    /// Where the next round goes on from: the highest version this round
    /// read, or the newest in the table when it had none to start from.
    pub watermark_to: Option<String>,
    /// Rows audited because their version is at least `watermark_from`.
    pub changed_checked: u64,
    /// Rows audited from the random sample of the table.
    pub sampled_checked: u64,
    /// Findings, after the re-check that lets writes in flight settle.
    pub missing: u64,
    pub different: u64,
    pub unmappable: u64,
}

impl DriftRound {
    /// Every row the round compared with its item.
    pub fn rows_checked(&self) -> u64 {
        self.changed_checked + self.sampled_checked
    }

    /// Whether the round found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.different == 0 && self.unmappable == 0
    }
}

fn to_item(r: &DriftRound) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), s(drift_pk(&r.source))),
        ("sk".to_string(), s(round_sk(r.started_ms))),
        ("source".to_string(), s(r.source.clone())),
        ("target".to_string(), s(r.target.clone())),
        ("started_ms".to_string(), n(r.started_ms)),
        ("finished_ms".to_string(), n(r.finished_ms)),
        ("changed_checked".to_string(), n(r.changed_checked)),
        ("sampled_checked".to_string(), n(r.sampled_checked)),
        ("rows_checked".to_string(), n(r.rows_checked())),
        ("missing".to_string(), n(r.missing)),
        ("different".to_string(), n(r.different)),
        ("unmappable".to_string(), n(r.unmappable)),
    ]);
    for (k, v) in [
        ("watermark_from", &r.watermark_from),
        ("watermark_to", &r.watermark_to),
    ] {
        if let Some(v) = v {
            item.insert(k.to_string(), s(v.clone()));
        }
    }
    item
}

fn from_item(item: &Item) -> DriftRound {
    DriftRound {
        source: get_s(item, "source").unwrap_or_default(),
        target: get_s(item, "target").unwrap_or_default(),
        started_ms: get_n(item, "started_ms"),
        finished_ms: get_n(item, "finished_ms"),
        watermark_from: get_s(item, "watermark_from"),
        watermark_to: get_s(item, "watermark_to"),
        changed_checked: get_n(item, "changed_checked"),
        sampled_checked: get_n(item, "sampled_checked"),
        missing: get_n(item, "missing"),
        different: get_n(item, "different"),
        unmappable: get_n(item, "unmappable"),
    }
}

impl ControlTable {
    /// Stores a finished round. Never overwrites one: two watches that
    /// started a round of the same table in the same millisecond (a rollout
    /// overlapping two pods) each keep theirs, the later one a millisecond
    /// on. Returns the round as stored.
    pub async fn record_drift_round(&self, round: &DriftRound) -> Result<DriftRound, ControlError> {
        let mut r = round.clone();
        for _ in 0..3 {
            let put = self.put(
                to_item(&r),
                Some("attribute_not_exists(sk)"),
                RetryPolicy::CALL,
            );
            match put.await? {
                Written::Applied(_) => return Ok(r),
                Written::ConditionFailed => r.started_ms += 1,
            }
        }
        Err(ControlError::Service {
            table: self.table.clone(),
            op: "PutItem",
            message: format!(
                "drift round of {} at {}: its key was taken 3 times",
                r.source, round.started_ms
            ),
            retryable: false,
        })
    }

    /// The newest round of `source`, if the watch ever finished one.
    pub async fn latest_drift_round(
        &self,
        source: &str,
    ) -> Result<Option<DriftRound>, ControlError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :round)")
            .expression_attribute_values(":pk", s(drift_pk(source)))
            .expression_attribute_values(":round", s(ROUND_PREFIX))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true);
        let out = backfill_aws::retry(RetryPolicy::CALL, || query.clone().send())
            .await
            .map_err(|e| self.err("Query", &e))?;
        Ok(out.items().first().map(from_item))
    }

    /// Every round of `source`, oldest first.
    pub async fn drift_rounds(&self, source: &str) -> Result<Vec<DriftRound>, ControlError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :round)")
            .expression_attribute_values(":pk", s(drift_pk(source)))
            .expression_attribute_values(":round", s(ROUND_PREFIX))
            .consistent_read(true);
        Ok(self.query_all(query).await?.iter().map(from_item).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_survives_its_item_and_keys_sort_by_time() {
        let r = DriftRound {
            source: "public.orders".into(),
            target: "orders".into(),
            started_ms: 1_765_000_000_000,
            finished_ms: 1_765_000_004_000,
            watermark_from: Some("2026-12-01T00:00:00+00:00".into()),
            watermark_to: Some("2026-12-01T00:10:00+00:00".into()),
            changed_checked: 40,
            sampled_checked: 12,
            missing: 1,
            different: 2,
            unmappable: 0,
        };
        let item = to_item(&r);
        assert_eq!(get_n(&item, "rows_checked"), 52);
        assert_eq!(from_item(&item), r);
        assert!(!r.is_clean());
        let none = DriftRound {
            watermark_from: None,
            watermark_to: None,
            ..r
        };
        assert!(!to_item(&none).contains_key("watermark_from"));
        assert_eq!(from_item(&to_item(&none)), none);
        // Text order is time order, also across a change in digit count.
        assert!(round_sk(999) < round_sk(1000));
        assert!(round_sk(9_999_999_999_999) < round_sk(10_000_000_000_000));
    }
}
