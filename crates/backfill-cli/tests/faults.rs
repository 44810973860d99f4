//! The fault-injection suite: each scenario copies a table with `backfill
//! work` processes while one fault is injected, then verifies every row
//! against its item with `backfill-verify` over clients that see the real
//! servers. Items lost (missing or different) must be 0 in every scenario,
//! and every job must end done.
//!
//! Each test prints one JSON line (`FAULT {...}`) and appends it to the file
//! named by `FAULTS_REPORT`, which `scripts/faults.sh` prints as a table.
//! `FAULTS_ROWS` sets the rows per scenario (default 3000: the short variant
//! that runs in the README's test command).

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_aws::{AwsClients, StaticCredentials};
use backfill_config::{AwsConfig, BackfillConfig, Secret, TableConfig};
use backfill_control::{ControlTable, JobState};
use backfill_dynamo::{DynamoSink, RetryPolicy};
use backfill_queue::JobQueue;
use backfill_source::PgSource;
use backfill_testkit::faults::{PrivateDynalite, PrivatePostgres, TcpCut};
use backfill_testkit::{config_toml, table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
use common::{spawn_worker, wait_for_pages};
use tokio::process::Child;

const RUN: &str = "faults";
const MAX_RECEIVES: u32 = 20;

fn rows() -> u64 {
    std::env::var("FAULTS_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// The AWS clients of a config, with the emulators' static credentials.
async fn clients(aws: &AwsConfig) -> AwsClients {
    AwsClients::with_static_credentials(
        aws,
        StaticCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        },
    )
    .await
}

/// One scenario: a seeded table, a run produced into its queue, and two
/// configs: `truth` reaches the real servers (producing, checking,
/// verifying); `workers` is what the worker processes get, through
/// whatever the scenario puts in between.
struct Scenario {
    name: &'static str,
    stack: TestStack,
    truth: BackfillConfig,
    workers: BackfillConfig,
    config_path: PathBuf,
    started: Instant,
    rows: u64,
    /// Whether the line goes into `FAULTS_REPORT` (not for the harness's own test).
    record: bool,
    /// Clients of `truth`, built once.
    aws: AwsClients,
}

/// What the mixed-type rows look like: about 300 bytes each.
fn create_table_sql(src: &str, rows: u64) -> String {
    format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(14,2), \
         note text, at timestamptz NOT NULL, doc jsonb, flag bool, score float8); \
         INSERT INTO {src} SELECT g * 3, 'name-' || g || repeat('x', 150), g * 1.25, \
         CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END, \
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', \
         jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)), g % 2 = 0, g / 7.0 \
         FROM generate_series(1, {rows}) g; ANALYZE {src};"
    )
}

impl Scenario {
    /// A scenario on the shared stack's servers; `source_url` and
    /// `dynamodb_url` override where the control and target tables and the
    /// source live (private servers), and `tweak` adjusts both configs.
    async fn new(
        name: &'static str,
        private_pg: Option<&PrivatePostgres>,
        private_ddb: Option<&PrivateDynalite>,
    ) -> Result<Self> {
        // Room for the retries that faults cause before SQS would move a
        // job to the DLQ; the worker's config says the same.
        let stack = TestStack::with_receive_count(name, MAX_RECEIVES).await?;
        let rows = rows();
        let src = match private_pg {
            Some(pg) => {
                let t = format!("public.{}", stack.name);
                let pool = sqlx::PgPool::connect(&pg.url()).await?;
                sqlx::raw_sql(&create_table_sql(&t, rows))
                    .execute(&pool)
                    .await?;
                t
            }
            None => {
                let t = stack.source("t");
                stack.sql(&create_table_sql(&t, rows)).await?;
                t
            }
        };
        let target = stack.target("t");
        let mut truth = stack.config(vec![table(src, target.clone(), &["id"], None)]);
        if let Some(pg) = private_pg {
            truth.source.url = Secret::new(pg.url());
        }
        if let Some(d) = private_ddb {
            truth.aws.dynamodb_endpoint_url = Some(d.url());
        }
        // Three jobs of several pages each, a short visibility timeout so a
        // job a dead worker held comes back soon, and every item read back.
        truth.producer.rows_per_job = (rows / 3).max(1);
        truth.worker.page_rows = 100;
        truth.worker.concurrency = 2;
        truth.worker.write_concurrency = 2;
        truth.worker.verify_sample_rate = 1.0;
        truth.worker.shutdown_grace_secs = 10;
        truth.queue.visibility_timeout_secs = 4;
        truth.queue.max_receive_count = MAX_RECEIVES;
        let aws = clients(&truth.aws).await;
        let sink = DynamoSink::new(aws.dynamodb.clone(), RetryPolicy::default());
        sink.ensure_table(&target, ("id", T::N), None).await?;
        if private_ddb.is_some() {
            sink.ensure_table(&truth.control.table, ("pk", T::S), Some(("sk", T::S)))
                .await?;
        }
        let workers = truth.clone();
        let config_path = std::env::temp_dir().join(format!("{}.toml", stack.name));
        Ok(Scenario {
            name,
            stack,
            truth,
            workers,
            config_path,
            started: Instant::now(),
            rows,
            record: true,
            aws,
        })
    }

