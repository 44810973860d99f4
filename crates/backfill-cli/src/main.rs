//! `backfill`: one binary for every role (producer, worker, operator tools),
//! so one container image serves them all. Thin glue over the library
//! crates: parse arguments, load the config once, build clients once, run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_dynamo::{DynamoSink, RetryPolicy};
use backfill_item::ItemMapper;
use backfill_queue::JobQueue;
use backfill_source::{PgSource, TableRef};
use backfill_worker::{WorkOptions, Worker};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

mod status;
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
    },
    /// Plans the run (or reuses its stored plan) and enqueues the jobs not yet enqueued.
    Produce {
        #[arg(long)]
        run: String,
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
    /// items by key and attribute; exits 1 on any difference.
    Verify {
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
/// default) made 200,000 page faults, 1 s about 7,400, and a minute about
/// 830, as few as never purging. The working set is bounded by the page
/// sizes anyway, so it is kept while the worker copies and handed back a
/// minute after it goes idle. MIMALLOC_PURGE_DELAY, when set, still decides.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 60_000) };
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
    let watchdog = (!matches!(cli.command, Command::Work { .. }))
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
        Command::Plan { run } => plan(&cfg, &run).await,
        Command::Produce { run } => produce(&cfg, &run).await,
        Command::Work {
            until_idle,
            max_jobs,
        } => {
            work(
                cfg,
                WorkOptions {
                    until_idle,
                    max_jobs,
                },
            )
            .await
        }
        Command::Verify {
            table,
            sample,
            since,
            limit,
            max_reads_per_sec,
            counts,
            elapsed_secs,
        } => {
            if counts {
                verify_counts(&cfg, elapsed_secs).await
            } else {
                verify(&cfg, table, sample, since, limit, max_reads_per_sec).await
            }
        }
        Command::Bootstrap { fresh } => bootstrap(&cfg, fresh).await,
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
        Command::Rejects(args) => rejects::run(&cfg, args).await,
    }
}

async fn connect_source(cfg: &BackfillConfig) -> Result<PgSource> {
    PgSource::connect(cfg.source.url.expose(), cfg.source.max_connections)
        .await
        .with_context(|| format!("source {}", cfg.source.redacted_url()))
}

/// The job queue, signing what it sends when `queue.signing_key_env` is set.
fn job_queue(cfg: &BackfillConfig, aws: &AwsClients) -> Result<JobQueue> {
    let signer = match cfg.queue.signing_key()? {
        Some(key) => Some(
            backfill_job::signing::MessageSigner::new(key.expose().as_bytes())
                .context("queue.signing_key_env")?,
        ),
        None => None,
    };
    Ok(JobQueue::new(aws.sqs.clone(), &cfg.queue.url, &cfg.queue.dlq_url).with_signer(signer))
}

fn sink(cfg: &BackfillConfig, aws: &AwsClients) -> DynamoSink {
    DynamoSink::new(
        aws.dynamodb.clone(),
        RetryPolicy {
            max_attempts: cfg.worker.max_write_attempts,
            ..RetryPolicy::default()
        },
    )
}

