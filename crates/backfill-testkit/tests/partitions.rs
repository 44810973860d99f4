//! Partition-true capacity, end to end through the real SDK client and the
//! partition-true proxy in front of dynalite: a hot key range slows that
//! key and not the fleet, a table-wide throttle slows the fleet, and items
//! one hot partition leaves unprocessed are resent until written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType as T};
use backfill_capacity::{KeyPacer, WriteLimiter};
use backfill_ddb_proxy::{start, ProxyConfig};
use backfill_dynamo::{key_hash, DynamoSink, Item, KeyPacing, RetryPolicy};
use backfill_testkit::TestStack;

/// An item of `tenant` (the partition key) with sort key `id`, ~1 WCU.
fn item(tenant: &str, id: u32) -> Item {
    HashMap::from([
        ("tenant".to_string(), AttributeValue::S(tenant.to_string())),
        ("id".to_string(), AttributeValue::N(id.to_string())),
        (
            "v".to_string(),
            AttributeValue::S(format!("row {id} \"é\" \t")),
        ),
    ])
}

fn key(tenant: &str, id: u32) -> Item {
    HashMap::from([
        ("tenant".to_string(), AttributeValue::S(tenant.to_string())),
        ("id".to_string(), AttributeValue::N(id.to_string())),
    ])
}

/// Patient enough to wait out a slow partition.
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 200,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(300),
    }
}

struct Setup {
    stack: TestStack,
    target: String,
    limiter: Arc<WriteLimiter>,
    pacer: Arc<KeyPacer>,
    sink: DynamoSink,
    proxy: backfill_ddb_proxy::ProxyHandle,
}

async fn setup(
    name: &str,
    cfg: impl FnOnce(String) -> ProxyConfig,
    retry: RetryPolicy,
) -> Result<Setup> {
    let stack = TestStack::new(name).await?;
    let target = stack.target("t");
    stack
        .create_target(&target, ("tenant", T::S), Some(("id", T::N)))
        .await?;
    let proxy = start(cfg(stack.env.dynamodb_url.clone())).await?;
    let client = backfill_aws::AwsClients::for_emulator(&proxy.url)
        .await
        .dynamodb;
    let limiter = Arc::new(WriteLimiter::new(&target, 1000.0));
    let pacer = Arc::new(KeyPacer::new(1000.0));
    let sink = DynamoSink::new(client, retry)
        .limited(limiter.clone())
        .paced(KeyPacing {
            pacer: pacer.clone(),
            attribute: "tenant".into(),
        });
    Ok(Setup {
        stack,
        target,
        limiter,
        pacer,
        sink,
        proxy,
    })
}

/// One partition-key value written faster than its partition takes: the
/// proxy refuses that key range, the sink slows the key and resends until
/// every item is in, and the fleet's share is untouched.
#[tokio::test]
async fn a_key_range_throttle_slows_that_key_and_not_the_fleet() -> Result<()> {
    let s = setup(
        "hot-key",
        |up| ProxyConfig {
            partition_key: Some("tenant".into()),
            partitions: Some(4),
            partition_wcu_per_sec: 10.0,
            partition_burst_secs: 1.0,
            ..ProxyConfig::new(up, 100_000.0)
        },
        patient(),
    )
    .await?;
    let items: Vec<Item> = (0..40).map(|i| item("hot tenant/é", i)).collect();
    let started = Instant::now();
    let out = s.sink.put_items(&s.target, items, 4).await?;
    let took = started.elapsed();
    ensure!(
        out.throttled_key_range > 0,
        "the key was never throttled: {out:?}"
    );
    ensure!(
        out.throttled_key_range == out.throttled,
        "every throttle was the key's: {out:?}"
    );
    let c = &s.proxy.counters;
    ensure!(
        c.throttled_table.load(std::sync::atomic::Ordering::Relaxed) == 0,
        "the table itself was never over its rate"
    );
    ensure!(
        s.limiter.rate() == 1000.0,
        "the fleet's share was cut for one key: {}",
        s.limiter.rate()
    );
    let hot = key_hash(&AttributeValue::S("hot tenant/é".into()));
    let cold = key_hash(&AttributeValue::S("cold".into()));
    let now = Instant::now();
    ensure!(
        s.pacer.rate(hot, now) < 1000.0,
        "the hot key was not slowed"
    );
    ensure!(s.pacer.rate(cold, now) == 1000.0, "another key was slowed");
    let hot_keys = s.pacer.hot_keys(3, now);
    ensure!(
        hot_keys.len() == 1 && hot_keys[0].label == "tenant=hot tenant/é",
        "{hot_keys:?}"
    );
    // 40 WCU through a 10 WCU/s partition with 10 of burst: about 3 s.
    ensure!(
        took >= Duration::from_secs(2),
        "too fast for the partition: {took:?}"
    );
    let keys = (0..40).map(|i| key("hot tenant/é", i)).collect();
    let found = s.sink.get_items(&s.target, keys).await?;
    ensure!(found.len() == 40, "{} of 40 items written", found.len());
    s.proxy.shutdown().await;
    s.stack.cleanup().await
}