    fn sink(&self) -> DynamoSink {
        DynamoSink::new(self.aws.dynamodb.clone(), RetryPolicy::default())
    }

    fn queue(&self) -> JobQueue {
        JobQueue::new(
            self.aws.sqs.clone(),
            &self.truth.queue.url,
            &self.truth.queue.dlq_url,
        )
    }

    fn control(&self) -> ControlTable {
        ControlTable::new(self.aws.dynamodb.clone(), &self.truth.control.table)
    }

    /// Writes the workers' config and produces the run over the real servers.
    async fn produce(&mut self) -> Result<()> {
        std::fs::write(&self.config_path, config_toml(&self.workers))?;
        let source = PgSource::connect(self.truth.source.url.expose(), 2).await?;
        let report =
            backfill_producer::produce(&self.truth, &source, &self.queue(), &self.control(), RUN)
                .await?;
        ensure!(report.jobs_total >= 3, "{report:?}");
        self.started = Instant::now();
        Ok(())
    }

    /// A `work --until-idle` process whose stdout is drained (stderr is
    /// left for `wait_for_pages`; `finish` drains it).
    fn worker(&self) -> Result<Child> {
        let mut c = spawn_worker(&self.config_path, &["--until-idle"])?;
        drain(c.stdout.take());
        Ok(c)
    }

    /// Runs `until-idle` workers until every job is done (a worker may exit
    /// while another's job is in flight and then comes back), at most 4 min.
    async fn finish(&self, mut running: Vec<Child>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            for mut w in running.drain(..) {
                // A full pipe would block the worker's logging.
                drain(w.stderr.take());
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, w.wait()).await {
                    Ok(status) => {
                        status?;
                    }
                    Err(_) => {
                        let _ = w.kill().await;
                        bail!("{}: a worker did not finish within 4 minutes", self.name);
                    }
                }
            }
            let jobs = self.control().jobs(RUN).await?;
            if jobs.iter().all(|j| j.state == JobState::Done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{}: jobs not done after 4 minutes: {jobs:?}", self.name);
            }
            running.push(self.worker()?);
        }
    }

    /// Verifies every row against its item over the real servers, prints
    /// and records the scenario's line, and fails on any loss.
    async fn verify_and_report(self, faults: u64) -> Result<()> {
        let secs = self.started.elapsed().as_secs_f64();
        let source = PgSource::connect(self.truth.source.url.expose(), 2).await?;
        let verifier = Verifier::new(source, self.sink(), VerifyOptions::default());
        let report = verifier.verify_table(&self.truth.tables[0]).await?;
        let lost = report.missing_count + report.different_count;
        let line = serde_json::json!({
            "scenario": self.name,
            "rows": report.rows_checked,
            "faults": faults,
            "lost": lost,
            "extra": report.extra_count,
            "secs": (secs * 10.0).round() / 10.0,
        });
        println!("FAULT {line}");
        if let (true, Ok(path)) = (self.record, std::env::var("FAULTS_REPORT")) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {path}"))?;
            writeln!(f, "{line}")?;
        }
        ensure!(faults > 0, "{}: no fault was injected", self.name);
        ensure!(
            report.rows_checked == self.rows,
            "{}: {} rows checked of {}",
            self.name,
            report.rows_checked,
            self.rows
        );
        ensure!(report.is_clean(), "{}: {report:?}", self.name);
        let _ = std::fs::remove_file(&self.config_path);
        self.stack.cleanup().await
    }
}

/// Reads a child's pipe to its end in the background.
fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) {
    if let Some(mut p) = pipe {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut p, &mut tokio::io::sink()).await;
        });
    }
}

async fn kill(child: &Child, signal: &str) -> Result<()> {
    let pid = child.id().context("worker pid")?;
    let status = tokio::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await?;
    ensure!(status.success(), "kill {signal} {pid} failed");
    Ok(())
}

#[tokio::test]
async fn worker_sigkilled_mid_page() -> Result<()> {
    let mut s = Scenario::new("sigkill", None, None).await?;
    s.produce().await?;
    let mut w = s.worker()?;
    let _log = wait_for_pages(&mut w, 2).await?;
    kill(&w, "-KILL").await?;
    s.finish(vec![w, s.worker()?]).await?;
    s.verify_and_report(1).await
}

