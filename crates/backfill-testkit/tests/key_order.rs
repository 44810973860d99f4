//! Every supported key type is paged in its own order: the planned ranges,
//! read page by page with pages smaller than jobs, return every row exactly
//! once, and every page query is an index scan on the key (no sort).
//!
//! The values are the ones that break a reader that orders by the key's text
//! form instead of the column: negative and fractional numerics of several
//! scales, BC dates, timestamps past the year 9999, collations other than C.

use anyhow::{Context, Result};
use backfill_job::{KeyRange, KeyTuple};
use backfill_source::reader::{PageQuery, SampleSpec};
use backfill_source::{PgSource, TableRef};
use backfill_testkit::{keys_by_range, TestStack};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// One key column: its SQL type and the text of its values.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int2,
    Int4,
    Int8,
    Numeric,
    Text,
    TextIcu,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
}

impl Kind {
    fn sql_type(self) -> &'static str {
        match self {
            Kind::Int2 => "int2",
            Kind::Int4 => "int4",
            Kind::Int8 => "int8",
            Kind::Numeric => "numeric",
            Kind::Text => "text",
            Kind::TextIcu => "text COLLATE \"en-x-icu\"",
            Kind::Uuid => "uuid",
            Kind::Date => "date",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamptz",
        }
    }

    /// Values of this kind as Postgres input text.
    fn values(self) -> BoxedStrategy<String> {
        // (day, era): years past 9999 and BC years both sort wrongly as text.
        let date = (1i32..12_500, 1u8..13, 1u8..29, any::<bool>()).prop_map(|(y, m, d, bc)| {
            let era = if bc && y < 4000 { " BC" } else { "" };
            (format!("{y:04}-{m:02}-{d:02}"), era)
        });
        match self {
            Kind::Int2 => any::<i16>().prop_map(|i| i.to_string()).boxed(),
            Kind::Int4 => (-3000i32..3000).prop_map(|i| i.to_string()).boxed(),
            Kind::Int8 => any::<i64>().prop_map(|i| i.to_string()).boxed(),
            Kind::Numeric => prop_oneof![
                (-5000i64..5000).prop_map(|i| i.to_string()),
                // negatives, fractions and trailing zeros (different scales)
                (-999i64..999, 0u32..5, 0usize..4).prop_map(|(i, f, zeros)| format!(
                    "{}.{f}{}",
                    i,
                    "0".repeat(zeros)
                )),
                (any::<i64>(), 0u32..1000).prop_map(|(i, f)| format!("{i}{f:03}.{f}")),
                Just("NaN".to_string()),
            ]
            .boxed(),
            Kind::Text | Kind::TextIcu => "[^\u{0}]{0,6}".boxed(),
            Kind::Uuid => any::<u128>()
                .prop_map(|u| uuid::Uuid::from_u128(u).to_string())
                .boxed(),
            Kind::Date => date.prop_map(|(day, era)| format!("{day}{era}")).boxed(),
            Kind::Timestamp => (date, 0u32..86_400, 0u32..1_000_000)
                .prop_map(|((day, bc), s, us)| {
                    format!(
                        "{day} {:02}:{:02}:{:02}.{us:06}{bc}",
                        s / 3600,
                        s / 60 % 60,
                        s % 60
                    )
                })
                .boxed(),
            Kind::TimestampTz => (date, 0u32..86_400, -12i32..14)
                .prop_map(|((day, bc), s, tz)| {
                    format!(
                        "{day} {:02}:{:02}:{:02}{tz:+03}{bc}",
                        s / 3600,
                        s / 60 % 60,
                        s % 60
                    )
                })
                .boxed(),
        }
    }
}

/// Every single-column key kind, and composites whose leading column is not
/// an integer or whose integer columns used to lose their index.
fn layouts() -> Vec<Vec<Kind>> {
    use Kind::*;
    let mut all: Vec<Vec<Kind>> = [
        Int2,
        Int4,
        Int8,
        Numeric,
        Text,
        TextIcu,
        Uuid,
        Date,
        Timestamp,
        TimestampTz,
    ]
    .into_iter()
    .map(|k| vec![k])
    .collect();
    all.extend([
        vec![Numeric, Text],
        vec![Int4, Int4],
        vec![Date, Uuid],
        vec![TextIcu, Int8],
        vec![TimestampTz, Numeric],
    ]);
    all
}

