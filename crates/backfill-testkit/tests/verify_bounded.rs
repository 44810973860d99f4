//! Verification without a table-wide key set: the rows of a key range are
//! checked page by page and the target is scanned segment by segment,
//! each page of items looked up in Postgres by the source key it holds.
//! Together they name a planted missing, extra, changed, colliding and
//! unmappable item by key, across ranges and pages.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_config::{AmbiguousKeys, BackfillConfig, TableConfig};
use backfill_job::{KeyRange, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{TableReport, Verifier, VerifyOptions};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

async fn copy_all(stack: &TestStack, cfg: &BackfillConfig, run: &str) -> Result<WorkSummary> {
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    backfill_producer::produce(cfg, &source, &stack.queue(), &stack.control(), run).await?;
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

/// Pages of 7 rows, so a range is read in several pages.
async fn verifier(stack: &TestStack) -> Result<Verifier> {
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    Ok(Verifier::new(
        source,
        stack.sink(),
        VerifyOptions {
            page_rows: 7,
            max_reads_per_sec: std::num::NonZeroU32::new(10_000).expect("not zero"),
            ..Default::default()
        },
    ))
}

/// Items keyed `pk = tenant#n` (escaped, so a tenant may hold `#`); the key
/// column `id` is left out of the item key, so two rows that differ only
/// in `id` make one item. Every column is copied, so items hold their
/// rows' whole key.
async fn copied_table(stack: &TestStack, name: &str) -> Result<TableConfig> {
    let src = stack.source(name);
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, n numeric, id int, v text, note text, amount numeric, \
                                 PRIMARY KEY (tenant, n, id)); \
             INSERT INTO {src} SELECT 't' || t, g, 1, 'v' || g, NULL, g * 1.5 \
                 FROM generate_series(1, 3) t, generate_series(1, 10) g; \
             INSERT INTO {src} VALUES \
                 ('acme#eu', -5.5, 1, NULL, NULL, 1), \
                 ('acme#eu', 1e120, -7, 'huge', NULL, 2), \
                 ('zeta', 99999999999999999999999999999999999999, 1, NULL, 'x', 3), \
                 ('bad', 1, 1, 'nan', NULL, 'NaN'); \
             ANALYZE {src};"
        ))
        .await?;
    let target = stack.target(name);
    stack.create_target(&target, ("pk", T::S), None).await?;
    let mut t = table(src, target, &["tenant", "n"], Some("pk"));
    t.ambiguous_keys = AmbiguousKeys::Escape;
    let cfg = stack.config(vec![t.clone()]);
    let summary = copy_all(stack, &cfg, "copy").await?;
    // The NaN amount cannot be a DynamoDB number: a reject, not an item.
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (33, 0),
        "{summary:?}"
    );
    Ok(t)
}

fn pk(s: &str) -> A {
    A::S(s.to_string())
}

/// Adds every segment's findings to `into`.
async fn scan_all(v: &Verifier, t: &TableConfig, total: u32, into: &mut TableReport) -> Result<()> {
    for segment in 0..total {
        into.merge(v.scan_segment(t, segment, total).await?, 100);
    }
    Ok(())
}

