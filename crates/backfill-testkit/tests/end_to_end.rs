//! Producer and worker together against the real Postgres and the emulators.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType as T};
use backfill_config::BackfillConfig;
use backfill_job::{JobMessage, KeyRange, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
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

async fn work_until_idle(stack: &TestStack, cfg: &BackfillConfig) -> Result<WorkSummary> {
    let w = worker(stack, cfg).await?;
    Ok(w.run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    )
    .await)
}

#[tokio::test]
async fn produce_then_work_copies_every_row_exactly() -> Result<()> {
    let stack = TestStack::new("e2e").await?;
    let src = stack.source("orders");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), \
             note text, created_at timestamptz NOT NULL, doc jsonb, raw bytea, ok bool); \
             INSERT INTO {src} SELECT g, 'c' || (g % 97), g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END, \
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', \
             jsonb_build_object('g', g, 'big', 12345678901234567890123456789012345678::numeric, 'l', jsonb_build_array(1, 'x', null)), \
             decode('00ff', 'hex'), g % 2 = 0 FROM generate_series(1, 2500) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("orders");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 300;
    cfg.worker.page_rows = 128;

    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run1").await?;
    assert!(report.jobs_total >= 5, "{report:?}");
    assert_eq!(report.enqueued, report.jobs_total);

    // Producing the same run again enqueues nothing.
    let again =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run1").await?;
    assert_eq!(again.enqueued, 0);
    assert!(again.reused_plan);
    assert_eq!(again.jobs_total, report.jobs_total);
    assert_eq!(
        stack.queue().depth().await?.visible as usize,
        report.jobs_total
    );

    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 2500, "{summary:?}");
    assert_eq!(summary.jobs_done as usize, report.jobs_total);
    assert_eq!(stack.sink().count_items(&target).await?, 2500);

    // Spot-check one item attribute by attribute.
    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&target)
        .key("id", AttributeValue::N("3".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .expect("item 3 was written");
    assert_eq!(item["customer"].as_s().unwrap(), "c3");
    assert_eq!(item["amount"].as_n().unwrap(), "3.75");
    assert!(!item.contains_key("note"), "NULL is omitted");
    assert_eq!(
        item["created_at"].as_s().unwrap(),
        "2024-01-01T00:03:00+00:00"
    );
    assert_eq!(item["raw"].as_b().unwrap().as_ref(), &[0u8, 255]);
    assert_eq!(item["ok"].as_bool().unwrap(), &false);
    let doc = item["doc"].as_m().unwrap();
    assert_eq!(
        doc["big"].as_n().unwrap(),
        "12345678901234567890123456789012345678"
    );
    assert_eq!(doc["l"].as_l().unwrap().len(), 3);

    // Every job is recorded done.
    let jobs = stack.control().jobs("run1").await?;
    assert!(jobs
        .iter()
        .all(|j| j.state == backfill_control::JobState::Done));
    assert_eq!(jobs.iter().map(|j| j.rows).sum::<u64>(), 2500);
    stack.cleanup().await
}

#[tokio::test]
async fn composite_text_key_copies_with_sort_key() -> Result<()> {
    let stack = TestStack::new("e2e_comp").await?;
    let src = stack.source("inventory");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, sku text, qty int NOT NULL, PRIMARY KEY (tenant, sku)); \
             INSERT INTO {src} SELECT 't' || (g % 7), 'sku-' || g || '-é''\"#', g FROM generate_series(1, 1500) g;"
        ))
        .await?;
    let target = stack.target("inventory");
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::S)))
        .await?;
    let mut t = table(src.clone(), target.clone(), &["tenant"], None);
    t.sort_key = Some(backfill_config::KeyAttribute::columns(&["sku"], None));
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 200;
    cfg.worker.page_rows = 50;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    assert!(report.jobs_total >= 4, "{report:?}");
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 1500);
    assert_eq!(stack.sink().count_items(&target).await?, 1500);
    stack.cleanup().await
}

