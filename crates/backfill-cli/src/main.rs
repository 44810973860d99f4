//! `backfill`: one binary for every role (producer, worker, operator tools),
//! so one container image serves them all. Thin glue over the library
//! crates: parse arguments, load the config once, build clients once, run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_dynamo::{DynamoSink, RetryPolicy};
use backfill_queue::JobQueue;
use backfill_source::PgSource;
use backfill_worker::WorkOptions;
use clap::{Parser, Subcommand, ValueEnum};

mod archive;
mod audit;
mod bootstrap;
mod plan;
mod status;
mod verify;
mod verify_run;
mod work;
use status::human_duration;
mod dlq;
mod errors;
use errors::{bootstrap_hint, endpoints, error_chain, slow_call_watchdog, with_endpoints};
mod rejects;

#[derive(Parser)]
#[command(
    name = "backfill",
    version,
    about = "Copy PostgreSQL tables into DynamoDB through an SQS job queue"
)]
struct Cli {
    /// The TOML config; `BACKFILL__SECTION__KEY` environment variables override it.
    #[arg(
        long,
        short,
        global = true,
        env = "BACKFILL_CONFIG",
        default_value = "backfill.toml"
    )]
    config: PathBuf,
    /// Log format: `auto` is text on a terminal and JSON otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Dry run: jobs per table, estimated rows and any problem; enqueues nothing.
    Plan {
        /// The run to plan (job ids depend on it).
        #[arg(long, default_value = "dry-run")]
        run: String,
        /// Pre-warm each on-demand target whose budget is above what it
        /// absorbs now (UpdateTable WarmThroughput = the budget). Warm
        /// throughput cannot be lowered again, and AWS bills raising it.
        #[arg(long)]
        prewarm: bool,
    },
    /// Plans the run (or reuses its stored plan) and enqueues the jobs not yet enqueued.
    Produce {
        #[arg(long)]
        run: String,
        /// Refuse to start when the plan's capacity cost (at each target's
        /// billing mode) is above this many dollars.
        #[arg(long)]
        max_cost: Option<f64>,
    },
    /// Takes jobs from the queue and copies them until stopped (SIGTERM, Ctrl-C).
    Work {
        /// Exit once the queue is empty and no job is in hand.
        #[arg(long)]
        until_idle: bool,
        /// Take at most N jobs, finish them and exit (run-to-completion
        /// pods, such as a KEDA ScaledJob's).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_jobs: Option<u64>,
    },
    /// Re-reads source and target and reports missing, extra and different
    /// items by key and attribute; exits 1 on any difference. With `--run`,
    /// a verification run for the worker fleet instead (`verify report`
    /// prints what it found).
    #[command(args_conflicts_with_subcommands = true)]
    Verify {
        #[command(subcommand)]
        action: Option<VerifyAction>,
        /// Plan and enqueue verification run R (a new run id): its range
        /// and scan jobs are taken by `backfill work`, like a copy's.
        #[arg(long, value_name = "R")]
        run: Option<String>,
        /// With --run: segments of each target's parallel Scan for extra items.
        #[arg(long, default_value_t = 4)]
        segments: u32,
        /// With --run: check the ranges of this copy run, each confirmed by
        /// the count and digest its copy recorded where source and target
        /// still agree with them (else compared row by row).
        #[arg(long, value_name = "COPY_RUN", requires = "run")]
        of: Option<String>,
        /// Only this table (its `source` name); default: every configured table.
        #[arg(long)]
        table: Option<String>,
        /// Audit a sample of this percentage of rows instead of everything
        /// (no extra-item check); differences are re-checked before reporting.
        #[arg(long, value_parser = percent)]
        sample: Option<f64>,
        /// Audit the rows whose version column is at least this value.
        #[arg(long)]
        since: Option<String>,
        /// Rows an audit reads at most.
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
        /// DynamoDB read requests per second, at most.
        #[arg(long, default_value_t = 50)]
        max_reads_per_sec: u32,
        /// Only compare the source row count with the target item count.
        #[arg(long)]
        counts: bool,
        /// Seconds the copy took, to print rows per second (with --counts; the demo uses it).
        #[arg(long)]
        elapsed_secs: Option<f64>,
    },
    /// The drift watch of the dual-write weeks: every `--every`, audits the
    /// rows changed since the last round's watermark (the version column)
    /// and a random sample of the others, records the round in the control
    /// table and counts drift on the metrics endpoint. Runs until SIGTERM.
    Audit {
        /// Time between rounds' starts (humantime: 10m, 1h, 30s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        every: std::time::Duration,
        /// Only this table (its `source` name); default: every configured table.
        #[arg(long)]
        table: Option<String>,
        /// Percentage of each table's rows sampled every round, besides the
        /// changed ones (0: changed rows only).
        #[arg(long, value_parser = percent, default_value_t = 0.1)]
        sample_percent: f64,
        /// Rows each part of a round (changed, sample) reads at most; more
        /// changed rows than that are taken up by the next round.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// DynamoDB read requests per second, at most.
        #[arg(long, default_value_t = 50)]
        max_reads_per_sec: u32,
        /// One round, then exit (1 on any drift or failure), as a CI check.
        #[arg(long)]
        once: bool,
    },
    /// Where a run stands: per table, jobs done, running, failed and queued,
    /// rows, rate, capacity against budget and ETA. Exits 1 when jobs failed
    /// or the run was cancelled.
    Status {
        /// The run; default: the newest.
        #[arg(long)]
        run: Option<String>,
        /// Redraw every `--interval` seconds until the run ends (or Ctrl-C).
        #[arg(long)]
        watch: bool,
        /// JSON instead of text (one object per line with --watch).
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// Cancels a run: workers drop its jobs (queued ones when they receive
    /// them, running ones at their next checkpoint) and the queue drains.
    Cancel {
        #[arg(long)]
        run: String,
        /// Why, for the run's record.
        #[arg(long)]
        reason: String,
        /// Who, for the run's record (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// The migration's last step: archive the tables to S3 as Parquet
    /// (`--run R`, taken by `backfill work`), then `archive verify`.
    Archive(archive::ArchiveArgs),
    /// Loads an archive run of a table back into a new Postgres table.
    Restore(archive::RestoreArgs),
    /// The dead-letter queue: list dead jobs with their last error, replay or purge them.
    Dlq(dlq::DlqArgs),
    /// Rows that could not become items: list them, or retry them after a fix.
    Rejects(rejects::RejectsArgs),
    /// Creates the queues, the control table and the target tables of a local stack.
    Bootstrap {
        /// Delete the target tables and purge both queues first (local demos only).
        #[arg(long)]
        fresh: bool,
    },
}

#[derive(Subcommand, Debug)]
enum VerifyAction {
    /// What verification run R found, by table and key; exits 1 on any
    /// difference or while its jobs are not all done.
    Report {
        #[arg(long, value_name = "R")]
        run: String,
        /// JSON on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copies again, as copy run `--as`, every range of verification run
    /// R with missing or different items (the normal copy path, its
    /// conditional writes included); each range is an audit record on R.
    /// Verify again afterwards with a new verification run.
    Repair {
        #[arg(long, value_name = "R")]
        run: String,
        /// The repair run's id (a new run).
        #[arg(long = "as", value_name = "RUN")]
        repair_run: String,
        /// Who repairs (audit record; default: $USER, else $LOGNAME).
        #[arg(long)]
        by: Option<String>,
        /// Why (audit record): the incident or the cause.
        #[arg(long)]
        reason: String,
    },
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

// A worker allocates and frees a few objects per column of every row it
// copies; in the profile glibc's malloc and free took about a quarter of its
// CPU (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its v3 header's option list; the
/// `-sys` crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A worker frees and allocates a page's worth of rows over and over. When
/// mimalloc hands freed memory back to the OS soon, the next page faults it
/// in again, zeroed by the kernel (`clear_page` was 4% of a worker's CPU in
/// the profile). On 300,000 rows of 1 KB: a 10 ms delay (mimalloc v2's
/// default) made 200,000 page faults, 250 ms about 30,000, 1 s about 7,400,
/// and a minute about 830. A minute cost archive jobs their memory bound:
/// their row groups and upload parts are megabytes each, and four jobs of
/// 64 KB rows held 209 MB of freed memory with it against 175 MB at 250 ms
/// (115 MB purging at once); the copy's rows per CPU-second did not move
/// measurably between 250 ms and a minute (docs/PERFORMANCE.md).
/// MIMALLOC_PURGE_DELAY, when set, still decides.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 250) };
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// A percentage for `--sample`: a number from 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (a percentage, 0 to 100)"))?;
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{s} is outside 0 to 100 (a percentage of rows)"))
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let cfg = BackfillConfig::load(&cli.config)?;
    // An operator command that waits on a service says so after a few
    // seconds, naming where it waits, instead of minutes of silence.
    let watchdog = (!matches!(cli.command, Command::Work { .. } | Command::Audit { .. }))
        .then(|| tokio::spawn(slow_call_watchdog(endpoints(&cfg))));
    let result = dispatch(cli.command, &cfg).await;
    if let Some(w) = watchdog {
        w.abort();
    }
    result.map_err(|e| bootstrap_hint(with_endpoints(e, &cfg), &cfg))
}

async fn dispatch(command: Command, cfg: &BackfillConfig) -> Result<ExitCode> {
    let cfg = cfg.clone();
    match command {
        Command::Plan { run, prewarm } => plan::plan(&cfg, &run, prewarm).await,
        Command::Produce { run, max_cost } => plan::produce(&cfg, &run, max_cost).await,
        Command::Work {
            until_idle,
            max_jobs,
        } => {
            work::work(
                cfg,
                WorkOptions {
                    until_idle,
                    max_jobs,
                },
            )
            .await
        }
        Command::Verify {
            action: Some(VerifyAction::Report { run, json }),
            ..
        } => verify_run::report(&cfg, &run, json).await,
        Command::Verify {
            action:
                Some(VerifyAction::Repair {
                    run,
                    repair_run,
                    by,
                    reason,
                }),
            ..
        } => verify_run::repair(&cfg, &run, &repair_run, by, &reason).await,
        Command::Verify {
            run: Some(run),
            table,
            segments,
            of,
            ..
        } => verify_run::produce(&cfg, &run, table.as_deref(), segments, of.as_deref()).await,
        Command::Verify {
            table,
            sample,
            since,
            limit,
            max_reads_per_sec,
            counts,
            elapsed_secs,
            ..
        } => {
            if counts {
                verify::verify_counts(&cfg, elapsed_secs).await
            } else {
                verify::verify(&cfg, table, sample, since, limit, max_reads_per_sec).await
            }
        }
        Command::Audit {
            every,
            table,
            sample_percent,
            limit,
            max_reads_per_sec,
            once,
        } => {
            audit::audit(
                cfg,
                audit::AuditArgs {
                    every,
                    table,
                    sample_percent,
                    limit,
                    max_reads_per_sec,
                    once,
                },
            )
            .await
        }
        Command::Bootstrap { fresh } => bootstrap::bootstrap(&cfg, fresh).await,
        Command::Status {
            run,
            watch,
            json,
            interval,
        } => {
            status::status(
                &cfg,
                status::StatusOptions {
                    run,
                    watch,
                    json,
                    interval_secs: interval,
                },
            )
            .await
        }
        Command::Cancel { run, reason, by } => {
            let by = status::by_or_user(by);
            status::cancel(&cfg, &run, &by, &reason).await
        }
        Command::Dlq(args) => dlq::run(&cfg, args).await,
        Command::Archive(args) => archive::run(&cfg, args).await,
        Command::Restore(args) => archive::restore(&cfg, args).await,
        Command::Rejects(args) => rejects::run(&cfg, args).await,
    }
}

pub(crate) async fn connect_source(cfg: &BackfillConfig) -> Result<PgSource> {
    PgSource::connect(cfg.source.url.expose(), cfg.source.max_connections)
        .await
        .with_context(|| format!("source {}", cfg.source.redacted_url()))
}

/// The job queue, signing what it sends when `queue.signing_key_env` is set.
pub(crate) fn job_queue(cfg: &BackfillConfig, aws: &AwsClients) -> Result<JobQueue> {
    let signer = match cfg.queue.signing_key()? {
        Some(key) => Some(
            backfill_job::signing::MessageSigner::new(key.expose().as_bytes())
                .context("queue.signing_key_env")?,
        ),
        None => None,
    };
    Ok(JobQueue::new(aws.sqs.clone(), &cfg.queue.url, &cfg.queue.dlq_url).with_signer(signer))
}

pub(crate) fn sink(cfg: &BackfillConfig, aws: &AwsClients) -> DynamoSink {
    DynamoSink::new(
        aws.dynamodb.clone(),
        RetryPolicy {
            max_attempts: cfg.worker.max_write_attempts,
            ..RetryPolicy::default()
        },
    )
}

/// The S3 offloader of the `[offload]` section, if there is one, on the
/// S3 client the command already built.
pub(crate) fn offloader(
    cfg: &BackfillConfig,
    aws: &AwsClients,
) -> Option<backfill_offload::S3Offloader> {
    let o = cfg.offload.as_ref()?;
    Some(backfill_offload::S3Offloader::new(
        aws.s3.clone(),
        &o.bucket,
        &o.prefix,
    ))
}
