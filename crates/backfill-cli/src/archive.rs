//! The migration's last step: `archive --run R` (the fleet writes each
//! table as Parquet parts in S3, and the manifest last), `archive verify`
//! (every part re-read: its SHA-256, rows and digest against the manifest,
//! and against the source while it exists) and `restore` (an archive
//! loaded back into a new table, so the backup is known to restore).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use backfill_archive::manifest::Manifest;
use backfill_archive::store::ArchiveStore;
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_source::TableRef;

use crate::{connect_source, job_queue};

mod check;
mod keys;
mod restore;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ArchiveArgs {
    #[command(subcommand)]
    action: Option<ArchiveAction>,
    /// Plan and enqueue archive run R (or enqueue what its stored plan has
    /// not yet, and write the manifest of each table whose parts are all done).
    #[arg(long, value_name = "R")]
    run: Option<String>,
    /// Only this table (its `source` name); default: every configured table.
    #[arg(long)]
    table: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum ArchiveAction {
    /// Re-reads every part of run R: its SHA-256, rows and digest against
    /// the manifest, and rows and digest against the source table while it
    /// exists. Exits 1 on any difference or a missing manifest.
    Verify {
        #[arg(long, value_name = "R")]
        run: String,
        #[arg(long)]
        table: Option<String>,
        /// Skip the comparison with the source (after it was dropped).
        #[arg(long)]
        no_source: bool,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The archive run to restore from.
    #[arg(long, value_name = "R")]
    run: String,
    /// The archived table (`schema.table`, as configured).
    #[arg(long)]
    table: String,
    /// The new table to create and fill (`schema.table`); never an
    /// existing one.
    #[arg(long, value_name = "SCHEMA.TABLE")]
    into: String,
    /// Postgres to restore into; default: the configured source.
    #[arg(long, env = "BACKFILL_RESTORE_URL", hide_env_values = true)]
    url: Option<String>,
}

/// The archive store of the `[archive]` section.
pub(crate) fn store(cfg: &BackfillConfig, aws: &AwsClients) -> Result<ArchiveStore> {
    let a = cfg
        .archive
        .as_ref()
        .context("archiving needs the [archive] section (bucket, prefix) in the configuration")?;
    Ok(ArchiveStore::new(aws.s3.clone(), &a.bucket, &a.prefix))
}

fn tables(cfg: &BackfillConfig, only: Option<&str>) -> Result<Vec<String>> {
    match only {
        Some(name) => {
            cfg.table(name)
                .with_context(|| format!("table {name} is not in the config"))?;
            Ok(vec![name.to_string()])
        }
        None => Ok(cfg.tables.iter().map(|t| t.source.clone()).collect()),
    }
}

/// The manifest of `table`'s run `run`, or an error saying the run is not
/// complete.
pub(crate) async fn manifest(store: &ArchiveStore, table: &str, run: &str) -> Result<Manifest> {
    let key = store.manifest_key(table, run);
    let body = store.get(&key).await?.with_context(|| {
        format!(
            "table {table}, run {run}: no manifest at s3://{}/{key}: the run is not complete (`backfill status --run {run}`; `backfill archive --run {run}` writes it once every part is done)",
            store.bucket()
        )
    })?;
    Ok(Manifest::parse(table, run, &body)?)
}

pub(crate) async fn run(cfg: &BackfillConfig, args: ArchiveArgs) -> Result<ExitCode> {
    match args.action {
        Some(ArchiveAction::Verify {
            run,
            table,
            no_source,
        }) => check::verify(cfg, &run, table.as_deref(), !no_source).await,
        None => {
            let run = args
                .run
                .context("`backfill archive` needs --run R (or `archive verify --run R`)")?;
            produce(cfg, &run, args.table.as_deref()).await
        }
    }
}

async fn produce(cfg: &BackfillConfig, run: &str, table: Option<&str>) -> Result<ExitCode> {
    let mut cfg = cfg.clone();
    let names = tables(&cfg, table)?;
    cfg.tables.retain(|t| names.contains(&t.source));
    let aws = AwsClients::from_config(&cfg.aws).await;
    let store = store(&cfg, &aws)?;
    let source = connect_source(&cfg).await?;
    let queue = job_queue(&cfg, &aws)?;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let report = backfill_producer::produce_archive(&cfg, &source, &queue, &control, run).await?;
    println!(
        "archive run {}: {} jobs, {} enqueued now, {} enqueued before{}; workers write s3://{}/{}",
        report.run_id,
        report.jobs_total,
        report.enqueued,
        report.already_enqueued,
        if report.reused_plan {
            " (stored plan reused)"
        } else {
            ""
        },
        store.bucket(),
        names
            .first()
            .map(|t| store.run_dir(t, run))
            .unwrap_or_default(),
    );
    for t in &names {
        if let Some(m) =
            backfill_worker::archive::write_manifest_if_complete(&control, &store, run, t).await?
        {
            println!(
                "table {t}: complete, {} rows in {} parts; manifest s3://{}/{}",
                m.rows,
                m.parts.len(),
                store.bucket(),
                store.manifest_key(t, run)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn restore(cfg: &BackfillConfig, args: RestoreArgs) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let store = store(cfg, &aws)?;
    let m = manifest(&store, &args.table, &args.run).await?;
    let into = TableRef::parse(&args.into);
    if !args.into.contains('.') {
        bail!("--into {}: name the schema too (schema.table)", args.into);
    }
    let url = args
        .url
        .unwrap_or_else(|| cfg.source.url.expose().to_string());
    let rows = restore::restore(&store, &m, &url, &into).await?;
    println!(
        "restored {rows} rows of {} (archive run {}, {} parts) into {into}",
        m.table,
        m.run_id,
        m.parts.len()
    );
    Ok(ExitCode::SUCCESS)
}
