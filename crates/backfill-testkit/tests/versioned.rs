//! A version column makes the copy yield to the application's dual-writes:
//! an item written newer to DynamoDB during the backfill is never
//! overwritten by the backfill's older copy.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

const ROWS: i64 = 1500;

fn app_item(id: i64, who: &str, updated_at: &str) -> std::collections::HashMap<String, A> {
    [
        ("id".to_string(), A::N(id.to_string())),
        ("v".to_string(), A::S(who.to_string())),
        ("updated_at".to_string(), A::S(updated_at.to_string())),
    ]
    .into()
}

#[tokio::test]
async fn newer_application_writes_are_never_overwritten() -> Result<()> {
    let stack = TestStack::new("version").await?;
    let src = stack.source("t");
    // Source rows carry 2024 versions.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL); \
             INSERT INTO {src} SELECT g, 'pg', timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' \
             FROM generate_series(1, {ROWS}) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.version_column = Some("updated_at".into());
    let mut cfg = stack.config(vec![t.clone()]);
    cfg.producer.rows_per_job = 300;
    cfg.worker.page_rows = 100;
    let ddb = stack.aws.dynamodb.clone();

    // Before the backfill: ids 1..=100 newer (2025) and ids 101..=110 older (2023) than Postgres.
    for id in 1..=100 {
        ddb.put_item()
            .table_name(&target)
            .set_item(Some(app_item(
                id,
                "app-before",
                "2025-06-01T00:00:00+00:00",
            )))
            .send()
            .await?;
    }
    for id in 101..=110 {
        ddb.put_item()
            .table_name(&target)
            .set_item(Some(app_item(id, "app-stale", "2023-01-01T00:00:00+00:00")))
            .send()
            .await?;
    }
    // Equal version: the backfill must not overwrite it either.
    let equal = "2024-01-01T00:03:20+00:00"; // the version of id 200 in Postgres
    ddb.put_item()
        .table_name(&target)
        .set_item(Some(app_item(200, "app-equal", equal)))
        .send()
        .await?;

    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let worker = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        stack.queue(),
        stack.control(),
    ));
    let run = tokio::spawn(worker.run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    ));

    // During the backfill, the application keeps writing newer versions of ids 1000..=1200.
    let app = {
        let ddb = ddb.clone();
        let target = target.clone();
        tokio::spawn(async move {
            for id in 1000..=1200i64 {
                ddb.put_item()
                    .table_name(&target)
                    .set_item(Some(app_item(
                        id,
                        "app-during",
                        "2026-01-01T00:00:00+00:00",
                    )))
                    .send()
                    .await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };
    let summary = run.await?;
    app.await??;
    assert_eq!(summary.rows_copied as i64, ROWS, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");

    let get = |id: i64| {
        let ddb = ddb.clone();
        let target = target.clone();
        async move {
            let item = ddb
                .get_item()
                .table_name(&target)
                .key("id", A::N(id.to_string()))
                .consistent_read(true)
                .send()
                .await?
                .item
                .unwrap_or_default();
            anyhow::Ok(
                item.get("v")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default(),
            )
        }
    };
    assert_eq!(get(50).await?, "app-before");
    assert_eq!(
        get(105).await?,
        "pg",
        "an older application item is brought up to date"
    );
    assert_eq!(
        get(200).await?,
        "app-equal",
        "an equal version is not overwritten"
    );
    assert_eq!(get(1100).await?, "app-during");
    assert_eq!(get(700).await?, "pg");
    for id in 1000..=1200 {
        assert_eq!(get(id).await?, "app-during", "id {id}");
    }
    assert_eq!(stack.sink().count_items(&target).await?, ROWS as u64);

    // The stored per-job digests add up to the digest verify computes of the source.
    let jobs = stack.control().jobs("r").await?;
    let stored = jobs.iter().try_fold(0u128, |acc, j| {
        let d = j
            .digest
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("job {} has no digest", j.job.job_id))?;
        anyhow::Ok(acc.wrapping_add(u128::from_str_radix(d, 16)?))
    })?;
    let report = Verifier::new(
        PgSource::connect(&stack.env.pg_url, 2).await?,
        stack.sink(),
        VerifyOptions::default(),
    )
    .verify_table(&t)
    .await?;
    // Items the application wrote newer are not differences; the one written
    // with the same version but other content is.
    assert_eq!(report.newer_in_target, 100 + 201, "{report:#?}");
    assert_eq!(
        (
            report.missing_count,
            report.extra_count,
            report.different_count
        ),
        (0, 0, 1)
    );
    assert_eq!(report.different[0].0, "id=200");
    assert_eq!(report.source_digest.sum, stored);
    assert_eq!(report.source_digest.count as i64, ROWS);
    assert_eq!(jobs.iter().map(|j| j.rows).sum::<u64>() as i64, ROWS);
    stack.cleanup().await
}
