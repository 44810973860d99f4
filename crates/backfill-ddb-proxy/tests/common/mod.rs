//! Set-up shared by the proxy's suites: clients built as production builds
//! them, tables at dynalite itself, and items of a chosen size.
// Each suite uses part of it (and of the imports it passes on).
#![allow(dead_code, unused_imports)]

// The suites see these through `use common::*`.
pub use std::collections::HashMap;
pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::Arc;
pub use std::time::{Duration, Instant};

pub use aws_sdk_dynamodb::primitives::Blob;
pub use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnConsumedCapacity, ScalarAttributeType, Select, TableStatus, WriteRequest,
};
pub use aws_sdk_dynamodb::Client;
pub use backfill_ddb_proxy::{
    default_upstream, size, start, throttled_body, Mode, ProxyConfig, ProxyHandle, ThrottleReason,
    THROTTLED_BODY,
};
pub use base64::Engine as _;
pub use serde_json::{json, Value};

pub type Item = HashMap<String, AttributeValue>;

/// A client of `endpoint` built as production builds it: the SDK retries
/// nothing, so each throttle the proxy answers reaches the test.
pub async fn client(endpoint: &str) -> Client {
    backfill_aws::AwsClients::for_emulator(endpoint)
        .await
        .dynamodb
}

pub async fn upstream() -> Client {
    client(&default_upstream()).await
}

pub async fn proxy(wcu: f64, burst_secs: f64, mode: Mode) -> ProxyHandle {
    start(ProxyConfig {
        burst_secs,
        mode,
        ..ProxyConfig::new(default_upstream(), wcu)
    })
    .await
    .expect("proxy starts")
}

/// A fresh table `id` (S) at dynalite itself, active.
pub async fn table(prefix: &str) -> String {
    keyed_table(prefix, ("id", ScalarAttributeType::S), None).await
}

/// A fresh table at dynalite itself with the given hash and optional
/// range key, active.
pub async fn keyed_table(
    prefix: &str,
    hash: (&str, ScalarAttributeType),
    range: Option<(&str, ScalarAttributeType)>,
) -> String {
    let name = format!("ddbproxy-{prefix}-{}", uuid::Uuid::new_v4().simple());
    let ddb = upstream().await;
    let mut create = ddb.create_table().table_name(&name);
    for (attr, ty, key_type) in std::iter::once((hash.0, hash.1, KeyType::Hash))
        .chain(range.map(|(a, t)| (a, t, KeyType::Range)))
    {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ty)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(key_type)
                    .build()
                    .unwrap(),
            );
    }
    create
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table (is dynalite running?)");
    for _ in 0..100 {
        let d = ddb.describe_table().table_name(&name).send().await.unwrap();
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("table {name} never became active");
}

pub async fn drop_table(name: &str) {
    let _ = upstream()
        .await
        .delete_table()
        .table_name(name)
        .send()
        .await;
}

pub async fn count(name: &str) -> u64 {
    let ddb = upstream().await;
    let mut total = 0u64;
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(name)
            .select(Select::Count)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        total += out.count() as u64;
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return total;
        }
    }
}

/// An item in DynamoDB JSON turned into SDK values (the proxy sizes the
/// JSON form, the SDK sends the other).
pub fn av(v: &Value) -> AttributeValue {
    let (ty, p) = v.as_object().unwrap().iter().next().unwrap();
    let b64 = |s: &Value| {
        Blob::new(
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap())
                .unwrap(),
        )
    };
    let strings = |p: &Value| -> Vec<String> {
        p.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    match ty.as_str() {
        "S" => AttributeValue::S(p.as_str().unwrap().into()),
        "N" => AttributeValue::N(p.as_str().unwrap().into()),
        "B" => AttributeValue::B(b64(p)),
        "BOOL" => AttributeValue::Bool(p.as_bool().unwrap()),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strings(p)),
        "NS" => AttributeValue::Ns(strings(p)),
        "BS" => AttributeValue::Bs(p.as_array().unwrap().iter().map(b64).collect()),
        "L" => AttributeValue::L(p.as_array().unwrap().iter().map(av).collect()),
        "M" => AttributeValue::M(
            p.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), av(v)))
                .collect(),
        ),
        other => panic!("type {other}"),
    }
}

pub fn to_item(v: &Value) -> Item {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), av(v)))
        .collect()
}

pub fn json_size(v: &Value) -> usize {
    size::item_size(v.as_object().unwrap()).unwrap()
}

/// A JSON item of exactly `bytes` bytes by DynamoDB's rules: `id`, `body`
/// padding, and (with `rich`) one attribute of every type. Numbers are
/// positive integers without trailing zeros, which dynalite sizes exactly
/// as the documented rule does.
pub fn sized_item(id: &str, bytes: usize, rich: bool) -> Value {
    let mut item = json!({ "id": { "S": id }, "body": { "S": "" } });
    if rich {
        let extra = json!({
            "n": { "N": "12345" },
            "bin": { "B": base64::engine::general_purpose::STANDARD.encode([7u8; 100]) },
            "flag": { "BOOL": true },
            "nothing": { "NULL": true },
            "list": { "L": [ { "S": "abc" }, { "N": "12" }, { "BOOL": false } ] },
            "map": { "M": { "k": { "S": "v" }, "deep": { "M": { "x": { "N": "1234" } } } } },
            "ss": { "SS": [ "a", "bc" ] },
            "ns": { "NS": [ "1", "23" ] },
            "bs": { "BS": [ "AQI=", "Aw==" ] }
        });
        for (k, v) in extra.as_object().unwrap() {
            item[k] = v.clone();
        }
    }
    let base = json_size(&item);
    assert!(base <= bytes, "item base {base} > {bytes}");
    item["body"] = json!({ "S": "x".repeat(bytes - base) });
    assert_eq!(json_size(&item), bytes);
    item
}

pub fn put_request(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
        .build()
}
