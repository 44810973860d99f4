//! `[offload]`: the S3 location of items over DynamoDB's size limit.
//!
//! Optional and separate from the tables: only tables with
//! `oversize = "s3"` need it, and validation checks that they have it.

use serde::{Deserialize, Serialize};

/// The S3 location of offloaded items (docs/OFFLOAD.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    pub bucket: String,
    /// Key prefix, e.g. `backfill/`.
    #[serde(default)]
    pub prefix: String,
}
