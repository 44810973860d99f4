//! No overshoot at start: eight workers started at once each see few of
//! the others at first. Before the join ramp each took the whole budget
//! until the heartbeats had counted the fleet, and the fleet asked for 2 to
//! 2.7 times the budget for about three seconds. Read from the capacity
//! proxy's own per-second counters.

use std::sync::Arc;

use anyhow::{ensure, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_ddb_proxy::{start, Mode, ProxyConfig};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_started_at_once_ask_for_no_more_than_the_budget_and_its_burst() -> Result<()>
{
    const BUDGET: f64 = 200.0;
    const ROWS: u64 = 4_000;
    let stack = TestStack::new("fleet_start").await?;
    let src = stack.source("t");
    // About 0.95 KB an item: one WCU each.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, pad text); \
             INSERT INTO {src} SELECT g, repeat('x', 920) FROM generate_series(1, {ROWS}) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    // One second of burst, as a table freshly raised to its capacity has.
    let proxy = start(ProxyConfig {
        burst_secs: 1.0,
        mode: Mode::BlackholeBatches,
        partition_key: Some("id".into()),
        table: Some(target.clone()),
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), BUDGET)
    })
    .await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.write_budget_wcu = Some(BUDGET);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 500;
    cfg.worker.page_rows = 100;
    cfg.worker.verify_sample_rate = 0.0;
    cfg.capacity.heartbeat_secs = 2;
    cfg.capacity.worker_expiry_secs = 6;
    let source = PgSource::connect(cfg.source.url.expose(), 4).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let mut worker_cfg = cfg.clone();
    worker_cfg.aws.dynamodb_endpoint_url = Some(proxy.url.clone());
    let aws = backfill_aws::AwsClients::for_emulator(&proxy.url).await;
    let sink = backfill_dynamo::DynamoSink::new(aws.dynamodb.clone(), Default::default());
    let worker_cfg = Arc::new(worker_cfg);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let w = Arc::new(Worker::new(
                worker_cfg.clone(),
                source.clone(),
                sink.clone(),
                stack.queue(),
                stack.control(),
            ));
            tokio::spawn(w.run(
                CancellationToken::new(),
                WorkOptions {
                    until_idle: true,
                    ..Default::default()
                },
            ))
        })
        .collect();
    let mut rows = 0;
    for r in runs {
        let s = r.await?;
        ensure!(s.fatal.is_none(), "{s:?}");
        rows += s.rows_copied;
    }
    ensure!(rows == ROWS, "copied {rows} of {ROWS}");
    let c = &proxy.counters;
    let per_second = c.per_second_wcu();
    let requests = c.accepted_write_requests() + c.throttled_requests();
    println!(
        "per second: {:?}; throttled {} of {requests} write requests",
        per_second.iter().map(|w| w.round()).collect::<Vec<_>>(),
        c.throttled_requests()
    );
    // The fleet asked for at most the budget and the proxy's one second of
    // burst: what it was refused is what it asked beyond that.
    ensure!(
        (c.throttled_requests() as f64) < 0.02 * requests as f64,
        "{} of {requests} write requests throttled: the fleet asked for more than the budget",
        c.throttled_requests()
    );
    // The first second of writes, when each worker has seen only part of
    // the fleet, stays within the budget (the proxy's one second of burst
    // would have let up to twice through).
    let first = per_second.iter().copied().find(|w| *w > 0.0).unwrap_or(0.0);
    ensure!(
        first <= BUDGET,
        "the first second of writes took {first:.0} WCU against a budget of {BUDGET}"
    );
    proxy.shutdown().await;
    stack.cleanup().await
}
