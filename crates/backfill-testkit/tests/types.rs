//! The type matrix (docs/TYPES.md): edge values of every built-in type
//! round-trip through the real Postgres and DynamoDB emulator with no
//! difference found by `verify`; `verify` names a deleted, a changed and an
//! extra item by key.

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_config::{BackfillConfig, Unrepresentable};
use backfill_source::PgSource;
use backfill_testkit::corpus::corpus;
use backfill_testkit::{table, TestStack};
use backfill_verify::{Verifier, VerifyOptions};
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

async fn verifier(stack: &TestStack) -> Result<Verifier> {
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    Ok(Verifier::new(
        source,
        stack.sink(),
        VerifyOptions::default(),
    ))
}

async fn get(stack: &TestStack, target: &str, id: i32) -> Result<backfill_item::Item> {
    stack
        .aws
        .dynamodb
        .get_item()
        .table_name(target)
        .key("id", A::N(id.to_string()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .with_context(|| format!("item {id}"))
}

#[tokio::test]
async fn the_edge_value_corpus_round_trips_with_no_difference() -> Result<()> {
    let stack = TestStack::new("types").await?;
    let src = corpus(&stack).await?;
    let target = stack.target("corpus");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.unrepresentable = Unrepresentable::String;
    let cfg = stack.config(vec![t.clone()]);
    let summary = copy_all(&stack, &cfg, "r").await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (4, 0),
        "{summary:?}"
    );

    let report = verifier(&stack).await?.verify_table(&t).await?;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.rows_checked, 4);
    assert_eq!(report.items_scanned, 4);

    let one = get(&stack, &target, 1).await?;
    assert_eq!(one["i8"], A::N("-9223372036854775808".into()));
    assert_eq!(one["ch"], A::S("a    ".into()), "char(n) keeps its padding");
    assert_eq!(
        one["t"],
        A::S(String::new()),
        "empty strings are kept outside keys"
    );
    assert_eq!(one["tstz"], A::S("1970-01-01T00:00:00+00:00".into()));
    assert_eq!(
        one["tz"],
        A::S("10:00:00+00".into()),
        "timetz normalised to UTC"
    );
    assert_eq!(one["m"], A::N("-1234.56".into()));
    assert_eq!(
        one["ai"],
        A::L(vec![A::N("1".into()), A::Null(true), A::N("3".into())])
    );
    assert_eq!(
        one["a2"],
        A::L(vec![
            A::L(vec![A::N("1".into()), A::N("2".into())]),
            A::L(vec![A::N("3".into()), A::N("4".into())])
        ])
    );
    assert_eq!(one["e"], A::S("sad".into()));
    assert_eq!(one["cidr_"], A::S("10.0.0.0/8".into()));
    // inet keeps Postgres' output form: a host address has no mask added.
    assert_eq!(one["ip"], A::S("::1".into()));
    let two = get(&stack, &target, 2).await?;
    assert_eq!(two["ip"], A::S("192.168.0.1/24".into()));
    assert_eq!(two["cidr_"], A::S("::/0".into()));
    assert_eq!(
        two["d"],
        A::S("NaN".into()),
        "NaN takes the string fallback"
    );
    assert_eq!(two["r"], A::S("Infinity".into()));
    assert_eq!(two["ts"], A::S("294276-12-31T23:59:59.999999".into()));
    let big = two["jb"].as_m().unwrap()["big"].as_n().unwrap().clone();
    assert_eq!(
        backfill_item::compare::canonical_number(&big),
        backfill_item::compare::canonical_number("12345678901234567890123456789.123456789")
    );
    let three = get(&stack, &target, 3).await?;
    assert_eq!(
        three["n"],
        A::S("1234567890123456789012345678901234567890".into()),
        "40 digits take the fallback"
    );
    let four = get(&stack, &target, 4).await?;
    assert_eq!(four.len(), 1, "NULLs are omitted: {four:?}");
    stack.cleanup().await
}

/// An unrepresentable value makes its row a reject naming table, key and
/// column while the good row is written; with no rejects allowed the job
/// fails instead, with the same names (a wrong mapping stops at once).
#[tokio::test]
async fn an_unrepresentable_value_is_a_reject_naming_table_key_and_column() -> Result<()> {
    let stack = TestStack::new("types_fail").await?;
    let src = stack.source("f");
    stack
        .sql(&format!("CREATE TABLE {src} (id int PRIMARY KEY, d float8); INSERT INTO {src} VALUES (1, 1.5), (7, 'NaN');"))
        .await?;
    let target = stack.target("f");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    let summary = copy_all(&stack, &cfg, "r").await?;
    assert_eq!(
        (summary.rows_copied, summary.jobs_dead_lettered),
        (1, 0),
        "{summary:?}"
    );
    let rejects = stack.control().rejects("r").await?;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].table, src);
    assert_eq!(rejects[0].key_display(), "(7)");
    assert_eq!(rejects[0].problems[0].column, "d");
    assert!(rejects[0].problems[0].reason.contains("NaN"), "{rejects:?}");

    cfg.worker.reject_allowance = 0;
    cfg.worker.max_reject_fraction = 0.0;
    let summary = copy_all(&stack, &cfg, "strict").await?;
    assert_eq!(summary.jobs_dead_lettered, 1, "{summary:?}");
    let jobs = stack.control().jobs("strict").await?;
    let err = jobs[0].last_error.clone().unwrap_or_default();
    assert!(
        err.contains(&format!("table {src}")) && err.contains("1 of 2 rows"),
        "{err}"
    );
    stack.cleanup().await
}

#[tokio::test]
async fn verify_names_a_deleted_a_changed_and_an_extra_item() -> Result<()> {
    let stack = TestStack::new("verify").await?;
    let src = stack.source("v");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, name text, score numeric); \
             INSERT INTO {src} SELECT g, 'n' || g, g * 1.5 FROM generate_series(1, 300) g;"
        ))
        .await?;
    let target = stack.target("v");
    stack.create_target(&target, ("id", T::N), None).await?;
    let t = table(src.clone(), target.clone(), &["id"], None);
    let cfg = stack.config(vec![t.clone()]);
    copy_all(&stack, &cfg, "r").await?;
    assert!(verifier(&stack).await?.verify_table(&t).await?.is_clean());

    let ddb = &stack.aws.dynamodb;
    ddb.delete_item()
        .table_name(&target)
        .key("id", A::N("17".into()))
        .send()
        .await?;
    ddb.update_item()
        .table_name(&target)
        .key("id", A::N("42".into()))
        .update_expression("SET #n = :v")
        .expression_attribute_names("#n", "name")
        .expression_attribute_values(":v", A::S("tampered".into()))
        .send()
        .await?;
    ddb.put_item()
        .table_name(&target)
        .item("id", A::N("9999".into()))
        .item("name", A::S("planted".into()))
        .send()
        .await?;
    let report = verifier(&stack).await?.verify_table(&t).await?;
    assert_eq!(
        (
            report.missing_count,
            report.different_count,
            report.extra_count
        ),
        (1, 1, 1),
        "{report:#?}"
    );
    assert_eq!(report.missing, vec!["id=17".to_string()]);
    assert_eq!(report.extra, vec!["id=9999".to_string()]);
    assert_eq!(report.different[0].0, "id=42");
    assert_eq!(report.different[0].1[0].path, "name");
    assert!(report.different[0].1[0].actual.contains("tampered"));
    stack.cleanup().await
}
