//! A verification reads a range while the application keeps writing both
//! stores: a row changed in Postgres whose item follows a moment later is
//! a write in flight, not a difference. Each missing or different row is
//! read again after a pause and reported only if it still differs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_job::KeyRange;
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn rows_the_application_changes_during_verification_are_rechecked() -> Result<()> {
    let stack = TestStack::new("recheck").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 40) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let t = table(src.clone(), target.clone(), &["id"], None);
    let cfg = stack.config(vec![t.clone()]);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let w = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source.clone(),
        stack.sink(),
        stack.queue(),
        stack.control(),
    ));
    let summary = w
        .run(
            CancellationToken::new(),
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(summary.rows_copied, 40, "{summary:?}");

    // The application's dual-write of rows 5 and 9: Postgres now, DynamoDB
    // a second later (row 9's item deleted, then written back). Row 6 is
    // real drift: changed in Postgres only.
    stack
        .sql(&format!("UPDATE {src} SET v = 'new' WHERE id IN (5, 6, 9)"))
        .await?;
    let ddb = stack.aws.dynamodb.clone();
    ddb.delete_item()
        .table_name(&target)
        .key("id", A::N("9".into()))
        .send()
        .await?;
    let late = {
        let (ddb, target) = (ddb.clone(), target.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for id in ["5", "9"] {
                ddb.put_item()
                    .table_name(&target)
                    .item("id", A::N(id.into()))
                    .item("v", A::S("new".into()))
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let verifier = Verifier::new(
        source,
        stack.sink(),
        VerifyOptions {
            page_rows: 7,
            max_reads_per_sec: std::num::NonZeroU32::new(10_000).expect("not zero"),
            recheck_after: Duration::from_secs(3),
            ..Default::default()
        },
    );
    let report = verifier.verify_range(&t, &KeyRange::all()).await?;
    late.await??;
    assert_eq!(report.rows_checked, 40, "{report:#?}");
    assert_eq!(
        (report.missing_count, report.different_count),
        (0, 1),
        "only row 6 still differs: {report:#?}"
    );
    assert!(report.different[0].0.contains('6'), "{report:#?}");

    // Without the pause the writes in flight would have been reported: the
    // same check with nothing left to settle reports row 6 alone as well.
    let again = verifier.verify_range(&t, &KeyRange::all()).await?;
    assert_eq!((again.missing_count, again.different_count), (0, 1));
    stack.cleanup().await
}
