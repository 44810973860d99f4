//! `[control]`: the DynamoDB table that holds runs and jobs.
//!
//! A section of its own, however small, so that each `[section]` of the
//! file has a module of the same name.

use serde::{Deserialize, Serialize};

/// The DynamoDB table that holds runs and jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub table: String,
}
