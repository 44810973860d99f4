//! The DynamoDB sink against the emulator through a failing proxy: batches
//! are sent as JSON the sink writes itself, one that fails as a whole is
//! resent from the bytes it was first sent as (the items are not copied in
//! case of failure), and every item of every attribute type still arrives
//! exactly.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType as T};
use backfill_ddb_proxy::{start, Faults, ProxyConfig};
use backfill_dynamo::{DynamoSink, Item, RetryPolicy};
use backfill_testkit::TestStack;

fn item(i: u32) -> Item {
    use aws_sdk_dynamodb::primitives::Blob;
    let controls: String = (1u8..0x20).map(char::from).collect();
    let bytes: Vec<u8> = (0..=255u8)
        .cycle()
        .skip(i as usize)
        .take(1 + i as usize % 7)
        .collect();
    HashMap::from([
        ("id".to_string(), AttributeValue::N(i.to_string())),
        (
            "name".to_string(),
            AttributeValue::S(format!("row {i} é \"q\" \\ 漢字 🦀")),
        ),
        ("controls \t\"".to_string(), AttributeValue::S(controls)),
        ("pad".to_string(), AttributeValue::S("x".repeat(900))),
        ("n".to_string(), AttributeValue::N(format!("{i}.25"))),
        ("b".to_string(), AttributeValue::B(Blob::new(bytes))),
        (
            "ss".to_string(),
            AttributeValue::Ss(vec!["a".into(), format!("b\n{i}")]),
        ),
        (
            "ns".to_string(),
            AttributeValue::Ns(vec!["1".into(), "-2.5E3".into()]),
        ),
        (
            "bs".to_string(),
            AttributeValue::Bs(vec![Blob::new(vec![0u8, 255]), Blob::new(vec![7u8])]),
        ),
        (
            "m".to_string(),
            AttributeValue::M(HashMap::from([(
                "l".to_string(),
                AttributeValue::L(vec![
                    AttributeValue::Bool(i.is_multiple_of(2)),
                    AttributeValue::Null(true),
                    AttributeValue::M(HashMap::new()),
                ]),
            )])),
        ),
    ])
}

#[tokio::test]
async fn batches_that_fail_whole_are_resent_from_their_bytes() -> Result<()> {
    let stack = TestStack::new("resend").await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    // Half of all requests and a fifth more fail whole (a 500 or a
    // throttle), before reaching the table.
    let proxy = start(ProxyConfig {
        faults: Faults {
            throttle_ratio: 0.2,
            server_error_ratio: 0.5,
            unprocessed_half: false,
        },
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 1e9)
    })
    .await?;
    let sink = DynamoSink::new(
        backfill_aws::AwsClients::for_emulator(&proxy.url)
            .await
            .dynamodb,
        RetryPolicy {
            max_attempts: 40,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        },
    );
    let items: Vec<Item> = (0..300).map(item).collect();
    let out = sink.put_items(&target, items.clone(), 4).await?;
    ensure!(out.items == 300, "{out:?}");
    // Most batches failed at least once, so most were resent from bytes.
    ensure!(out.retries >= 6, "only {} resends: {out:?}", out.retries);
    ensure!(proxy.counters.injected_faults() >= 6);

    let keys: Vec<Item> = (0..300)
        .map(|i| HashMap::from([("id".to_string(), AttributeValue::N(i.to_string()))]))
        .collect();
    let mut found = stack.sink().get_items(&target, keys).await?;
    found.sort_by_key(|it| match it.get("id") {
        Some(AttributeValue::N(n)) => n.parse::<u32>().unwrap_or(u32::MAX),
        _ => u32::MAX,
    });
    ensure!(found.len() == items.len(), "{} items found", found.len());
    // Compared as DynamoDB compares values: sets in any order, numbers by value.
    for (want, got) in items.iter().zip(&found) {
        let diffs = backfill_item::compare::diff_items(want, got);
        ensure!(diffs.is_empty(), "item {:?}: {diffs:?}", want.get("id"));
    }
    proxy.shutdown().await;
    stack.cleanup().await
}

