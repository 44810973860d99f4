//! The worker's metrics and probes, scraped over HTTP while it copies a real
//! run from Postgres to DynamoDB through SQS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// One GET over a fresh connection, the way a scraper or the kubelet asks.
/// Returns the status, the lower-cased head and the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the metrics server at {addr}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\
         Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .context("the metrics server did not answer within 10 s")??;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP response: {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// A scrape: every sample by metric name and its label set.
#[derive(Debug)]
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    async fn take(addr: SocketAddr) -> Result<Scrape> {
        let (status, head, body) = get(addr, "/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        assert!(
            head.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(
            body.ends_with("# EOF\n"),
            "an OpenMetrics body ends with # EOF"
        );
        let mut out = BTreeMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("no value in {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            // Our label values (table names, outcomes, kinds) hold no
            // commas or quotes, so a plain split reads them.
            let labels: BTreeMap<String, String> = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            let value: f64 = value
                .parse()
                .with_context(|| format!("value of {line:?}"))?;
            out.insert((name.to_string(), labels), value);
        }
        Ok(Scrape(out))
    }

    /// The sample of `name` with exactly `labels`, if exposed.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.get(&(name.to_string(), labels)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

#[tokio::test]
async fn metrics_and_probes_follow_a_real_copy() -> Result<()> {
    const ROWS: u64 = 700;
    const BUDGET: f64 = 50_000.0;
    let stack = TestStack::new("metrics").await?;
    let src = stack.source("orders");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, note text NOT NULL); \
             INSERT INTO {src} SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("orders");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    // High enough never to slow the copy; it is here to be reported.
    t.write_budget_wcu = Some(BUDGET);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 200;
    cfg.worker.page_rows = 64;
    cfg.worker.verify_sample_rate = 1.0;

    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run1").await?;
    let jobs = report.jobs_total as f64;
    assert!(report.jobs_total >= 2, "{report:?}");
    // A message no worker can parse goes to the DLQ and is counted there.
    stack
        .queue()
        .send_raw(&stack.queue_url, vec!["{not a job".to_string()])
        .await?;

    let worker = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        PgSource::connect(cfg.source.url.expose(), 4).await?,
        stack.sink(),
        stack.queue(),
        stack.control(),
    ));
    let server_stop = CancellationToken::new();
    let (addr, server) = backfill_metrics::serve(
        "127.0.0.1:0".parse()?,
        worker.metrics().clone(),
        worker.health().clone(),
        server_stop.clone(),
    )
    .await?;
    assert_ne!(addr.port(), 0, "port 0 binds a real port");

    // Before the worker runs: the table's series are there at zero, and the
    // worker is live but not ready (no budgets, no heartbeat yet).
    let before = Scrape::take(addr).await?;
    let table_l = [("table", src.as_str())];
    let target_l = [("table", target.as_str())];
    let done_l = [("table", src.as_str()), ("outcome", "done")];
    assert_eq!(
        before.get("backfill_rows_written_total", &table_l),
        Some(0.0)
    );
    assert_eq!(before.get("backfill_rows_read_total", &table_l), Some(0.0));
    assert_eq!(
        before.get("backfill_wcu_consumed_total", &target_l),
        Some(0.0)
    );
    assert_eq!(before.value("backfill_jobs_total", &done_l), 0.0);
    assert_eq!(get(addr, "/healthz").await?.0, 200);
    let (status, _, body) = get(addr, "/readyz").await?;
    assert_eq!(status, 503, "not ready before the worker runs: {body}");

    let cancel = CancellationToken::new();
    let run = tokio::spawn(worker.clone().run(
        cancel.clone(),
        WorkOptions {
            until_idle: false,
            ..Default::default()
        },
    ));

    // While it runs: ready once it has its budget and has joined the fleet,
    // and the counters reach the run's totals.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut was_ready = false;
    let after = loop {
        let (ready, _, _) = get(addr, "/readyz").await?;
        was_ready |= ready == 200;
        let s = Scrape::take(addr).await?;
        if was_ready
            && s.value("backfill_jobs_total", &done_l) >= jobs
            && s.value("backfill_dlq_sends_total", &[("kind", "malformed_message")]) >= 1.0
        {
            break s;
        }
        if Instant::now() > deadline || run.is_finished() {
            cancel.cancel();
            bail!("the run did not finish in time (ready seen: {was_ready}); last scrape: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (status, _, body) = get(addr, "/healthz").await?;
    assert_eq!((status, body.as_str()), (200, "ok\n"), "live while running");
    let (status, _, body) = get(addr, "/readyz").await?;
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "ready while running"
    );

    assert_eq!(
        after.value("backfill_rows_written_total", &table_l),
        ROWS as f64,
        "every seeded row written once"
    );
    assert_eq!(
        after.value("backfill_rows_read_total", &table_l),
        ROWS as f64
    );
    assert_eq!(
        after.value("backfill_items_verified_total", &table_l),
        ROWS as f64,
        "verify_sample_rate 1 reads every item back"
    );
    let wcu = after.value("backfill_wcu_consumed_total", &target_l);
    assert!(wcu > 0.0, "DynamoDB reported consumed capacity: {wcu}");
    assert_eq!(after.value("backfill_jobs_total", &done_l), jobs);
    assert_eq!(
        after.value("backfill_job_duration_seconds_count", &done_l),
        jobs,
        "one duration per job done"
    );
    assert!(after.value("backfill_job_duration_seconds_sum", &done_l) > 0.0);
    assert_eq!(
        after.value(
            "backfill_job_duration_seconds_bucket",
            &[("le", "+Inf"), ("table", src.as_str()), ("outcome", "done")]
        ),
        jobs
    );
    assert_eq!(
        after.value("backfill_dlq_sends_total", &[("kind", "malformed_message")]),
        1.0
    );
    assert_eq!(
        after.value(
            "backfill_jobs_total",
            &[("table", ""), ("outcome", "dead_lettered")]
        ),
        1.0,
        "a malformed message is counted without a table"
    );
    assert_eq!(after.get("backfill_budget_wcu", &target_l), Some(BUDGET));
    assert_eq!(
        after.get("backfill_budget_share_wcu", &target_l),
        Some(BUDGET),
        "the only worker of its fleet gets the whole budget"
    );
    // The library's accessors agree with what was scraped.
    assert_eq!(worker.metrics().rows_written_total(&src), ROWS);
    assert_eq!(worker.metrics().wcu_consumed_total(&target), wcu);
    assert_eq!(stack.sink().count_items(&target).await?, ROWS);

    // Shutting down: out of rotation at once, still live, and the server
    // answers until it is stopped.
    cancel.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(60), run).await??;
    assert_eq!(summary.rows_copied, ROWS, "{summary:?}");
    let (status, _, body) = get(addr, "/readyz").await?;
    assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    assert_eq!(get(addr, "/healthz").await?.0, 200);
    let last = Scrape::take(addr).await?;
    assert_eq!(last.get("backfill_jobs_in_hand", &[]), Some(0.0));

    server_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await??;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the server stops when told"
    );
    stack.cleanup().await
}
