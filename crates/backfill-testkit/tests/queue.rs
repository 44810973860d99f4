//! The job queue against the SQS emulator: redrive to the DLQ, visibility,
//! and a heartbeat that keeps a long job from a second worker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_job::{JobMessage, KeyRange};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sqs_redrives_to_the_dlq_after_max_receive_count() -> Result<()> {
    let stack = TestStack::with_receive_count("redrive", 2).await?;
    let q = stack.queue();
    q.send_raw(&stack.queue_url, vec!["poison".into()]).await?;
    for _ in 0..2 {
        let got = q.receive(1, 1, 1).await?;
        assert_eq!(got.len(), 1);
        q.set_visibility(&got[0].receipt_handle, 0).await?;
    }
    // The third receive finds the message moved to the DLQ.
    let got = q.receive(1, 1, 1).await?;
    assert!(got.is_empty());
    assert_eq!(q.depth_of(&stack.dlq_url).await?.visible, 1);
    stack.cleanup().await
}

#[tokio::test]
async fn received_messages_carry_their_receive_count() -> Result<()> {
    let stack = TestStack::new("count").await?;
    let q = stack.queue();
    q.send_raw(&stack.queue_url, vec!["a".into()]).await?;
    let first = q.receive(1, 1, 30).await?;
    assert_eq!(first[0].receive_count, 1);
    q.set_visibility(&first[0].receipt_handle, 0).await?;
    let second = q.receive(1, 1, 30).await?;
    assert_eq!(second[0].receive_count, 2);
    q.delete(&second[0].receipt_handle).await?;
    assert_eq!(q.depth().await?.total(), 0);
    stack.cleanup().await
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_job_from_other_workers() -> Result<()> {
    let stack = TestStack::new("heartbeat").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, repeat('x', 2000) FROM generate_series(1, 4000) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    // The job takes several visibility timeouts to copy.
    cfg.queue.visibility_timeout_secs = 2;
    cfg.worker.page_rows = 20;
    cfg.worker.write_concurrency = 1;
    let job = JobMessage::new("run", &src, vec!["id".into()], KeyRange::all());
    stack.plan_jobs("run", std::slice::from_ref(&job)).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;

    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let source = PgSource::connect(&stack.env.pg_url, 2).await?;
        let w = Arc::new(Worker::new(
            Arc::new(cfg.clone()),
            source,
            stack.sink(),
            stack.queue(),
            stack.control(),
        ));
        handles.push(tokio::spawn(w.run(
            CancellationToken::new(),
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        )));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut done = 0;
    for h in handles {
        let s = h.await?;
        done += s.jobs_done;
        assert_eq!(s.jobs_duplicate, 0, "{s:?}");
        assert_eq!(s.jobs_released, 0, "{s:?}");
    }
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the job was too short to need a heartbeat"
    );
    assert_eq!(done, 1);
    let rec = stack.control().jobs("run").await?;
    assert_eq!(rec[0].attempts, 1, "the job was taken twice");
    assert_eq!(stack.sink().count_items(&target).await?, 4000);
    stack.cleanup().await
}

/// A job's heartbeat dies with the job: when the task holding a message
/// panics, the message is no longer kept hidden and comes back within one
/// visibility timeout (a detached heartbeat would hide it for as long as
/// the process lives).
#[tokio::test]
async fn a_panicked_job_lets_its_message_return_within_the_visibility_timeout() -> Result<()> {
    use backfill_worker::VisibilityHeartbeat;

    let stack = TestStack::new("panic-beat").await?;
    let q = stack.queue();
    q.send_raw(&stack.queue_url, vec!["job".into()]).await?;
    let visibility = 2u32;
    let got = q.receive(1, 1, visibility as i32).await?;
    anyhow::ensure!(got.len() == 1, "the message was not received");
    let (queue, receipt) = (q.clone(), got[0].receipt_handle.clone());
    let job = tokio::spawn(async move {
        let _beat = VisibilityHeartbeat::start(queue, receipt, visibility);
        // Long enough for the heartbeat to have extended the message once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        panic!("a job that panics mid-copy");
    });
    let panicked = job.await.expect_err("the job panics");
    anyhow::ensure!(panicked.is_panic(), "{panicked}");
    let died = std::time::Instant::now();
    // The last extension (at ~0.67 s intervals) hid it for 2 s from then.
    let mut back = None;
    while died.elapsed() < Duration::from_secs(6) {
        if let Some(m) = q.receive(1, 1, 30).await?.into_iter().next() {
            back = Some(m);
            break;
        }
    }
    let m = back.ok_or_else(|| {
        anyhow::anyhow!("the message was still hidden 6 s after its job panicked")
    })?;
    anyhow::ensure!(m.receive_count == 2, "receive count {}", m.receive_count);
    anyhow::ensure!(
        died.elapsed() <= Duration::from_secs(u64::from(visibility) + 2),
        "came back only after {:?}",
        died.elapsed()
    );
    stack.cleanup().await
}
