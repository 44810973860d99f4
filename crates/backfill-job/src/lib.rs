//! The job message: what the producer puts on SQS and a worker copies.
//!
//! A job is a half-open range `[lo, hi)` over a table's full primary-key
//! tuple. `lo = None` is open below, `hi = None` open above, so the ranges of
//! one table tile the whole key space: no gap, no overlap, whatever keys
//! arrive after planning. Bounds travel as typed values ([`KeyValue`]) and the
//! message knows nothing of Postgres, DynamoDB or SQS.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod key;
pub mod signing;
mod task;
pub use key::{display_key, KeyRange, KeyTuple, KeyValue};
pub use task::{Expect, Task, MAX_SCAN_SEGMENTS};

/// The version of the message layout; a worker refuses others.
pub const MESSAGE_VERSION: u32 = 1;

/// Largest body a worker parses. A job the producer makes is a few hundred
/// bytes (two key tuples); anything near SQS's own 256 KiB limit is not a
/// job, and refusing it before parsing bounds what a hostile body can cost.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most cuts a job may carry (`worker.stripes` is at most 64).
pub const MAX_CUTS: usize = 63;

/// Longest run id, job id, table or key column name a message may carry:
/// these become DynamoDB key attributes (2,048 bytes at most) and log fields.
pub const MAX_NAME_BYTES: usize = 512;

/// One unit of work: copy the rows of `table` whose key lies in `range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub version: u32,
    pub run_id: String,
    pub job_id: String,
    /// The source table as named in the config (`tables[].source`).
    pub table: String,
    /// The key columns the bounds refer to, in order. A worker checks them
    /// against the table as it is now and refuses a job planned on another key.
    pub key_columns: Vec<String>,
    pub range: KeyRange,
    /// Keys inside the range, in key order, that cut it into parts of about
    /// equal rows, planned from the producer's sample: where a clustered
    /// table's job starts its interleaved stripes, so no worker pays a scan
    /// of its range to find them. Not part of the job's identity. A worker
    /// checks them in Postgres before use; whatever they hold, stripes cut
    /// at them cover the whole range (see [`KeyRange::cut`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<KeyTuple>,
    /// What to do with the range: copy (absent), verify, or scan a segment.
    #[serde(default, skip_serializing_if = "Task::is_copy")]
    pub task: Task,
    /// A verification of a copied range: what its copy recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// Why a message body is not a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("malformed job message: {0}")]
    Malformed(String),
    #[error("malformed job message: truncated after {bytes} bytes: {reason}")]
    Truncated { bytes: usize, reason: String },
    #[error("oversized job message: {bytes} bytes, over the {max}-byte limit; not parsed")]
    Oversized { bytes: usize, max: usize },
    #[error("job message version {version} is not the supported {MESSAGE_VERSION}{job}")]
    UnknownVersion { version: String, job: String },
}

impl JobError {
    /// The `error_kind` a dead-lettered message carries, so on-call tools
    /// can tell a bad producer from a hostile sender at a glance.
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::Malformed(_) | JobError::Truncated { .. } => "malformed_message",
            JobError::Oversized { .. } => "oversized_message",
            JobError::UnknownVersion { .. } => "unknown_version",
        }
    }
}

impl JobMessage {
    /// A job with an id derived from its run, table and range: planning the
    /// same range for the same run always yields the same id.
    pub fn new(run_id: &str, table: &str, key_columns: Vec<String>, range: KeyRange) -> Self {
        let job_id = job_id(run_id, table, &range);
        JobMessage {
            version: MESSAGE_VERSION,
            run_id: run_id.to_string(),
            job_id,
            table: table.to_string(),
            key_columns,
            range,
            cuts: Vec::new(),
            task: Task::Copy,
            expect: None,
        }
    }

    /// This job with the cuts that part its range (see [`JobMessage::cuts`]).
    pub fn with_cuts(mut self, cuts: Vec<KeyTuple>) -> Self {
        self.cuts = cuts;
        self
    }

