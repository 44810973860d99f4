//! A run's life in the control table: finished when its last job is done,
//! cancelled on demand (workers then drop its jobs), and `status` reading
//! where it stands, against the real Postgres and the emulators.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_control::{JobState, RunState};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

async fn worker(stack: &TestStack, cfg: &BackfillConfig) -> Result<Arc<Worker>> {
    let source = PgSource::connect(cfg.source.url.expose(), 4).await?;
    Ok(Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        stack.queue(),
        stack.control(),
    )))
}

async fn seeded(stack: &TestStack, name: &str, rows: u32) -> Result<(String, String)> {
    let src = stack.source(name);
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, body text NOT NULL); \
             INSERT INTO {src} SELECT g, repeat('x', 100) FROM generate_series(1, {rows}) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target(name);
    stack.create_target(&target, ("id", T::N), None).await?;
    Ok((src, target))
}

#[tokio::test]
async fn the_last_job_marks_the_run_finished_and_status_says_so() -> Result<()> {
    let stack = TestStack::new("rs_fin").await?;
    let (src, target) = seeded(&stack, "t", 1200).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 200;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let control = stack.control();
    let report = backfill_producer::produce(&cfg, &source, &stack.queue(), &control, "r").await?;
    let run = control.get_run("r").await?.expect("run stored");
    assert_eq!(run.state, RunState::Produced);
    assert_eq!(run.tables.len(), 1);
    assert_eq!(run.tables[0].source, src);
    assert_eq!(run.tables[0].jobs as usize, report.jobs_total);
    let snapshot = run.config.expect("config snapshot stored");
    // Stored as JSON that reads back as the config it was.
    let json: serde_json::Value = serde_json::from_str(&snapshot)?;
    assert_eq!(json["tables"][0]["target"], target.as_str(), "{snapshot}");
    assert_eq!(json["producer"]["rows_per_job"], 200, "{snapshot}");
    assert!(
        json["source"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("***")),
        "{snapshot}"
    );
    assert!(
        !snapshot.contains("postgres:postgres@"),
        "the snapshot never holds the source password: {snapshot}"
    );

    let summary = worker(&stack, &cfg)
        .await?
        .run(
            CancellationToken::new(),
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(summary.rows_copied, 1200);

    let run = control.get_run("r").await?.expect("run stored");
    assert_eq!(run.state, RunState::Finished);
    assert!(run.started_at.is_some());
    assert!(run.finished_at.is_some());
    assert_eq!(run.jobs_done, run.jobs_planned);
    assert_eq!(run.rows_copied, 1200);

    // Producing a finished run again enqueues nothing and does not reopen it.
    let again = backfill_producer::produce(&cfg, &source, &stack.queue(), &control, "r").await?;
    assert_eq!(again.enqueued, 0);
    assert_eq!(
        control.get_run("r").await?.expect("run").state,
        RunState::Finished
    );

    let status = backfill_status::gather(
        &cfg,
        &control,
        stack.sink().client(),
        Some(&stack.queue()),
        None,
    )
    .await?;
    assert_eq!(status.run_id, "r", "the newest run by default");
    assert!(status.is_over());
    assert_eq!(status.jobs.done as usize, report.jobs_total);
    assert_eq!(status.rows_copied, 1200);
    assert_eq!(status.eta_secs, Some(0.0));
    assert!(status.tables[0].rows_per_sec.is_some_and(|r| r > 0.0));
    stack.cleanup().await
}

#[tokio::test]
async fn cancel_stops_a_run_and_its_queue_drains() -> Result<()> {
    let stack = TestStack::new("rs_cancel").await?;
    let (src, target) = seeded(&stack, "t", 3000).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    // A slow copy: 100 WCU/s for 3000 one-WCU items is 30 s, so the run is
    // still going when it is cancelled.
    t.write_budget_wcu = Some(100.0);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 300;
    cfg.worker.page_rows = 50;
    cfg.worker.concurrency = 2;
    cfg.capacity.heartbeat_secs = 1;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let control = stack.control();
    let report = backfill_producer::produce(&cfg, &source, &stack.queue(), &control, "r").await?;
    assert!(report.jobs_total >= 8, "{report:?}");

    let w = worker(&stack, &cfg).await?;
    let stop = CancellationToken::new();
    let running = tokio::spawn(w.clone().run(stop.clone(), WorkOptions::default()));

    // Wait for the first finished job, then read status mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = control.jobs("r").await?;
        if jobs.iter().any(|j| j.state == JobState::Done) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no job finished in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mid = backfill_status::gather(
        &cfg,
        &control,
        stack.sink().client(),
        Some(&stack.queue()),
        Some("r"),
    )
    .await?;
    let tm = &mid.tables[0];
    assert!(!mid.is_over());
    assert!(tm.jobs.done >= 1 && tm.jobs.done < tm.jobs.total, "{tm:?}");
    assert!(tm.rows_copied >= 300, "{tm:?}");
    assert_eq!(tm.budget_wcu, Some(100.0));
    assert!(
        tm.wcu_per_sec > 0.0 && tm.wcu_per_sec <= 150.0,
        "the heartbeats report the fleet writing within its budget: {tm:?}"
    );
    assert!(tm.eta_secs.is_some_and(|e| e > 0.0), "{tm:?}");
    assert_eq!(mid.workers_live, 1);

    let cancelled = control.cancel_run("r", "tester", "wrong table").await?;
    assert!(cancelled >= 1);

    // The worker drops the cancelled jobs: the queue empties long before the
    // 30 s the copy would have taken.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = stack.queue().depth().await?;
        if d.total() == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "queue still holds {d:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.cancel();
    let summary = running.await?;
    assert!(summary.jobs_cancelled >= 1, "{summary:?}");

    let run = control.get_run("r").await?.expect("run");
    assert_eq!(run.state, RunState::Cancelled);
    let note = run.cancelled.expect("who cancelled is recorded");
    assert_eq!(
        (note.by.as_str(), note.why.as_str()),
        ("tester", "wrong table")
    );
    let jobs = control.jobs("r").await?;
    assert!(
        jobs.iter()
            .all(|j| matches!(j.state, JobState::Done | JobState::Cancelled)),
        "no job is left running or queued: {:?}",
        jobs.iter().map(|j| j.state).collect::<Vec<_>>()
    );
    let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
    assert!(done < jobs.len(), "the run stopped before its end");
    let items = stack.sink().count_items(&target).await?;
    assert!(items < 3000, "{items} items: the copy went on after cancel");

    // A cancelled run is not produced again.
    let err = backfill_producer::produce(&cfg, &source, &stack.queue(), &control, "r")
        .await
        .expect_err("a cancelled run is refused");
    assert!(err.to_string().contains("cancelled by tester"), "{err}");
    let status =
        backfill_status::gather(&cfg, &control, stack.sink().client(), None, Some("r")).await?;
    assert!(status.is_over());
    assert_eq!(status.jobs.cancelled as usize, jobs.len() - done);
    stack.cleanup().await
}

#[tokio::test]
async fn status_of_an_unknown_run_names_it() -> Result<()> {
    let stack = TestStack::new("rs_none").await?;
    let cfg = stack.config(vec![]);
    let err = backfill_status::gather(&cfg, &stack.control(), stack.sink().client(), None, None)
        .await
        .expect_err("no run yet");
    assert!(err.to_string().contains("holds no run"), "{err}");
    let err = backfill_status::gather(
        &cfg,
        &stack.control(),
        stack.sink().client(),
        None,
        Some("nope"),
    )
    .await
    .expect_err("no such run");
    assert!(err.to_string().contains("no run nope"), "{err}");
    let err = stack
        .control()
        .cancel_run("nope", "tester", "why")
        .await
        .expect_err("no such run");
    assert!(err.to_string().contains("run nope does not exist"), "{err}");
    stack.cleanup().await
}
