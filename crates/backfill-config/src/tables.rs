//! `[[tables]]`: one table to copy, and the per-table mapping policies.
//!
//! The mapping choices (types, NULLs, unrepresentable values, oversize
//! items, ambiguous keys) are all per table, so they live with the table;
//! the keys themselves are in `key.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::KeyAttribute;

/// One table to copy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table` or `table` (schema `public`) in Postgres.
    pub source: String,
    /// The DynamoDB table name.
    pub target: String,
    pub partition_key: KeyAttribute,
    #[serde(default)]
    pub sort_key: Option<KeyAttribute>,
    /// Columns to copy (default: all). Key and version columns are read anyway.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Columns never copied.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Attribute names that differ from column names: `{ column = "attribute" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Per-column form overrides: `{ column = "string" | "number" | "json" }`.
    #[serde(default)]
    pub types: BTreeMap<String, TypeOverride>,
    /// What a SQL NULL becomes.
    #[serde(default)]
    pub nulls: NullPolicy,
    /// What a value without a DynamoDB form (NaN, Infinity, a number of more
    /// than 38 significant digits or out of range) becomes.
    #[serde(default)]
    pub unrepresentable: Unrepresentable,
    /// A column (e.g. `updated_at`, `version`) that makes writes conditional:
    /// an item whose version attribute is newer or equal is never overwritten.
    #[serde(default)]
    pub version_column: Option<String>,
    /// What an item over 400 KB does: `fail` its job or go to `s3`.
    #[serde(default)]
    pub oversize: Oversize,
    /// What a key built from several columns does with a value that
    /// contains the key's separator (which would make two rows one item):
    /// `reject` the row, or `escape` the value.
    #[serde(default)]
    pub ambiguous_keys: AmbiguousKeys,
    /// The fleet's write budget for the target, in WCU per second (all
    /// workers together). Give this or `write_budget_fraction`, or neither (no limit).
    #[serde(default)]
    pub write_budget_wcu: Option<f64>,
    /// The budget as a fraction (0 to 1) of the target's provisioned write
    /// capacity, read with DescribeTable; the rest is left to the application.
    #[serde(default)]
    pub write_budget_fraction: Option<f64>,
    /// The fleet's read budget on the target for verification jobs, in RCU
    /// per second (all workers together, divided among the live ones as
    /// the write budget is); reads are eventually consistent, half a unit
    /// per 4 KB. None: only `worker.verify_reads_per_sec` bounds them.
    #[serde(default)]
    pub read_budget_rcu: Option<f64>,
}

/// What happens to an item over DynamoDB's 400 KB limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// The job fails, naming the key and the size.
    #[default]
    Fail,
    /// The item goes to S3 whole; DynamoDB holds its key and a pointer.
    S3,
}

/// A per-column override of the DynamoDB form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeOverride {
    /// S: the value's text form (jsonb as its JSON text, numeric as its digits).
    String,
    /// N: the value must be a DynamoDB number.
    Number,
    /// M / L: the value's text must be JSON.
    Json,
}

/// What a SQL NULL becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NullPolicy {
    /// The attribute is left out of the item.
    #[default]
    Omit,
    /// The attribute is stored as `{"NULL": true}`.
    Null,
}

/// What a joined key does with a part that contains its separator
/// (docs/MAPPING.md, "Keys from several columns").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousKeys {
    /// The row is a reject naming the column: the application's own keys
    /// decide how such a value is written, and the backfill cannot guess.
    #[default]
    Reject,
    /// A backslash is put before each backslash and each separator
    /// character in the part, for applications that escape the same way.
    Escape,
}

/// What a value without a DynamoDB form becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unrepresentable {
    /// The job fails, naming table, key and column.
    #[default]
    Fail,
    /// The value is stored as S of its exact text form.
    String,
}

impl TableConfig {
    /// A table copied whole, keyed by `partition_key`, every option at its default.
    pub fn new(
        source: impl Into<String>,
        target: impl Into<String>,
        partition_key: KeyAttribute,
    ) -> Self {
        TableConfig {
            source: source.into(),
            target: target.into(),
            partition_key,
            sort_key: None,
            include: None,
            exclude: Vec::new(),
            rename: BTreeMap::new(),
            types: BTreeMap::new(),
            nulls: NullPolicy::default(),
            unrepresentable: Unrepresentable::default(),
            version_column: None,
            oversize: Oversize::default(),
            ambiguous_keys: AmbiguousKeys::default(),
            write_budget_wcu: None,
            write_budget_fraction: None,
            read_budget_rcu: None,
        }
    }
}
