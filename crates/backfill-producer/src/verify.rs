//! Verification runs: the same plan as a copy (key ranges that tile each
//! table, from the same sample), each range a `verify` job, plus `scan`
//! jobs over the segments of each target that find items no row produces.
//! Stored and enqueued as a copy run is, so the same workers take them and
//! the same `status`, resume and DLQ serve them.

use std::collections::BTreeMap;

use backfill_config::BackfillConfig;
use backfill_control::{AuditAction, AuditRecord, ControlTable, JobState, RunPlan, RunTable};
use backfill_job::{Expect, JobMessage, KeyRange, MAX_SCAN_SEGMENTS};
use backfill_queue::JobQueue;
use backfill_source::PgSource;

use crate::{enqueue_planned, plan, save_plan, stored_run, ProduceReport, ProducerError};

/// Plans (or reuses) verification run `run_id` of the configured tables,
/// with `segments` scan jobs per table, and enqueues what is not yet.
pub async fn produce_verification(
    cfg: &BackfillConfig,
    source: &PgSource,
    queue: &JobQueue,
    control: &ControlTable,
    run_id: &str,
    segments: u32,
    of: Option<&str>,
) -> Result<ProduceReport, ProducerError> {
    if segments == 0 || segments > MAX_SCAN_SEGMENTS {
        return Err(ProducerError::Problems(vec![format!(
            "--segments {segments}: a target is scanned in 1 to {MAX_SCAN_SEGMENTS} segments"
        )]));
    }
    let reused_plan = stored_run(control, run_id).await?;
    if !reused_plan {
        if let Some(copy_run) = of {
            let jobs = of_copy_run(cfg, control, run_id, copy_run, segments).await?;
            let copied = control.get_run(copy_run).await?.ok_or_else(|| {
                ProducerError::Problems(vec![format!("run {copy_run} is not in the control table")])
            })?;
            let tables = copied
                .tables
                .iter()
                .filter(|t| cfg.table(&t.source).is_some())
                .map(|t| RunTable {
                    jobs: jobs.iter().filter(|j| j.table == t.source).count() as u64,
                    // Rows checked and items scanned, as for a planned check.
                    estimated_rows: t.estimated_rows.saturating_mul(2),
                    ..t.clone()
                })
                .collect();
            let plan = RunPlan {
                tables,
                config: None,
            };
            control.save_plan(run_id, &jobs, &plan).await?;
            return enqueue_planned(control, queue, run_id, false).await;
        }
        let mut plan = plan(cfg, source, run_id).await?;
        for t in &mut plan.tables {
            let Some(first) = t.jobs.first().cloned() else {
                continue;
            };
            // A verification reads each row once and each item once, and
            // its jobs count both: `status` measures progress against this.
            t.estimated_rows = t.estimated_rows.saturating_mul(2);
            // The copy's cuts part a range for writing; a check reads it whole.
            t.jobs = t
                .jobs
                .iter()
                .map(|j| JobMessage::verify_of(run_id, j))
                .collect();
            t.jobs.extend((0..segments).map(|s| {
                JobMessage::scan(run_id, &first.table, first.key_columns.clone(), s, segments)
            }));
        }
        save_plan(cfg, control, run_id, &plan).await?;
    }
    enqueue_planned(control, queue, run_id, reused_plan).await
}

/// The verification jobs of copy run `copy_run`'s ranges (each where it
/// ends now, after any hand-back), each carrying the count and digest its
/// copy recorded when it finished, plus the scan jobs of each table.
async fn of_copy_run(
    cfg: &BackfillConfig,
    control: &ControlTable,
    run_id: &str,
    copy_run: &str,
    segments: u32,
) -> Result<Vec<JobMessage>, ProducerError> {
    let records = control.jobs(copy_run).await?;
    let mut jobs = Vec::with_capacity(records.len());
    let mut scanned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let c = r.job;
        if !c.task.is_copy() {
            return Err(ProducerError::Problems(vec![format!(
                "run {copy_run} is a verification run; --of names the copy run to confirm"
            )]));
        }
        if cfg.table(&c.table).is_none() {
            continue;
        }
        let range = KeyRange {
            lo: c.range.lo.clone(),
            hi: r.ends_at.or(c.range.hi.clone()),
        };
        let expect = match (&r.state, r.digest) {
            (JobState::Done, Some(digest)) => Some(Expect {
                rows: r.rows,
                digest,
            }),
            _ => None,
        };
        scanned
            .entry(c.table.clone())
            .or_insert_with(|| c.key_columns.clone());
        jobs.push(JobMessage::confirm_of(
            run_id,
            &c.table,
            c.key_columns,
            range,
            expect,
        ));
    }
    for (table, cols) in scanned {
        jobs.extend(
            (0..segments).map(|s| JobMessage::scan(run_id, &table, cols.clone(), s, segments)),
        );
    }
    Ok(jobs)
}

