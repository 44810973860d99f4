//! Rows whose item would exceed 400 KB take the configured path: a clear
//! failure naming the key, or S3 with a pointer item.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_config::{BackfillConfig, OffloadConfig, Oversize};
use backfill_offload::S3Offloader;
use backfill_source::PgSource;
use backfill_testkit::{table, unique, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

async fn setup(stack: &TestStack) -> Result<(String, String)> {
    let src = stack.source("big");
    // Row 5 is about 600 KB; the others are small.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, body text); \
             INSERT INTO {src} SELECT g, CASE WHEN g = 5 THEN repeat('x', 600000) ELSE 'small' END \
             FROM generate_series(1, 20) g;"
        ))
        .await?;
    let target = stack.target("big");
    stack.create_target(&target, ("id", T::N), None).await?;
    Ok((src, target))
}

async fn offloader(stack: &TestStack, cfg: &BackfillConfig) -> Result<S3Offloader> {
    let o = cfg.offload.as_ref().expect("offload configured");
    // The stack's clients are built as production builds them.
    let client = stack.aws.s3.clone();
    let off = S3Offloader::new(client, &o.bucket, &o.prefix);
    off.ensure_bucket().await?;
    let _ = stack;
    Ok(off)
}

async fn run(
    stack: &TestStack,
    cfg: &BackfillConfig,
    off: Option<S3Offloader>,
) -> Result<WorkSummary> {
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let mut w = Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        stack.queue(),
        stack.control(),
    );
    if let Some(o) = off {
        w = w.with_offloader(o);
    }
    Ok(Arc::new(w)
        .run(
            CancellationToken::new(),
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        )
        .await)
}

/// Without an S3 offloader the row is a reject: the job writes every other
/// row and records the reject naming the key, instead of failing whole.
#[tokio::test]
async fn an_oversized_row_is_a_reject_naming_the_key() -> Result<()> {
    let stack = TestStack::new("oversize_fail").await?;
    let (src, target) = setup(&stack).await?;
    let t = table(src.clone(), target.clone(), &["id"], None);
    let cfg = stack.config(vec![t.clone()]);
    let summary = run(&stack, &cfg, None).await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (19, 0),
        "{summary:?}"
    );
    assert_eq!(stack.sink().count_items(&target).await?, 19);
    let jobs = stack.control().jobs("r").await?;
    assert_eq!(jobs[0].state_label(), "done_with_rejects");
    let rejects = stack.control().rejects("r").await?;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].key_display(), "(5)");
    let reason = &rejects[0].problems[0].reason;
    assert!(
        reason.contains(&format!("table {src}, key (5)")) && reason.contains("400 KB"),
        "{reason}"
    );
    // verify names it as unmappable, not as missing.
    let v = Verifier::new(
        PgSource::connect(&stack.env.pg_url, 2).await?,
        stack.sink(),
        VerifyOptions::default(),
    );
    let report = v.verify_table(&t).await?;
    assert_eq!(
        (report.unmappable_count, report.missing_count),
        (1, 0),
        "{report:#?}"
    );
    assert_eq!(report.unmappable[0].0, "(5)");
    stack.cleanup().await
}

#[tokio::test]
async fn an_oversized_row_goes_to_s3_with_a_pointer() -> Result<()> {
    let stack = TestStack::new("oversize_s3").await?;
    let (src, target) = setup(&stack).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.oversize = Oversize::S3;
    let mut cfg = stack.config(vec![t.clone()]);
    cfg.offload = Some(OffloadConfig {
        bucket: unique("bucket").replace('_', "-"),
        prefix: "backfill/".into(),
    });
    let off = offloader(&stack, &cfg).await?;
    let summary = run(&stack, &cfg, Some(off.clone())).await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (20, 0),
        "{summary:?}"
    );
    let pointer = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&target)
        .key("id", A::N("5".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .expect("the pointer item");
    assert!(
        backfill_offload::is_pointer(&pointer),
        "{:?}",
        pointer.keys()
    );
    assert!(!pointer.contains_key("body"));
    let full = off.fetch(&pointer).await?;
    assert_eq!(full["body"].as_s().unwrap().len(), 600_000);
    // verify resolves the pointer and finds the table clean.
    let v = Verifier::new(
        PgSource::connect(&stack.env.pg_url, 2).await?,
        stack.sink(),
        VerifyOptions::default(),
    )
    .with_offloader(off);
    let report = v.verify_table(&t).await?;
    assert!(report.is_clean(), "{report:#?}");
    stack.cleanup().await
}
