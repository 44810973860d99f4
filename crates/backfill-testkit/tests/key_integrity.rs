//! No row lost or merged by its key: tables keyed by types read as text copy
//! every row, and two rows that would become one item never do silently.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_job::{JobMessage, KeyRange, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
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

fn verifier(stack: &TestStack, source: PgSource, page_rows: u32) -> Verifier {
    Verifier::new(
        source,
        stack.sink(),
        VerifyOptions {
            page_rows,
            max_reads_per_sec: std::num::NonZeroU32::new(10_000).expect("not zero"),
            ..Default::default()
        },
    )
}

/// A numeric key read as text used to be paged in text order ('1', '10',
/// '100', ...) while the next page started after the last key as a number:
/// whole runs of keys were skipped, every job said done, and verify (paging
/// the same way) saw nothing.
#[tokio::test]
async fn a_numeric_key_copies_every_row_at_every_page_size() -> Result<()> {
    let stack = TestStack::new("numkey").await?;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    for (i, page_rows) in [100u32, 7, 1000].into_iter().enumerate() {
        let src = stack.source(&format!("n{i}"));
        stack
            .sql(&format!(
                "CREATE TABLE {src} (id numeric PRIMARY KEY, v text); \
                 INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 3000) g; ANALYZE {src};"
            ))
            .await?;
        let target = stack.target(&format!("n{i}"));
        stack.create_target(&target, ("id", T::N), None).await?;
        let t = table(src.clone(), target.clone(), &["id"], None);
        let mut cfg = stack.config(vec![t.clone()]);
        cfg.producer.rows_per_job = 1000;
        cfg.worker.page_rows = page_rows;
        let run = format!("r{i}");
        let report =
            backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), &run)
                .await?;
        assert!(report.jobs_total >= 2, "{report:?}");
        let summary = work_until_idle(&stack, &cfg).await?;
        assert_eq!(summary.rows_copied, 3000, "page {page_rows}: {summary:?}");
        assert_eq!(stack.sink().count_items(&target).await?, 3000);
        let v = verifier(&stack, source.clone(), page_rows)
            .verify_table(&t)
            .await?;
        assert_eq!(v.rows_checked, 3000, "page {page_rows}: {v:?}");
        assert!(v.is_clean(), "page {page_rows}: {v:?}");
    }
    stack.cleanup().await
}

/// Enqueues hand-cut jobs of run `run` over `src` (keyed `x, y`).
async fn enqueue(stack: &TestStack, run: &str, src: &str, ranges: Vec<KeyRange>) -> Result<()> {
    let jobs: Vec<JobMessage> = ranges
        .into_iter()
        .map(|r| JobMessage::new(run, src, vec!["x".into(), "y".into()], r))
        .collect();
    stack.plan_jobs(run, &jobs).await?;
    stack.queue().send_jobs(&jobs).await?;
    Ok(())
}

fn text_key(x: &str, y: &str) -> Vec<KeyValue> {
    vec![KeyValue::Text(x.into()), KeyValue::Text(y.into())]
}

/// `('a#b', 'c')` and `('a', 'b#c')` both join to `a#b#c`. In different
/// jobs the second used to overwrite the first; in one job the batch was
/// refused with a raw "duplicates" error naming no row.
#[tokio::test]
async fn joined_keys_never_merge_two_rows() -> Result<()> {
    let stack = TestStack::new("joinkey").await?;
    let src = stack.source("pairs");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (x text, y text, v int, PRIMARY KEY (x, y)); \
             INSERT INTO {src} VALUES ('a#b', 'c', 1), ('a', 'b#c', 2), ('p', 'q', 3), ('r', 's', 4);"
        ))
        .await?;
    let target = stack.target("pairs");
    stack.create_target(&target, ("pk", T::S), None).await?;
    let mut t = table(src.clone(), target.clone(), &["x", "y"], Some("pk"));
    let cfg = stack.config(vec![t.clone()]);
    // Different jobs: ('a', 'b#c') sorts before 'a#', ('a#b', 'c') after.
    let cut = text_key("a#", "");
    enqueue(
        &stack,
        "two_jobs",
        &src,
        vec![
            KeyRange {
                lo: None,
                hi: Some(cut.clone()),
            },
            KeyRange {
                lo: Some(cut),
                hi: None,
            },
        ],
    )
    .await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (2, 0),
        "{summary:?}"
    );
    let rejects = stack.control().rejects("two_jobs").await?;
    let mut named: Vec<String> = rejects.iter().map(|r| r.key_display()).collect();
    named.sort();
    assert_eq!(named, vec![r#"("a", "b#c")"#, r#"("a#b", "c")"#]);
    for r in &rejects {
        let reason = &r.problems[0].reason;
        assert!(reason.contains("ambiguous key"), "{reason}");
    }
    // Nothing was merged: the two rows have no item, the others theirs.
    assert_eq!(stack.sink().count_items(&target).await?, 2);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let report = verifier(&stack, source.clone(), 100)
        .verify_table(&t)
        .await?;
    assert_eq!(report.unmappable_count, 2, "{report:#?}");
    assert_eq!((report.missing_count, report.extra_count), (0, 0));

    // With escaping (an application that escapes the same way), one job
    // writes both rows as two items.
    t.ambiguous_keys = backfill_config::AmbiguousKeys::Escape;
    let cfg = stack.config(vec![t.clone()]);
    enqueue(&stack, "one_job", &src, vec![KeyRange::all()]).await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 4, "{summary:?}");
    assert!(stack.control().rejects("one_job").await?.is_empty());
    assert_eq!(stack.sink().count_items(&target).await?, 4);
    let report = verifier(&stack, source, 100).verify_table(&t).await?;
    assert!(report.is_clean(), "{report:#?}");
    stack.cleanup().await
}

