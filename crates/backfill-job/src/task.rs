//! What a job asks of its worker: copy its range (every job before
//! verification runs existed, so the default, and absent from the body),
//! verify its range against the target, or scan one segment of the target
//! for items no row produces, or archive its range to S3 as Parquet.
//!
//! Verification runs reuse the copy's machinery whole (queue, claims,
//! checkpoints' records, DLQ, status); only what the worker does with the
//! range differs, so the task is one field of the same message.

use serde::{Deserialize, Serialize};

use crate::{job_id, JobMessage, KeyRange};

/// Most segments a verification run scans a table in: DynamoDB's own
/// limit on `TotalSegments`.
pub const MAX_SCAN_SEGMENTS: u32 = 1_000_000;

/// What the worker does with a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// Copy the range's rows to their items.
    #[default]
    Copy,
    /// Compare the range's rows with their items: missing, different,
    /// colliding and unmappable rows, each named by key.
    Verify,
    /// Read one segment of a parallel Scan of the target and look each
    /// item's key up in the source: items no row produces are extra.
    Scan { segment: u32, total_segments: u32 },
    /// Write the range's rows to one Parquet part of an archive run in S3.
    Archive,
}

impl Task {
    pub fn is_copy(&self) -> bool {
        matches!(self, Task::Copy)
    }

    /// What is wrong with the task, for a message that carries a bad one.
    pub(crate) fn problem(&self) -> Option<String> {
        match *self {
            Task::Scan {
                segment,
                total_segments,
            } if total_segments == 0
                || total_segments > MAX_SCAN_SEGMENTS
                || segment >= total_segments =>
            {
                Some(format!(
                    "scan segment {segment} of {total_segments}: segments are 0..total, and total is 1 to {MAX_SCAN_SEGMENTS}"
                ))
            }
            _ => None,
        }
    }

    /// The metric label and log word of the task.
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Copy => "copy",
            Task::Verify => "verify",
            Task::Scan { .. } => "scan",
            Task::Archive => "archive",
        }
    }
}

/// What a copy recorded of a range: the items it wrote and their digest
/// (`ItemDigest::sum_hex`). A verification that finds the same in the
/// source and the target confirms the range without comparing each item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub rows: u64,
    pub digest: String,
}

impl Expect {
    pub(crate) fn problem(&self) -> Option<String> {
        (self.digest.len() != 32 || !self.digest.bytes().all(|b| b.is_ascii_hexdigit())).then(
            || {
                format!(
                    "expected digest {:?} is not 32 hex digits",
                    self.digest.chars().take(40).collect::<String>()
                )
            },
        )
    }
}

impl JobMessage {
    /// The verification of a copied range, in verification run `run_id`,
    /// carrying what the copy recorded of it.
    pub fn confirm_of(
        run_id: &str,
        table: &str,
        key_columns: Vec<String>,
        range: KeyRange,
        expect: Option<Expect>,
    ) -> JobMessage {
        let mut job = JobMessage::new(run_id, table, key_columns, range);
        job.task = Task::Verify;
        job.expect = expect;
        job
    }

    /// The verification of a copy job's range, in verification run `run_id`.
    pub fn verify_of(run_id: &str, copy: &JobMessage) -> JobMessage {
        let mut job = JobMessage::new(
            run_id,
            &copy.table,
            copy.key_columns.clone(),
            copy.range.clone(),
        );
        job.task = Task::Verify;
        job
    }

    /// The archive of a planned range, in archive run `run_id`: the range
    /// whole (a Parquet part is written in key order, so no stripes).
    pub fn archive_of(run_id: &str, planned: &JobMessage) -> JobMessage {
        let mut job = JobMessage::new(
            run_id,
            &planned.table,
            planned.key_columns.clone(),
            planned.range.clone(),
        );
        job.task = Task::Archive;
        job
    }