    /// The SQS message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a job message always serialises")
    }

    /// Parses and checks a message body; every problem is a [`JobError`]
    /// that says what is wrong. Never panics, whatever the body.
    ///
    /// The size is checked before any parsing, and the version before the
    /// layout: a message of a later version may have fields this one does
    /// not know, and "unknown version" is the useful reason then.
    pub fn from_body(body: &str) -> Result<Self, JobError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(JobError::Oversized {
                bytes: body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
            if e.is_eof() {
                JobError::Truncated {
                    bytes: body.len(),
                    reason: e.to_string(),
                }
            } else {
                JobError::Malformed(e.to_string())
            }
        })?;
        match value.get("version") {
            Some(v) if v.as_u64() == Some(u64::from(MESSAGE_VERSION)) => {}
            Some(v) => {
                let job = value
                    .get("job_id")
                    .and_then(|j| j.as_str())
                    .map(|j| format!(" (job {})", clip(j)))
                    .unwrap_or_default();
                return Err(JobError::UnknownVersion {
                    version: clip(&v.to_string()),
                    job,
                });
            }
            None if !value.is_object() => {
                return Err(JobError::Malformed(format!(
                    "the body is a JSON {}, not an object",
                    json_kind(&value)
                )))
            }
            None => return Err(JobError::Malformed("missing field `version`".into())),
        }
        let msg: JobMessage =
            serde_json::from_value(value).map_err(|e| JobError::Malformed(e.to_string()))?;
        msg.check()?;
        Ok(msg)
    }

    fn check(&self) -> Result<(), JobError> {
        let bad = |s: String| Err(JobError::Malformed(s));
        if self.run_id.is_empty() || self.job_id.is_empty() || self.table.is_empty() {
            return bad("run_id, job_id and table must not be empty".into());
        }
        for (field, v) in [
            ("run_id", &self.run_id),
            ("job_id", &self.job_id),
            ("table", &self.table),
        ]
        .into_iter()
        .chain(self.key_columns.iter().map(|c| ("key_columns", c)))
        {
            if v.len() > MAX_NAME_BYTES {
                return bad(format!(
                    "`{field}` is {} bytes, over {MAX_NAME_BYTES}: {}...",
                    v.len(),
                    clip(v)
                ));
            }
            // Postgres text cannot hold NUL, and control characters have no
            // business in names that end up in logs and DynamoDB keys.
            if v.chars().any(char::is_control) {
                return bad(format!("`{field}` {:?} holds a control character", clip(v)));
            }
        }
        if self.key_columns.is_empty() {
            return bad(format!("job {} names no key column", self.job_id));
        }
        if self.key_columns.iter().any(String::is_empty) {
            return bad(format!("job {} names an empty key column", self.job_id));
        }
        for (name, bound) in [("lo", &self.range.lo), ("hi", &self.range.hi)] {
            if let Some(b) = bound {
                if b.len() != self.key_columns.len() {
                    return bad(format!(
                        "job {}: bound `{name}` has {} values for {} key columns",
                        self.job_id,
                        b.len(),
                        self.key_columns.len()
                    ));
                }
            }
        }
        if let Some(p) = self
            .task
            .problem()
            .or_else(|| self.expect.as_ref()?.problem())
        {
            return bad(format!("job {}: {p}", self.job_id));
        }
        if self.cuts.len() > MAX_CUTS {
            return bad(format!(
                "job {}: {} cuts, over the {MAX_CUTS} a job may hold",
                self.job_id,
                self.cuts.len()
            ));
        }
        for (i, cut) in self.cuts.iter().enumerate() {
            if cut.len() != self.key_columns.len() {
                return bad(format!(
                    "job {}: cut {i} has {} values for {} key columns",
                    self.job_id,
                    cut.len(),
                    self.key_columns.len()
                ));
            }
        }
        let bounds = [&self.range.lo, &self.range.hi].into_iter().flatten();
        for bound in bounds.chain(self.cuts.iter()) {
            if bound.iter().any(|v| v.to_pg_text().contains('\0')) {
                return bad(format!(
                    "job {}: a bound or cut holds a NUL character, which no Postgres key can",
                    self.job_id
                ));
            }
        }
        Ok(())
    }
}