#[tokio::test]
async fn bad_jobs_go_to_the_dlq_with_a_reason_and_good_ones_complete() -> Result<()> {
    let stack = TestStack::new("e2e_dlq").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 100) g;"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let missing = stack.source("gone");
    let cfg = stack.config(vec![
        table(src.clone(), target.clone(), &["id"], None),
        table(missing.clone(), stack.target("gone"), &["id"], None),
    ]);
    let good = JobMessage::new("r", &src, vec!["id".into()], KeyRange::all());
    let gone = JobMessage::new("r", &missing, vec!["id".into()], KeyRange::all());
    let bad_arity = JobMessage {
        range: KeyRange {
            lo: Some(vec![KeyValue::Int(1), KeyValue::Int(2)]),
            hi: None,
        },
        ..JobMessage::new("r", &src, vec!["id".into()], KeyRange::all())
    };
    stack.plan_jobs("r", &[good.clone(), gone.clone()]).await?;
    stack
        .queue()
        .send_raw(
            &stack.queue_url,
            vec![
                "{this is not json".to_string(),
                gone.to_body(),
                bad_arity.to_body(),
                good.to_body(),
            ],
        )
        .await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 3, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 100);

    let dead = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(&stack.dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await?;
    let mut reasons: Vec<String> = dead
        .messages()
        .iter()
        .map(|m| {
            let attrs = m.message_attributes().unwrap();
            attrs["error"].string_value().unwrap().to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("malformed job message")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("table {missing} does not exist"))),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("2 values for 1 key columns")),
        "{reasons:?}"
    );
    let gone_rec = stack.control().jobs("r").await?;
    assert!(gone_rec
        .iter()
        .any(|j| j.job.job_id == gone.job_id && j.state == backfill_control::JobState::Failed));
    stack.cleanup().await
}

#[tokio::test]
async fn the_same_message_twice_is_copied_once() -> Result<()> {
    let stack = TestStack::new("e2e_dup").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 50);"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    let job = JobMessage::new("r", &src, vec!["id".into()], KeyRange::all());
    stack.plan_jobs("r", std::slice::from_ref(&job)).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;
    let first = work_until_idle(&stack, &cfg).await?;
    assert_eq!(first.jobs_done, 1);
    // SQS delivers at least once: the same job arrives again.
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;
    let second = work_until_idle(&stack, &cfg).await?;
    assert_eq!(second.jobs_done, 0, "{second:?}");
    assert_eq!(second.jobs_duplicate, 1, "{second:?}");
    assert_eq!(stack.queue().depth().await?.total(), 0);
    stack.cleanup().await
}

#[tokio::test]
async fn single_table_design_with_templates_renames_and_policies() -> Result<()> {
    use backfill_config::{KeyAttribute, NullPolicy, TypeOverride};
    let stack = TestStack::new("e2e_map").await?;
    let src = stack.source("orders");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (user_id int, id int, created_at timestamptz NOT NULL, secret text, \
             prefs jsonb, note text, PRIMARY KEY (user_id, id)); \
             INSERT INTO {src} SELECT g % 10, g, timestamptz '2024-05-01 00:00:00+00' + g * interval '1 hour', \
             's3cret', jsonb_build_object('g', g), NULL FROM generate_series(1, 120) g;"
        ))
        .await?;
    let target = stack.target("single");
    stack
        .create_target(&target, ("pk", T::S), Some(("sk", T::S)))
        .await?;
    let mut t = table(src.clone(), target.clone(), &["user_id"], None);
    t.partition_key = KeyAttribute::template("USER#{user_id}", "pk");
    t.sort_key = Some(KeyAttribute::template("ORDER#{created_at}#{id}", "sk"));
    t.exclude = vec!["secret".into()];
    t.rename.insert("created_at".into(), "createdAt".into());
    t.types.insert("prefs".into(), TypeOverride::String);
    t.nulls = NullPolicy::Null;
    let cfg = stack.config(vec![t.clone()]);
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 120, "{summary:?}");
    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&target)
        .key("pk", AttributeValue::S("USER#3".into()))
        .key(
            "sk",
            AttributeValue::S("ORDER#2024-05-01T13:00:00+00:00#13".into()),
        )
        .consistent_read(true)
        .send()
        .await?
        .item
        .expect("the templated keys address the item");
    assert!(!item.contains_key("secret"), "excluded");
    assert_eq!(
        item["createdAt"].as_s().unwrap(),
        "2024-05-01T13:00:00+00:00"
    );
    assert_eq!(
        item["prefs"].as_s().unwrap(),
        "{\"g\":13}",
        "jsonb stored as compact JSON text"
    );
    assert_eq!(item["note"], AttributeValue::Null(true));
    assert_eq!(item["user_id"].as_n().unwrap(), "3");
    let verify = backfill_verify::Verifier::new(source, stack.sink(), Default::default());
    assert!(verify.verify_table(&t).await?.is_clean());
    stack.cleanup().await
}

