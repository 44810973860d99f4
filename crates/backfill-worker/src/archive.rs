//! Archive jobs: the same messages, claims, heartbeats, DLQ and records as
//! a copy, with S3 as the sink. A job reads its key range in key order and
//! writes it as one Parquet part (`part-<job>.parquet`), uploaded as it
//! goes; the part is recorded (`PART#<job>`) before the job is marked
//! done, and the worker that finishes a table's last part writes the
//! table's manifest, which is what makes the run complete.
//!
//! A job stopped part-way (shutdown, crash) has written nothing visible:
//! its upload is aborted or left incomplete, and its retry starts over.

use backfill_archive::file::PartOptions;
use backfill_archive::manifest::{Manifest, ManifestColumn, ManifestPart};
use backfill_archive::part::{PartError, PartSink};
use backfill_archive::store::{ArchiveStore, StoreError};
use backfill_archive::types::{archive_schema, ArchiveSchema};
use backfill_control::{ArchivePart, JobState};
use backfill_job::{display_key, JobMessage};
use backfill_queue::ReceivedMessage;
use backfill_source::reader::PageQuery;
use backfill_source::TableRef;
use tokio_util::sync::CancellationToken;

use crate::copy::{next_page_rows, FIRST_PAGE_ROWS};
use crate::outcome::Outcome;
use crate::{JobError, Worker};

impl Worker {
    /// Archive jobs write their parts through this store (`[archive]`).
    pub fn with_archive(mut self, store: ArchiveStore) -> Self {
        self.archive = Some(store);
        self
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Archive {
            retryable: e.retryable,
            reason: e.to_string(),
        }
    }
}

impl From<PartError> for JobError {
    fn from(e: PartError) -> Self {
        let retryable = e.is_retryable();
        JobError::Archive {
            reason: e.to_string(),
            retryable,
        }
    }
}

/// The columns of an archive schema as the manifest and part records list
/// them.
pub fn manifest_columns(s: &ArchiveSchema) -> Vec<ManifestColumn> {
    s.arrow
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            pg_type: f.metadata().get("pg_type").cloned().unwrap_or_default(),
            arrow_type: f.data_type().to_string(),
            encoding: f.metadata().get("backfill.encoding").cloned(),
        })
        .collect()
}

/// The archive schema of a table as this run writes it: arrays declared
/// with more than one dimension are stored as their JSON text, and the
/// columns `[archive] text_columns` names as their text form.
pub async fn table_archive_schema(
    source: &backfill_source::PgSource,
    table: &TableRef,
    cfg: Option<&backfill_config::ArchiveConfig>,
) -> Result<(backfill_source::TableSchema, ArchiveSchema), JobError> {
    let schema = source.describe(table).await?;
    let dims = source.array_dims(table).await?;
    let mut json_columns: Vec<String> = dims
        .into_iter()
        .filter(|(_, d)| *d > 1)
        .map(|(c, _)| c)
        .collect();
    if let Some(cfg) = cfg {
        json_columns.extend(cfg.text_columns_of(&table.to_string()));
    }
    let archived = archive_schema(&schema, &json_columns).map_err(|e| JobError::ArchiveRow {
        table: table.to_string(),
        key: "(schema)".into(),
        reason: e.to_string(),
    })?;
    Ok((schema, archived))
}

/// Runs an archive job; `None` when shutdown came first (the job goes
/// back to the queue; nothing of it is visible).
pub(crate) async fn archive_job(
    w: &Worker,
    job: &JobMessage,
    cancel: &CancellationToken,
) -> Result<Option<ArchivePart>, JobError> {
    let (Some(cfg), Some(store)) = (w.cfg.archive.as_ref(), w.archive.as_ref()) else {
        return Err(JobError::Archive {
            reason: format!(
                "table {}: an archive job needs the [archive] section (bucket, prefix)",
                job.table
            ),
            retryable: false,
        });
    };
    let table = TableRef::parse(&job.table);
    let (schema, archived) = table_archive_schema(&w.source, &table, Some(cfg)).await?;
    schema.check_job_key(&job.key_columns)?;
    schema.check_key_types()?;
    let read_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let key = store.part_key(&job.table, &job.run_id, &job.job_id);
    let opts = PartOptions {
        row_group_rows: cfg.row_group_rows,
        zstd_level: cfg.zstd_level,
        key_value_metadata: vec![
            ("backfill.run".into(), job.run_id.clone()),
            ("backfill.job".into(), job.job_id.clone()),
            ("backfill.range".into(), job.range.to_string()),
        ],
    };
    let mut sink = PartSink::new(
        store.clone(),
        key.clone(),
        &archived,
        opts,
        cfg.upload_part_bytes,
    )?;
    let query = PageQuery::new(&schema, &job.range);
    let (page_rows, page_bytes) = (w.cfg.worker.page_rows, w.cfg.worker.page_bytes);
    let mut limit = page_rows.min(FIRST_PAGE_ROWS);
    let mut after = None;
    let result = async {
        loop {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let page = w
                .source
                .read_page(&schema, &query, after.as_ref(), limit)
                .await?;
            for row in &page {
                let cells = backfill_archive::cell::row_cells(&archived, row).map_err(|e| {
                    JobError::ArchiveRow {
                        table: job.table.clone(),
                        key: display_key(&row.key),
                        reason: e.to_string(),
                    }
                })?;
                sink.push(&cells).await?;
            }
            w.metrics.rows_read(&job.table, page.len() as u64);
            if (page.len() as u32) < limit {
                return Ok(true);
            }
            limit = next_page_rows(&page, page_rows, page_bytes);
            after = page.last().map(|r| r.key.clone());
        }
    }
    .await;
    match result {
        Ok(true) => {}
        Ok(false) => {
            sink.abort().await;
            return Ok(None);
        }
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    }
    let part = sink.finish().await?;
    Ok(Some(ArchivePart {
        job_id: job.job_id.clone(),
        table: job.table.clone(),
        key: part.key,
        range: serde_json::to_value(&job.range).unwrap_or_default(),
        rows: part.rows,
        digest: part.digest.sum_hex(),
        sha256: part.sha256,
        bytes: part.bytes,
        read_at,
        columns: serde_json::to_value(manifest_columns(&archived)).unwrap_or_default(),
    }))
}