/// The table's own rate exhausted: the throttle names the table, and the
/// fleet's share halves while the key's pace stays.
#[tokio::test]
async fn a_table_level_throttle_slows_the_fleet() -> Result<()> {
    let s = setup(
        "table-throttle",
        |up| ProxyConfig {
            burst_secs: 0.0,
            partition_key: Some("tenant".into()),
            partitions: Some(1),
            ..ProxyConfig::new(up, 0.5)
        },
        RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    )
    .await?;
    let err = s
        .sink
        .put_items(&s.target, vec![item("a", 1)], 1)
        .await
        .expect_err("the table admits nothing");
    ensure!(err.is_retryable(), "{err}");
    ensure!(
        (s.limiter.rate() - 250.0).abs() < 1e-6,
        "two table throttles halve the share twice: {}",
        s.limiter.rate()
    );
    let a = key_hash(&AttributeValue::S("a".into()));
    ensure!(
        s.pacer.rate(a, Instant::now()) == 1000.0,
        "the key was blamed"
    );
    ensure!(
        s.proxy
            .counters
            .throttled_key_range
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    );
    s.proxy.shutdown().await;
    s.stack.cleanup().await
}

/// A batch across many keys, one of them hot: the proxy writes the rest
/// and returns the hot partition's items unprocessed; the sink resends
/// them until they are written, and slows only that key.
#[tokio::test]
async fn unprocessed_items_of_one_hot_partition_are_resent_until_written() -> Result<()> {
    let s = setup(
        "hot-partition",
        |up| ProxyConfig {
            partition_key: Some("tenant".into()),
            partitions: Some(64),
            partition_wcu_per_sec: 4.0,
            partition_burst_secs: 1.0,
            ..ProxyConfig::new(up, 100_000.0)
        },
        patient(),
    )
    .await?;
    // 15 items of one tenant and one item each of 10 others, interleaved
    // in one batch of 25.
    let mut items = Vec::new();
    let mut keys = Vec::new();
    for i in 0..25u32 {
        let tenant = if i % 5 < 3 {
            "hot".to_string()
        } else {
            format!("t{i:02} ☃")
        };
        items.push(item(&tenant, i));
        keys.push(key(&tenant, i));
    }
    let out = s.sink.put_items(&s.target, items, 1).await?;
    let c = &s.proxy.counters;
    ensure!(
        c.unprocessed_key_range
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the hot partition returned nothing unprocessed"
    );
    ensure!(out.retries > 0 && out.throttled_key_range > 0, "{out:?}");
    ensure!(
        s.limiter.rate() == 1000.0,
        "the fleet was slowed: {}",
        s.limiter.rate()
    );
    let found = s.sink.get_items(&s.target, keys).await?;
    ensure!(found.len() == 25, "{} of 25 items written", found.len());
    s.proxy.shutdown().await;
    s.stack.cleanup().await
}
