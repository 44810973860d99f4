//! One part on its way to S3: rows go into the Parquet writer, and the
//! bytes it emits go up as they reach an upload part's size, so a worker
//! holds about one row group and one upload part whatever the range's size.
//!
//! A part that fits in one upload part is one `PutObject`; a bigger one is
//! a multipart upload. Either way the object appears whole or not at all.

use backfill_item::compare::ItemDigest;

use crate::file::{PartOptions, PartStats, PartWriter};
use crate::store::{ArchiveStore, StoreError, Upload};
use crate::types::ArchiveSchema;
use crate::{ArchiveError, Cell};

/// Why a part could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error(transparent)]
    Encode(#[from] ArchiveError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PartError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PartError::Encode(_) => false,
            PartError::Store(e) => e.retryable,
        }
    }
}

/// What a finished part is.
#[derive(Debug, Clone)]
pub struct WrittenPart {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub digest: ItemDigest,
}

/// A part being written to `key`.
pub struct PartSink {
    writer: PartWriter,
    store: ArchiveStore,
    key: String,
    upload: Option<Upload>,
    pending: Vec<u8>,
    part_bytes: usize,
}

impl PartSink {
    pub fn new(
        store: ArchiveStore,
        key: String,
        schema: &ArchiveSchema,
        opts: PartOptions,
        part_bytes: usize,
    ) -> Result<Self, PartError> {
        Ok(PartSink {
            writer: PartWriter::new(schema, opts)?,
            store,
            key,
            upload: None,
            pending: Vec::new(),
            part_bytes,
        })
    }

    /// Adds one row, uploading a part of the file when enough is ready.
    pub async fn push(&mut self, cells: &[Cell]) -> Result<(), PartError> {
        self.writer.push(cells)?;
        if self.writer.buffered_bytes() > 0 {
            let bytes = self.writer.take_bytes();
            // Moved, not copied, when nothing waits: a row group's bytes
            // are the biggest buffer a job holds.
            if self.pending.is_empty() {
                self.pending = bytes;
            } else {
                self.pending.extend_from_slice(&bytes);
            }
        }
        if self.pending.len() >= self.part_bytes {
            let body = std::mem::take(&mut self.pending);
            if self.upload.is_none() {
                self.upload = Some(self.store.start_upload(&self.key).await?);
            }
            if let Some(u) = self.upload.as_mut() {
                u.part(body).await?;
            }
        }
        Ok(())
    }

    /// Writes the file's footer and makes the object visible.
    pub async fn finish(mut self) -> Result<WrittenPart, PartError> {
        let (rest, stats): (Vec<u8>, PartStats) = self.writer.finish()?;
        self.pending.extend(rest);
        let body = std::mem::take(&mut self.pending);
        match self.upload.take() {
            None => {
                self.store
                    .put(&self.key, body, "application/vnd.apache.parquet")
                    .await?
            }
            Some(mut u) => {
                u.part(body).await?;
                u.complete().await?;
            }
        }
        Ok(WrittenPart {
            key: self.key,
            rows: stats.rows,
            bytes: stats.bytes,
            sha256: stats.sha256_hex,
            digest: stats.digest,
        })
    }

    /// Gives the part up (shutdown or a failed job): an upload in progress
    /// is aborted, so nothing of it is ever visible.
    pub async fn abort(mut self) {
        if let Some(u) = self.upload.take() {
            u.abort().await;
        }
    }
}