#[tokio::test]
async fn ranges_and_scan_segments_name_every_planted_fault_by_key() -> Result<()> {
    let stack = TestStack::new("vbound").await?;
    let t = copied_table(&stack, "b").await?;
    let v = verifier(&stack).await?;
    let clean = v.verify_table(&t).await?;
    assert_eq!(clean.rows_checked, 34, "{clean:#?}");
    assert_eq!(clean.items_scanned, 33, "{clean:#?}");
    assert_eq!(clean.unmappable_count, 1, "{clean:#?}");
    assert_eq!(
        (
            clean.missing_count,
            clean.extra_count,
            clean.different_count,
            clean.collision_count
        ),
        (0, 0, 0, 0),
        "{clean:#?}"
    );

    let ddb = &stack.aws.dynamodb;
    // Missing.
    ddb.delete_item()
        .table_name(&t.target)
        .key("pk", pk("t1#3"))
        .send()
        .await?;
    // Changed.
    ddb.update_item()
        .table_name(&t.target)
        .key("pk", pk("t2#4"))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", pk("tampered"))
        .send()
        .await?;
    // Extra: one naming a row that does not exist, one naming none at all.
    ddb.put_item()
        .table_name(&t.target)
        .item("pk", pk("ghost#1"))
        .item("tenant", pk("ghost"))
        .item("n", A::N("1".into()))
        .item("id", A::N("1".into()))
        .send()
        .await?;
    ddb.put_item()
        .table_name(&t.target)
        .item("pk", pk("orphan#9"))
        .send()
        .await?;
    // A collision: a row added since the copy that makes item t3#7, which
    // holds the row ('t3', 7, 1). The ranges below put the two rows in
    // different ranges, so no page holds both.
    stack
        .sql(&format!(
            "INSERT INTO {} VALUES ('t3', 7, 2, 'second', NULL, 1)",
            t.source
        ))
        .await?;

    let cut = vec![
        KeyValue::Text("t3".into()),
        KeyValue::Numeric("7".into()),
        KeyValue::Int(2),
    ];
    let below = KeyRange {
        lo: None,
        hi: Some(cut.clone()),
    };
    let above = KeyRange {
        lo: Some(cut),
        hi: None,
    };
    let mut report = v.verify_range(&t, &below).await?;
    let upper = v.verify_range(&t, &above).await?;
    // The upper range holds ('t3', 7, 2) and after: n = 8, 9, 10 of t3
    // (numeric order, not text order) and zeta's row.
    assert_eq!(upper.rows_checked, 5, "{upper:#?}");
    assert_eq!(upper.count_mismatch_count, 0, "{upper:#?}");
    report.merge(upper, 100);
    scan_all(&v, &t, 3, &mut report).await?;

    assert_eq!(report.rows_checked, 35, "{report:#?}");
    assert_eq!(report.items_scanned, 34, "{report:#?}");
    assert_eq!(report.count_mismatch_count, 0, "{report:#?}");
    assert_eq!(report.missing, vec![r#"pk="t1#3""#.to_string()]);
    assert_eq!(report.different_count, 1, "{report:#?}");
    assert_eq!(report.different[0].0, r#"pk="t2#4""#);
    assert_eq!(report.different[0].1[0].path, "v");
    let mut extra = report.extra.clone();
    extra.sort();
    assert_eq!(
        extra,
        vec![
            r#"pk="ghost#1""#.to_string(),
            r#"pk="orphan#9""#.to_string()
        ],
        "{report:#?}"
    );
    assert_eq!(report.extra_count, 2);
    assert_eq!(report.collision_count, 1, "{report:#?}");
    assert_eq!(
        report.collisions[0],
        r#"item pk="t3#7" is claimed by rows ("t3", "7", 1) and ("t3", "7", 2)"#
    );
    assert_eq!(report.unmappable_count, 1, "{report:#?}");
    assert_eq!(report.unmappable[0].0, r#"("bad", "1", 1)"#);
    assert!(report.unmappable[0].1.contains("amount"), "{report:#?}");

    // The whole table at once finds the same, wherever its pages cut.
    let whole = v.verify_table(&t).await?;
    assert_eq!(
        (
            whole.missing_count,
            whole.extra_count,
            whole.different_count,
            whole.collision_count,
            whole.unmappable_count
        ),
        (1, 2, 1, 1, 1),
        "{whole:#?}"
    );
    assert_eq!(whole.collisions, report.collisions);
    stack.cleanup().await
}

/// A page of items none of whose keys is in Postgres is all extra, whether
/// its key values are of the column's type or text no cast reads.
#[tokio::test]
async fn a_scan_page_of_unknown_keys_is_all_extra() -> Result<()> {
    let stack = TestStack::new("vghost").await?;
    let t = copied_table(&stack, "g").await?;
    let v = verifier(&stack).await?;
    let ddb = &stack.aws.dynamodb;
    // A fresh target holding only items no row produces.
    let mut ghosts = t.clone();
    ghosts.target = stack.target("g_ghosts");
    stack
        .create_target(&ghosts.target, ("pk", T::S), None)
        .await?;
    let planted = [
        ("t1", "11", "1"),
        ("t9", "1", "1"),
        // A row's tenant and n with another id: that row makes t1#2, but
        // this item names ('t1', 2, 5), which does not exist.
        ("t1", "2", "5"),
        ("acme#eu", "-5.5", "2"),
        ("zeta", "1E+120", "-7"),
        // Not numbers: Postgres cannot read them as the key's types.
        ("t1", "not-a-number", "1"),
        ("t2", "3", "99999999999999"),
    ];
    for (i, (tenant, n, id)) in planted.iter().enumerate() {
        let num = |s: &str| {
            if s.parse::<f64>().is_ok() {
                A::N(s.to_string())
            } else {
                A::S(s.to_string())
            }
        };
        ddb.put_item()
            .table_name(&ghosts.target)
            .item("pk", pk(&format!("ghost{i}")))
            .item("tenant", pk(tenant))
            .item("n", num(n))
            .item("id", num(id))
            .send()
            .await?;
    }
    let report = v.scan_segment(&ghosts, 0, 1).await?;
    assert_eq!(report.items_scanned, planted.len() as u64, "{report:#?}");
    assert_eq!(report.extra_count, planted.len() as u64, "{report:#?}");
    // An item that names a real row but under another key is extra too.
    ddb.put_item()
        .table_name(&ghosts.target)
        .item("pk", pk("t1#2"))
        .item("tenant", pk("t1"))
        .item("n", A::N("2".into()))
        .item("id", A::N("1".into()))
        .send()
        .await?;
    let report = v.scan_segment(&ghosts, 0, 1).await?;
    assert_eq!(report.extra_count, planted.len() as u64, "{report:#?}");
    assert_eq!(report.items_scanned, planted.len() as u64 + 1);
    ddb.put_item()
        .table_name(&ghosts.target)
        .item("pk", pk("t1#3"))
        .item("tenant", pk("t1"))
        .item("n", A::N("2".into()))
        .item("id", A::N("1".into()))
        .send()
        .await?;
    let report = v.scan_segment(&ghosts, 0, 1).await?;
    assert_eq!(report.extra_count, planted.len() as u64 + 1, "{report:#?}");
    assert!(
        report.extra.contains(&r#"pk="t1#3""#.to_string()),
        "{report:#?}"
    );
    // A segment that is not one of the scan's is refused by name.
    let err = v.scan_segment(&t, 3, 3).await.unwrap_err().to_string();
    assert!(err.contains("segment 3 of 3"), "{err}");
    stack.cleanup().await
}

/// Key columns kept only inside key templates are parsed back out of the
/// key: the whole key names one row. A template that leaves a key column
/// out names only part of a row: extra items are still found by the part
/// (every row sharing it is mapped), and an item two rows of different
/// ranges claim can only be reported as a difference.
#[tokio::test]
async fn key_columns_only_in_templates_are_parsed_back() -> Result<()> {
    let stack = TestStack::new("vtmpl").await?;
    let copied = copied_table(&stack, "m").await?;
    let v = verifier(&stack).await?;
    let ddb = &stack.aws.dynamodb;
    for (name, template) in [
        ("m_whole", "T#{tenant}|{n}|{id}"),
        ("m_part", "T#{tenant}|{n}"),
    ] {
        let mut t = copied.clone();
        t.target = stack.target(name);
        t.partition_key = backfill_config::KeyAttribute::template(template, "pk");
        t.include = Some(vec!["v".into()]);
        stack.create_target(&t.target, ("pk", T::S), None).await?;
        let cfg = stack.config(vec![t.clone()]);
        // Without `amount`, the NaN row is an item too.
        let summary = copy_all(&stack, &cfg, name).await?;
        assert_eq!(summary.rows_copied, 34, "{name}: {summary:?}");
        let clean = v.verify_table(&t).await?;
        assert_eq!(clean.items_scanned, 34, "{name}: {clean:#?}");
        assert_eq!(
            (
                clean.extra_count,
                clean.different_count,
                clean.missing_count
            ),
            (0, 0, 0),
            "{name}: {clean:#?}"
        );
        ddb.put_item()
            .table_name(&t.target)
            .item("pk", pk("T#ghost|1|1"))
            .send()
            .await?;
        let mut report = TableReport::default();
        scan_all(&v, &t, 2, &mut report).await?;
        assert_eq!(report.extra, vec![r#"pk="T#ghost|1|1""#.to_string()]);
    }
    // The row ('t3', 7, 2) makes item T#t3|7 of `m_part` too.
    stack
        .sql(&format!(
            "INSERT INTO {} VALUES ('t3', 7, 2, 'second', NULL, 1)",
            copied.source
        ))
        .await?;
    let mut part = copied.clone();
    part.target = stack.target("m_part");
    part.partition_key = backfill_config::KeyAttribute::template("T#{tenant}|{n}", "pk");
    part.include = Some(vec!["v".into()]);
    let cut = vec![
        KeyValue::Text("t3".into()),
        KeyValue::Numeric("7".into()),
        KeyValue::Int(2),
    ];
    let upper = v
        .verify_range(
            &part,
            &KeyRange {
                lo: Some(cut),
                hi: None,
            },
        )
        .await?;
    assert_eq!(upper.collision_count, 0, "{upper:#?}");
    assert_eq!(upper.different_count, 1, "{upper:#?}");
    assert_eq!(upper.different[0].0, r#"pk="T#t3|7""#);
    stack.cleanup().await
}
