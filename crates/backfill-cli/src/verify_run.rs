//! `verify --run R`: verification as a fleet run (range jobs and scan
//! jobs on the queue, taken by the same workers), and `verify report`,
//! which reads what its jobs found from the control table.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::{ControlTable, JobState, VerifyFindings};
use serde_json::json;

use crate::{connect_source, job_queue};

/// Plans and enqueues verification run `run` (or enqueues what a stored
/// plan of it has not yet).
pub(crate) async fn produce(
    cfg: &BackfillConfig,
    run: &str,
    table: Option<&str>,
    segments: u32,
    of: Option<&str>,
) -> Result<ExitCode> {
    let mut cfg = cfg.clone();
    if let Some(name) = table {
        let t = cfg
            .table(name)
            .with_context(|| format!("table {name} is not in the config"))?
            .clone();
        cfg.tables = vec![t];
    }
    let source = connect_source(&cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let queue = job_queue(&cfg, &aws)?;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let report =
        backfill_producer::produce_verification(&cfg, &source, &queue, &control, run, segments, of)
            .await?;
    println!(
        "verification run {}: {} jobs ({} scan segments per table), {} enqueued now, {} enqueued before{}; \
         workers verify them; `backfill status --run {run}` shows progress, `backfill verify report --run {run}` the findings",
        report.run_id,
        report.jobs_total,
        segments,
        report.enqueued,
        report.already_enqueued,
        if report.reused_plan { " (stored plan reused)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One table's findings, summed over its jobs.
#[derive(Default)]
struct TableSum {
    target: String,
    sum: VerifyFindings,
    /// Each listed finding, with the job that found it.
    listed: Vec<String>,
    /// Ranges confirmed by their copy's count and digest.
    confirmed: usize,
}

fn by_table(all: Vec<VerifyFindings>) -> BTreeMap<String, TableSum> {
    let mut groups: BTreeMap<String, Vec<VerifyFindings>> = BTreeMap::new();
    for f in all {
        groups.entry(f.table.clone()).or_default().push(f);
    }
    groups
        .into_iter()
        .map(|(table, fs)| {
            let listed = fs
                .iter()
                .flat_map(|f| {
                    f.listed
                        .iter()
                        .map(move |l| format!("{l}  (job {}, {})", f.job_id, f.covered))
                })
                .collect();
            let confirmed = fs.iter().filter(|f| f.confirmed_by_digest).count();
            let sum = TableSum {
                confirmed,
                target: fs.first().map(|f| f.target.clone()).unwrap_or_default(),
                sum: backfill_status::sum_findings(&fs),
                listed,
            };
            (table, sum)
        })
        .collect()
}

/// Prints what verification run `run` found; exits 1 on any difference
/// or while jobs are not done.
pub(crate) async fn report(cfg: &BackfillConfig, run: &str, as_json: bool) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let stored = control.get_run(run).await?.with_context(|| {
        format!(
            "run {run} is not in the control table {}",
            cfg.control.table
        )
    })?;
    let jobs = control.jobs(run).await?;
    let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
    let failed = jobs.iter().filter(|j| j.state == JobState::Failed).count();
    let verification = jobs.iter().filter(|j| !j.job.task.is_copy()).count();
    anyhow::ensure!(
        verification > 0 || jobs.is_empty(),
        "run {run} is a copy run, not a verification run (`backfill verify --run <new id>` starts one)"
    );
    let tables = by_table(control.findings(run).await?);
    let complete = done == jobs.len() && stored.jobs_planned == jobs.len() as u64;
    let clean = tables.values().all(|t| t.sum.is_clean());
    if as_json {
        let out = json!({
            "run": run,
            "complete": complete,
            "jobs": jobs.len(),
            "jobs_done": done,
            "jobs_failed": failed,
            "clean": clean,
            "tables": tables.iter().map(|(name, t)| json!({
                "table": name,
                "target": t.target,
                "rows_checked": t.sum.rows_checked,
                "items_scanned": t.sum.items_scanned,
                "newer_in_target": t.sum.newer_in_target,
                "missing": t.sum.missing,
                "extra": t.sum.extra,
                "different": t.sum.different,
                "collisions": t.sum.collisions,
                "unmappable": t.sum.unmappable,
                "count_mismatches": t.sum.count_mismatches,
                "ranges_confirmed_by_digest": t.confirmed,
                "findings": t.listed,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "verification run {run}: {done} of {} jobs done{}{}",
            jobs.len(),
            if failed > 0 {
                format!(", {failed} failed (see `backfill dlq list`)")
            } else {
                String::new()
            },
            if complete { "" } else { "  INCOMPLETE" }
        );
        for (name, t) in &tables {
            let s = &t.sum;
            println!(
                "{name} -> {}: {} rows checked ({} ranges confirmed by their copy's digest), {} items scanned ({} newer in DynamoDB): {} missing, {} extra, {} different, {} unmappable, {} collisions, {} count mismatches{}",
                t.target, s.rows_checked, t.confirmed, s.items_scanned, s.newer_in_target, s.missing, s.extra,
                s.different, s.unmappable, s.collisions, s.count_mismatches,
                if s.is_clean() { "" } else { "  DIFFERENCES" }
            );
            for l in &t.listed {
                println!("  {l}");
            }
        }
    }
    Ok(if complete && clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Copies again every range of verification run `run` that has missing or
/// different items, as copy run `repair_run`.
pub(crate) async fn repair(
    cfg: &BackfillConfig,
    run: &str,
    repair_run: &str,
    by: Option<String>,
    reason: &str,
) -> Result<ExitCode> {
    let by = crate::status::by_or_user(by);
    let aws = AwsClients::from_config(&cfg.aws).await;
    let queue = job_queue(cfg, &aws)?;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let plan =
        backfill_producer::produce_repair(&control, &queue, run, repair_run, &by, reason).await?;
    for (job, table, range) in &plan.ranges {
        println!("repair {table} {range}  (verification job {job})");
    }
    for l in &plan.left {
        println!("left   {l}");
    }
    let r = &plan.report;
    println!(
        "repair run {}: {} ranges, {} enqueued now, {} enqueued before; `backfill work` copies them, then verify again with a new run",
        r.run_id, r.jobs_total, r.enqueued, r.already_enqueued
    );
    Ok(ExitCode::SUCCESS)
}