/// A template that leaves out a key column makes two rows one item. In one
/// job the second row is a reject naming both rows (never a duplicate in a
/// batch); `verify` names the collision with both rows.
#[tokio::test]
async fn two_rows_of_one_item_are_named_by_both_keys() -> Result<()> {
    let stack = TestStack::new("collide").await?;
    let src = stack.source("c");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (x text, y text, v int, PRIMARY KEY (x, y)); \
             INSERT INTO {src} VALUES ('a', '1', 1), ('a', '2', 2), ('b', '1', 3);"
        ))
        .await?;
    let target = stack.target("c");
    stack.create_target(&target, ("pk", T::S), None).await?;
    let mut t = table(src.clone(), target.clone(), &["x"], Some("pk"));
    t.partition_key = backfill_config::KeyAttribute::template("T#{x}", "pk");
    let cfg = stack.config(vec![t.clone()]);
    enqueue(&stack, "r", &src, vec![KeyRange::all()]).await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (2, 0),
        "{summary:?}"
    );
    let rejects = stack.control().rejects("r").await?;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    let reason = &rejects[0].problems[0].reason;
    assert!(
        reason.contains(r#"("a", "1")"#) && reason.contains(r#"("a", "2")"#),
        "{reason}"
    );
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    // Which of the two rows the item holds depends on which the copy took
    // first (a clustered job's stripes go side by side): the collision is
    // named once either way. The second pass swaps the item to the other row.
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let ddb = &stack.aws.dynamodb;
    for pass in 0..2 {
        if pass == 1 {
            let key = ("pk".to_string(), V::S("T#a".into()));
            let got = ddb
                .get_item()
                .table_name(&target)
                .key(key.0.clone(), key.1.clone())
                .send()
                .await?;
            let y = got.item().and_then(|i| i.get("y")).cloned();
            let (y, v) = if y == Some(V::S("1".into())) {
                ("2", "2")
            } else {
                ("1", "1")
            };
            ddb.update_item()
                .table_name(&target)
                .key(key.0, key.1)
                .update_expression("SET y = :y, v = :v")
                .expression_attribute_values(":y", V::S(y.into()))
                .expression_attribute_values(":v", V::N(v.into()))
                .send()
                .await?;
        }
        let report = verifier(&stack, source.clone(), 100)
            .verify_table(&t)
            .await?;
        assert_eq!(report.collision_count, 1, "pass {pass}: {report:#?}");
        let c = &report.collisions[0];
        assert!(
            c.contains(r#"("a", "1")"#) && c.contains(r#"("a", "2")"#),
            "{c}"
        );
        assert_eq!(report.different_count, 0, "pass {pass}: {report:#?}");
    }
    stack.cleanup().await
}

/// One bad row never blocks good rows: 1,000 good rows, a 420 KB row sent to
/// S3, and two rows that cannot become items (NaN and a 39-digit number in
/// one, an empty key in the other) write 1,001 items and record 2 rejects
/// naming every bad column; `rejects retry` after a fix completes the job,
/// and verify reports the state at each step without aborting.
#[tokio::test]
async fn bad_rows_are_rejects_and_good_rows_are_written() -> Result<()> {
    use backfill_config::{OffloadConfig, Oversize};
    let stack = TestStack::new("rejects").await?;
    let src = stack.source("r");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, code text NOT NULL, n numeric, m numeric, body text); \
             INSERT INTO {src} SELECT g, 'c' || g, g, g, 'small' FROM generate_series(1, 1000) g; \
             INSERT INTO {src} VALUES (1001, 'c1001', 'NaN', 123456789012345678901234567890123456789, 'x'), \
                                      (1002, '', 1, 1, 'x'), \
                                      (1003, 'c1003', 1, 1, repeat('y', 420000));"
        ))
        .await?;
    let target = stack.target("r");
    stack.create_target(&target, ("code", T::S), None).await?;
    let mut t = table(src.clone(), target.clone(), &["code"], None);
    t.oversize = Oversize::S3;
    let mut cfg = stack.config(vec![t.clone()]);
    cfg.producer.rows_per_job = 5000;
    cfg.offload = Some(OffloadConfig {
        bucket: backfill_testkit::unique("rejects").replace('_', "-"),
        prefix: "big/".into(),
    });
    let s3 = stack.aws.s3.clone();
    let o = cfg.offload.clone().expect("offload");
    let off = backfill_offload::S3Offloader::new(s3, &o.bucket, &o.prefix);
    off.ensure_bucket().await?;
    let source = PgSource::connect(&stack.env.pg_url, 4).await?;
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "run").await?;
    let w = Arc::new(
        Worker::new(
            Arc::new(cfg.clone()),
            source.clone(),
            stack.sink(),
            stack.queue(),
            stack.control(),
        )
        .with_offloader(off.clone()),
    );
    let summary = w
        .run(
            CancellationToken::new(),
            WorkOptions {
                until_idle: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (1001, 0),
        "{summary:?}"
    );
    assert_eq!(stack.sink().count_items(&target).await?, 1001);
    let jobs = stack.control().jobs("run").await?;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state_label(), "done_with_rejects");
    assert_eq!(jobs[0].rejects, 2);
    let mut rejects = stack.control().rejects("run").await?;
    rejects.sort_by_key(|r| r.key_display());
    let shown: Vec<String> = rejects.iter().map(|r| r.key_display()).collect();
    assert_eq!(shown, vec!["(1001)", "(1002)"]);
    let columns = |r: &backfill_control::RejectRecord| -> Vec<String> {
        r.problems.iter().map(|p| p.column.clone()).collect()
    };
    assert_eq!(columns(&rejects[0]), vec!["n", "m"], "{rejects:#?}");
    assert!(rejects[0].problems[0].reason.contains("NaN"));
    assert!(rejects[0].problems[1]
        .reason
        .contains("39 significant digits"));
    assert_eq!(columns(&rejects[1]), vec!["code"], "{rejects:#?}");
    assert!(rejects[1].problems[0].reason.contains("empty"));

    let verify = || async {
        verifier(&stack, source.clone(), 400)
            .with_offloader(off.clone())
            .verify_table(&t)
            .await
    };
    let report = verify().await?;
    assert_eq!(report.rows_checked, 1003, "{report:#?}");
    assert_eq!(report.unmappable_count, 2, "{report:#?}");
    assert_eq!(
        (
            report.missing_count,
            report.different_count,
            report.extra_count
        ),
        (0, 0, 0),
        "{report:#?}"
    );

    // The fix: numbers without a DynamoDB form stored as text, and the
    // empty code corrected in the source. Only the rejected keys are read.
    let mut fixed = t.clone();
    fixed.unrepresentable = backfill_config::Unrepresentable::String;
    let mut fixed_cfg = cfg.clone();
    fixed_cfg.tables = vec![fixed.clone()];
    stack
        .sql(&format!("UPDATE {src} SET code = 'c1002' WHERE id = 1002"))
        .await?;
    let retried = backfill_worker::retry_rejects(
        &backfill_worker::RetryPath {
            cfg: &fixed_cfg,
            source: &source,
            sink: &stack.sink(),
            control: &stack.control(),
            offloader: Some(&off),
        },
        &backfill_worker::RetryRequest {
            run_id: "run",
            table: None,
            by: "tester",
            why: "fixed the mapping",
        },
    )
    .await?;
    assert_eq!(retried.written, 2, "{retried:?}");
    assert!(retried.still_rejected.is_empty(), "{retried:?}");
    assert!(stack.control().rejects("run").await?.is_empty());
    let jobs = stack.control().jobs("run").await?;
    assert_eq!(jobs[0].state_label(), "done");
    let audit = stack.control().audit(Some("run")).await?;
    assert!(
        audit
            .iter()
            .any(|a| a.action == backfill_control::AuditAction::RejectRetry && a.by == "tester"),
        "{audit:?}"
    );
    assert_eq!(stack.sink().count_items(&target).await?, 1003);
    let report = verifier(&stack, source.clone(), 400)
        .with_offloader(off.clone())
        .verify_table(&fixed)
        .await?;
    assert!(report.is_clean(), "{report:#?}");
    stack.cleanup().await
}
