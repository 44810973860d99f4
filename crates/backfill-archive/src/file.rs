//! One Parquet part file: written from cells into memory that the caller
//! drains as it goes (to upload it in pieces), and read back into cells.
//!
//! The writer holds at most about one row group: rows gather in an Arrow
//! batch (a few thousand rows or a few MiB), batches go into the Parquet
//! writer's row group, and a full row group is flushed into the output
//! buffer that [`PartWriter::take_bytes`] empties. Draining the buffer is
//! safe because the Parquet writer counts the bytes it wrote itself for
//! the footer's offsets; it never reads its output back.

use backfill_item::compare::ItemDigest;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use sha2::{Digest, Sha256};

use crate::batch::{batch_cells, BatchBuilder};
use crate::types::{ArchiveSchema, PG_KIND, PG_TYPE, TABLE};
use crate::{digest, ArchiveError, Cell};

/// Key-value metadata: the columns' names, `pg_type`s and `pg_kind`s as a
/// JSON array of objects, for readers that ignore the Arrow schema.
pub const COLUMNS_KEY: &str = "backfill.columns";

/// Rows per Arrow batch handed to the Parquet writer (and read back).
const BATCH_ROWS: usize = 4096;
/// A batch is handed over sooner when its rows are large.
const BATCH_BYTES: usize = 2 << 20;
/// A row group is flushed sooner when its encoded size reaches this: a job
/// holds about one row group, so this and `worker.concurrency` bound a
/// worker's memory whatever `row_group_rows` says (8,192 rows of 64 KB
/// would be 512 MB; 128 MiB groups peaked a worker at 420 MB, 16 MiB at
/// 298 MB, 8 MiB at 211 MB, with 4 jobs of 64 KB rows).
const ROW_GROUP_BYTES: usize = 4 << 20;
/// Rows per batch when reading a part back.
const READ_BATCH_ROWS: usize = 1024;

/// How a part is written.
#[derive(Debug, Clone)]
pub struct PartOptions {
    /// Rows per row group (at most; a row group is also cut at 128 MiB).
    pub row_group_rows: usize,
    /// zstd's level (1 to 22).
    pub zstd_level: i32,
    /// Extra key-value metadata for the file's footer (run id, range, ...).
    pub key_value_metadata: Vec<(String, String)>,
}

impl Default for PartOptions {
    fn default() -> Self {
        PartOptions {
            row_group_rows: 65_536,
            zstd_level: 3,
            key_value_metadata: Vec::new(),
        }
    }
}

/// What a finished part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStats {
    pub rows: u64,
    /// The file's size: every byte taken plus the rest `finish` returned.
    pub bytes: u64,
    /// SHA-256 of the whole file, 64 hex digits.
    pub sha256_hex: String,
    /// The order-independent digest of the rows' cells.
    pub digest: ItemDigest,
}

/// A Parquet part being written into memory.
pub struct PartWriter {
    writer: ArrowWriter<Vec<u8>>,
    batch: BatchBuilder,
    row_group_rows: usize,
    batch_rows: usize,
    rows: u64,
    taken: u64,
    sha: Sha256,
    digest: ItemDigest,
}

impl PartWriter {
    /// A writer of `schema`'s rows. The footer holds every column's
    /// `pg_type` (in the Arrow schema's field metadata and in
    /// [`COLUMNS_KEY`]), the table, and `opts.key_value_metadata`.
    pub fn new(schema: &ArchiveSchema, opts: PartOptions) -> Result<Self, ArchiveError> {
        let row_group_rows = opts.row_group_rows.max(1);
        let level = ZstdLevel::try_new(opts.zstd_level)?;
        let mut kv = vec![KeyValue::new(COLUMNS_KEY.to_string(), columns_json(schema))];
        if let Some(table) = schema.arrow.metadata().get(TABLE) {
            kv.push(KeyValue::new(TABLE.to_string(), table.clone()));
        }
        kv.extend(
            opts.key_value_metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v)),
        );
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_key_value_metadata(Some(kv))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.arrow.clone(), Some(props))?;
        Ok(PartWriter {
            writer,
            batch: BatchBuilder::new(schema),
            row_group_rows,
            batch_rows: row_group_rows.min(BATCH_ROWS),
            rows: 0,
            taken: 0,
            sha: Sha256::new(),
            digest: ItemDigest::default(),
        })
    }

    /// Adds one row; a full batch goes to the row group, and a full row
    /// group is flushed into the bytes ready to take.
    pub fn push(&mut self, cells: &[Cell]) -> Result<(), ArchiveError> {
        match self.batch.push(cells) {
            Err(ArchiveError::BatchFull(_)) if !self.batch.is_empty() => {
                self.write_batch()?;
                self.batch.push(cells)?;
            }
            other => other?,
        }
        digest::add_row(&mut self.digest, cells);
        self.rows += 1;
        if self.batch.len() >= self.batch_rows || self.batch.approx_bytes() >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), ArchiveError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = self.batch.finish()?;
        // The Parquet writer cuts a row group at row_group_rows by itself.
        self.writer.write(&batch)?;
        if self.writer.in_progress_rows() >= self.row_group_rows
            || self.writer.in_progress_size() >= ROW_GROUP_BYTES
        {
            self.writer.flush()?;
        }
        // Moves what a flushed row group left in the writer's small
        // buffer into the output, so buffered_bytes sees all of it.
        self.writer.sync()?;
        Ok(())
    }

    /// Bytes of the file ready to take.
    pub fn buffered_bytes(&self) -> usize {
        self.writer.inner().len()
    }

    /// Takes the bytes of the file written so far (in order; the next
    /// call continues where this one ended).
    pub fn take_bytes(&mut self) -> Vec<u8> {
        let bytes = std::mem::take(self.writer.inner_mut());
        self.sha.update(&bytes);
        self.taken += bytes.len() as u64;
        bytes
    }

    /// About how many bytes the writer holds: the batch being gathered,
    /// the row group being encoded, and the bytes not yet taken.
    pub fn memory_size(&self) -> usize {
        self.batch.approx_bytes() + self.writer.memory_size() + self.buffered_bytes()
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the last row group and the footer: the file's remaining
    /// bytes, and what the whole file holds.
    pub fn finish(mut self) -> Result<(Vec<u8>, PartStats), ArchiveError> {
        self.write_batch()?;
        let rest = self.writer.into_inner()?;
        self.sha.update(&rest);
        let stats = PartStats {
            rows: self.rows,
            bytes: self.taken + rest.len() as u64,
            sha256_hex: hex::encode(self.sha.finalize()),
            digest: self.digest,
        };
        Ok((rest, stats))
    }
}

