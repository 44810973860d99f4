//! `rejects retry`: the rows a copy recorded as rejects, read again from
//! Postgres after the config or the data was fixed, and written through the
//! same mapping, size check and write path as a copy (conditional writes
//! with a version column, S3 for oversized items where configured).
//!
//! A row written is resolved (its record deleted, its job counts one reject
//! fewer); a row gone from Postgres is resolved too; a row that still
//! cannot become an item keeps its record, with today's reasons.

use backfill_config::{BackfillConfig, Oversize};
use backfill_control::{AuditAction, AuditRecord, ControlTable, RejectRecord};
use backfill_dynamo::DynamoSink;
use backfill_item::size::{item_size_upper_bound, MAX_ITEM_BYTES};
use backfill_item::{ItemMapper, MapError};
use backfill_offload::S3Offloader;
use backfill_source::{PgSource, TableRef};

use crate::copy::{oversize_reject, reject_problems};
use crate::JobError;

/// What one `rejects retry` did.
#[derive(Debug, Clone, Default)]
pub struct RetryReport {
    /// Rows written now.
    pub written: u64,
    /// Rows no longer in Postgres (resolved without a write).
    pub gone: u64,
    /// Rows that still cannot become items, with their current reasons.
    pub still_rejected: Vec<RejectRecord>,
}

/// Whose rejects to retry, and who asks.
#[derive(Debug, Clone)]
pub struct RetryRequest<'a> {
    pub run_id: &'a str,
    /// Only this source table (as configured), or every table.
    pub table: Option<&'a str>,
    pub by: &'a str,
    pub why: &'a str,
}

/// The write path a retry uses: the copy's own.
pub struct RetryPath<'a> {
    pub cfg: &'a BackfillConfig,
    pub source: &'a PgSource,
    pub sink: &'a DynamoSink,
    pub control: &'a ControlTable,
    pub offloader: Option<&'a S3Offloader>,
}

/// Retries the run's rejects; records one audit record per table retried.
pub async fn retry_rejects(
    path: &RetryPath<'_>,
    req: &RetryRequest<'_>,
) -> Result<RetryReport, JobError> {
    let mut report = RetryReport::default();
    let all = path.control.rejects(req.run_id).await?;
    let mut tables: Vec<&str> = all.iter().map(|r| r.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        if req.table.is_some_and(|t| t != table) {
            continue;
        }
        let mine: Vec<&RejectRecord> = all.iter().filter(|r| r.table == table).collect();
        let before = (report.written, report.gone, report.still_rejected.len());
        retry_table(path, table, &mine, &mut report).await?;
        let summary = format!(
            "{} rejects: {} written, {} gone from the source, {} still rejected",
            mine.len(),
            report.written - before.0,
            report.gone - before.1,
            report.still_rejected.len() - before.2
        );
        tracing::info!(run = req.run_id, table, "{summary}");
        path.control
            .record_audit(&AuditRecord {
                action: AuditAction::RejectRetry,
                run_id: Some(req.run_id.to_string()),
                job_id: None,
                table: Some(table.to_string()),
                message_id: String::new(),
                by: req.by.to_string(),
                why: req.why.to_string(),
                error: Some(summary),
                at: String::new(),
            })
            .await?;
    }
    Ok(report)
}

async fn retry_table(
    path: &RetryPath<'_>,
    table: &str,
    rejects: &[&RejectRecord],
    report: &mut RetryReport,
) -> Result<(), JobError> {
    let tcfg = path
        .cfg
        .table(table)
        .ok_or_else(|| JobError::UnknownTable(table.to_string()))?;
    let schema = path.source.describe(&TableRef::parse(table)).await?;
    let mapper = ItemMapper::new(tcfg, &schema)?;
    for r in rejects {
        let Some(row) = path.source.read_key(&schema, &r.key).await? else {
            path.control.resolve_reject(r).await?;
            report.gone += 1;
            continue;
        };
        let problems = match mapper.map_row(&row) {
            Err(MapError::Row { problems, .. }) => reject_problems(problems),
            Err(e) => return Err(e.into()),
            Ok(item) => {
                let size = item_size_upper_bound(&item);
                let item = match (size > MAX_ITEM_BYTES, tcfg.oversize, path.offloader) {
                    (false, _, _) => Some(item),
                    (true, Oversize::S3, Some(off)) => Some(
                        off.offload(&tcfg.target, &mapper.key_of(&item), &item)
                            .await?,
                    ),
                    (true, Oversize::S3, None) => {
                        return Err(JobError::NoOffloader {
                            table: table.to_string(),
                        })
                    }
                    (true, Oversize::Fail, _) => None,
                };
                match item {
                    Some(item) => {
                        let wcu = backfill_capacity::estimate_wcu(&item);
                        match mapper.version_attribute() {
                            Some(version) => {
                                path.sink
                                    .put_items_if_newer(
                                        &tcfg.target,
                                        vec![(item, wcu)],
                                        &mapper.partition_key().attribute,
                                        version,
                                        1,
                                    )
                                    .await?
                            }
                            None => {
                                path.sink
                                    .put_items_estimated(&tcfg.target, vec![(item, wcu)], 1)
                                    .await?
                            }
                        };
                        path.control.resolve_reject(r).await?;
                        report.written += 1;
                        continue;
                    }
                    None => oversize_reject(table, &r.key, size),
                }
            }
        };
        let mut still = (*r).clone();
        still.problems = problems;
        path.control.update_reject(&still).await?;
        report.still_rejected.push(still);
    }
    Ok(())
}
