//! `[producer]`: how the producer splits tables into jobs.
//!
//! Read only by `plan` and `start`; the workers never see it.

use serde::{Deserialize, Serialize};

/// How the producer splits tables.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Rows a job should cover, about.
    #[serde(default = "default_rows_per_job")]
    pub rows_per_job: u64,
    /// Key samples taken per planned job; more gives more even jobs.
    #[serde(default = "default_samples_per_job")]
    pub samples_per_job: u64,
    /// Upper bound on the sample size, whatever the table size.
    #[serde(default = "default_max_sample_rows")]
    pub max_sample_rows: u64,
}

fn default_rows_per_job() -> u64 {
    100_000
}
fn default_samples_per_job() -> u64 {
    20
}
fn default_max_sample_rows() -> u64 {
    1_000_000
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            rows_per_job: default_rows_per_job(),
            samples_per_job: default_samples_per_job(),
            max_sample_rows: default_max_sample_rows(),
        }
    }
}
