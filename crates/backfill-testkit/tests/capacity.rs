//! The fleet's write budget against the real emulator: workers divide the
//! budget by the live workers (heartbeats in the control table), and the
//! fleet's writes stay at the budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_source::PgSource;
use backfill_testkit::{eventually, table, TestStack};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn two_workers_share_the_budget_and_stay_under_it() -> Result<()> {
    let stack = TestStack::new("budget").await?;
    let src = stack.source("t");
    // Each item is about 0.9 KB: one WCU.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, pad text); \
             INSERT INTO {src} SELECT g, repeat('x', 900) FROM generate_series(1, 2400) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    const BUDGET: f64 = 400.0;
    t.write_budget_wcu = Some(BUDGET);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 200;
    cfg.worker.page_rows = 100;
    cfg.worker.verify_sample_rate = 0.0;
    cfg.capacity.heartbeat_secs = 1;
    cfg.capacity.worker_expiry_secs = 3;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;

    let workers: Vec<Arc<Worker>> = vec![
        Arc::new(Worker::new(
            Arc::new(cfg.clone()),
            source.clone(),
            stack.sink(),
            stack.queue(),
            stack.control(),
        )),
        Arc::new(Worker::new(
            Arc::new(cfg.clone()),
            source.clone(),
            stack.sink(),
            stack.queue(),
            stack.control(),
        )),
    ];
    let start = Instant::now();
    let runs: Vec<_> = workers
        .iter()
        .map(|w| {
            tokio::spawn(w.clone().run(
                CancellationToken::new(),
                WorkOptions {
                    until_idle: true,
                    ..Default::default()
                },
            ))
        })
        .collect();
    // Once both have heartbeated, each takes half of the budget.
    let rates = || {
        workers
            .iter()
            .map(|w| w.write_rate(&target))
            .collect::<Vec<_>>()
    };
    let halves = eventually(Duration::from_secs(10), || {
        rates().iter().all(|r| *r == Some(BUDGET / 2.0))
    })
    .await;
    assert!(halves, "two workers, not half each: {:?}", rates());
    let mut rows = 0;
    for r in runs {
        let s = r.await?;
        assert!(s.fatal.is_none(), "{s:?}");
        rows += s.rows_copied;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(rows, 2400);
    assert_eq!(stack.sink().count_items(&target).await?, 2400);
    // 2,400 WCU at 400 WCU/s, less each worker's first second of burst.
    let floor = (2400.0 - BUDGET) / BUDGET;
    assert!(
        secs >= floor,
        "copied 2400 WCU in {secs:.1}s, faster than the budget allows ({floor:.1}s)"
    );
    println!(
        "2400 WCU in {secs:.1}s: {:.0} WCU/s against a budget of {BUDGET}",
        2400.0 / secs
    );
    stack.cleanup().await
}

#[tokio::test]
async fn a_stopped_worker_hands_its_share_to_the_others() -> Result<()> {
    let stack = TestStack::new("share").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} VALUES (1);"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.write_budget_wcu = Some(900.0);
    let mut cfg = stack.config(vec![t]);
    cfg.capacity.heartbeat_secs = 1;
    cfg.capacity.worker_expiry_secs = 3;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let mk = || {
        Arc::new(Worker::new(
            Arc::new(cfg.clone()),
            source.clone(),
            stack.sink(),
            stack.queue(),
            stack.control(),
        ))
    };
    let (a, b, c) = (mk(), mk(), mk());
    let stop_c = CancellationToken::new();
    let ra = tokio::spawn(a.clone().run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: false,
            ..Default::default()
        },
    ));
    let rb = tokio::spawn(b.clone().run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: false,
            ..Default::default()
        },
    ));
    let rc = tokio::spawn(c.clone().run(
        stop_c.clone(),
        WorkOptions {
            until_idle: false,
            ..Default::default()
        },
    ));
    let thirds = eventually(Duration::from_secs(10), || {
        a.write_share(&target) == Some(300.0)
    })
    .await;
    assert!(
        thirds,
        "three workers, not a third each: {:?}",
        a.write_share(&target)
    );
    stop_c.cancel();
    rc.await?;
    // Scale-in: within a heartbeat or two the others take the freed share.
    // (Shares, not rates: these workers never write, so their limiters
    // stay at the join ramp's start.)
    let halves = eventually(Duration::from_secs(10), || {
        a.write_share(&target) == Some(450.0) && b.write_share(&target) == Some(450.0)
    })
    .await;
    assert!(
        halves,
        "after one left: {:?} and {:?}",
        a.write_share(&target),
        b.write_share(&target)
    );
    ra.abort();
    rb.abort();
    stack.cleanup().await
}

#[tokio::test]
async fn workers_pause_while_the_source_is_over_its_threshold() -> Result<()> {
    let stack = TestStack::new("gate").await?;
    let src = stack.source("t");
    let gauge = stack.source("lag");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 300); \
             CREATE TABLE {gauge} (seconds float8); INSERT INTO {gauge} VALUES (30);"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    // The "replica lag" is 30 s; reading is allowed at 5 s or less.
    cfg.source.pause_query = Some(format!("SELECT seconds FROM {gauge}"));
    cfg.source.pause_above = Some(5.0);
    cfg.source.pause_check_secs = 1;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let w = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        stack.queue(),
        stack.control(),
    ));
    let run = tokio::spawn(w.run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.sink().count_items(&target).await?,
        0,
        "nothing is read while the source lags"
    );
    stack
        .sql(&format!("UPDATE {gauge} SET seconds = 1"))
        .await?;
    let summary = tokio::time::timeout(Duration::from_secs(60), run).await??;
    assert_eq!(summary.rows_copied, 300, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 300);
    stack.cleanup().await
}
