//! Capacity benchmark (run by `scripts/bench.sh`): workers copy a table
//! through the capacity-enforcing proxy in front of dynalite, under one
//! fleet budget, and the figures are printed: achieved WCU/s against the
//! budget, the share of write requests throttled, source rows against
//! target items. Scenarios: 1, 2 and 4 workers, and a run in which a worker
//! joins and one leaves midway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_ddb_proxy::{start, Mode, ProxyConfig};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BUDGET: f64 = 1000.0;

struct Scenario {
    name: &'static str,
    workers: usize,
    rows: u64,
    /// (seconds after start, +1 join / -1 leave)
    changes: Vec<(u64, i32)>,
}

async fn run(s: &Scenario) -> Result<()> {
    let stack = TestStack::new("bench").await?;
    let src = stack.source("t");
    // About 900 bytes an item: one WCU each.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, pad text); \
             INSERT INTO {src} SELECT g, repeat('x', 900) FROM generate_series(1, {}) g; ANALYZE {src};",
            s.rows
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let proxy = start(ProxyConfig {
        burst_secs: 300.0,
        mode: Mode::Forward,
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), BUDGET)
    })
    .await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.write_budget_wcu = Some(BUDGET);
    let mut cfg = stack.config(vec![t]);
    cfg.aws.dynamodb_endpoint_url = Some(proxy.url.clone());
    cfg.producer.rows_per_job = 500;
    cfg.worker.page_rows = 100;
    cfg.worker.verify_sample_rate = 0.0;
    cfg.worker.shutdown_grace_secs = 10;
    cfg.capacity.heartbeat_secs = 1;
    cfg.capacity.worker_expiry_secs = 3;
    let source = PgSource::connect(cfg.source.url.expose(), 8).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "bench").await?;

    // Workers write through the proxy; the control table stays on dynalite.
    let aws = backfill_aws::AwsClients::with_static_credentials(
        &cfg.aws,
        backfill_aws::StaticCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        },
    )
    .await;
    let sink = backfill_dynamo::DynamoSink::new(aws.dynamodb.clone(), Default::default());
    let spawn = |cancel: CancellationToken| -> JoinHandle<WorkSummary> {
        let w = Arc::new(Worker::new(
            Arc::new(cfg.clone()),
            source.clone(),
            sink.clone(),
            stack.queue(),
            stack.control(),
        ));
        tokio::spawn(w.run(
            cancel,
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        ))
    };
    let mut running: Vec<(CancellationToken, JoinHandle<WorkSummary>)> = (0..s.workers)
        .map(|_| {
            let c = CancellationToken::new();
            (c.clone(), spawn(c))
        })
        .collect();
    let start_at = Instant::now();
    let mut first_write: Option<Instant> = None;
    let mut changes = s.changes.iter().peekable();
    let mut stopped = Vec::new();
    let counters = proxy.counters.clone();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if first_write.is_none() && counters.accepted_wcu() > 0.0 {
            first_write = Some(Instant::now());
        }
        if let Some((at, change)) = changes.peek() {
            if start_at.elapsed() >= Duration::from_secs(*at) {
                if *change > 0 {
                    let c = CancellationToken::new();
                    running.push((c.clone(), spawn(c)));
                    println!(
                        "  t={:>4.1}s a worker joins ({} running)",
                        start_at.elapsed().as_secs_f64(),
                        running.len()
                    );
                } else if let Some((c, h)) = running.pop() {
                    c.cancel();
                    stopped.push(h);
                    println!(
                        "  t={:>4.1}s a worker leaves ({} running)",
                        start_at.elapsed().as_secs_f64(),
                        running.len()
                    );
                }
                changes.next();
            }
        }
        if counters.accepted_items() >= s.rows || running.iter().all(|(_, h)| h.is_finished()) {
            break;
        }
    }
    let last_write = Instant::now();
    for (_, h) in running {
        h.await?;
    }
    for h in stopped {
        h.await?;
    }
    let window = last_write
        .duration_since(first_write.unwrap_or(start_at))
        .as_secs_f64();
    let accepted = counters.accepted_wcu();
    let requests = counters.accepted_write_requests() + counters.throttled_requests();
    let throttled_share = counters.throttled_requests() as f64 / requests.max(1) as f64;
    let items = stack.sink().count_items(&target).await?;
    println!(
        "{:<24} workers {:<6} {:>7.0} WCU in {:>5.1} s = {:>6.0} WCU/s = {:.3} of budget; throttled {:.2}% of {} write requests; source rows {} / target items {}{}",
        s.name,
        s.workers,
        accepted,
        window,
        accepted / window,
        accepted / window / BUDGET,
        throttled_share * 100.0,
        requests,
        s.rows,
        items,
        if items == s.rows { "" } else { "  MISMATCH" }
    );
    proxy.shutdown().await;
    stack.cleanup().await
}

#[tokio::main]
async fn main() -> Result<()> {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rows = (BUDGET as u64) * secs;
    println!("budget {BUDGET} WCU/s, ~{secs} s of writes per scenario, items of ~0.9 KB (1 WCU)");
    let scenarios = [
        Scenario {
            name: "one worker",
            workers: 1,
            rows,
            changes: vec![],
        },
        Scenario {
            name: "two workers",
            workers: 2,
            rows,
            changes: vec![],
        },
        Scenario {
            name: "four workers",
            workers: 4,
            rows,
            changes: vec![],
        },
        Scenario {
            name: "join then leave",
            workers: 2,
            rows,
            changes: vec![(secs / 3, 1), (2 * secs / 3, -1)],
        },
    ];
    for s in &scenarios {
        run(s).await?;
    }
    Ok(())
}
