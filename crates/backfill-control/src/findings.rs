//! What a verification job found (`pk = RUN#<run>`, `sk = VERIFY#<job>`):
//! its counts and the first differences by key, kept beside the job's own
//! record so `verify report` reads a run's findings in one query.
//!
//! A job's findings are written before the job is marked done, so a done
//! job always has them; a job re-run after a crash overwrites its own.
//! The listed keys are capped per job ([`MAX_LISTED_PER_JOB`]) and each
//! line clipped, so the item stays far below DynamoDB's 400 KB; the counts
//! are never capped.

use serde::{Deserialize, Serialize};

use crate::{ControlError, ControlTable};

const VERIFY_PREFIX: &str = "VERIFY#";

/// Lines of differences a job keeps (the counts go on past them).
pub const MAX_LISTED_PER_JOB: usize = 50;
/// Characters a listed line keeps (a key or a diff of a huge value).
const MAX_LINE_CHARS: usize = 500;

/// One verification job's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyFindings {
    pub job_id: String,
    /// The source table (`schema.table`) and its target.
    pub table: String,
    pub target: String,
    /// `verify` (a key range) or `scan` (a segment of the target).
    pub task: String,
    /// What the job covered, as a person reads it: the key range, or the
    /// scan's segment.
    pub covered: String,
    pub rows_checked: u64,
    pub items_scanned: u64,
    pub newer_in_target: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub collisions: u64,
    pub unmappable: u64,
    pub count_mismatches: u64,
    /// The first findings, each `<kind> <key>[: <detail>]`.
    pub listed: Vec<String>,
    /// Confirmed by the count and digest its copy recorded, not item by item.
    pub confirmed_by_digest: bool,
}

impl VerifyFindings {
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.extra == 0
            && self.different == 0
            && self.collisions == 0
            && self.unmappable == 0
            && self.count_mismatches == 0
    }

    /// Adds a listed line, unless the job already lists its maximum.
    pub fn list(&mut self, line: impl Into<String>) {
        if self.listed.len() < MAX_LISTED_PER_JOB {
            let line: String = line.into();
            let clipped = if line.chars().count() > MAX_LINE_CHARS {
                line.chars()
                    .take(MAX_LINE_CHARS)
                    .chain("…".chars())
                    .collect()
            } else {
                line
            };
            self.listed.push(clipped);
        }
    }
}

fn verify_sk(job_id: &str) -> String {
    format!("{VERIFY_PREFIX}{job_id}")
}

impl ControlTable {
    /// Stores (or replaces) a verification job's findings.
    pub async fn record_findings(
        &self,
        run_id: &str,
        f: &VerifyFindings,
    ) -> Result<(), ControlError> {
        self.put_json(run_id, verify_sk(&f.job_id), "findings", f)
            .await
    }

    /// Every verification job's findings of a run, in job-id order.
    pub async fn findings(&self, run_id: &str) -> Result<Vec<VerifyFindings>, ControlError> {
        self.query_json(run_id, VERIFY_PREFIX, "findings").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_lines_are_capped_and_clipped_and_counts_are_not() {
        let mut f = VerifyFindings::default();
        for i in 0..(MAX_LISTED_PER_JOB + 10) {
            f.missing += 1;
            f.list(format!("missing id={i}"));
        }
        f.list("x".repeat(10_000));
        assert_eq!(f.listed.len(), MAX_LISTED_PER_JOB);
        assert_eq!(f.missing, (MAX_LISTED_PER_JOB + 10) as u64);
        assert!(!f.is_clean());
        let mut g = VerifyFindings::default();
        g.list("é".repeat(10_000));
        assert_eq!(g.listed[0].chars().count(), MAX_LINE_CHARS + 1);
        // Read back from its JSON, and a record of an older layout reads
        // with zeros for what it lacks.
        let back: VerifyFindings =
            serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        let old: VerifyFindings = serde_json::from_str(r#"{"job_id":"j1","missing":2}"#).unwrap();
        assert_eq!((old.missing, old.extra), (2, 0));
        assert!(VerifyFindings::default().is_clean());
    }
}