    /// Segment `segment` of `total_segments` of the scan of `table`'s
    /// target, in verification run `run_id`. Its range is the whole table:
    /// a segment is a part of DynamoDB's hash space, not of the source's keys.
    pub fn scan(
        run_id: &str,
        table: &str,
        key_columns: Vec<String>,
        segment: u32,
        total_segments: u32,
    ) -> JobMessage {
        let range = KeyRange::all();
        // The segment is part of the id: every segment has the same range.
        let id_table = format!("{table}\u{1}scan {segment}/{total_segments}");
        JobMessage {
            job_id: job_id(run_id, &id_table, &range),
            task: Task::Scan {
                segment,
                total_segments,
            },
            ..JobMessage::new(run_id, table, key_columns, range)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_jobs_have_their_own_ids_and_read_back() {
        let copy = JobMessage::new("r", "public.t", vec!["id".into()], KeyRange::all());
        let v = JobMessage::verify_of("r-verify", &copy);
        assert_ne!(v.job_id, copy.job_id);
        assert_eq!((v.task, &v.range), (Task::Verify, &copy.range));
        let s0 = JobMessage::scan("r-verify", "public.t", vec!["id".into()], 0, 2);
        let s1 = JobMessage::scan("r-verify", "public.t", vec!["id".into()], 1, 2);
        assert_ne!(s0.job_id, s1.job_id);
        assert_ne!(s0.job_id, v.job_id);
        for j in [v, s0, s1] {
            assert_eq!(JobMessage::from_body(&j.to_body()).unwrap(), j);
        }
        let c = JobMessage::confirm_of(
            "r-verify",
            "public.t",
            vec!["id".into()],
            KeyRange::all(),
            Some(Expect {
                rows: 3,
                digest: "0123456789abcdef0123456789ABCDEF".into(),
            }),
        );
        assert_eq!(JobMessage::from_body(&c.to_body()).unwrap(), c);
        let mut bad_digest = c.clone();
        bad_digest.expect = Some(Expect {
            rows: 3,
            digest: "xyz\u{0}".into(),
        });
        let e = JobMessage::from_body(&bad_digest.to_body()).unwrap_err();
        assert!(e.to_string().contains("not 32 hex digits"), "{e}");
        // A copy job's body is what it was before tasks existed.
        assert!(!copy.to_body().contains("task"));
        let mut bad = JobMessage::scan("r", "public.t", vec!["id".into()], 0, 2);
        bad.task = Task::Scan {
            segment: 2,
            total_segments: 2,
        };
        let e = JobMessage::from_body(&bad.to_body()).unwrap_err();
        assert!(e.to_string().contains("scan segment 2 of 2"), "{e}");
    }

    #[test]
    fn scan_segments_are_checked() {
        let scan = |segment, total_segments| Task::Scan {
            segment,
            total_segments,
        };
        assert_eq!(scan(0, 1).problem(), None);
        assert_eq!(scan(7, 8).problem(), None);
        assert!(scan(8, 8).problem().is_some());
        assert!(scan(0, 0).problem().is_some());
        assert!(scan(0, MAX_SCAN_SEGMENTS + 1).problem().is_some());
        assert!(scan(u32::MAX, u32::MAX).problem().is_some());
    }

    #[test]
    fn tasks_read_back_and_refuse_unknown_kinds_and_fields() {
        for t in [
            Task::Copy,
            Task::Verify,
            Task::Scan {
                segment: 3,
                total_segments: 16,
            },
            Task::Archive,
        ] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t, "{json}");
        }
        // (serde lets a unit variant's object carry other fields; harmless,
        // and the message around it refuses unknown fields of its own.)
        for bad in [
            r#"{"kind":"delete"}"#,
            r#"{"kind":"scan","segment":1}"#,
            r#"{"kind":"scan","segment":-1,"total_segments":2}"#,
            r#""verify""#,
        ] {
            assert!(serde_json::from_str::<Task>(bad).is_err(), "{bad}");
        }
    }
}
