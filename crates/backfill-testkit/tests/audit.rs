//! The dual-write audit: recently changed rows compared with their items;
//! a difference still settling (a write in flight) is re-checked, not reported.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn audit_since_reports_only_differences_that_persist() -> Result<()> {
    let stack = TestStack::new("audit").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text, version bigint NOT NULL); \
             INSERT INTO {src} SELECT g, 'v' || g, 1 FROM generate_series(1, 400) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.version_column = Some("version".into());
    let cfg = stack.config(vec![t.clone()]);
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source.clone(),
        stack.sink(),
        stack.queue(),
        stack.control(),
    ))
    .run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    )
    .await;
    let verifier = Verifier::new(source, stack.sink(), VerifyOptions::default());
    let sampled = verifier
        .audit(&t, Some(50.0), None, 10_000, Duration::from_millis(100))
        .await?;
    assert!(sampled.is_clean(), "{sampled:#?}");
    assert!(
        sampled.rows_checked > 100 && sampled.rows_checked < 300,
        "{}",
        sampled.rows_checked
    );

    // The application changes row 7 in Postgres but its DynamoDB write is lost;
    // row 8 changes and its DynamoDB write lands while the audit runs.
    stack.sql(&format!("UPDATE {src} SET v = 'lost', version = 2 WHERE id = 7; UPDATE {src} SET v = 'late', version = 2 WHERE id = 8;")).await?;
    let late_write = {
        let ddb = stack.aws.dynamodb.clone();
        let target = target.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ddb.put_item()
                .table_name(&target)
                .item("id", A::N("8".into()))
                .item("v", A::S("late".into()))
                .item("version", A::N("2".into()))
                .send()
                .await
        })
    };
    let report = verifier
        .audit(&t, None, Some("2"), 10_000, Duration::from_secs(1))
        .await?;
    late_write.await??;
    assert_eq!(report.rows_checked, 2);
    // Row 7's item still holds version 1: an item older than its row is a difference.
    assert_eq!(
        report.different_count + report.missing_count,
        1,
        "{report:#?}"
    );
    assert_eq!(report.different[0].0, "id=7");
    stack.cleanup().await
}