#[tokio::test]
async fn two_workers_given_the_same_message_at_once_copy_it_once() -> Result<()> {
    let stack = TestStack::new("e2e_race").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, pad text); \
             INSERT INTO {src} SELECT g, repeat('p', 300) FROM generate_series(1, 3000) g;"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.queue.visibility_timeout_secs = 3;
    cfg.worker.concurrency = 1;
    cfg.worker.page_rows = 100;
    cfg.worker.write_concurrency = 1;
    let job = JobMessage::new("r", &src, vec!["id".into()], KeyRange::all());
    stack.plan_jobs("r", std::slice::from_ref(&job)).await?;
    // SQS delivers at least once: the same job is on the queue twice.
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body(), job.to_body()])
        .await?;
    let (a, b) = (worker(&stack, &cfg).await?, worker(&stack, &cfg).await?);
    let opts = WorkOptions {
        until_idle: true,
        ..Default::default()
    };
    let (sa, sb) = tokio::join!(
        a.run(CancellationToken::new(), opts),
        b.run(CancellationToken::new(), opts)
    );
    assert_eq!(sa.jobs_done + sb.jobs_done, 1, "{sa:?} {sb:?}");
    assert!(sa.jobs_duplicate + sb.jobs_duplicate >= 1, "{sa:?} {sb:?}");
    assert_eq!(sa.jobs_dead_lettered + sb.jobs_dead_lettered, 0);
    assert_eq!(stack.sink().count_items(&target).await?, 3000);
    assert_eq!(stack.queue().depth().await?.total(), 0);
    let rec = stack.control().jobs("r").await?;
    assert_eq!(rec[0].state, backfill_control::JobState::Done);
    assert_eq!(rec[0].rows, 3000);
    stack.cleanup().await
}

/// A run-to-completion pod (`work --max-jobs N`) takes N jobs, copies them
/// whole and exits, leaving the rest on the queue for the next pod.
#[tokio::test]
async fn max_jobs_takes_that_many_jobs_finishes_them_and_exits() -> Result<()> {
    let stack = TestStack::new("maxjobs").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 1000) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 100;
    cfg.worker.page_rows = 50;
    cfg.worker.concurrency = 2;

    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run1").await?;
    assert!(report.jobs_total >= 5, "{report:?}");

    let w = worker(&stack, &cfg).await?;
    let opts = WorkOptions {
        max_jobs: Some(3),
        ..Default::default()
    };
    let summary = w.run(CancellationToken::new(), opts).await;
    assert_eq!(summary.jobs_done, 3, "{summary:?}");
    assert_eq!(summary.jobs_released, 0, "{summary:?}");
    let left = stack.queue().depth().await?;
    assert_eq!(left.total() as usize, report.jobs_total - 3, "{left:?}");
    assert_eq!(
        stack.sink().count_items(&target).await?,
        summary.rows_copied
    );

    // The next pods take the rest; together every row is copied once.
    let rest = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied + rest.rows_copied, 1000, "{rest:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 1000);
    stack.cleanup().await
}

/// Pages sized in bytes: small rows then big ones in one job. Every page
/// after the first is sized from the last one's rows, and a short page ends
/// the range only when it is shorter than what was asked for, so nothing is
/// skipped whatever the sizes.
#[tokio::test]
async fn pages_follow_the_row_size_and_copy_every_row() -> Result<()> {
    let stack = TestStack::new("pagebytes").await?;
    let src = stack.source("mixed");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, body text); \
             INSERT INTO {src} SELECT g, CASE WHEN g BETWEEN 300 AND 340 OR g > 900 \
             THEN repeat(md5(g::text), 3000) ELSE 'small ' || g END FROM generate_series(1, 1000) g;"
        ))
        .await?;
    let target = stack.target("mixed");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 100_000;
    cfg.worker.page_rows = 200;
    // 96 KB rows against 256 KiB pages: two or three rows a page.
    cfg.worker.page_bytes = 256 * 1024;
    cfg.worker.verify_sample_rate = 1.0;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run1").await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 1000, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 1000);
    let verifier = backfill_verify::Verifier::new(source, stack.sink(), Default::default());
    let report = verifier.verify_table(&cfg.tables[0]).await?;
    assert!(report.is_clean(), "{report:?}");
    stack.cleanup().await
}
