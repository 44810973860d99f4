//! Verification jobs: the same messages, claims, heartbeats, DLQ and
//! records as a copy, but the worker reads instead of writing. A `verify`
//! job compares its key range's rows with their items; a `scan` job reads
//! one segment of the target and looks each item's row up in the source.
//! Memory is bounded by a page either way, whatever the table's size.
//!
//! The findings go to the control table before the job is marked done (a
//! done job always has them); the job's `rows` are the rows it checked
//! (or the items it scanned), so `status` shows a verification run's
//! progress as it shows a copy's.

use std::num::NonZeroU32;

use backfill_config::BackfillConfig;
use backfill_control::VerifyFindings;
use backfill_dynamo::DynamoSink;
use backfill_job::{JobMessage, Task};
use backfill_offload::S3Offloader;
use backfill_queue::ReceivedMessage;
use backfill_source::PgSource;
use backfill_verify::{ReadBudgets, TableReport, Verifier, VerifyError, VerifyOptions};
use tokio_util::sync::CancellationToken;

use crate::outcome::Outcome;
use crate::{JobError, Worker};

/// The worker's verifier: one read limiter for all its verification jobs,
/// `worker.verify_reads_per_sec` DynamoDB read requests a second, and each
/// target's share of its fleet read budget (`read_budget_rcu`).
pub(crate) fn verifier(
    cfg: &BackfillConfig,
    source: &PgSource,
    sink: &DynamoSink,
    offloader: Option<&S3Offloader>,
    reads: &ReadBudgets,
) -> Verifier {
    let opts = VerifyOptions {
        max_reads_per_sec: NonZeroU32::new(cfg.worker.verify_reads_per_sec)
            .unwrap_or(NonZeroU32::MIN),
        ..VerifyOptions::default()
    };
    let v = Verifier::new(source.clone(), sink.clone(), opts).with_read_budgets(reads.clone());
    match offloader {
        Some(o) => v.with_offloader(o.clone()),
        None => v,
    }
}

impl From<VerifyError> for JobError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Source(e) => JobError::Source(e),
            VerifyError::Map(e) => JobError::Map(e),
            VerifyError::Sink(e) => JobError::Sink(e),
            VerifyError::Offload(e) => JobError::Offload(e),
            VerifyError::Usage { table, reason } => JobError::VerifyUsage { table, reason },
        }
    }
}

/// What a report found, as the control table keeps it.
pub(crate) fn findings_of(job: &JobMessage, r: &TableReport) -> VerifyFindings {
    let mut f = VerifyFindings {
        job_id: job.job_id.clone(),
        table: r.source.clone(),
        target: r.target.clone(),
        task: job.task.as_str().to_string(),
        covered: match job.task {
            Task::Scan {
                segment,
                total_segments,
            } => format!("scan segment {segment} of {total_segments}"),
            _ => job.range.to_string(),
        },
        rows_checked: r.rows_checked,
        items_scanned: r.items_scanned,
        newer_in_target: r.newer_in_target,
        missing: r.missing_count,
        extra: r.extra_count,
        different: r.different_count,
        collisions: r.collision_count,
        unmappable: r.unmappable_count,
        count_mismatches: r.count_mismatch_count,
        listed: Vec::new(),
        confirmed_by_digest: r.confirmed_by_digest,
    };
    for (k, why) in &r.unmappable {
        f.list(format!("unmappable {k}: {why}"));
    }
    for c in &r.collisions {
        f.list(format!("collision {c}"));
    }
    for m in &r.count_mismatches {
        f.list(format!("count {m}"));
    }
    for k in &r.missing {
        f.list(format!("missing {k}"));
    }
    for k in &r.extra {
        f.list(format!("extra {k}"));
    }
    for (k, diffs) in &r.different {
        for d in diffs {
            f.list(format!("differs {k}: {d}"));
        }
    }
    f
}

