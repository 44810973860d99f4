//! The DynamoDB sink against the emulator through a failing proxy: batches
//! are sent as JSON the sink writes itself, one that fails as a whole is
//! resent from the bytes it was first sent as (the items are not copied in
//! case of failure), and every item of every attribute type still arrives
//! exactly.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType as T};
use backfill_ddb_proxy::{start, Faults, ProxyConfig};
use backfill_dynamo::{DynamoSink, Item, RetryPolicy};
use backfill_testkit::TestStack;

/// A client of `endpoint` that never retries by itself, so every failure
/// reaches the sink's own retry loop.
fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

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
        client(&proxy.url),
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
