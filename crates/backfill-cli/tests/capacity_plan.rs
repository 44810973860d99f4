//! `plan` and `produce` on capacity, as an operator runs them against a
//! real Postgres and the emulator: the cost both ways, a key layout that
//! cannot reach the budget, an on-demand target below the budget (and
//! pre-warmed through the partition-true proxy), and `produce --max-cost`
//! refusing a run that costs more.

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::KeyAttribute;
use backfill_ddb_proxy::{start, OnDemand, ProxyConfig};
use backfill_testkit::{config_toml, table, TestStack};

mod common;
use common::backfill;

/// Three tenants of 400 rows, keyed `tenant, sku`, partition key
/// `tenant`, on an on-demand target (the test stack creates them so),
/// with a budget of 10,000 WCU/s.
async fn three_tenants(stack: &TestStack) -> Result<backfill_config::BackfillConfig> {
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, sku int, v text, PRIMARY KEY (tenant, sku)); \
             INSERT INTO {src} SELECT (ARRAY['acme', 'é \"q\"', 'a#b'])[1 + g % 3], g, 'v' \
             FROM generate_series(1, 1200) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
        .await?;
    let mut t = table(src, target, &["tenant"], None);
    t.sort_key = Some(KeyAttribute::columns(&["sku"], None));
    t.write_budget_wcu = Some(10_000.0);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 200;
    Ok(cfg)
}

#[tokio::test]
async fn plan_prices_both_ways_names_what_limits_the_rate_and_produce_refuses_above_max_cost(
) -> Result<()> {
    let stack = TestStack::new("cli_cost").await?;
    let cfg = three_tenants(&stack).await?;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;

    let (code, out, err) = backfill(&path, &["plan", "--run", "r"]).await?;
    println!("{out}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("provisioned") && out.contains("on demand ("),
        "{out}"
    );
    assert!(
        out.contains("key layout: ~3 distinct partition-key values")
            && out.contains("reaches at most ~2700 WCU/s of the 10000 budget"),
        "{out}"
    );
    // Three values over the ten partitions of 10,000 WCU/s: two of them
    // may share one, and the copy lasts as long as that one takes.
    let spread = out
        .lines()
        .find(|l| {
            l.contains(
                "key spread: ~3 partition-key values hash unevenly over at least 10 partitions",
            )
        })
        .unwrap_or_else(|| panic!("no key spread line: {out}"));
    let reach: f64 = spread
        .split("averages at most ~")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {spread}"));
    assert!((2_000.0..2_700.0).contains(&reach), "{spread}");
    assert!(
        out.contains("absorbs ~4000 write units/s now (a new table's level)")
            && out.contains("`plan --prewarm`"),
        "{out}"
    );

    let (code, out, err) =
        backfill(&path, &["produce", "--run", "r", "--max-cost", "0.000001"]).await?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("above --max-cost $0.00"), "{err}");
    assert!(
        stack.control().jobs("r").await?.is_empty(),
        "a refused run enqueued jobs"
    );
    let (code, out, err) = backfill(&path, &["produce", "--run", "r", "--max-cost", "100"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("enqueued now"), "{out}");
    assert!(!stack.control().jobs("r").await?.is_empty());
    stack.cleanup().await
}

#[tokio::test]
async fn plan_prewarms_an_on_demand_target_to_the_budget() -> Result<()> {
    let stack = TestStack::new("cli_prewarm").await?;
    let mut cfg = three_tenants(&stack).await?;
    let proxy = start(ProxyConfig {
        on_demand: Some(OnDemand::default()),
        partition_key: Some("tenant".into()),
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 1e9)
    })
    .await?;
    cfg.aws.dynamodb_endpoint_url = Some(proxy.url.clone());
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let (code, out, err) = backfill(&path, &["plan", "--run", "w", "--prewarm"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("pre-warmed to 10000 write units/s"),
        "{out}{err}"
    );
    proxy.shutdown().await;
    stack.cleanup().await
}
