//! `backfill rejects list | retry`: rows a copy could not turn into items,
//! over `backfill-control` (the records) and `backfill-worker` (the retry,
//! through the copy's own write path). See docs/REJECTS.md.

use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::{ControlTable, RejectRecord};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct RejectsArgs {
    #[command(subcommand)]
    command: RejectsCommand,
}

#[derive(Subcommand)]
enum RejectsCommand {
    /// Lists rejected rows: table, job, key and every column at fault with why.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line, every field.
        #[arg(long)]
        json: bool,
    },
    /// Reads the rejected rows again from Postgres (after a fix of the
    /// config or the data) and writes those that now map; audited.
    Retry {
        #[command(flatten)]
        filter: FilterArgs,
        /// Who retries (audit record; default: $USER, else $LOGNAME).
        #[arg(long)]
        by: Option<String>,
        /// Why (audit record): the fix.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
struct FilterArgs {
    /// The run; default: the newest.
    #[arg(long)]
    run: Option<String>,
    /// Only this table (`schema.table` as configured).
    #[arg(long)]
    table: Option<String>,
}

async fn run_id(control: &ControlTable, run: Option<String>) -> Result<String> {
    if let Some(r) = run {
        return Ok(r);
    }
    let runs = control.runs().await?;
    runs.first()
        .map(|r| r.run_id.clone())
        .context("the control table holds no run yet: nothing was produced")
}

pub async fn run(cfg: &BackfillConfig, args: RejectsArgs) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    match args.command {
        RejectsCommand::List { filter, json } => {
            let run = run_id(&control, filter.run).await?;
            let rejects: Vec<RejectRecord> = control
                .rejects(&run)
                .await?
                .into_iter()
                .filter(|r| filter.table.as_ref().is_none_or(|t| *t == r.table))
                .collect();
            if json {
                for r in &rejects {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                println!("run {run}: {} rejected rows", rejects.len());
                for r in &rejects {
                    println!("  {} key {} (job {})", r.table, r.key_display(), r.job_id);
                    for p in &r.problems {
                        println!("    column {}: {}", p.column, p.reason);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RejectsCommand::Retry { filter, by, reason } => {
            let run = run_id(&control, filter.run).await?;
            let by = crate::status::by_or_user(by);
            let source = crate::connect_source(cfg).await?;
            let sink = crate::sink(cfg, &aws);
            let offloader = crate::offloader(cfg, &aws);
            let report = backfill_worker::retry_rejects(
                &backfill_worker::RetryPath {
                    cfg,
                    source: &source,
                    sink: &sink,
                    control: &control,
                    offloader: offloader.as_ref(),
                },
                &backfill_worker::RetryRequest {
                    run_id: &run,
                    table: filter.table.as_deref(),
                    by: &by,
                    why: &reason,
                },
            )
            .await?;
            println!(
                "run {run}: {} written, {} gone from the source, {} still rejected",
                report.written,
                report.gone,
                report.still_rejected.len()
            );
            for r in &report.still_rejected {
                println!("  {} key {}", r.table, r.key_display());
                for p in &r.problems {
                    println!("    column {}: {}", p.column, p.reason);
                }
            }
            Ok(if report.still_rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
