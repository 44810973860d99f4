//! The DLQ tools against the real stack: dead jobs listed with their last
//! error, replayed after a fix (filtered, rate-limited, audited) and
//! completed by a worker, dry runs that change nothing, purges.

use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_control::{AuditAction, JobState};
use backfill_dlq::{
    Dlq, ErrorSource, Filter, PurgeOptions, PurgeOutcome, ReplayOptions, ReplayOutcome,
};
use backfill_job::JobMessage;
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

const RUN: &str = "r1";

fn dlq(stack: &TestStack) -> Dlq {
    Dlq::new(stack.queue(), stack.control()).with_hold_secs(30)
}

async fn work_until_idle(stack: &TestStack, cfg: &BackfillConfig) -> Result<WorkSummary> {
    let source = PgSource::connect(cfg.source.url.expose(), 4).await?;
    let w = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        stack.queue(),
        stack.control(),
    ));
    Ok(w.run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    )
    .await)
}

fn replay_opts(dry_run: bool) -> ReplayOptions {
    ReplayOptions {
        dry_run,
        rate: NonZeroU32::new(20),
        by: "alice".into(),
        why: "INC-42: table a added to the worker config".into(),
    }
}

fn only_table(t: &str) -> Filter {
    Filter {
        table: Some(t.into()),
        ..Filter::default()
    }
}

/// Two tables whose jobs all died: `a` because the worker's config lacks
/// it, `b` because row 55 holds a NaN (no DynamoDB number) and that worker
/// allows no rejects, after its first 40 rows were written and checkpointed.
struct DeadRun {
    /// The config with both tables (the fix for `a`).
    cfg: BackfillConfig,
    src_a: String,
    src_b: String,
    target_a: String,
    target_b: String,
}

async fn two_tables_of_dead_jobs(stack: &TestStack) -> Result<DeadRun> {
    let (src_a, src_b) = (stack.source("a"), stack.source("b"));
    stack
        .sql(&format!(
            "CREATE TABLE {src_a} (id int PRIMARY KEY, v text); \
             INSERT INTO {src_a} SELECT g, 'v' || g FROM generate_series(1, 100) g; \
             CREATE TABLE {src_b} (id int PRIMARY KEY, d float8); \
             INSERT INTO {src_b} SELECT g, CASE WHEN g = 55 THEN 'NaN' ELSE g * 1.5 END FROM generate_series(1, 100) g;"
        ))
        .await?;
    let (target_a, target_b) = (stack.target("a"), stack.target("b"));
    stack.create_target(&target_a, ("id", T::N), None).await?;
    stack.create_target(&target_b, ("id", T::N), None).await?;
    let ta = table(src_a.clone(), target_a.clone(), &["id"], None);
    let tb = table(src_b.clone(), target_b.clone(), &["id"], None);
    let mut cfg = stack.config(vec![ta, tb.clone()]);
    // One job per table, so the checkpoint test below is about one job.
    cfg.producer.rows_per_job = 100_000;
    cfg.worker.page_rows = 20;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), RUN).await?;
    ensure!(report.jobs_total == 2, "one job per table: {report:?}");

    let mut broken = cfg.clone();
    broken.tables = vec![tb];
    // No reject allowed: the NaN row fails its job (as a wrong mapping does).
    broken.worker.reject_allowance = 0;
    broken.worker.max_reject_fraction = 0.0;
    let summary = work_until_idle(stack, &broken).await?;
    ensure!(summary.jobs_dead_lettered == 2, "{summary:?}");
    Ok(DeadRun {
        cfg,
        src_a,
        src_b,
        target_a,
        target_b,
    })
}

async fn job_of(stack: &TestStack, src: &str) -> Result<backfill_control::JobRecord> {
    stack
        .control()
        .jobs(RUN)
        .await?
        .into_iter()
        .find(|j| j.job.table == src)
        .with_context(|| format!("no job for {src}"))
}

