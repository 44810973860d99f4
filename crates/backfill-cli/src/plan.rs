//! `plan` and `produce`: the producer's two steps, a plan printed (jobs,
//! estimates, capacity and cost, problems) and then stored and enqueued.

use std::process::ExitCode;

use anyhow::Result;
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;

use crate::{connect_source, human_duration, job_queue};

pub(crate) async fn plan(cfg: &BackfillConfig, run: &str) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let plan = backfill_producer::plan(cfg, &source, run).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    println!("plan for run {run}:");
    let mut total_rows = 0;
    let mut total_jobs = 0;
    let mut total_wcu = 0.0;
    let mut total_cost = 0.0;
    let mut longest_hours: f64 = 0.0;
    for t in &plan.tables {
        if t.problems.is_empty() {
            println!(
                "  {} -> {}: {} jobs, ~{} rows (catalog: {}; sampled {} rows, {:.3}% of pages)",
                t.source,
                t.target,
                t.jobs.len(),
                t.estimated_rows,
                t.catalog_rows
                    .map_or("never analysed".to_string(), |r| format!("~{r}")),
                t.sampled_rows,
                t.sample_percent
            );
            let wcu = t.wcu_needed();
            total_wcu += wcu;
            let budget = match cfg.table(&t.source) {
                Some(tc) => backfill_dynamo::write_budget(&aws.dynamodb, tc).await,
                None => Err("not configured".into()),
            };
            match budget {
                Ok(Some(b)) => {
                    let hours = wcu / b / 3600.0;
                    // Provisioned capacity is billed by the started hour.
                    let cost = b * hours.ceil().max(1.0) * cfg.capacity.price_per_wcu_hour;
                    longest_hours = longest_hours.max(hours);
                    total_cost += cost;
                    println!(
                        "    items ~{:.0} B, {:.2} WCU each: {:.0} WCU; at {b:.0} WCU/s: {}; extra capacity ~${cost:.2} at ${}/WCU-hour, billed by the hour",
                        t.avg_item_bytes,
                        t.wcu_per_item,
                        wcu,
                        human_duration(hours * 3600.0),
                        cfg.capacity.price_per_wcu_hour
                    );
                }
                Ok(None) => println!(
                    "    items ~{:.0} B, {:.2} WCU each: {:.0} WCU; no write budget set: the copy runs as fast as the fleet writes",
                    t.avg_item_bytes, t.wcu_per_item, wcu
                ),
                Err(e) => println!(
                    "    items ~{:.0} B, {:.2} WCU each: {:.0} WCU; budget unknown: {e}",
                    t.avg_item_bytes, t.wcu_per_item, wcu
                ),
            }
            for n in &t.notes {
                println!("    type note: {n}");
            }
            total_rows += t.estimated_rows;
            total_jobs += t.jobs.len();
        } else {
            println!("  {} -> {}: NOT COPYABLE", t.source, t.target);
            for p in &t.problems {
                println!("    problem: {p}");
            }
        }
    }
    if longest_hours > 0.0 {
        println!(
            "total: {total_jobs} jobs, ~{total_rows} rows, ~{total_wcu:.0} WCU; at the budgets: {}, extra capacity ~${total_cost:.2}",
            human_duration(longest_hours * 3600.0)
        );
    } else {
        println!("total: {total_jobs} jobs, ~{total_rows} rows, ~{total_wcu:.0} WCU; no write budget set");
    }
    let problems = plan.problems();
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} problem(s): `produce` will refuse to start",
            problems.len()
        );
        Ok(ExitCode::from(2))
    }
}

pub(crate) async fn produce(cfg: &BackfillConfig, run: &str) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let queue = job_queue(cfg, &aws)?;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let report = backfill_producer::produce(cfg, &source, &queue, &control, run).await?;
    println!(
        "run {}: {} jobs, {} enqueued now, {} enqueued before{}",
        report.run_id,
        report.jobs_total,
        report.enqueued,
        report.already_enqueued,
        if report.reused_plan {
            " (stored plan reused)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
