//! A clustered table's jobs read the stripes their planned cuts start:
//! produced jobs carry cuts and copy every row once, and a planned job
//! whose cuts are out of key order goes to the DLQ by name, copying nothing.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::{BackfillConfig, KeyAttribute};
use backfill_job::{JobMessage, KeyRange, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

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

/// `tenants` tenants of `per` rows each, keyed `tenant, sku`, with a target
/// partitioned by tenant. Tenant names hold the separators and quotes of
/// the bound text form.
async fn clustered(stack: &TestStack, tenants: u32, per: u32) -> Result<BackfillConfig> {
    let src = stack.source("inventory");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, sku int, v text, PRIMARY KEY (tenant, sku)); \
             INSERT INTO {src} SELECT 'tenant,\"' || lpad(t::text, 3, '0') || ')é', s, repeat('x', 50) \
             FROM generate_series(1, {tenants}) t, generate_series(1, {per}) s; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("inventory");
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
        .await?;
    let mut t = table(src, target, &["tenant"], None);
    t.sort_key = Some(KeyAttribute::columns(&["sku"], None));
    let mut cfg = stack.config(vec![t]);
    cfg.worker.stripes = 4;
    cfg.worker.page_rows = 40;
    Ok(cfg)
}

fn tenant(t: u32) -> String {
    format!("tenant,\"{t:03})é")
}

#[tokio::test]
async fn produced_jobs_carry_their_stripes_cuts_and_copy_every_row_once() -> Result<()> {
    let stack = TestStack::new("stripes_cuts").await?;
    let mut cfg = clustered(&stack, 12, 100).await?;
    cfg.producer.rows_per_job = 300;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let jobs = stack.control().jobs("r").await?;
    assert_eq!(jobs.len(), report.jobs_total);
    assert!(jobs.len() >= 3, "{} jobs", jobs.len());
    // Each job carries up to stripes - 1 cuts, inside its range in key order.
    let schema = source
        .describe(&backfill_source::TableRef::parse(&cfg.tables[0].source))
        .await?;
    for j in &jobs {
        assert!(
            !j.job.cuts.is_empty() && j.job.cuts.len() <= 3,
            "{:?}",
            j.job
        );
        assert!(
            source
                .cuts_in_order(&schema, &j.job.range, &j.job.cuts)
                .await?
        );
    }
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 1200, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    assert_eq!(stack.sink().count_items(&cfg.tables[0].target).await?, 1200);
    stack.cleanup().await
}

#[tokio::test]
async fn a_job_whose_cuts_are_out_of_order_is_dead_lettered_by_name() -> Result<()> {
    let stack = TestStack::new("stripes_bad").await?;
    let cfg = clustered(&stack, 4, 50).await?;
    let src = cfg.tables[0].source.clone();
    let k = |t: u32, s: i64| vec![KeyValue::Text(tenant(t)), KeyValue::Int(s)];
    let cols = vec!["tenant".to_string(), "sku".to_string()];
    let good = JobMessage::new(
        "r",
        &src,
        cols.clone(),
        KeyRange {
            lo: None,
            hi: Some(k(3, 1)),
        },
    )
    .with_cuts(vec![k(1, 30), k(2, 1), k(2, 40)]);
    // Reversed: stripes cut there would read some rows twice.
    let bad = JobMessage::new(
        "r",
        &src,
        cols,
        KeyRange {
            lo: Some(k(3, 1)),
            hi: None,
        },
    )
    .with_cuts(vec![k(4, 20), k(3, 10)]);
    stack.plan_jobs("r", &[good.clone(), bad.clone()]).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![good.to_body(), bad.to_body()])
        .await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 1, "{summary:?}");
    assert_eq!(stack.sink().count_items(&cfg.tables[0].target).await?, 100);
    let dead = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(&stack.dlq_url)
        .message_attribute_names("All")
        .send()
        .await?;
    let reasons: Vec<String> = dead
        .messages()
        .iter()
        .filter_map(|m| {
            Some(
                m.message_attributes()?
                    .get("error")?
                    .string_value()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains(&format!("job {}", bad.job_id))
            && reasons[0].contains("cuts do not lie inside its range"),
        "{reasons:?}"
    );
    stack.cleanup().await
}