fn rows_of(kinds: &[Kind]) -> BoxedStrategy<Vec<Vec<String>>> {
    let row: BoxedStrategy<Vec<String>> =
        kinds.iter().map(|k| k.values()).collect::<Vec<_>>().boxed();
    proptest::collection::vec(row, 0..160).boxed()
}

/// Creates the table (key columns `c0, c1, ...` plus a payload) and loads
/// the rows, skipping ones equal under the type (`1.0` and `1.00`).
async fn create(stack: &TestStack, name: &str, kinds: &[Kind], rows: &[Vec<String>]) -> Result<()> {
    let cols: Vec<String> = (0..kinds.len()).map(|i| format!("c{i}")).collect();
    let defs: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| format!("c{i} {}", k.sql_type()))
        .collect();
    stack
        .sql(&format!(
            "CREATE TABLE {name} ({}, payload text, PRIMARY KEY ({}))",
            defs.join(", "),
            cols.join(", ")
        ))
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let casts: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| format!("u{i}::{}", k.sql_type().split(' ').next().unwrap_or("text")))
        .collect();
    let unnest: Vec<String> = (1..=kinds.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..kinds.len()).map(|i| format!("u{i}")).collect();
    let sql = format!(
        "INSERT INTO {name} SELECT {}, 'p' FROM unnest({}) AS u({}) ON CONFLICT DO NOTHING",
        casts.join(", "),
        unnest.join(", "),
        aliases.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for i in 0..kinds.len() {
        let col: Vec<String> = rows.iter().map(|r| r[i].clone()).collect();
        q = q.bind(col);
    }
    q.execute(&stack.pg)
        .await
        .with_context(|| format!("loading {rows:?}"))?;
    Ok(())
}

async fn check_cover(
    stack: &TestStack,
    source: &PgSource,
    name: &str,
    kinds: &[Kind],
    rows: &[Vec<String>],
    rows_per_job: u64,
    page: u32,
) -> Result<()> {
    create(stack, name, kinds, rows).await?;
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {name}"))
        .fetch_one(&stack.pg)
        .await?;
    let t = TableRef::parse(name);
    let schema = source.describe(&t).await?;
    let sample = source
        .sample_boundaries(
            &schema,
            &SampleSpec {
                rows_per_job,
                samples_per_job: 20,
                max_sample_rows: 1_000_000,
                parts_per_job: 1,
                seed: 7,
            },
        )
        .await?;
    let ranges = KeyRange::tile(sample.boundaries);
    let seen = keys_by_range(source, &t, &ranges, page).await?;
    // Each range cut into stripes (as a worker of a clustered table reads
    // it) is still read exactly once, stripe by stripe.
    let mut stripes = Vec::new();
    for r in &ranges {
        let parts = 1 + (page % 5);
        let starts = source.split_range(&schema, r, parts).await?;
        let rows = keys_by_range(source, &t, std::slice::from_ref(r), page)
            .await?
            .len();
        if parts >= 2 && rows >= parts as usize {
            anyhow::ensure!(
                starts.len() == parts as usize - 1,
                "{rows} rows of {r} cut in {parts} gave {} starts",
                starts.len()
            );
        }
        stripes.extend(r.cut(starts));
    }
    let striped = keys_by_range(source, &t, &stripes, page).await?;
    anyhow::ensure!(
        striped == seen,
        "stripes of {} ranges read other keys than the ranges",
        ranges.len()
    );
    // Jobs planned in parts from one sample (as the producer plans them):
    // their ranges, and the stripes their cuts start, read every key once,
    // and Postgres finds each job's cuts inside it in order.
    let parts = 1 + u64::from(page % 4);
    let planned = source
        .sample_boundaries(
            &schema,
            &SampleSpec {
                rows_per_job,
                samples_per_job: 20,
                max_sample_rows: 1_000_000,
                parts_per_job: parts,
                seed: 7,
            },
        )
        .await?;
    let jobs = KeyRange::tile_parts(planned.boundaries, parts as usize);
    let mut planned_stripes = Vec::new();
    for (r, cuts) in &jobs {
        anyhow::ensure!(
            source.cuts_in_order(&schema, r, cuts).await?,
            "cuts {cuts:?} of {r} out of order"
        );
        if let [first, .., last] = &cuts[..] {
            // The same cuts reversed are refused.
            let reversed = vec![last.clone(), first.clone()];
            anyhow::ensure!(
                !source.cuts_in_order(&schema, r, &reversed).await?,
                "reversed cuts {reversed:?} of {r} taken as in order"
            );
        }
        planned_stripes.extend(r.cut(cuts.clone()));
    }
    let ranges_in_parts: Vec<KeyRange> = jobs.iter().map(|(r, _)| r.clone()).collect();
    for (what, spans) in [("jobs", &ranges_in_parts), ("stripes", &planned_stripes)] {
        let read = keys_by_range(source, &t, spans, page).await?;
        anyhow::ensure!(
            read == seen,
            "{what} planned in {parts} parts read other keys than the ranges"
        );
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
    anyhow::ensure!(dupes.is_empty(), "keys read more than once: {dupes:?}");
    anyhow::ensure!(
        seen.len() as i64 == count,
        "{} of {count} rows read over {} ranges {ranges:?}",
        seen.len(),
        ranges.len()
    );
    if count as u64 > rows_per_job * 2 {
        anyhow::ensure!(ranges.len() > 1, "{count} rows, one range");
    }
    Ok(())
}

#[test]
fn every_key_type_is_covered_exactly_once() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let stack = rt.block_on(TestStack::new("key_order"))?;
    let source = rt.block_on(PgSource::connect(&stack.env.pg_url, 2))?;
    let n = std::sync::atomic::AtomicUsize::new(0);
    let mut failures = Vec::new();
    for kinds in layouts() {
        let mut runner = TestRunner::new(Config {
            cases: 8,
            ..Config::default()
        });
        let result = runner.run(
            &(rows_of(&kinds), 5u64..60, 1u32..12),
            |(rows, rows_per_job, page)| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = stack.source(&format!("k{i}"));
                rt.block_on(check_cover(
                    &stack,
                    &source,
                    &name,
                    &kinds,
                    &rows,
                    rows_per_job,
                    page,
                ))
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))
            },
        );
        if let Err(e) = result {
            failures.push(format!("{kinds:?}: {e}"));
        }
    }
    rt.block_on(stack.cleanup())?;
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The node types of an `EXPLAIN (FORMAT JSON)` plan, depth first, with the
/// index each scan uses.
fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let node = plan["Node Type"].as_str().unwrap_or_default().to_string();
    let index = plan["Index Name"].as_str().unwrap_or_default().to_string();
    out.push((node, index));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}