#[tokio::test]
async fn replaying_one_tables_dead_jobs_completes_them_and_leaves_the_others() -> Result<()> {
    let stack = TestStack::new("dlq_replay").await?;
    let run = two_tables_of_dead_jobs(&stack).await?;
    let dlq = dlq(&stack);

    let listed = dlq.list(&Filter::default()).await?;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let b = listed
        .iter()
        .find(|d| d.table.as_deref() == Some(run.src_b.as_str()))
        .context("b is listed")?;
    assert_eq!(b.error_source, ErrorSource::MessageAttributes);
    assert!(b.error_text().contains("NaN"), "{b:?}");
    assert_eq!(b.error_kind.as_deref(), Some("permanent"));
    assert_eq!(b.attempts, Some(1));
    assert_eq!(b.job_state.as_deref(), Some("failed"));
    assert_eq!(b.range.as_deref(), Some("[-inf, +inf)"));
    assert!(b.sent_at.is_some(), "{b:?}");
    assert_eq!(job_of(&stack, &run.src_b).await?.checkpoint_rows, 40);

    // The fix for b: the bad value is corrected at the source.
    stack
        .sql(&format!("UPDATE {} SET d = 0 WHERE id = 55", run.src_b))
        .await?;
    let report = dlq.replay(&only_table("b"), &replay_opts(false)).await?;
    assert_eq!(report.walked, 2);
    assert_eq!(report.results.len(), 1, "{:#?}", report.results);
    assert_eq!(report.replayed(), 1, "{:#?}", report.results);
    assert!(matches!(
        report.results[0].1,
        ReplayOutcome::Replayed {
            attempts_before: 1,
            replays: 1,
            dlq_delete_error: None,
            ..
        }
    ));
    let reset = job_of(&stack, &run.src_b).await?;
    assert_eq!(
        (reset.state, reset.attempts, reset.replays),
        (JobState::Queued, 0, 1)
    );
    assert_eq!(reset.checkpoint_rows, 40, "the checkpoint is kept");
    let audit = stack.control().audit(Some(RUN)).await?;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0].action, AuditAction::Replay);
    assert_eq!(audit[0].by, "alice");
    assert!(audit[0].why.contains("INC-42"));
    assert_eq!(audit[0].job_id.as_deref(), Some(reset.job.job_id.as_str()));
    assert!(audit[0].error.as_deref().unwrap_or("").contains("NaN"));
    // Audit records share the run's partition but are not jobs.
    assert_eq!(stack.control().jobs(RUN).await?.len(), 2);

    let summary = work_until_idle(&stack, &run.cfg).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(
        summary.rows_read, 60,
        "the replay resumed after its checkpoint: {summary:?}"
    );
    assert_eq!(stack.sink().count_items(&run.target_b).await?, 100);
    let done = job_of(&stack, &run.src_b).await?;
    assert_eq!((done.state, done.attempts), (JobState::Done, 1));

    // a was not selected: still dead, still in the DLQ, nothing copied.
    let left = dlq.list(&Filter::default()).await?;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].table.as_deref(), Some(run.src_a.as_str()));
    assert_eq!(stack.sink().count_items(&run.target_a).await?, 0);
    assert_eq!(job_of(&stack, &run.src_a).await?.state, JobState::Failed);
    stack.cleanup().await
}

#[tokio::test]
async fn a_dry_run_replays_nothing_and_changes_nothing() -> Result<()> {
    let stack = TestStack::new("dlq_dry").await?;
    let run = two_tables_of_dead_jobs(&stack).await?;
    let before = stack.control().jobs(RUN).await?;

    let report = dlq(&stack)
        .replay(&Filter::default(), &replay_opts(true))
        .await?;
    assert!(report.dry_run);
    assert_eq!(report.results.len(), 2);
    assert!(
        report
            .results
            .iter()
            .all(|(_, o)| *o == ReplayOutcome::WouldReplay),
        "{:#?}",
        report.results
    );
    assert_eq!(report.replayed(), 0);

    // Both messages are still in the DLQ, visible at once, and the job queue is empty.
    assert_eq!(dlq(&stack).list(&Filter::default()).await?.len(), 2);
    assert_eq!(stack.queue().depth().await?.total(), 0);
    let after = stack.control().jobs(RUN).await?;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (a.state, a.attempts, a.replays, &a.updated_at),
            (b.state, b.attempts, b.replays, &b.updated_at),
            "{}",
            a.job.table
        );
        assert_eq!(a.state, JobState::Failed);
    }
    assert!(stack.control().audit(Some(RUN)).await?.is_empty());
    assert_eq!(stack.sink().count_items(&run.target_a).await?, 0);
    stack.cleanup().await
}

