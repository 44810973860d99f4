//! `backfill dlq list | replay | purge`: the dead-letter queue for on-call
//! engineers, over `backfill-dlq`. See `docs/DLQ.md`.

use std::io::{BufRead, IsTerminal, Write};
use std::num::NonZeroU32;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_dlq::{DeadJob, Dlq, Filter, PurgeOptions, ReplayOptions, ReplayOutcome};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Lists dead messages: run, table, job, range, attempts, receives and
    /// the last error with where it was read.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line, every field, errors in full.
        #[arg(long)]
        json: bool,
    },
    /// Sends dead jobs back to the job queue (attempts reset, checkpoint
    /// kept) once their cause is fixed; each replay is audited.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Messages sent back per second, at most.
        #[arg(long, default_value_t = 5)]
        rate: u32,
        /// Who replays (audit record; default: $USER, else $LOGNAME).
        #[arg(long)]
        by: Option<String>,
        /// Why (audit record): the incident or the fix.
        #[arg(long)]
        reason: String,
    },
    /// Deletes dead messages for good; each deletion is audited.
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Who purges (audit record; default: $USER, else $LOGNAME).
        #[arg(long)]
        by: Option<String>,
        /// Why (audit record).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
struct FilterArgs {
    /// Only jobs of this run.
    #[arg(long)]
    run: Option<String>,
    /// Only jobs of this table (`schema.table`, or the name alone).
    #[arg(long)]
    table: Option<String>,
    /// Only messages whose error contains this text (any case).
    #[arg(long)]
    error: Option<String>,
    /// At most this many messages.
    #[arg(long)]
    max: Option<usize>,
}

impl FilterArgs {
    fn filter(self) -> Filter {
        Filter {
            run: self.run,
            table: self.table,
            error: self.error,
            max: self.max,
        }
    }
}

pub async fn run(cfg: &BackfillConfig, args: DlqArgs) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    // Replays are signed like the producer's jobs, so workers that require
    // signatures take them.
    let queue = crate::job_queue(cfg, &aws)?;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let dlq = Dlq::new(queue, control);
    match args.command {
        DlqCommand::List { filter, json } => list(&dlq, filter.filter(), json).await,
        DlqCommand::Replay {
            filter,
            dry_run,
            rate,
            by,
            reason,
        } => {
            let opts = ReplayOptions {
                dry_run,
                rate: Some(NonZeroU32::new(rate).context("--rate must be at least 1")?),
                by: crate::status::by_or_user(by),
                why: reason,
            };
            replay(&dlq, filter.filter(), opts).await
        }
        DlqCommand::Purge {
            filter,
            yes,
            by,
            reason,
        } => {
            let by = crate::status::by_or_user(by);
            purge(&dlq, filter.filter(), yes, PurgeOptions { by, why: reason }).await
        }
    }
}

async fn list(dlq: &Dlq, filter: Filter, json: bool) -> Result<ExitCode> {
    let jobs = dlq.list(&filter).await?;
    if json {
        for j in &jobs {
            println!("{}", serde_json::to_string(j)?);
        }
    } else if jobs.is_empty() {
        println!("no dead message matches");
    } else {
        print!("{}", table(&jobs));
        println!("{} dead message(s)", jobs.len());
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(dlq: &Dlq, filter: Filter, opts: ReplayOptions) -> Result<ExitCode> {
    let report = dlq.replay(&filter, &opts).await?;
    if report.results.is_empty() {
        println!("no dead message matches ({} in the DLQ)", report.walked);
        return Ok(ExitCode::SUCCESS);
    }
    for (job, outcome) in &report.results {
        println!("{}: {outcome}", subject(job));
    }
    if report.dry_run {
        println!(
            "dry run: {} of {} selected message(s) would be replayed; nothing changed ({} in the DLQ)",
            report.count(|o| *o == ReplayOutcome::WouldReplay),
            report.results.len(),
            report.walked
        );
    } else {
        println!(
            "{} of {} selected message(s) replayed, {} failed ({} in the DLQ)",
            report.replayed(),
            report.results.len(),
            report.failed(),
            report.walked
        );
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn purge(dlq: &Dlq, filter: Filter, yes: bool, opts: PurgeOptions) -> Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    if !yes && !interactive {
        bail!("refusing to purge without --yes: stdin is not a terminal to confirm on");
    }
    let sel = dlq.select(&filter).await?;
    if sel.is_empty() {
        println!("no dead message matches ({} in the DLQ)", sel.walked());
        dlq.release(sel).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        let jobs: Vec<DeadJob> = sel.jobs().cloned().collect();
        print!("{}", table(&jobs));
        print!("purge {} messages? type yes: ", sel.len());
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            dlq.release(sel).await?;
            println!("nothing purged");
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = dlq.purge_selection(sel, &opts).await?;
    for (job, outcome) in &report.results {
        println!("{}: {outcome}", subject(job));
    }
    println!(
        "{} message(s) purged, {} failed ({} in the DLQ before)",
        report.purged(),
        report.failed(),
        report.walked
    );
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How a message is named in reports: its job, or its message id.
fn subject(j: &DeadJob) -> String {
    match (&j.run_id, &j.table, &j.job_id) {
        (Some(r), Some(t), Some(id)) => format!("run {r} table {t} job {id}"),
        _ => format!("message {}", j.message_id),
    }
}

/// Longest error shown in the table; `--json` has it in full.
const ERROR_CHARS: usize = 120;

/// A plain table, columns padded to their widest value.
fn table(jobs: &[DeadJob]) -> String {
    let dash = || "-".to_string();
    let header = [
        "RUN", "TABLE", "JOB", "RANGE", "ATTEMPTS", "RECEIVES", "REPLAYS", "KIND", "SOURCE",
        "ERROR",
    ];
    let rows: Vec<[String; 10]> = jobs
        .iter()
        .map(|j| {
            let error = j.error_text().replace(['\n', '\r'], " ");
            let error = if error.chars().count() > ERROR_CHARS {
                format!("{}...", error.chars().take(ERROR_CHARS).collect::<String>())
            } else if error.is_empty() {
                dash()
            } else {
                error
            };
            [
                j.run_id.clone().unwrap_or_else(dash),
                j.table.clone().unwrap_or_else(dash),
                j.job_id
                    .clone()
                    .unwrap_or_else(|| format!("(message {})", j.message_id)),
                j.range.clone().unwrap_or_else(dash),
                j.attempts.map_or_else(dash, |a| a.to_string()),
                j.receive_count.map_or_else(dash, |c| c.to_string()),
                j.replays.map_or_else(|| "0".to_string(), |r| r.to_string()),
                j.error_kind.clone().unwrap_or_else(dash),
                j.error_source.as_str().to_string(),
                error,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