/// What `verify repair` planned.
#[derive(Debug, Clone)]
pub struct RepairPlan {
    pub report: ProduceReport,
    /// Ranges copied again: (verification job, table, range shown).
    pub ranges: Vec<(String, String, String)>,
    /// Findings a copy cannot mend (extra items, collisions, unmappable
    /// rows), per table: they need a person.
    pub left: Vec<String>,
}

/// Plans copy run `repair_run` of every range of verification run
/// `verify_run` that has missing or different items, and enqueues it: the
/// workers copy those ranges again through the normal copy path (its
/// conditional writes included, so an item the application wrote since is
/// not overwritten with an older row). Each range is recorded as an
/// operator action on the verification run.
pub async fn produce_repair(
    control: &ControlTable,
    queue: &JobQueue,
    verify_run: &str,
    repair_run: &str,
    by: &str,
    why: &str,
) -> Result<RepairPlan, ProducerError> {
    let stored = control.get_run(verify_run).await?;
    let Some(verified) = stored else {
        return Err(ProducerError::Problems(vec![format!(
            "run {verify_run} is not in the control table"
        )]));
    };
    let reused_plan = stored_run(control, repair_run).await?;
    let mut jobs: Vec<JobMessage> = Vec::new();
    let mut ranges = Vec::new();
    let mut left = Vec::new();
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut audits = Vec::new();
    for f in control.findings(verify_run).await? {
        if f.extra + f.collisions + f.unmappable > 0 {
            left.push(format!(
                "{} ({}): {} extra, {} collisions, {} unmappable: a copy does not mend these",
                f.table, f.covered, f.extra, f.collisions, f.unmappable
            ));
        }
        if f.missing + f.different == 0 {
            continue;
        }
        let Some(rec) = control.job(verify_run, &f.job_id).await? else {
            continue;
        };
        let v = rec.job;
        jobs.push(JobMessage::new(
            repair_run,
            &v.table,
            v.key_columns.clone(),
            v.range.clone(),
        ));
        *rows.entry(v.table.clone()).or_default() += f.rows_checked;
        ranges.push((f.job_id.clone(), v.table.clone(), v.range.to_string()));
        if !reused_plan {
            audits.push(AuditRecord {
                action: AuditAction::Repair,
                run_id: Some(verify_run.to_string()),
                job_id: Some(f.job_id.clone()),
                table: Some(v.table.clone()),
                message_id: String::new(),
                by: by.to_string(),
                why: why.to_string(),
                error: Some(format!(
                    "{} missing, {} different in {}: copied again in run {repair_run}",
                    f.missing, f.different, f.covered
                )),
                at: String::new(),
            });
        }
    }
    if jobs.is_empty() && !reused_plan {
        return Err(ProducerError::Problems(vec![format!(
            "run {verify_run} found no missing or different item: nothing to repair"
        )]));
    }
    if !reused_plan {
        let tables = verified
            .tables
            .iter()
            .filter(|t| rows.contains_key(&t.source))
            .map(|t| RunTable {
                jobs: jobs.iter().filter(|j| j.table == t.source).count() as u64,
                estimated_rows: rows.get(&t.source).copied().unwrap_or(0),
                ..t.clone()
            })
            .collect();
        let plan = RunPlan {
            tables,
            config: None,
        };
        control.save_plan(repair_run, &jobs, &plan).await?;
        // Recorded once the repair run exists, so no record names a run
        // that was never planned.
        for a in &audits {
            control.record_audit(a).await?;
        }
    }
    let report = enqueue_planned(control, queue, repair_run, reused_plan).await?;
    Ok(RepairPlan {
        report,
        ranges,
        left,
    })
}