fn columns_json(schema: &ArchiveSchema) -> String {
    let cols: Vec<serde_json::Value> = schema
        .arrow
        .fields()
        .iter()
        .map(|f| {
            let meta = |k: &str| f.metadata().get(k).cloned().unwrap_or_default();
            serde_json::json!({"name": f.name(), "pg_type": meta(PG_TYPE), "pg_kind": meta(PG_KIND)})
        })
        .collect();
    serde_json::Value::Array(cols).to_string()
}

/// A part file read back as rows of cells, [`READ_BATCH_ROWS`] at a time.
pub struct PartReader {
    schema: ArchiveSchema,
    rows: u64,
    key_value_metadata: Vec<(String, String)>,
    reader: ParquetRecordBatchReader,
}

impl PartReader {
    /// Opens a part (a `File`, or `bytes::Bytes` of a whole object). With
    /// `expected`, a part whose columns differ (names, types, `pg_type`s)
    /// is refused.
    pub fn open<R: ChunkReader + 'static>(
        file: R,
        expected: Option<&ArchiveSchema>,
    ) -> Result<Self, ArchiveError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let schema = ArchiveSchema::from_arrow(builder.schema().clone())?;
        if let Some(want) = expected {
            check_same_columns(want, &schema)?;
        }
        let meta = builder.metadata().file_metadata();
        let rows = u64::try_from(meta.num_rows()).unwrap_or(0);
        let key_value_metadata = meta
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let reader = builder.with_batch_size(READ_BATCH_ROWS).build()?;
        Ok(PartReader {
            schema,
            rows,
            key_value_metadata,
            reader,
        })
    }

    /// The part's schema, as its Arrow schema records it.
    pub fn schema(&self) -> &ArchiveSchema {
        &self.schema
    }

    /// Each column's name and `pg_type`.
    pub fn columns(&self) -> Vec<(String, String)> {
        (0..self.schema.columns.len())
            .map(|i| {
                (
                    self.schema.name(i).to_string(),
                    self.schema.pg_type(i).to_string(),
                )
            })
            .collect()
    }

    /// Rows in the part, from its footer.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The footer's key-value metadata (including [`COLUMNS_KEY`] and
    /// Arrow's own `ARROW:schema`).
    pub fn key_value_metadata(&self) -> &[(String, String)] {
        &self.key_value_metadata
    }
}

impl Iterator for PartReader {
    type Item = Result<Vec<Vec<Cell>>, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .map_err(ArchiveError::from)
                .and_then(|b| batch_cells(&self.schema, &b)),
        )
    }
}

fn check_same_columns(want: &ArchiveSchema, got: &ArchiveSchema) -> Result<(), ArchiveError> {
    let describe = |s: &ArchiveSchema| -> Vec<(String, String, String)> {
        (0..s.columns.len())
            .map(|i| {
                (
                    s.name(i).to_string(),
                    s.pg_type(i).to_string(),
                    format!("{:?}", s.columns[i]),
                )
            })
            .collect()
    };
    let (w, g) = (describe(want), describe(got));
    if w == g {
        return Ok(());
    }
    let first = w
        .iter()
        .zip(&g)
        .find(|(a, b)| a != b)
        .map(|(a, b)| {
            format!(
                "column {} ({}, {}) is {} ({}, {}) in the part",
                a.0, a.1, a.2, b.0, b.1, b.2
            )
        })
        .unwrap_or_else(|| format!("{} columns expected, the part has {}", w.len(), g.len()));
    Err(ArchiveError::File(format!(
        "the part's columns differ: {first}"
    )))
}