/// The first 80 characters of a string from outside, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn job_id(run_id: &str, table: &str, range: &KeyRange) -> String {
    let mut h = Sha256::new();
    // Length-prefixed so that no two different inputs hash the same bytes.
    for part in [
        run_id.to_string(),
        table.to_string(),
        serde_json::to_string(range).expect("a range always serialises"),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("j{}", &hex::encode(h.finalize())[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: i64) -> KeyTuple {
        vec![KeyValue::Int(i)]
    }

    #[test]
    fn cut_tiles_the_range_exactly() {
        let range = KeyRange {
            lo: Some(k(-5)),
            hi: Some(k(100)),
        };
        let s = range.cut(vec![k(-5), k(3), k(3), k(50)]);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].lo, range.lo);
        assert_eq!(s[2].hi, range.hi);
        for w in s.windows(2) {
            assert_eq!(w[0].hi, w[1].lo, "no gap, no overlap");
        }
        assert_eq!(KeyRange::all().cut(vec![]), vec![KeyRange::all()]);
        let open = KeyRange::all().cut(vec![k(i64::MIN), k(0)]);
        assert_eq!(open.first().map(|r| &r.lo), Some(&None));
        assert_eq!(open.last().map(|r| &r.hi), Some(&None));
        assert_eq!(open.len(), 3);
    }

    #[test]
    fn tile_has_open_ends_and_shared_bounds() {
        let r = KeyRange::tile(vec![k(10), k(20)]);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            KeyRange {
                lo: None,
                hi: Some(k(10))
            }
        );
        assert_eq!(
            r[1],
            KeyRange {
                lo: Some(k(10)),
                hi: Some(k(20))
            }
        );
        assert_eq!(
            r[2],
            KeyRange {
                lo: Some(k(20)),
                hi: None
            }
        );
        assert_eq!(KeyRange::tile(vec![]), vec![KeyRange::all()]);
    }

    #[test]
    fn job_ids_are_deterministic_and_distinct() {
        let a = JobMessage::new(
            "r1",
            "t",
            vec!["id".into()],
            KeyRange::tile(vec![k(5)])[0].clone(),
        );
        let b = JobMessage::new(
            "r1",
            "t",
            vec!["id".into()],
            KeyRange::tile(vec![k(5)])[0].clone(),
        );
        let c = JobMessage::new(
            "r1",
            "t",
            vec!["id".into()],
            KeyRange::tile(vec![k(5)])[1].clone(),
        );
        let d = JobMessage::new(
            "r2",
            "t",
            vec!["id".into()],
            KeyRange::tile(vec![k(5)])[0].clone(),
        );
        assert_eq!(a.job_id, b.job_id);
        assert_ne!(a.job_id, c.job_id);
        assert_ne!(a.job_id, d.job_id);
    }

    #[test]
    fn body_round_trips() {
        let m = JobMessage::new(
            "r",
            "public.t",
            vec!["a".into(), "b".into()],
            KeyRange {
                lo: Some(vec![
                    KeyValue::Text("x\"y".into()),
                    KeyValue::Numeric("1.50".into()),
                ]),
                hi: None,
            },
        );
        assert_eq!(JobMessage::from_body(&m.to_body()).unwrap(), m);
    }

    #[test]
    fn malformed_bodies_say_why() {
        let e = JobMessage::from_body("not json").unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
        let mut m = JobMessage::new("r", "t", vec!["a".into()], KeyRange::all());
        m.range.lo = Some(vec![KeyValue::Int(1), KeyValue::Int(2)]);
        let e = JobMessage::from_body(&m.to_body()).unwrap_err().to_string();
        assert!(e.contains("2 values for 1 key columns"), "{e}");
        m.range.lo = None;
        m.version = 9;
        let e = JobMessage::from_body(&m.to_body()).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        let e = JobMessage::from_body(&body).unwrap_err();
        assert_eq!(e.kind(), "oversized_message");
        assert!(
            e.to_string().contains(&format!("{} bytes", body.len())),
            "{e}"
        );
        // Just under the limit it is parsed (and fails for what it is).
        let e = JobMessage::from_body(&body[..MAX_BODY_BYTES - 10]).unwrap_err();
        assert_ne!(e.kind(), "oversized_message", "{e}");
    }

    #[test]
    fn truncated_bodies_say_where_they_end() {
        let body = JobMessage::new("r", "t", vec!["a".into()], KeyRange::all()).to_body();
        let cut = &body[..body.len() / 2];
        let e = JobMessage::from_body(cut).unwrap_err();
        assert!(
            matches!(e, JobError::Truncated { bytes, .. } if bytes == cut.len()),
            "{e}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn unknown_versions_are_named_whatever_else_the_body_holds() {
        let body = r#"{"version": 2, "job_id": "j1", "new_field": [1, 2]}"#;
        let e = JobMessage::from_body(body).unwrap_err();
        assert_eq!(e.kind(), "unknown_version");
        assert!(
            e.to_string().contains("version 2") && e.to_string().contains("job j1"),
            "{e}"
        );
        let e = JobMessage::from_body(r#"{"version": "1"}"#).unwrap_err();
        assert_eq!(e.kind(), "unknown_version", "{e}");
        let e = JobMessage::from_body(r#"{"run_id": "r"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `version`"), "{e}");
        let e = JobMessage::from_body("[1, 2]").unwrap_err();
        assert!(e.to_string().contains("JSON array, not an object"), "{e}");
    }

    #[test]
    fn names_with_control_characters_or_too_long_are_refused() {
        let mut m = JobMessage::new("r", "t", vec!["a".into()], KeyRange::all());
        m.table = "t\u{0}; drop table x".into();
        let e = JobMessage::from_body(&m.to_body()).unwrap_err().to_string();
        assert!(
            e.contains("`table`") && e.contains("control character"),
            "{e}"
        );
        let mut m = JobMessage::new("r", "t", vec!["a".into()], KeyRange::all());
        m.run_id = "r".repeat(MAX_NAME_BYTES + 1);
        let e = JobMessage::from_body(&m.to_body()).unwrap_err().to_string();
        assert!(e.contains("`run_id`"), "{e}");
        let mut m = JobMessage::new("r", "t", vec!["a".into()], KeyRange::all());
        m.range.hi = Some(vec![KeyValue::Text("a\u{0}b".into())]);
        let e = JobMessage::from_body(&m.to_body()).unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        // Quotes, spaces and SQL are fine in a name: they are data, quoted
        // wherever they reach SQL, and checked against the catalog.
        let m = JobMessage::new(
            "r",
            "public.we\"ird; drop table x",
            vec!["a b".into()],
            KeyRange::all(),
        );
        assert_eq!(JobMessage::from_body(&m.to_body()).unwrap(), m);
    }
}