/// The SDK retries nothing underneath the sink: each throttle the capacity
/// proxy answers is one request the proxy saw, and the write limiter hears
/// of it on the attempt that got it, not after a hidden round of retries.
#[tokio::test]
async fn a_throttle_reaches_the_limiter_on_the_first_attempt() -> Result<()> {
    use std::sync::Arc;

    use backfill_capacity::WriteLimiter;
    use backfill_ddb_proxy::Mode;

    let stack = TestStack::new("first-throttle").await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    // No burst and a rate below one item's cost: the proxy admits nothing,
    // so every write it sees is throttled by its own budget.
    let proxy = start(ProxyConfig {
        burst_secs: 0.0,
        mode: Mode::Forward,
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 1.0)
    })
    .await?;
    let client = backfill_aws::AwsClients::for_emulator(&proxy.url)
        .await
        .dynamodb;
    for attempts in [1u32, 3] {
        let before = proxy.counters.throttled_requests();
        let limiter = Arc::new(WriteLimiter::new(&target, 1000.0));
        let sink = DynamoSink::new(
            client.clone(),
            RetryPolicy {
                max_attempts: attempts,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
        )
        .limited(limiter.clone());
        let err = sink
            .put_items(&target, vec![item(1)], 1)
            .await
            .expect_err("the proxy admits nothing");
        ensure!(err.is_retryable(), "a throttle stays retryable: {err}");
        let seen = proxy.counters.throttled_requests() - before;
        ensure!(
            seen == u64::from(attempts),
            "{attempts} attempts of ours made {seen} requests: the SDK retried underneath"
        );
        // Halved once per throttle, each heard as it happened.
        let want = 1000.0 * 0.5f64.powi(attempts as i32);
        ensure!(
            (limiter.rate() - want).abs() < 1e-6,
            "after {attempts} throttled attempts the limiter admits {} WCU/s, not {want}",
            limiter.rate()
        );
    }
    proxy.shutdown().await;
    stack.cleanup().await
}

/// Items DynamoDB returns unprocessed were admitted by the limiter and not
/// written: they are given back, so the share pays for what is written,
/// not for every attempt. With half of every batch returned, each item is
/// sent about twice; paid twice, 200 WCU at 100 WCU/s took about 4 s.
#[tokio::test]
async fn items_returned_unprocessed_are_not_paid_for_twice() -> Result<()> {
    use std::sync::Arc;
    use std::time::Instant;

    use backfill_capacity::{KeyPacer, WriteLimiter};
    use backfill_ddb_proxy::Mode;
    use backfill_dynamo::KeyPacing;

    let stack = TestStack::new("refund").await?;
    let target = stack.target("t");
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
        .await?;
    let proxy = start(ProxyConfig {
        mode: Mode::BlackholeBatches,
        faults: Faults {
            unprocessed_half: true,
            ..Faults::default()
        },
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 1e9)
    })
    .await?;
    let limiter = Arc::new(WriteLimiter::new(&target, 100.0));
    let sink = DynamoSink::new(
        backfill_aws::AwsClients::for_emulator(&proxy.url)
            .await
            .dynamodb,
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    )
    .limited(limiter)
    // One tenant: what comes back is its key's (a hot partition's), which
    // slows the key, not the share; its pacing is set far above the share
    // so the share alone paces the writes.
    .paced(KeyPacing {
        pacer: Arc::new(KeyPacer::new(1e6)),
        attribute: "tenant".into(),
    });
    // About 950 bytes each: one WCU.
    let items: Vec<Item> = (0..200)
        .map(|i| {
            HashMap::from([
                (
                    "tenant".to_string(),
                    AttributeValue::S("acme#1 \"é\"".into()),
                ),
                ("sku".to_string(), AttributeValue::N(i.to_string())),
                ("pad".to_string(), AttributeValue::S("x".repeat(900))),
            ])
        })
        .collect();
    let started = Instant::now();
    let out = sink.put_items(&target, items, 1).await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(out.items == 200 && out.retries >= 8, "{out:?}");
    let returned = proxy.counters.unprocessed_items_returned();
    ensure!(
        returned >= 150,
        "only {returned} items were returned unprocessed"
    );
    ensure!(
        proxy.counters.accepted_items() == 200,
        "{} items accepted",
        proxy.counters.accepted_items()
    );
    // 200 WCU written at 100 WCU/s: two seconds, not the four that 200
    // items and their resends cost.
    ensure!(
        (1.6..3.0).contains(&secs),
        "200 WCU at 100 WCU/s with {returned} items resent took {secs:.2} s"
    );
    proxy.shutdown().await;
    stack.cleanup().await
}