#[tokio::test]
async fn every_page_query_is_an_index_scan_on_the_key() -> Result<()> {
    let stack = TestStack::new("key_explain").await?;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let mut runner = TestRunner::deterministic();
    for (i, kinds) in layouts().into_iter().enumerate() {
        let name = stack.source(&format!("e{i}"));
        let mut rows = Vec::new();
        let strategy = kinds.iter().map(|k| k.values()).collect::<Vec<_>>();
        for _ in 0..4000 {
            rows.push(strategy.new_tree(&mut runner).expect("a value").current());
        }
        create(&stack, &name, &kinds, &rows).await?;
        stack.sql(&format!("ANALYZE {name}")).await?;
        let schema = source.describe(&TableRef::parse(&name)).await?;
        let index: String = sqlx::query_scalar(
            "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE x.indrelid = $1::regclass AND x.indisprimary",
        )
        .bind(&name)
        .fetch_one(&stack.pg)
        .await?;
        // A range with both bounds, from real keys of the table.
        let all = PageQuery::new(&schema, &KeyRange::all());
        let keys: Vec<KeyTuple> = source
            .read_page(&schema, &all, None, 3000)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect();
        let range = KeyRange {
            lo: Some(keys[100].clone()),
            hi: Some(keys[2900].clone()),
        };
        let q = PageQuery::new(&schema, &range);
        for (after, bounds) in [
            (false, vec![&keys[100], &keys[2900]]),
            (true, vec![&keys[200], &keys[2900]]),
        ] {
            let sql = format!("EXPLAIN (FORMAT JSON) {}", q.sql(after));
            let mut explain = sqlx::query_scalar::<_, serde_json::Value>(&sql);
            for b in bounds {
                for v in b {
                    explain = explain.bind(v.to_pg_text());
                }
            }
            let plan = explain.bind(100i64).fetch_one(&stack.pg).await?;
            let mut nodes = Vec::new();
            plan_nodes(&plan[0]["Plan"], &mut nodes);
            let on_key = nodes
                .iter()
                .any(|(n, idx)| n.starts_with("Index") && *idx == index);
            let sorted = nodes.iter().any(|(n, _)| n.contains("Sort"));
            anyhow::ensure!(
                on_key && !sorted,
                "{kinds:?} (after = {after}): {nodes:?}\n{}",
                q.sql(after)
            );
        }
    }
    stack.cleanup().await
}