/// Runs a verification job; `None` when shutdown came first (the job goes
/// back to the queue and is verified again from its start: it wrote
/// nothing).
pub(crate) async fn verify_job(
    w: &Worker,
    job: &JobMessage,
    cancel: &CancellationToken,
) -> Result<Option<VerifyFindings>, JobError> {
    let t = w
        .cfg
        .table(&job.table)
        .ok_or_else(|| JobError::UnknownTable(job.table.clone()))?;
    let work = async {
        match job.task {
            Task::Scan {
                segment,
                total_segments,
            } => w.verifier.scan_segment(t, segment, total_segments).await,
            Task::Verify | Task::Copy | Task::Archive => {
                w.verifier
                    .verify_range_expecting(t, &job.range, job.expect.as_ref())
                    .await
            }
        }
    };
    let report = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        r = work => r?,
    };
    let findings = findings_of(job, &report);
    w.control.record_findings(&job.run_id, &findings).await?;
    if findings.is_clean() {
        tracing::info!(
            task = job.task.as_str(),
            rows_checked = findings.rows_checked,
            items_scanned = findings.items_scanned,
            "verified: no difference"
        );
    } else {
        tracing::warn!(
            task = job.task.as_str(),
            rows_checked = findings.rows_checked,
            items_scanned = findings.items_scanned,
            missing = findings.missing,
            extra = findings.extra,
            different = findings.different,
            collisions = findings.collisions,
            unmappable = findings.unmappable,
            "verified: DIFFERENCES (backfill verify report)"
        );
    }
    Ok(Some(findings))
}

impl Worker {
    /// Items over 400 KB of tables with `oversize = "s3"` go to S3 through this.
    pub fn with_offloader(mut self, offloader: S3Offloader) -> Self {
        let reads = self
            .targets
            .lock()
            .map(|t| t.reads.clone())
            .unwrap_or_default();
        self.verifier = verifier(
            &self.cfg,
            &self.source,
            &self.sink,
            Some(&offloader),
            &reads,
        );
        self.offloader = Some(offloader);
        self
    }

    /// Records a finished verification job as done (its rows are the rows
    /// it checked, or the items it scanned) and acknowledges it; hands it
    /// back at shutdown; else what follows an error.
    pub(crate) async fn after_verify(
        &self,
        msg: &ReceivedMessage,
        job: &JobMessage,
        result: Result<Option<VerifyFindings>, JobError>,
    ) -> Outcome {
        match result {
            Ok(Some(f)) => {
                let rows = f.rows_checked + f.items_scanned;
                if let Err(e) = self.control.finish(job, rows, "", 0).await {
                    return self.after_failure(msg, job, JobError::Control(e)).await;
                }
                if let Err(e) = self.queue.delete(&msg.receipt_handle).await {
                    tracing::warn!(error = %e, "deleting the verified job's message failed");
                }
                Outcome::Done {
                    rows,
                    rows_read: rows,
                }
            }
            Ok(None) => {
                tracing::info!("shutting down: handing the verification job back to the queue");
                self.release(msg).await
            }
            Err(e) => self.after_error(msg, job, e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_job::KeyRange;

    #[test]
    fn a_report_becomes_findings_with_every_kind_listed() {
        let copy = JobMessage::new("r", "public.t", vec!["id".into()], KeyRange::all());
        let job = JobMessage::verify_of("r-verify", &copy);
        let r = TableReport {
            source: "public.t".into(),
            target: "t".into(),
            rows_checked: 10,
            missing_count: 1,
            missing: vec!["id=1".into()],
            different_count: 1,
            collision_count: 1,
            collisions: vec!["item k=x is claimed by rows (1) and (2)".into()],
            unmappable_count: 1,
            unmappable: vec![("(3)".into(), "NaN in a key".into())],
            ..Default::default()
        };
        let f = findings_of(&job, &r);
        assert_eq!((f.rows_checked, f.missing, f.different), (10, 1, 1));
        assert_eq!(
            (f.collisions, f.unmappable, f.task.as_str()),
            (1, 1, "verify")
        );
        assert_eq!(f.covered, "[-inf, +inf)");
        assert_eq!(f.listed.len(), 3);
        assert!(f.listed.iter().any(|l| l == "missing id=1"));
        assert!(!f.is_clean());
        let scan = JobMessage::scan("r-verify", "public.t", vec!["id".into()], 2, 4);
        assert_eq!(
            findings_of(&scan, &TableReport::default()).covered,
            "scan segment 2 of 4"
        );
    }
}
