//! Planning against the real Postgres: the planned ranges cover every key
//! exactly once, whatever the keys look like, and problems are reported
//! before anything is enqueued.

use anyhow::Result;
use backfill_job::{KeyRange, KeyValue};
use backfill_source::reader::{PageQuery, SampleSpec};
use backfill_source::{PgSource, TableRef};
use backfill_testkit::{keys_by_range, table, TestStack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn spec(rows_per_job: u64) -> SampleSpec {
    SampleSpec {
        rows_per_job,
        samples_per_job: 20,
        max_sample_rows: 1_000_000,
        parts_per_job: 1,
        seed: 7,
    }
}

#[derive(Debug, Clone)]
enum Keys {
    Int(Vec<i64>),
    Text(Vec<String>),
    Composite(Vec<(i32, String)>),
}

fn key_sets() -> impl Strategy<Value = Keys> {
    prop_oneof![
        // dense
        (1i64..400).prop_map(|n| Keys::Int((1..=n).collect())),
        // sparse, with the extremes of bigint
        proptest::collection::btree_set(any::<i64>(), 0..300)
            .prop_map(|s| Keys::Int(s.into_iter().collect())),
        // skewed: a dense cluster and a few far-away keys
        (
            proptest::collection::btree_set(0i64..200, 1..200),
            proptest::collection::btree_set(1_000_000i64..i64::MAX, 0..5)
        )
            .prop_map(|(a, b)| Keys::Int(a.into_iter().chain(b).collect())),
        // text with any characters but NUL (which Postgres text cannot hold)
        proptest::collection::btree_set("[^\u{0}]{0,8}", 0..200)
            .prop_map(|s| Keys::Text(s.into_iter().collect())),
        // composite with few distinct values per column: duplicates across columns
        proptest::collection::btree_set((0i32..4, "[ab#é ]{0,3}"), 0..150)
            .prop_map(|s| Keys::Composite(s.into_iter().collect())),
    ]
}

async fn check_cover(
    stack: &TestStack,
    source: &PgSource,
    n: usize,
    keys: &Keys,
    rows_per_job: u64,
    page: u32,
) -> Result<()> {
    let name = format!("k{n}");
    let src = stack.source(&name);
    let expected: Vec<String> = match keys {
        Keys::Int(v) => {
            stack
                .sql(&format!("CREATE TABLE {src} (id bigint PRIMARY KEY)"))
                .await?;
            sqlx::query(&format!("INSERT INTO {src} SELECT unnest($1::int8[])"))
                .bind(v)
                .execute(&stack.pg)
                .await?;
            v.iter()
                .map(|i| format!("{:?}", vec![KeyValue::Int(*i)]))
                .collect()
        }
        Keys::Text(v) => {
            stack
                .sql(&format!("CREATE TABLE {src} (k text PRIMARY KEY)"))
                .await?;
            sqlx::query(&format!("INSERT INTO {src} SELECT unnest($1::text[])"))
                .bind(v)
                .execute(&stack.pg)
                .await?;
            v.iter()
                .map(|s| format!("{:?}", vec![KeyValue::Text(s.clone())]))
                .collect()
        }
        Keys::Composite(v) => {
            stack
                .sql(&format!(
                    "CREATE TABLE {src} (a int, b varchar(10), PRIMARY KEY (a, b))"
                ))
                .await?;
            let a: Vec<i32> = v.iter().map(|x| x.0).collect();
            let b: Vec<String> = v.iter().map(|x| x.1.clone()).collect();
            sqlx::query(&format!(
                "INSERT INTO {src} SELECT * FROM unnest($1::int4[], $2::text[])"
            ))
            .bind(&a)
            .bind(&b)
            .execute(&stack.pg)
            .await?;
            v.iter()
                .map(|(a, b)| {
                    format!(
                        "{:?}",
                        vec![KeyValue::Int(i64::from(*a)), KeyValue::Text(b.clone())]
                    )
                })
                .collect()
        }
    };
    let t = TableRef::parse(&src);
    let schema = source.describe(&t).await?;
    let sample = source
        .sample_boundaries(&schema, &spec(rows_per_job))
        .await?;
    let ranges = KeyRange::tile(sample.boundaries);
    let seen = keys_by_range(source, &t, &ranges, page).await?;
    let dupes: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
    assert!(dupes.is_empty(), "keys read more than once: {dupes:?}");
    let mut want = expected.clone();
    want.sort();
    let got: Vec<String> = seen.into_keys().collect();
    assert_eq!(got, want, "ranges {ranges:?}");
    if !expected.is_empty() && rows_per_job < expected.len() as u64 {
        assert!(
            ranges.len() > 1,
            "{} keys, {rows_per_job} per job, one range",
            expected.len()
        );
    }
    Ok(())
}

#[test]
fn planned_ranges_cover_every_key_exactly_once() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let stack = rt.block_on(TestStack::new("plan_prop"))?;
    let source = rt.block_on(PgSource::connect(&stack.env.pg_url, 2))?;
    let mut runner = TestRunner::new(Config {
        cases: 60,
        ..Config::default()
    });
    // Each case (and each shrinking step) gets its own table.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(
        &(key_sets(), 1u64..40, 1u32..9),
        |(keys, rows_per_job, page)| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(check_cover(&stack, &source, n, &keys, rows_per_job, page))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))
        },
    );
    rt.block_on(stack.cleanup())?;
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

