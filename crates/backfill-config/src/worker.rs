//! `[worker]`: how a worker takes and copies jobs.
//!
//! The knobs of one worker process (pages, concurrency, verification,
//! reject limits), apart from the fleet-wide ones in `[capacity]`.

use serde::{Deserialize, Serialize};

/// How a worker takes and copies jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs copied at once by one worker process. A striped job half of
    /// whose stripes are done no longer counts, so the next one starts
    /// while its last stripes finish (at most twice this many in hand).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Rows read from Postgres per page (one keyset query), at most.
    #[serde(default = "default_page_rows")]
    pub page_rows: u32,
    /// Bytes of row data per page, about: a page holds fewer than
    /// `page_rows` rows when its rows are big, so a worker's memory stays
    /// bounded whatever the row size (the first page of a job is small and
    /// later ones are sized from the rows seen).
    #[serde(default = "default_page_bytes")]
    pub page_bytes: u64,
    /// BatchWriteItem requests in flight at once per job.
    #[serde(default = "default_write_concurrency")]
    pub write_concurrency: usize,
    /// Attempts of one BatchWriteItem (UnprocessedItems resent) before the
    /// job is released to be retried later.
    #[serde(default = "default_max_write_attempts")]
    pub max_write_attempts: u32,
    /// Fraction (0 to 1) of written items read back and compared after each
    /// page (BatchGetItem, consistent read). 1 checks every item; 0 none.
    #[serde(default = "default_verify_sample_rate")]
    pub verify_sample_rate: f64,
    /// Seconds a shutting-down worker waits for its jobs to release.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// A job whose rejects (rows that cannot become items) exceed this
    /// fraction of its rows read fails instead of ending `done_with_rejects`,
    /// so a wrong mapping stops after a page or two.
    #[serde(default = "default_max_reject_fraction")]
    pub max_reject_fraction: f64,
    /// Rejects a job may always have, whatever the fraction (so one bad row
    /// in a job's small first page does not fail it).
    #[serde(default = "default_reject_allowance")]
    pub reject_allowance: u64,
    /// Stripes of its range a job copies side by side, each in key order
    /// with its part of the job's pages and writes, when the target's
    /// partition key is a leading key column (rows of one key next to each
    /// other): the job then writes many partition-key values at once
    /// instead of one partition at a time, and a key DynamoDB slows holds
    /// back its own stripe only. 1 turns it off.
    /// A striped job does not checkpoint mid-way (a redelivery starts it
    /// again; its puts are idempotent).
    #[serde(default = "default_stripes")]
    pub stripes: u32,
    /// Once the queue has been empty this long (seconds) while live workers
    /// stand idle, a job still reading hands the rest of its range back as
    /// a new job, split at one of its planned cuts, so the run's last
    /// minutes use the whole budget. 0 turns it off.
    #[serde(default = "default_hand_back_secs")]
    pub hand_back_secs: u64,
    /// DynamoDB read requests a second (BatchGetItem of up to 100 keys, or
    /// a Scan page) that this worker's verification jobs make, at most.
    /// 0 is refused: a verification that may not read never ends.
    #[serde(default = "default_verify_reads_per_sec")]
    pub verify_reads_per_sec: u32,
}

fn default_verify_reads_per_sec() -> u32 {
    50
}

fn default_stripes() -> u32 {
    8
}

fn default_hand_back_secs() -> u64 {
    5
}

fn default_max_reject_fraction() -> f64 {
    0.01
}
fn default_reject_allowance() -> u64 {
    10
}

fn default_concurrency() -> usize {
    4
}
fn default_page_rows() -> u32 {
    1000
}
fn default_page_bytes() -> u64 {
    2 * 1024 * 1024
}
fn default_verify_sample_rate() -> f64 {
    1.0
}
fn default_write_concurrency() -> usize {
    4
}
fn default_max_write_attempts() -> u32 {
    15
}
fn default_shutdown_grace() -> u64 {
    25
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: default_concurrency(),
            page_rows: default_page_rows(),
            page_bytes: default_page_bytes(),
            write_concurrency: default_write_concurrency(),
            verify_sample_rate: default_verify_sample_rate(),
            max_write_attempts: default_max_write_attempts(),
            shutdown_grace_secs: default_shutdown_grace(),
            max_reject_fraction: default_max_reject_fraction(),
            reject_allowance: default_reject_allowance(),
            stripes: default_stripes(),
            hand_back_secs: default_hand_back_secs(),
            verify_reads_per_sec: default_verify_reads_per_sec(),
        }
    }
}
