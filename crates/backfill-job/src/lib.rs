//! The job message: what the producer puts on SQS and a worker copies.
//!
//! A job is a half-open range `[lo, hi)` over a table's full primary-key
//! tuple. `lo = None` is open below, `hi = None` open above, so the ranges of
//! one table tile the whole key space: no gap, no overlap, whatever keys
//! arrive after planning. Bounds travel as typed values ([`KeyValue`]) and the
//! message knows nothing of Postgres, DynamoDB or SQS.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the message layout; a worker refuses others.
pub const MESSAGE_VERSION: u32 = 1;

/// One value of a key column, typed by the column's family.
///
/// Non-integer values are carried in Postgres' own text form, which casts
/// back to the column type exactly (numeric digits, uuid, ISO dates), so a
/// bound compares in Postgres precisely as the sampled key did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum KeyValue {
    Int(i64),
    Numeric(String),
    Text(String),
    Uuid(String),
    Date(String),
    Timestamp(String),
    TimestampTz(String),
}

impl KeyValue {
    /// The text Postgres parses back into the column type.
    pub fn to_pg_text(&self) -> String {
        match self {
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Numeric(s)
            | KeyValue::Text(s)
            | KeyValue::Uuid(s)
            | KeyValue::Date(s)
            | KeyValue::Timestamp(s)
            | KeyValue::TimestampTz(s) => s.clone(),
        }
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(i) => write!(f, "{i}"),
            other => write!(f, "{:?}", other.to_pg_text()),
        }
    }
}

/// A key tuple, in the order of the key's columns.
pub type KeyTuple = Vec<KeyValue>;

/// Shows a key tuple as `(1, "a")` for messages and logs.
pub fn display_key(key: &[KeyValue]) -> String {
    let parts: Vec<String> = key.iter().map(ToString::to_string).collect();
    format!("({})", parts.join(", "))
}

/// A half-open range of key tuples: `lo <= key < hi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// Inclusive lower bound; `None` is open below.
    pub lo: Option<KeyTuple>,
    /// Exclusive upper bound; `None` is open above.
    pub hi: Option<KeyTuple>,
}

impl KeyRange {
    /// The range of everything.
    pub fn all() -> Self {
        KeyRange { lo: None, hi: None }
    }

    /// Ranges that tile the key space, cut at `boundaries` (which must be
    /// strictly increasing): `(-inf, b1) [b1, b2) ... [bn, +inf)`.
    pub fn tile(boundaries: Vec<KeyTuple>) -> Vec<KeyRange> {
        let mut ranges = Vec::with_capacity(boundaries.len() + 1);
        let mut lo = None;
        for b in boundaries {
            ranges.push(KeyRange {
                lo: lo.take(),
                hi: Some(b.clone()),
            });
            lo = Some(b);
        }
        ranges.push(KeyRange { lo, hi: None });
        ranges
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lo = self.lo.as_deref().map_or("-inf".to_string(), display_key);
        let hi = self.hi.as_deref().map_or("+inf".to_string(), display_key);
        write!(f, "[{lo}, {hi})")
    }
}

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
}

/// Why a message body is not a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("malformed job message: {0}")]
    Malformed(String),
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
        }
    }

    /// The SQS message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a job message always serialises")
    }

    /// Parses and checks a message body; every problem is a [`JobError::Malformed`]
    /// that says what is wrong.
    pub fn from_body(body: &str) -> Result<Self, JobError> {
        let msg: JobMessage =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        msg.check()?;
        Ok(msg)
    }

    fn check(&self) -> Result<(), JobError> {
        let bad = |s: String| Err(JobError::Malformed(s));
        if self.version != MESSAGE_VERSION {
            return bad(format!(
                "version {} is not the supported {MESSAGE_VERSION}",
                self.version
            ));
        }
        if self.run_id.is_empty() || self.job_id.is_empty() || self.table.is_empty() {
            return bad("run_id, job_id and table must not be empty".into());
        }
        if self.key_columns.is_empty() {
            return bad(format!("job {} names no key column", self.job_id));
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
        Ok(())
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
}
