//! What an archive job wrote (`pk = RUN#<run>`, `sk = PART#<job>`): its
//! object, rows, digest and SHA-256, kept beside the job's own record so
//! the manifest is built from one query of the run.
//!
//! A part is recorded only after its multipart upload completed, and
//! before the job is marked done: a done archive job always has its part,
//! and a job re-run after a crash replaces its own record and object (the
//! object key is the job's, so a retry never leaves two parts of a range).

use serde::{Deserialize, Serialize};

use crate::{ControlError, ControlTable};

const PART_PREFIX: &str = "PART#";

/// One Parquet part of an archive run: one job's key range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchivePart {
    pub job_id: String,
    /// The source table, `schema.table`.
    pub table: String,
    /// The object's key in the archive bucket.
    pub key: String,
    /// The job's key range as its message carries it (`lo`/`hi` in
    /// Postgres' text form, absent where the range is open).
    pub range: serde_json::Value,
    pub rows: u64,
    /// The order-independent digest of the rows (count and 32 hex digits).
    pub digest: String,
    /// SHA-256 of the object's bytes, hex.
    pub sha256: String,
    pub bytes: u64,
    /// When the job began reading the source (RFC 3339, UTC).
    pub read_at: String,
    /// The part's columns as written (name, Postgres type, Parquet
    /// encoding): the manifest checks every part of a table agrees.
    pub columns: serde_json::Value,
}

fn part_sk(job_id: &str) -> String {
    format!("{PART_PREFIX}{job_id}")
}

impl ControlTable {
    /// Stores (or replaces) an archive job's part.
    pub async fn record_part(&self, run_id: &str, p: &ArchivePart) -> Result<(), ControlError> {
        self.put_json(run_id, part_sk(&p.job_id), "part", p).await
    }

    /// Every recorded part of a run, in job-id order.
    pub async fn parts(&self, run_id: &str) -> Result<Vec<ArchivePart>, ControlError> {
        self.query_json(run_id, PART_PREFIX, "part").await
    }
}
