//! Key values, key tuples and the half-open ranges over them.

use std::fmt;

use serde::{Deserialize, Serialize};

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

    /// Like [`KeyRange::tile`] over every `parts`-th boundary, each range
    /// with the boundaries between (the finer quantiles of one sample) as
    /// the cuts that part it: `parts` = 1 gives `tile` with no cuts.
    pub fn tile_parts(boundaries: Vec<KeyTuple>, parts: usize) -> Vec<(KeyRange, Vec<KeyTuple>)> {
        let parts = parts.max(1);
        let mut out = Vec::with_capacity(boundaries.len() / parts + 1);
        let mut lo = None;
        let mut cuts = Vec::new();
        for (i, b) in boundaries.into_iter().enumerate() {
            if (i + 1) % parts != 0 {
                cuts.push(b);
                continue;
            }
            let range = KeyRange {
                lo: lo.take(),
                hi: Some(b.clone()),
            };
            out.push((range, std::mem::take(&mut cuts)));
            lo = Some(b);
        }
        out.push((KeyRange { lo, hi: None }, cuts));
        out
    }

    /// This range cut at `starts` into half-open pieces that tile it
    /// exactly: `[lo, s1) [s1, s2) ... [sn, hi)`. `starts` must lie inside
    /// the range in key order, as Postgres gives them (keys are compared
    /// only there, never here); a start equal to the range's start or to
    /// the one before it is dropped, so no piece is empty by construction.
    pub fn cut(&self, starts: Vec<KeyTuple>) -> Vec<KeyRange> {
        let mut ranges = Vec::with_capacity(starts.len() + 1);
        let mut lo = self.lo.clone();
        for s in starts {
            if lo.as_ref() == Some(&s) {
                continue;
            }
            ranges.push(KeyRange {
                lo: lo.take(),
                hi: Some(s.clone()),
            });
            lo = Some(s);
        }
        ranges.push(KeyRange {
            lo,
            hi: self.hi.clone(),
        });
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