#[tokio::test]
async fn a_sampled_big_table_is_tiled_evenly() -> Result<()> {
    let stack = TestStack::new("plan_big").await?;
    let src = stack.source("big");
    // Wide enough rows that the table is far over the read-whole threshold,
    // with a skewed key: half the rows in a narrow cluster.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, pad text); \
             INSERT INTO {src} SELECT CASE WHEN g % 2 = 0 THEN g ELSE g::bigint * 1000003 END, repeat('x', 200) \
             FROM generate_series(1, 120000) g; ANALYZE {src};"
        ))
        .await?;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let t = TableRef::parse(&src);
    let schema = source.describe(&t).await?;
    let sample = source.sample_boundaries(&schema, &spec(10_000)).await?;
    assert!(sample.percent < 100.0, "sampled {}%", sample.percent);
    let est = sample.estimated_rows as f64;
    assert!((est - 120_000.0).abs() / 120_000.0 < 0.25, "estimate {est}");
    let ranges = KeyRange::tile(sample.boundaries);
    assert!((8..=16).contains(&ranges.len()), "{} ranges", ranges.len());
    let seen = keys_by_range(&source, &t, &ranges, 5000).await?;
    assert_eq!(seen.len(), 120_000);
    assert!(seen.values().all(|c| *c == 1));
    // Even jobs despite the skew: no range holds more than 3x its share.
    let mut sizes = Vec::new();
    for r in &ranges {
        let one = keys_by_range(&source, &t, std::slice::from_ref(r), 5000).await?;
        sizes.push(one.len());
    }
    let share = 120_000 / ranges.len();
    assert!(sizes.iter().all(|s| *s < share * 3), "sizes {sizes:?}");
    stack.cleanup().await
}

#[tokio::test]
async fn plan_reports_problems_and_produce_refuses() -> Result<()> {
    let stack = TestStack::new("plan_bad").await?;
    let ok = stack.source("ok");
    let nokey = stack.source("nokey");
    let floatkey = stack.source("floatkey");
    let missing = stack.source("missing");
    let badcol = stack.source("badcol");
    stack
        .sql(&format!(
            "CREATE TABLE {ok} (id int PRIMARY KEY); INSERT INTO {ok} VALUES (1), (2); \
             CREATE TABLE {nokey} (id int); \
             CREATE TABLE {floatkey} (x float8 PRIMARY KEY); \
             CREATE TABLE {badcol} (id int PRIMARY KEY);"
        ))
        .await?;
    let cfg = stack.config(vec![
        table(ok.clone(), stack.target("ok"), &["id"], None),
        table(nokey.clone(), stack.target("nokey"), &["id"], None),
        table(floatkey.clone(), stack.target("floatkey"), &["x"], None),
        table(missing.clone(), stack.target("missing"), &["id"], None),
        table(badcol.clone(), stack.target("badcol"), &["user_id"], None),
    ]);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let plan = backfill_producer::plan(&cfg, &source, "r").await?;
    let problems = plan.problems();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has(&format!("table {nokey} has no usable key")),
        "{problems:#?}"
    );
    assert!(
        has(&format!(
            "table {floatkey}: key column x has type double precision"
        )),
        "{problems:#?}"
    );
    assert!(
        has(&format!("table {missing} does not exist")),
        "{problems:#?}"
    );
    assert!(
        has("names column user_id, which the table does not have"),
        "{problems:#?}"
    );
    assert_eq!(plan.tables[0].jobs.len(), 1);
    assert!(plan.tables[0].problems.is_empty());

    let err = backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing was enqueued"), "{err}");
    assert_eq!(stack.queue().depth().await?.total(), 0);
    assert!(stack.control().get_run("r").await?.is_none());
    stack.cleanup().await
}

#[tokio::test]
async fn a_unique_index_over_not_null_columns_serves_as_key() -> Result<()> {
    let stack = TestStack::new("plan_uniq").await?;
    let src = stack.source("u");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (a uuid NOT NULL, b date NOT NULL, c text); \
             CREATE UNIQUE INDEX ON {src} (b, a);"
        ))
        .await?;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let schema = source.describe(&TableRef::parse(&src)).await?;
    assert_eq!(schema.key_names(), vec!["b", "a"]);
    schema.check_key_types()?;
    stack.cleanup().await
}