#[tokio::test]
async fn worker_sigtermed_mid_job() -> Result<()> {
    let mut s = Scenario::new("sigterm", None, None).await?;
    s.produce().await?;
    let mut w = s.worker()?;
    let _log = wait_for_pages(&mut w, 2).await?;
    kill(&w, "-TERM").await?;
    let exit = tokio::time::timeout(Duration::from_secs(30), w.wait()).await??;
    ensure!(exit.success(), "SIGTERM exit: {exit}");
    s.finish(vec![s.worker()?]).await?;
    s.verify_and_report(1).await
}

#[tokio::test]
async fn postgres_restarted_mid_run() -> Result<()> {
    let pg = PrivatePostgres::start().await?;
    let mut s = Scenario::new("pgrestart", Some(&pg), None).await?;
    s.produce().await?;
    let mut w = s.worker()?;
    let _log = wait_for_pages(&mut w, 2).await?;
    pg.restart(Duration::from_secs(2)).await?;
    s.finish(vec![w]).await?;
    s.verify_and_report(pg.restarts()).await
}

#[tokio::test]
async fn dynamodb_restarted_with_its_data_kept() -> Result<()> {
    let ddb = PrivateDynalite::start().await?;
    let mut s = Scenario::new("ddbrestart", None, Some(&ddb)).await?;
    s.produce().await?;
    let mut w = s.worker()?;
    let _log = wait_for_pages(&mut w, 2).await?;
    ddb.restart(Duration::from_secs(2)).await?;
    s.finish(vec![w]).await?;
    s.verify_and_report(ddb.restarts()).await
}

/// The workers reach `which` server through a proxy that cuts the network
/// for three seconds mid-run.
async fn network_cut(name: &'static str, which: &str) -> Result<()> {
    let mut s = Scenario::new(name, None, None).await?;
    let url = match which {
        "postgres" => s.truth.source.url.expose().to_string(),
        "sqs" => s.truth.aws.sqs_endpoint_url.clone().context("sqs url")?,
        _ => s
            .truth
            .aws
            .dynamodb_endpoint_url
            .clone()
            .context("ddb url")?,
    };
    let hostport = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?']).next())
        .and_then(|hp| hp.rsplit('@').next())
        .context("no host:port in the URL")?
        .to_string();
    let cut = TcpCut::start(hostport.replace("localhost", "127.0.0.1").parse()?).await?;
    // The same URL with the proxy's address in place of the server's.
    let through = url.replacen(&hostport, &cut.addr.to_string(), 1);
    match which {
        "postgres" => s.workers.source.url = Secret::new(through),
        "sqs" => s.workers.aws.sqs_endpoint_url = Some(through),
        _ => s.workers.aws.dynamodb_endpoint_url = Some(through),
    }
    s.produce().await?;
    let mut w = s.worker()?;
    let _log = wait_for_pages(&mut w, 2).await?;
    cut.cut(Duration::from_secs(3)).await;
    s.finish(vec![w]).await?;
    s.verify_and_report(cut.cuts()).await
}

#[tokio::test]
async fn network_to_postgres_cut() -> Result<()> {
    network_cut("cut_pg", "postgres").await
}

#[tokio::test]
async fn network_to_sqs_cut() -> Result<()> {
    network_cut("cut_sqs", "sqs").await
}

#[tokio::test]
async fn network_to_dynamodb_cut() -> Result<()> {
    network_cut("cut_ddb", "dynamodb").await
}

/// The workers' DynamoDB (control table included) behind the capacity
/// proxy injecting `faults`.
async fn through_faulty_proxy(
    name: &'static str,
    faults: backfill_ddb_proxy::Faults,
) -> Result<()> {
    let mut s = Scenario::new(name, None, None).await?;
    let upstream = s
        .truth
        .aws
        .dynamodb_endpoint_url
        .clone()
        .context("ddb url")?;
    let proxy = backfill_ddb_proxy::start(backfill_ddb_proxy::ProxyConfig {
        faults,
        ..backfill_ddb_proxy::ProxyConfig::new(upstream, 1e6)
    })
    .await?;
    s.workers.aws.dynamodb_endpoint_url = Some(proxy.url.clone());
    s.produce().await?;
    s.finish(vec![s.worker()?, s.worker()?]).await?;
    let injected = proxy.counters.injected_faults();
    proxy.shutdown().await;
    s.verify_and_report(injected).await
}

#[tokio::test]
async fn throttles_and_server_errors_on_a_fifth_of_requests_each() -> Result<()> {
    through_faulty_proxy(
        "throttle_5xx",
        backfill_ddb_proxy::Faults {
            throttle_ratio: 0.2,
            server_error_ratio: 0.2,
            unprocessed_half: false,
        },
    )
    .await
}