async fn plan(cfg: &BackfillConfig, run: &str) -> Result<ExitCode> {
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

async fn produce(cfg: &BackfillConfig, run: &str) -> Result<ExitCode> {
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

async fn work(cfg: BackfillConfig, opts: WorkOptions) -> Result<ExitCode> {
    let listen = cfg.metrics.listen_addr()?;
    let source = connect_source(&cfg).await?;
    let problems = backfill_worker::preflight(&cfg, &source).await?;
    if !problems.is_empty() {
        anyhow::bail!(
            "the configured tables do not match the source; no job was taken:\n  {}",
            problems.join("\n  ")
        );
    }
    let aws = AwsClients::from_config(&cfg.aws).await;
    let queue = job_queue(&cfg, &aws)?;
    let sink = sink(&cfg, &aws);
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let offloader = offloader(&cfg).await;
    let mut worker = Worker::new(Arc::new(cfg), source, sink, queue, control);
    if let Some(o) = offloader {
        worker = worker.with_offloader(o);
    }
    let worker = Arc::new(worker);
    // Its own token, not the signal's: through the shutdown grace period
    // /readyz says "shutting down" and the last counts stay scrapeable,
    // and the server stops only once the worker has returned.
    let metrics_stop = CancellationToken::new();
    let server = match listen {
        Some(addr) => {
            let (bound, task) = backfill_metrics::serve(
                addr,
                worker.metrics().clone(),
                worker.health().clone(),
                metrics_stop.clone(),
            )
            .await?;
            tracing::info!(address = %bound, "metrics and health endpoints listening (/metrics, /healthz, /readyz)");
            Some(task)
        }
        None => {
            tracing::info!("metrics.listen is empty: no metrics or health endpoints");
            None
        }
    };
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let started = Instant::now();
    let summary = worker.run(cancel, opts).await;
    metrics_stop.cancel();
    if let Some(task) = server {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "the metrics server task failed");
        }
    }
    if let Some(e) = &summary.fatal {
        anyhow::bail!("the worker could not start: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{}", work_summary(&summary, secs));
    Ok(ExitCode::SUCCESS)
}

/// The worker's last line: what it wrote (handed-back jobs included) and
/// what became of its jobs, naming only the outcomes that happened.
fn work_summary(s: &backfill_worker::WorkSummary, secs: f64) -> String {
    let mut out = format!(
        "worker: {} rows written in {secs:.1}s ({:.0} rows/s); {} jobs done ({} rows in them, {} read by this worker)",
        s.rows_written,
        s.rows_written as f64 / secs.max(1e-9),
        s.jobs_done,
        s.rows_copied,
        s.rows_read,
    );
    for (n, what) in [
        (
            s.jobs_released,
            "handed back to the queue at shutdown (they resume from their checkpoints)",
        ),
        (s.jobs_dead_lettered, "dead-lettered"),
        (s.jobs_retried, "left to be retried"),
        (s.jobs_duplicate, "duplicates of finished jobs"),
        (s.jobs_cancelled, "dropped because their run was cancelled"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out
}

/// The S3 offloader of the `[offload]` section, if there is one.
async fn offloader(cfg: &BackfillConfig) -> Option<backfill_offload::S3Offloader> {
    let o = cfg.offload.as_ref()?;
    let client = backfill_aws::s3_client(&cfg.aws, None, None).await;
    Some(backfill_offload::S3Offloader::new(
        client, &o.bucket, &o.prefix,
    ))
}

/// Cancels on SIGTERM (Kubernetes scale-in) or Ctrl-C.
async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing or handing back the jobs in hand");
    cancel.cancel();
}

async fn verify(
    cfg: &BackfillConfig,
    table: Option<String>,
    sample: Option<f64>,
    since: Option<String>,
    limit: u32,
    max_reads_per_sec: u32,
) -> Result<ExitCode> {
    let tables: Vec<&backfill_config::TableConfig> = match &table {
        Some(name) => vec![cfg
            .table(name)
            .with_context(|| format!("table {name} is not in the config"))?],
        None => cfg.tables.iter().collect(),
    };
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let opts = backfill_verify::VerifyOptions {
        max_reads_per_sec: std::num::NonZeroU32::new(max_reads_per_sec)
            .context("--max-reads-per-sec must be at least 1")?,
        ..Default::default()
    };
    let mut verifier = backfill_verify::Verifier::new(source, sink(cfg, &aws), opts);
    if let Some(o) = offloader(cfg).await {
        verifier = verifier.with_offloader(o);
    }
    let mut clean = true;
    for t in tables {
        let report = if sample.is_some() || since.is_some() {
            verifier
                .audit(
                    t,
                    sample,
                    since.as_deref(),
                    limit,
                    std::time::Duration::from_secs(2),
                )
                .await?
        } else {
            verifier.verify_table(t).await?
        };
        clean &= report.is_clean();
        println!(
            "{} -> {}: {} rows checked, {} items scanned ({} newer in DynamoDB): {} missing, {} extra, {} different, {} unmappable, {} collisions{}{}",
            report.source,
            report.target,
            report.rows_checked,
            report.items_scanned,
            report.newer_in_target,
            report.missing_count,
            report.extra_count,
            report.different_count,
            report.unmappable_count,
            report.collision_count,
            if report.count_mismatch_count > 0 {
                format!(", {} spans whose row count disagrees with the source", report.count_mismatch_count)
            } else {
                String::new()
            },
            if report.is_clean() {
                ""
            } else {
                "  DIFFERENCES"
            }
        );
        for (k, why) in &report.unmappable {
            println!("  unmappable {k}: {why}");
        }
        for c in &report.collisions {
            println!("  collision {c}");
        }
        for m in &report.count_mismatches {
            println!("  count    {m}");
        }
        for k in &report.missing {
            println!("  missing  {k}");
        }
        for k in &report.extra {
            println!("  extra    {k}");
        }
        for (k, diffs) in &report.different {
            for d in diffs {
                println!("  differs  {k}: {d}");
            }
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn verify_counts(cfg: &BackfillConfig, elapsed_secs: Option<f64>) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let sink = sink(cfg, &aws);
    let mut all_match = true;
    let mut total = 0;
    for t in &cfg.tables {
        let rows = source.count_rows(&TableRef::parse(&t.source)).await?;
        let items = sink.count_items(&t.target).await?;
        let verdict = if rows == items { "match" } else { "MISMATCH" };
        all_match &= rows == items;
        total += items;
        println!(
            "{} -> {}: source rows {rows}, target items {items}: {verdict}",
            t.source, t.target
        );
    }
    if let Some(secs) = elapsed_secs {
        println!(
            "copied {total} items in {secs:.1} s: {:.0} rows/s",
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(if all_match {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn bootstrap(cfg: &BackfillConfig, fresh: bool) -> Result<ExitCode> {
    use aws_sdk_dynamodb::types::ScalarAttributeType as T;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let sink = sink(cfg, &aws);
    if fresh {
        for t in &cfg.tables {
            if sink.delete_table(&t.target).await? {
                println!("deleted target table {}", t.target);
            }
        }
    }
    let name = backfill_queue::queue_name_from_url(&cfg.queue.url);
    let dlq_name = backfill_queue::queue_name_from_url(&cfg.queue.dlq_url);
    let (url, dlq_url) = backfill_queue::create_queues(
        &aws.sqs,
        name,
        dlq_name,
        cfg.queue.max_receive_count,
        cfg.queue.visibility_timeout_secs,
    )
    .await?;
    println!(
        "queue {url} (redrive to {dlq_url} after {} receives)",
        cfg.queue.max_receive_count
    );
    if url != cfg.queue.url || dlq_url != cfg.queue.dlq_url {
        anyhow::bail!(
            "the queues were created at {url} and {dlq_url}, not at queue.url and queue.dlq_url of the config"
        );
    }
    if fresh {
        for u in [&url, &dlq_url] {
            backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                aws.sqs.purge_queue().queue_url(u).send()
            })
            .await
            .with_context(|| format!("purging {u}"))?;
        }
        println!("purged both queues");
    }
    sink.ensure_table(&cfg.control.table, ("pk", T::S), Some(("sk", T::S)))
        .await?;
    println!("control table {}", cfg.control.table);
    if let Some(o) = offloader(cfg).await {
        o.ensure_bucket().await?;
        println!("offload bucket {}", o.bucket());
    }
    let source = connect_source(cfg).await?;
    for t in &cfg.tables {
        let schema = source.describe(&TableRef::parse(&t.source)).await?;
        let mapper = ItemMapper::new(t, &schema)?;
        let pk = mapper.partition_key();
        let sk = mapper.sort_key();
        sink.ensure_table(
            &t.target,
            (&pk.attribute, pk.attribute_type.clone()),
            sk.map(|k| (k.attribute.as_str(), k.attribute_type.clone())),
        )
        .await?;
        println!("target table {} for {}", t.target, t.source);
    }
    Ok(ExitCode::SUCCESS)
}