#[tokio::test]
async fn plan_notes_unfaithful_types_and_estimates_write_cost() -> Result<()> {
    let stack = TestStack::new("plan_notes").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, d float8, n numeric, n12 numeric(12,2), pt point, \
             safe numeric(40,0), doc jsonb, body text); \
             INSERT INTO {src} SELECT g, g, g, g, point(g, g), g, '{{}}', repeat('x', 2480) FROM generate_series(1, 600) g; \
             ANALYZE {src};"
        ))
        .await?;
    let mut t = table(src.clone(), stack.target("t"), &["id"], None);
    t.types
        .insert("safe".into(), backfill_config::TypeOverride::String);
    let cfg = stack.config(vec![t]);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let plan = backfill_producer::plan(&cfg, &source, "r").await?;
    let tp = &plan.tables[0];
    let noted: Vec<&str> = [
        "column d ",
        "column n ",
        "column pt ",
        "column n12 ",
        "column safe ",
        "column doc ",
    ]
    .into_iter()
    .filter(|c| tp.notes.iter().any(|n| n.contains(c)))
    .collect();
    assert_eq!(
        noted,
        vec!["column d ", "column n ", "column pt ", "column doc "],
        "{:#?}",
        tp.notes
    );
    let note = |c: &str| tp.notes.iter().find(|n| n.contains(c)).cloned();
    assert!(
        note("column d ").is_some_and(|n| n.contains("9.99E+125")),
        "{:#?}",
        tp.notes
    );
    assert!(
        note("column doc ").is_some_and(|n| n.contains("DynamoDB's range")),
        "{:#?}",
        tp.notes
    );
    // ~2.6 KB items: 3 WCU each.
    assert!(
        (tp.avg_item_bytes - 2580.0).abs() < 100.0,
        "{}",
        tp.avg_item_bytes
    );
    assert_eq!(tp.wcu_per_item, 3.0);
    assert_eq!(tp.wcu_needed(), tp.estimated_rows as f64 * 3.0);
    stack.cleanup().await
}

/// `plan` warns before the copy when a joined key's parts can contain its
/// separator, counting the sampled rows that do (they would be rejects).
#[tokio::test]
async fn plan_warns_of_key_parts_that_contain_the_separator() -> Result<()> {
    let stack = TestStack::new("plan_sep").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (x text, y text, PRIMARY KEY (x, y)); \
             INSERT INTO {src} SELECT 'x' || g, CASE WHEN g % 10 = 0 THEN 'has#sep' || g ELSE 'y' || g END \
             FROM generate_series(1, 100) g;"
        ))
        .await?;
    let t = table(src.clone(), stack.target("t"), &["x", "y"], Some("pk"));
    let cfg = stack.config(vec![t]);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let plan = backfill_producer::plan(&cfg, &source, "r").await?;
    let notes = &plan.tables[0].notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("key attribute pk joins columns x, y")
                && n.contains("10 of 100 sampled rows")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("10 of 100 sampled rows cannot become items")),
        "{notes:#?}"
    );
    stack.cleanup().await
}

/// Values are decoded without checking each one's type (the check is made
/// once per page): a column altered after the table was described must
/// still fail the read, naming the column, and never be misread.
#[tokio::test]
async fn a_column_altered_after_describe_fails_the_read_by_name() -> Result<()> {
    let stack = TestStack::new("read_alter").await?;
    let src = stack.source("a");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, flag bool, note text); \
             INSERT INTO {src} VALUES (1, true, 'x'), (2, false, NULL);"
        ))
        .await?;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let t = TableRef::parse(&src);
    let schema = source.describe(&t).await?;
    let range = KeyRange { lo: None, hi: None };
    let q = PageQuery::new(&schema, &range);
    let rows = source.read_page(&schema, &q, None, 10).await?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].values[1], backfill_source::Value::Bool(true));
    stack
        .sql(&format!(
            "ALTER TABLE {src} ALTER COLUMN flag TYPE int USING flag::int"
        ))
        .await?;
    // A new connection (a pooled one may refuse its cached statement
    // instead, which is an error too): Postgres now sends int4.
    let fresh = PgSource::connect(&stack.env.pg_url, 1).await?;
    let err = fresh
        .read_page(&schema, &q, None, 10)
        .await
        .expect_err("an int read as the bool it was described as");
    let text = err.to_string();
    assert!(
        text.contains("flag") && text.to_lowercase().contains("int4"),
        "{text}"
    );
    stack.cleanup().await
}

/// A test that fails before `cleanup` leaves nothing behind: dropping its
/// stack drops its schema.
#[tokio::test]
async fn a_stack_dropped_without_cleanup_drops_its_schema() -> Result<()> {
    let stack = TestStack::new("dropped").await?;
    let (pg, schema) = (stack.pg.clone(), stack.schema.clone());
    let src = stack.source("t");
    stack
        .sql(&format!("CREATE TABLE {src} (id int PRIMARY KEY)"))
        .await?;
    drop(stack);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
        .bind(&schema)
        .fetch_one(&pg)
        .await?;
    anyhow::ensure!(left == 0, "schema {schema} outlived its stack");
    Ok(())
}
