//! `plan` and `produce`: the producer's two steps, a plan printed (jobs,
//! estimates, capacity and cost, problems) and then stored and enqueued.

use std::process::ExitCode;

use anyhow::{bail, Result};
use backfill_aws::AwsClients;
use backfill_capacity::cost::{self, Estimate, TABLE_WRITE_QUOTA};
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_dynamo::TargetCapacity;
use backfill_producer::{Plan, TablePlan};

use crate::{connect_source, human_duration, job_queue};

/// One table's budget, target and cost, as `plan` prints them and
/// `produce --max-cost` weighs them.
struct Costed {
    budget: Result<Option<f64>, String>,
    target: Result<TargetCapacity, String>,
    estimate: Option<Estimate>,
}

impl Costed {
    /// The cost at the target's own billing mode (the larger of the two
    /// when the mode could not be read).
    fn cost(&self) -> f64 {
        match (&self.estimate, &self.target) {
            (None, _) => 0.0,
            (Some(e), Ok(t)) if t.on_demand => e.on_demand_cost,
            (Some(e), Ok(_)) => e.provisioned_cost,
            (Some(e), Err(_)) => e.provisioned_cost.max(e.on_demand_cost),
        }
    }
}

async fn costed(cfg: &BackfillConfig, aws: &AwsClients, t: &TablePlan) -> Costed {
    let budget = match cfg.table(&t.source) {
        Some(tc) => backfill_dynamo::write_budget(&aws.dynamodb, tc).await,
        None => Err("not configured".into()),
    };
    let target = backfill_dynamo::target_capacity(&aws.dynamodb, &t.target).await;
    let estimate = match &budget {
        Ok(Some(b)) => Some(cost::estimate(
            t.wcu_needed(),
            *b,
            cfg.capacity.price_per_wcu_hour,
            cfg.capacity.price_per_million_wru,
        )),
        _ => None,
    };
    Costed {
        budget,
        target,
        estimate,
    }
}