/// Writes the manifest of every table of run `run_id` once the whole run
/// is done. Each finished job calls it, so it first reads only the run's
/// record (one item): listing a run's jobs after each of ten thousand
/// jobs would read a hundred million records.
pub async fn write_manifests_if_run_complete(
    control: &backfill_control::ControlTable,
    store: &ArchiveStore,
    run_id: &str,
) -> Result<Vec<Manifest>, JobError> {
    let Some(run) = control.get_run(run_id).await? else {
        return Ok(Vec::new());
    };
    if run.jobs_done < run.jobs_planned {
        return Ok(Vec::new());
    }
    let mut written = Vec::new();
    for t in &run.tables {
        if let Some(m) = write_manifest_if_complete(control, store, run_id, &t.source).await? {
            written.push(m);
        }
    }
    Ok(written)
}

/// Writes `table`'s manifest of `run_id` when every one of its archive
/// jobs is done, and aborts the uploads crashed workers left; `Ok(None)`
/// while jobs remain. Any worker (or `archive --run`) may call it: the
/// manifest is the same whoever writes it.
pub async fn write_manifest_if_complete(
    control: &backfill_control::ControlTable,
    store: &ArchiveStore,
    run_id: &str,
    table: &str,
) -> Result<Option<Manifest>, JobError> {
    let jobs = control.jobs(run_id).await?;
    let mine: Vec<_> = jobs.iter().filter(|j| j.job.table == table).collect();
    if mine.is_empty() || mine.iter().any(|j| j.state != JobState::Done) {
        return Ok(None);
    }
    let parts: Vec<ArchivePart> = control
        .parts(run_id)
        .await?
        .into_iter()
        .filter(|p| p.table == table)
        .collect();
    let invalid = |reason: String| JobError::Archive {
        reason: format!("table {table}, run {run_id}: {reason}"),
        retryable: false,
    };
    for j in &mine {
        if !parts.iter().any(|p| p.job_id == j.job.job_id) {
            return Err(invalid(format!(
                "job {} is done but recorded no part",
                j.job.job_id
            )));
        }
    }
    let columns = parts.first().map(|p| p.columns.clone()).unwrap_or_default();
    if let Some(p) = parts.iter().find(|p| p.columns != columns) {
        return Err(invalid(format!(
            "part {} has other columns than the first part: the table changed during the run; archive it again under a new run",
            p.key
        )));
    }
    let columns: Vec<ManifestColumn> = serde_json::from_value(columns)
        .map_err(|e| invalid(format!("the parts' columns do not read: {e}")))?;
    let key_columns = mine[0].job.key_columns.clone();
    let manifest = Manifest::build(
        table,
        run_id,
        store.bucket(),
        key_columns,
        columns,
        parts
            .into_iter()
            .map(|p| ManifestPart {
                job_id: p.job_id,
                key: p.key,
                range: p.range,
                rows: p.rows,
                digest: p.digest,
                sha256: p.sha256,
                bytes: p.bytes,
                read_at: p.read_at,
            })
            .collect(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    )
    .map_err(|e| invalid(e.to_string()))?;
    let aborted = store
        .abort_stale_uploads(&store.run_dir(table, run_id))
        .await?;
    if aborted > 0 {
        tracing::info!(
            aborted,
            "aborted incomplete uploads left by stopped workers"
        );
    }
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
    store
        .put(&store.manifest_key(table, run_id), body, "application/json")
        .await?;
    tracing::info!(
        table,
        parts = manifest.parts.len(),
        rows = manifest.rows,
        "archive manifest written: the table's run is complete"
    );
    Ok(Some(manifest))
}

impl Worker {
    /// Records a finished part and its job, acknowledges the message, and
    /// writes the table's manifest if this was its last part.
    pub(crate) async fn after_archive(
        &self,
        msg: &ReceivedMessage,
        job: &JobMessage,
        result: Result<Option<ArchivePart>, JobError>,
    ) -> Outcome {
        let part = match result {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::info!("shutting down: handing the archive job back to the queue");
                return self.release(msg).await;
            }
            Err(e) => return self.after_error(msg, job, e).await,
        };
        if let Err(e) = self.control.record_part(&job.run_id, &part).await {
            return self.after_failure(msg, job, JobError::Control(e)).await;
        }
        if let Err(e) = self.control.finish(job, part.rows, &part.digest, 0).await {
            return self.after_failure(msg, job, JobError::Control(e)).await;
        }
        if let Err(e) = self.queue.delete(&msg.receipt_handle).await {
            tracing::warn!(error = %e, "deleting the archived job's message failed");
        }
        tracing::info!(rows = part.rows, bytes = part.bytes, key = %part.key, "archived");
        if let Some(store) = &self.archive {
            // A failure here leaves the run without its manifest, which
            // `backfill archive --run` writes when run again.
            if let Err(e) = write_manifests_if_run_complete(&self.control, store, &job.run_id).await
            {
                tracing::warn!(error = %e, "writing the archive manifest failed; `backfill archive --run {}` writes it", job.run_id);
            }
        }
        Outcome::Done {
            rows: part.rows,
            rows_read: part.rows,
        }
    }
}
