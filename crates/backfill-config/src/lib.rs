//! The one configuration type of the backfill, loaded in one place.
//!
//! [`BackfillConfig::load`] reads a TOML file, then applies environment
//! overrides (`BACKFILL__SECTION__KEY`, e.g. `BACKFILL__SOURCE__URL`), then
//! validates the whole. Every error names the key at fault. Secrets (the
//! source URL carries a password) are wrapped in [`Secret`], which never
//! prints its content.

mod archive;
mod aws;
mod capacity;
mod control;
mod error;
mod key;
mod load;
mod metrics;
mod offload;
mod producer;
mod queue;
mod secret;
mod source;
mod tables;
#[cfg(test)]
mod testing;
mod validate;
mod worker;

use serde::{Deserialize, Serialize};

pub use archive::ArchiveConfig;
pub use aws::AwsConfig;
pub use capacity::CapacityConfig;
pub use control::ControlConfig;
pub use error::ConfigError;
pub use key::{parse_template, KeyAttribute, TemplatePart};
pub use metrics::MetricsConfig;
pub use offload::OffloadConfig;
pub use producer::ProducerConfig;
pub use queue::{QueueConfig, MIN_SIGNING_KEY_BYTES};
pub use secret::{redact_url, Secret};
pub use source::SourceConfig;
pub use tables::{AmbiguousKeys, NullPolicy, Oversize, TableConfig, TypeOverride, Unrepresentable};
pub use worker::WorkerConfig;

/// The whole configuration of producer and worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    pub source: SourceConfig,
    pub aws: AwsConfig,
    pub queue: QueueConfig,
    pub control: ControlConfig,
    #[serde(default)]
    pub producer: ProducerConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// Where items over DynamoDB's 400 KB limit go, for tables with `oversize = "s3"`.
    #[serde(default)]
    pub offload: Option<OffloadConfig>,
    /// Where `backfill archive` writes tables as Parquet.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
    /// The worker's Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: MetricsConfig,
    pub tables: Vec<TableConfig>,
}

impl BackfillConfig {
    /// The table whose `source` is `name`.
    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        self.tables.iter().find(|t| t.source == name)
    }
}