pub(crate) async fn plan(cfg: &BackfillConfig, run: &str, prewarm: bool) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let plan = backfill_producer::plan(cfg, &source, run).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    println!("plan for run {run}:");
    let (mut total_rows, mut total_jobs, mut total_wcu, mut total_cost) = (0, 0, 0.0, 0.0);
    let mut longest_hours: f64 = 0.0;
    for t in &plan.tables {
        if !t.problems.is_empty() {
            println!("  {} -> {}: NOT COPYABLE", t.source, t.target);
            for p in &t.problems {
                println!("    problem: {p}");
            }
            continue;
        }
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
        let c = costed(cfg, &aws, t).await;
        let size = format!(
            "items ~{:.0} B, {:.2} WCU each: {:.0} WCU",
            t.avg_item_bytes, t.wcu_per_item, wcu
        );
        match (&c.budget, &c.estimate) {
            (Ok(Some(b)), Some(e)) => {
                longest_hours = longest_hours.max(e.hours);
                total_cost += c.cost();
                println!(
                    "    {size}; at {b:.0} WCU/s: {}; capacity ~${:.2} provisioned (${}/WCU-hour, by the started hour) or ~${:.2} on demand (${}/million writes)",
                    human_duration(e.hours * 3600.0),
                    e.provisioned_cost,
                    cfg.capacity.price_per_wcu_hour,
                    e.on_demand_cost,
                    cfg.capacity.price_per_million_wru
                );
                capacity_notes(cfg, &aws, t, &c, *b, prewarm).await;
            }
            (Ok(_), _) => println!(
                "    {size}; no write budget set: the copy runs as fast as the fleet writes"
            ),
            (Err(e), _) => println!("    {size}; budget unknown: {e}"),
        }
        for n in &t.notes {
            println!("    type note: {n}");
        }
        total_rows += t.estimated_rows;
        total_jobs += t.jobs.len();
    }
    if longest_hours > 0.0 {
        println!(
            "total: {total_jobs} jobs, ~{total_rows} rows, ~{total_wcu:.0} WCU; at the budgets: {}, capacity ~${total_cost:.2} at each target's billing mode",
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

/// What stands between a table's budget and its target: a key layout
/// with too few partition-key values, or values spread unevenly over the
/// target's partitions, an on-demand table not yet scaled to the budget
/// (pre-warmed with `--prewarm`).
async fn capacity_notes(
    cfg: &BackfillConfig,
    aws: &AwsClients,
    t: &TablePlan,
    c: &Costed,
    budget: f64,
    prewarm: bool,
) {
    if let Some(keys) = t.partition_key_values.filter(|k| *k > 0.0) {
        let ceiling = cost::key_layout_ceiling(keys, cfg.capacity.key_wcu_per_sec);
        if ceiling < budget {
            println!(
                "    key layout: ~{keys:.0} distinct partition-key values, each in one partition (at most 1,000 WCU/s; capacity.key_wcu_per_sec {}): the copy reaches at most ~{ceiling:.0} WCU/s of the {budget:.0} budget",
                cfg.capacity.key_wcu_per_sec
            );
        }
        let provisioned = c
            .target
            .as_ref()
            .ok()
            .and_then(|t| t.provisioned_wcu)
            .unwrap_or(0) as f64;
        let partitions = t.partitions_at_least(budget.max(provisioned));
        let reach = cost::key_layout_reach(keys, cfg.capacity.key_wcu_per_sec, Some(partitions));
        if reach < 0.99 * budget.min(ceiling) {
            println!(
                "    key spread: ~{keys:.0} partition-key values hash unevenly over at least {partitions} partitions (one per 1,000 WCU/s and per 10 GB): the copy lasts as long as its busiest partition takes at 1,000 WCU/s, so it averages at most ~{reach:.0} WCU/s of the {budget:.0} budget (values of about equal rows assumed; DynamoDB splits partitions that stay hot, which only helps)"
            );
        }
    }
    let target = match &c.target {
        Ok(target) => target,
        Err(e) => {
            println!("    target capacity unknown: {e}");
            return;
        }
    };
    if !target.on_demand {
        return;
    }
    let absorbs = cost::on_demand_absorbs(target.warm_write_units);
    if budget > TABLE_WRITE_QUOTA {
        println!(
            "    on demand: the budget {budget:.0} WCU/s is above the account's default per-table quota of {TABLE_WRITE_QUOTA:.0} write units/s; ask AWS to raise it first"
        );
    }
    if budget <= absorbs {
        println!("    on demand: the table absorbs ~{absorbs:.0} write units/s now, at or above the budget");
        return;
    }
    if !prewarm {
        println!(
            "    on demand: the table absorbs ~{absorbs:.0} write units/s now ({}); DynamoDB doubles that at most every 30 minutes, so a copy at {budget:.0} WCU/s is throttled while it grows. `plan --prewarm` sets its warm throughput to the budget (it cannot be lowered again, and AWS bills the raise once)",
            if target.warm_write_units.is_some() { "its warm throughput" } else { "a new table's level" }
        );
        return;
    }
    match backfill_dynamo::prewarm(&aws.dynamodb, &t.target, budget.ceil() as i64).await {
        Ok(()) => println!(
            "    on demand: pre-warmed to {:.0} write units/s (it cannot be lowered again)",
            budget.ceil()
        ),
        Err(e) => println!("    on demand: pre-warming failed: {e}"),
    }
}

pub(crate) async fn produce(
    cfg: &BackfillConfig,
    run: &str,
    max_cost: Option<f64>,
) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    if let Some(max) = max_cost {
        let plan: Plan = backfill_producer::plan(cfg, &source, run).await?;
        let mut total = 0.0;
        for t in plan.tables.iter().filter(|t| t.problems.is_empty()) {
            total += costed(cfg, &aws, t).await.cost();
        }
        if total > max {
            bail!(
                "run {run}: the plan's capacity cost is ~${total:.2}, above --max-cost ${max:.2}; nothing was enqueued (see `backfill plan`)"
            );
        }
    }
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
