//! The tail: a running job hands the rest of its range back as a new job
//! when workers stand idle before an empty queue. In the control table:
//! the child is counted in the run once, the parent's next owner sees where
//! it ends and which children it has, and a worker that lost the job hands
//! nothing back. End to end: two workers, one job, every row copied once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_control::{Claim, ControlError, HandedBack, RunState};
use backfill_job::{JobMessage, KeyRange, KeyTuple, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

fn k(i: i64) -> KeyTuple {
    vec![KeyValue::Int(i)]
}

fn child_of(parent: &JobMessage, split: i64, cuts: Vec<KeyTuple>) -> JobMessage {
    JobMessage::new(
        &parent.run_id,
        &parent.table,
        parent.key_columns.clone(),
        KeyRange {
            lo: Some(k(split)),
            hi: parent.range.hi.clone(),
        },
    )
    .with_cuts(cuts)
}

#[tokio::test]
async fn a_hand_back_is_counted_once_seen_by_the_next_owner_and_refused_to_a_lost_owner(
) -> Result<()> {
    let stack = TestStack::new("handback_ctl").await?;
    let control = stack.control();
    let parent = JobMessage::new("r", "public.t", vec!["id".into()], KeyRange::all())
        .with_cuts(vec![k(-10), k(0), k(10), k(20)]);
    stack.plan_jobs("r", std::slice::from_ref(&parent)).await?;
    ensure!(matches!(
        control.claim(&parent, "w1").await?,
        Claim::Started { handed_back, .. } if handed_back == HandedBack::default()
    ));

    let child = child_of(&parent, 10, vec![k(20)]);
    control.hand_back(&parent, "w1", &k(10), &child).await?;
    // A second try of the same hand-back (a retry after a lost answer) counts nothing twice.
    control.hand_back(&parent, "w1", &k(10), &child).await?;
    let run = control.get_run("r").await?.expect("run");
    assert_eq!(run.jobs_planned, 2, "{run:?}");
    let rec = control
        .job("r", &child.job_id)
        .await?
        .expect("child record");
    assert_eq!(rec.state, backfill_control::JobState::Planned);
    assert_eq!(rec.job, child);

    // The parent's next owner (a redelivery) ends it at the split and
    // learns its children, and adopting them counts nothing again.
    let Claim::Started { handed_back, .. } = control.claim(&parent, "w2").await? else {
        anyhow::bail!("the parent should be claimable");
    };
    assert_eq!(
        handed_back,
        HandedBack {
            hi: Some(k(10)),
            children: vec![child.job_id.clone()],
        }
    );
    let unsent = control
        .adopt_children(&parent, &handed_back.children)
        .await?;
    assert_eq!(unsent, vec![child.clone()]);
    assert_eq!(control.get_run("r").await?.expect("run").jobs_planned, 2);

    // The first owner lost the job: its hand-back is refused and leaves no record.
    let late = child_of(&parent, 0, vec![]);
    let e = control
        .hand_back(&parent, "w1", &k(0), &late)
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::Superseded { .. }), "{e}");
    assert!(control.job("r", &late.job_id).await?.is_none());
    assert_eq!(control.get_run("r").await?.expect("run").jobs_planned, 2);

    // The run finishes with its last job, the child, not before.
    control.finish(&parent, 10, "00", 0).await?;
    assert_eq!(
        control.get_run("r").await?.expect("run").state,
        RunState::Planned
    );
    ensure!(matches!(
        control.claim(&child, "w3").await?,
        Claim::Started { .. }
    ));
    control.finish(&child, 5, "00", 0).await?;
    let run = control.get_run("r").await?.expect("run");
    assert_eq!((run.state, run.rows_copied), (RunState::Finished, 15));
    stack.cleanup().await
}

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

#[tokio::test]
async fn an_idle_worker_takes_the_rest_of_a_long_job_and_every_row_is_copied_once() -> Result<()> {
    let stack = TestStack::new("handback_e2e").await?;
    let src = stack.source("events");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g * 7 - 9000, 'row ' || g || ' \"é\" \t' FROM generate_series(1, 3000) g; \
             ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("events");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    // About six seconds for one worker: long enough for the tail to show.
    t.write_budget_wcu = Some(500.0);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 1_000_000;
    cfg.worker.page_rows = 100;
    cfg.worker.hand_back_secs = 1;
    cfg.queue.wait_time_secs = 1;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    assert_eq!(
        report.jobs_total, 1,
        "one job, so only a hand-back can share it"
    );

    let cancel = CancellationToken::new();
    let run = |w: Arc<Worker>| {
        let cancel = cancel.clone();
        tokio::spawn(async move { w.run(cancel, WorkOptions::default()).await })
    };
    let a = run(worker(&stack, &cfg).await?);
    let b = run(worker(&stack, &cfg).await?);
    let started = Instant::now();
    let finished = loop {
        let r = stack.control().get_run("r").await?.expect("run");
        if r.state == RunState::Finished || started.elapsed() > Duration::from_secs(90) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cancel.cancel();
    let (a, b): (WorkSummary, WorkSummary) = (a.await?, b.await?);
    assert_eq!(finished.state, RunState::Finished, "{finished:?}");
    let jobs = stack.control().jobs("r").await?;
    assert!(jobs.len() >= 2, "the job was never handed back: {jobs:?}");
    assert_eq!(finished.jobs_planned, jobs.len() as u64);
    assert_eq!(finished.rows_copied, 3000, "{finished:?}");
    assert!(
        a.rows_copied > 0 && b.rows_copied > 0,
        "both workers copied: {a:?} {b:?}"
    );
    assert_eq!(a.rows_copied + b.rows_copied, 3000, "{a:?} {b:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 3000);
    stack.cleanup().await
}

#[tokio::test]
async fn a_worker_killed_after_handing_back_loses_no_row() -> Result<()> {
    let stack = TestStack::new("handback_kill").await?;
    let src = stack.source("events");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 100) g;"
        ))
        .await?;
    let target = stack.target("events");
    stack.create_target(&target, ("id", T::N), None).await?;
    let cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    let parent = JobMessage::new("r", &src, vec!["id".into()], KeyRange::all()).with_cuts(vec![
        k(25),
        k(50),
        k(75),
    ]);
    stack.plan_jobs("r", std::slice::from_ref(&parent)).await?;
    // A worker claims the job, hands [50, +inf) back and dies before the
    // child reaches the queue; the parent's message comes back.
    let control = stack.control();
    control.claim(&parent, "dead").await?;
    let child = child_of(&parent, 50, vec![k(75)]);
    control.hand_back(&parent, "dead", &k(50), &child).await?;
    stack
        .queue()
        .send_jobs(std::slice::from_ref(&parent))
        .await?;

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
    assert_eq!(summary.rows_copied, 100, "{summary:?}");
    let run = control.get_run("r").await?.expect("run");
    assert_eq!(
        (run.state, run.jobs_done, run.rows_copied),
        (RunState::Finished, 2, 100),
        "{run:?}"
    );
    let jobs = control.jobs("r").await?;
    let rows = |id: &str| jobs.iter().find(|j| j.job.job_id == id).map(|j| j.rows);
    assert_eq!(rows(&parent.job_id), Some(49), "{jobs:?}");
    assert_eq!(rows(&child.job_id), Some(51), "{jobs:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 100);
    stack.cleanup().await
}