#[tokio::test]
async fn half_of_every_batch_unprocessed() -> Result<()> {
    through_faulty_proxy(
        "unprocessed",
        backfill_ddb_proxy::Faults {
            unprocessed_half: true,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn the_same_message_to_two_workers_at_once() -> Result<()> {
    let mut s = Scenario::new("dup_now", None, None).await?;
    s.produce().await?;
    let jobs = s.control().jobs(RUN).await?;
    let bodies: Vec<String> = jobs.iter().map(|j| j.job.to_body()).collect();
    let duplicates = bodies.len() as u64;
    s.queue().send_raw(&s.truth.queue.url, bodies).await?;
    s.finish(vec![s.worker()?, s.worker()?]).await?;
    for j in s.control().jobs(RUN).await? {
        ensure!(j.state == JobState::Done, "{j:?}");
    }
    s.verify_and_report(duplicates).await
}

#[tokio::test]
async fn a_message_delivered_again_after_its_job_finished() -> Result<()> {
    let mut s = Scenario::new("dup_late", None, None).await?;
    s.produce().await?;
    s.finish(vec![s.worker()?]).await?;
    let jobs = s.control().jobs(RUN).await?;
    let rows_before: Vec<u64> = jobs.iter().map(|j| j.rows).collect();
    let bodies: Vec<String> = jobs.iter().map(|j| j.job.to_body()).collect();
    let duplicates = bodies.len() as u64;
    s.queue().send_raw(&s.truth.queue.url, bodies).await?;
    s.finish(vec![s.worker()?]).await?;
    ensure!(s.queue().depth().await?.total() == 0);
    let after: Vec<u64> = s
        .control()
        .jobs(RUN)
        .await?
        .iter()
        .map(|j| j.rows)
        .collect();
    ensure!(after == rows_before, "a finished job was counted again");
    s.verify_and_report(duplicates).await
}

/// A NaN in row 3 * 55 cannot become a DynamoDB number: that row becomes
/// a reject naming the key (every job completes), and after the config is
/// fixed (`unrepresentable = "string"`) `rejects retry` completes the table.
#[tokio::test]
async fn a_poison_row_is_a_reject_and_a_retry_after_the_fix_completes() -> Result<()> {
    let mut s = Scenario::new("poison", None, None).await?;
    let src = s.truth.tables[0].source.clone();
    s.stack
        .sql(&format!("UPDATE {src} SET score = 'NaN' WHERE id = 165"))
        .await?;
    s.produce().await?;
    let mut w = s.worker()?;
    let exit = tokio::time::timeout(Duration::from_secs(120), w.wait()).await??;
    ensure!(exit.success(), "{exit}");
    // The row is a reject: every job completes, the poisoned one with it.
    let jobs = s.control().jobs(RUN).await?;
    ensure!(
        jobs.iter().all(|j| j.state == JobState::Done),
        "every job completes: {jobs:?}"
    );
    let with_rejects: Vec<_> = jobs
        .iter()
        .filter(|j| j.state_label() == "done_with_rejects")
        .collect();
    ensure!(with_rejects.len() == 1, "one job has the reject: {jobs:?}");
    let listed = run_cli(&s.config_path, &["rejects", "list", "--run", RUN]).await?;
    ensure!(
        listed.contains("key (165)") && listed.contains("column score") && listed.contains("NaN"),
        "rejects list names key, column and value: {listed}"
    );

    // The fix, then the retry of just that row, through the binary.
    let fixed: Vec<TableConfig> = s
        .workers
        .tables
        .iter()
        .cloned()
        .map(|mut t| {
            t.unrepresentable = backfill_config::Unrepresentable::String;
            t
        })
        .collect();
    s.workers.tables = fixed.clone();
    s.truth.tables = fixed;
    std::fs::write(&s.config_path, config_toml(&s.workers))?;
    let retried = run_cli(
        &s.config_path,
        &[
            "rejects",
            "retry",
            "--run",
            RUN,
            "--reason",
            "NaN scores stored as strings",
            "--by",
            "faults",
        ],
    )
    .await?;
    ensure!(
        retried.contains("1 written") && retried.contains("0 still rejected"),
        "{retried}"
    );
    let jobs = s.control().jobs(RUN).await?;
    ensure!(
        jobs.iter().all(|j| j.state_label() == "done"),
        "no rejects left: {jobs:?}"
    );
    s.verify_and_report(1).await
}

/// Runs the binary with `args`; its stdout, or an error with both streams.
async fn run_cli(config: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(common::BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "backfill {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

// The harness itself must be able to fail: a scenario whose workers never
// ran loses items, and verify_and_report says so.
#[tokio::test]
async fn the_harness_reports_lost_items() -> Result<()> {
    let mut s = Scenario::new("harness", None, None).await?;
    s.record = false;
    s.produce().await?;
    let name = s.name;
    let err = s
        .verify_and_report(1)
        .await
        .expect_err("nothing was copied, so items are lost");
    ensure!(err.to_string().contains(name), "{err}");
    Ok(())
}
