//! `[archive]`: where `backfill archive` writes a table's history as
//! Parquet before the team drops it (docs/ARCHIVE.md).
//!
//! Optional: only archive runs need it, and `archive` refuses to plan
//! without it, naming the section.

use serde::{Deserialize, Serialize};

/// The S3 location and file layout of archive runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub bucket: String,
    /// Key prefix; parts go under `<prefix><schema.table>/run=<R>/`.
    #[serde(default)]
    pub prefix: String,
    /// Rows per Parquet row group: what a worker holds in memory per job
    /// before the group is compressed and uploaded.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level of every column chunk (1 to 22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Bytes of a multipart upload's part (S3 takes 5 MiB to 5 GiB; the
    /// last part may be smaller).
    #[serde(default = "default_upload_part_bytes")]
    pub upload_part_bytes: usize,
    /// Columns archived as their Postgres text form instead of their
    /// Parquet type, each `<table source>.<column>` (e.g.
    /// `public.events.ts`): for values a Parquet type cannot hold, such as
    /// timestamps after the year 294246, which the archive refuses by key.
    #[serde(default)]
    pub text_columns: Vec<String>,
}

impl ArchiveConfig {
    /// The columns of table `source` to archive as text.
    pub fn text_columns_of(&self, source: &str) -> Vec<String> {
        self.text_columns
            .iter()
            .filter_map(|c| c.strip_prefix(source)?.strip_prefix('.'))
            .map(str::to_string)
            .collect()
    }
}

fn default_row_group_rows() -> usize {
    8_192
}

fn default_zstd_level() -> i32 {
    3
}

fn default_upload_part_bytes() -> usize {
    8 * 1024 * 1024
}
