//! Archive runs: the copy's plan (key ranges that tile each table, from
//! the same sample), each range an `archive` job that writes one Parquet
//! part to S3. Stored and enqueued as a copy run is, so the same workers,
//! `status`, resume and DLQ serve them.

use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_job::JobMessage;
use backfill_queue::JobQueue;
use backfill_source::PgSource;

use crate::{enqueue_planned, plan, save_plan, stored_run, ProduceReport, ProducerError};

/// Plans (or reuses) archive run `run_id` of the configured tables and
/// enqueues what is not yet.
pub async fn produce_archive(
    cfg: &BackfillConfig,
    source: &PgSource,
    queue: &JobQueue,
    control: &ControlTable,
    run_id: &str,
) -> Result<ProduceReport, ProducerError> {
    if cfg.archive.is_none() {
        return Err(ProducerError::Problems(vec![
            "an archive run needs the [archive] section (bucket, prefix) in the configuration"
                .into(),
        ]));
    }
    let reused_plan = stored_run(control, run_id).await?;
    if !reused_plan {
        let mut plan = plan(cfg, source, run_id).await?;
        for t in &mut plan.tables {
            // A part is written in key order: the copy's stripe cuts
            // serve writing to DynamoDB's partitions, not a file.
            t.jobs = t
                .jobs
                .iter()
                .map(|j| JobMessage::archive_of(run_id, j))
                .collect();
        }
        save_plan(cfg, control, run_id, &plan).await?;
    }
    enqueue_planned(control, queue, run_id, reused_plan).await
}