#[tokio::test]
async fn a_message_sqs_moved_itself_is_listed_with_the_error_from_the_control_table() -> Result<()>
{
    let stack = TestStack::with_receive_count("dlq_redrive", 2).await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 10);"
        ))
        .await?;
    let mut cfg = stack.config(vec![table(src.clone(), stack.target("t"), &["id"], None)]);
    cfg.producer.rows_per_job = 100_000;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), RUN).await?;

    // Two deliveries fail with a retryable error, as a worker records them,
    // and are handed back; SQS then moves the message without attributes.
    let q = stack.queue();
    for _ in 0..2 {
        let got = q.receive(1, 1, 30).await?;
        assert_eq!(got.len(), 1);
        let job = JobMessage::from_body(&got[0].body)?;
        stack.control().claim(&job, "w1").await?;
        stack
            .control()
            .record_failure(&job, "source unavailable: connection refused", false)
            .await?;
        q.set_visibility(&got[0].receipt_handle, 0).await?;
    }
    assert!(q.receive(1, 1, 30).await?.is_empty());

    let listed = dlq(&stack).list(&Filter::default()).await?;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let d = &listed[0];
    assert_eq!(d.error_source, ErrorSource::ControlTable, "{d:?}");
    assert!(d.error_text().contains("connection refused"), "{d:?}");
    assert!(d.error_at.is_some(), "{d:?}");
    assert_eq!(d.error_kind, None);
    assert_eq!(d.attempts, Some(2));
    assert_eq!(d.run_id.as_deref(), Some(RUN));
    assert_eq!(d.table.as_deref(), Some(src.as_str()));
    assert_eq!(d.receive_count, Some(2), "{d:?}");
    stack.cleanup().await
}

#[tokio::test]
async fn purge_with_a_filter_deletes_only_the_matching_messages_and_audits_each() -> Result<()> {
    let stack = TestStack::new("dlq_purge").await?;
    let run = two_tables_of_dead_jobs(&stack).await?;
    let dlq = dlq(&stack);
    let opts = PurgeOptions {
        by: "bob".into(),
        why: "rows with NaN are dropped by design".into(),
    };
    let filter = Filter {
        error: Some("nan".into()),
        ..Filter::default()
    };
    let report = dlq.purge(&filter, &opts).await?;
    assert_eq!(report.walked, 2);
    assert_eq!(report.purged(), 1, "{:#?}", report.results);
    assert_eq!(
        report.results[0].0.table.as_deref(),
        Some(run.src_b.as_str())
    );
    assert_eq!(report.results[0].1, PurgeOutcome::Purged);

    let left = dlq.list(&Filter::default()).await?;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].table.as_deref(), Some(run.src_a.as_str()));
    let audit = stack.control().audit(Some(RUN)).await?;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0].action, AuditAction::Purge);
    assert_eq!(audit[0].by, "bob");
    assert_eq!(audit[0].why, opts.why);
    assert_eq!(audit[0].table.as_deref(), Some(run.src_b.as_str()));
    assert_eq!(audit[0].message_id, report.results[0].0.message_id);
    assert!(audit[0].error.as_deref().unwrap_or("").contains("NaN"));
    stack.cleanup().await
}

#[tokio::test]
async fn a_malformed_message_is_listed_skipped_by_replay_and_purgeable() -> Result<()> {
    let stack = TestStack::new("dlq_malformed").await?;
    let cfg = stack.config(vec![table(
        stack.source("none"),
        stack.target("none"),
        &["id"],
        None,
    )]);
    stack
        .queue()
        .send_raw(&stack.queue_url, vec!["{this is not a job".into()])
        .await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.jobs_dead_lettered, 1, "{summary:?}");
    let dlq = dlq(&stack);

    let listed = dlq.list(&Filter::default()).await?;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let d = &listed[0];
    assert!(d.job_id.is_none() && d.run_id.is_none(), "{d:?}");
    assert!(d.not_a_job.is_some(), "{d:?}");
    assert_eq!(d.error_kind.as_deref(), Some("malformed_message"));
    assert!(d.error_text().contains("malformed job message"), "{d:?}");
    // A run filter never selects a message that has no run.
    let by_run = Filter {
        run: Some(RUN.into()),
        ..Filter::default()
    };
    assert!(dlq.list(&by_run).await?.is_empty());

    let report = dlq.replay(&Filter::default(), &replay_opts(false)).await?;
    assert_eq!(report.results.len(), 1);
    assert!(
        matches!(report.results[0].1, ReplayOutcome::NotAJob { .. }),
        "{:?}",
        report.results
    );
    assert_eq!(stack.queue().depth().await?.total(), 0, "nothing was sent");
    assert_eq!(dlq.list(&Filter::default()).await?.len(), 1, "still there");

    let opts = PurgeOptions {
        by: "carol".into(),
        why: "garbage".into(),
    };
    let purged = dlq.purge(&Filter::default(), &opts).await?;
    assert_eq!(purged.purged(), 1, "{:?}", purged.results);
    assert!(dlq.list(&Filter::default()).await?.is_empty());
    let audit = stack.control().audit(None).await?;
    let mine: Vec<_> = audit
        .iter()
        .filter(|a| a.message_id == d.message_id)
        .collect();
    assert_eq!(mine.len(), 1, "{audit:#?}");
    assert_eq!(mine[0].action, AuditAction::Purge);
    assert_eq!(mine[0].by, "carol");
    assert!(mine[0].run_id.is_none());
    stack.cleanup().await
}
