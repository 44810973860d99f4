//! The proxy against the running dynalite (`BACKFILL_TEST_DYNAMODB_URL`,
//! default http://127.0.0.1:4567), driven by the real AWS SDK.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnConsumedCapacity, ScalarAttributeType, Select, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use backfill_ddb_proxy::{
    default_upstream, size, start, Mode, ProxyConfig, ProxyHandle, THROTTLED_BODY,
};
use base64::Engine as _;
use serde_json::{json, Value};

type Item = HashMap<String, AttributeValue>;

/// A client of `endpoint` built as production builds it: the SDK retries
/// nothing, so each throttle the proxy answers reaches the test.
async fn client(endpoint: &str) -> Client {
    backfill_aws::AwsClients::for_emulator(endpoint)
        .await
        .dynamodb
}

async fn upstream() -> Client {
    client(&default_upstream()).await
}

async fn proxy(wcu: f64, burst_secs: f64, mode: Mode) -> ProxyHandle {
    start(ProxyConfig {
        upstream: default_upstream(),
        write_capacity_per_sec: wcu,
        burst_secs,
        mode,
        faults: Default::default(),
    })
    .await
    .expect("proxy starts")
}

/// A fresh table `id` (S) at dynalite itself, active.
async fn table(prefix: &str) -> String {
    let name = format!("ddbproxy-{prefix}-{}", uuid::Uuid::new_v4().simple());
    let ddb = upstream().await;
    ddb.create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
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

async fn drop_table(name: &str) {
    let _ = upstream()
        .await
        .delete_table()
        .table_name(name)
        .send()
        .await;
}

async fn count(name: &str) -> u64 {
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
fn av(v: &Value) -> AttributeValue {
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

fn to_item(v: &Value) -> Item {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), av(v)))
        .collect()
}

fn json_size(v: &Value) -> usize {
    size::item_size(v.as_object().unwrap()).unwrap()
}

/// A JSON item of exactly `bytes` bytes by DynamoDB's rules: `id`, `body`
/// padding, and (with `rich`) one attribute of every type. Numbers are
/// positive integers without trailing zeros, which dynalite sizes exactly
/// as the documented rule does.
fn sized_item(id: &str, bytes: usize, rich: bool) -> Value {
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

fn put_request(item: Item) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_wcu_equals_what_dynalite_reports() {
    let name = table("wcu").await;
    let p = proxy(1_000_000.0, 300.0, Mode::Forward).await;
    let ddb = client(&p.url).await;
    let mut reported = 0.0;

    // A 0.5 KB put costs 1, a 5.5 KB put 6; items at the kilobyte
    // boundaries with every attribute type cost what dynalite says.
    let singles = [
        (512, false, 1.0),
        (5632, false, 6.0),
        (1023, true, 1.0),
        (1024, true, 1.0),
        (1025, true, 2.0),
        (2048, true, 2.0),
        (2049, true, 3.0),
    ];
    for (i, (bytes, rich, want)) in singles.into_iter().enumerate() {
        let before = p.counters.accepted_wcu();
        let item = sized_item(&format!("single-{i}"), bytes, rich);
        let out = ddb
            .put_item()
            .table_name(&name)
            .set_item(Some(to_item(&item)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        let units = out.consumed_capacity().unwrap().capacity_units().unwrap();
        assert_eq!(units, want, "dynalite's units for a {bytes}-byte item");
        assert_eq!(
            p.counters.accepted_wcu() - before,
            units,
            "proxy's units for a {bytes}-byte item"
        );
        reported += units;
    }

    // Three 3 KB items in one BatchWriteItem cost 9.
    let before = p.counters.accepted_wcu();
    let writes: Vec<WriteRequest> = (0..3)
        .map(|i| put_request(to_item(&sized_item(&format!("batch-{i}"), 3000, i == 1))))
        .collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    assert!(out.unprocessed_items().is_none_or(|u| u.is_empty()));
    let units: f64 = out
        .consumed_capacity()
        .iter()
        .filter_map(|c| c.capacity_units())
        .sum();
    assert_eq!(units, 9.0);
    assert_eq!(p.counters.accepted_wcu() - before, 9.0);
    reported += units;

    assert_eq!(p.counters.accepted_wcu(), reported);
    assert_eq!(p.counters.accepted_items(), 10);
    assert_eq!(p.counters.accepted_write_requests(), 8);
    assert_eq!(p.counters.throttled_requests(), 0);
    assert_eq!(count(&name).await, 10);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_budget_returns_the_rest_as_unprocessed_items() {
    let name = table("cut").await;
    // 10 WCU/s and 1 s of burst: the bucket holds 10. Items of 9 KB cost 9,
    // so one fits and the next needs most of a second of refill.
    let p = proxy(10.0, 1.0, Mode::Forward).await;
    let ddb = client(&p.url).await;
    let items: Vec<Value> = (0..3)
        .map(|i| sized_item(&format!("cut-{i}"), 9 * 1024, false))
        .collect();
    let writes: Vec<WriteRequest> = items.iter().map(|i| put_request(to_item(i))).collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    // dynalite consumed the first item only.
    let units: f64 = out
        .consumed_capacity()
        .iter()
        .filter_map(|c| c.capacity_units())
        .sum();
    assert_eq!(units, 9.0);
    let mut unprocessed = out.unprocessed_items().cloned().unwrap_or_default();
    let rest = &unprocessed[&name];
    let ids: Vec<&str> = rest
        .iter()
        .map(|w| {
            w.put_request().unwrap().item()["id"]
                .as_s()
                .unwrap()
                .as_str()
        })
        .collect();
    assert_eq!(ids, ["cut-1", "cut-2"]);
    assert_eq!(rest[0].put_request().unwrap().item(), &to_item(&items[1]));
    assert_eq!(count(&name).await, 1);
    assert_eq!(p.counters.unprocessed_items_returned(), 2);

    // Right away, not even one fits: the whole call is throttled, and so
    // is a single put.
    let err = ddb
        .batch_write_item()
        .set_request_items(Some(unprocessed.clone()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(to_item(&items[2])))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    assert_eq!(p.counters.throttled_requests(), 2);

    // Resending the unprocessed items with backoff writes them all.
    for _ in 0..20 {
        if unprocessed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match ddb
            .batch_write_item()
            .set_request_items(Some(unprocessed.clone()))
            .send()
            .await
        {
            Ok(out) => unprocessed = out.unprocessed_items().cloned().unwrap_or_default(),
            Err(e) => assert!(e
                .into_service_error()
                .is_provisioned_throughput_exceeded_exception()),
        }
    }
    assert!(unprocessed.is_empty());
    assert_eq!(count(&name).await, 3);
    assert_eq!(p.counters.accepted_wcu(), 27.0);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_is_held_to_the_budget() {
    const WCU: f64 = 50.0;
    let name = table("hammer").await;
    let t0 = Instant::now();
    let p = proxy(WCU, 1.0, Mode::Forward).await;
    let initial = WCU; // min(rate * burst, rate * 1 s)
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    for w in 0..6 {
        let ddb = client(&p.url).await;
        let name = name.clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(2);
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                // A 1 KB put (1 WCU) ...
                let item = to_item(&sized_item(&format!("w{w}-p{n}"), 1000, false));
                match ddb
                    .put_item()
                    .table_name(&name)
                    .set_item(Some(item))
                    .send()
                    .await
                {
                    Ok(_) => stats.put_ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let e = e.into_service_error();
                        assert!(e.is_provisioned_throughput_exceeded_exception(), "{e:?}");
                        stats.throttled.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // ... and a batch of ten 1.5 KB items (2 WCU each).
                let writes: Vec<WriteRequest> = (0..10)
                    .map(|i| {
                        put_request(to_item(&sized_item(&format!("w{w}-b{n}-{i}"), 1500, false)))
                    })
                    .collect();
                match ddb
                    .batch_write_item()
                    .request_items(&name, writes)
                    .send()
                    .await
                {
                    Ok(out) => {
                        let left = out
                            .unprocessed_items()
                            .and_then(|u| u.get(&name))
                            .map_or(0, Vec::len) as u64;
                        stats.batch_written.fetch_add(10 - left, Ordering::Relaxed);
                        stats.unprocessed.fetch_add(left, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let e = e.into_service_error();
                        assert!(e.is_provisioned_throughput_exceeded_exception(), "{e:?}");
                        stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let c = p.counters.snapshot();
    let written =
        stats.put_ok.load(Ordering::Relaxed) + stats.batch_written.load(Ordering::Relaxed);
    eprintln!("after {elapsed:.2} s: {c}; client saw {written} written, {stats:?}");

    let bound = WCU * elapsed + initial;
    assert!(
        c.accepted_wcu <= bound,
        "{} WCU accepted > {bound}",
        c.accepted_wcu
    );
    assert!(
        c.accepted_wcu >= initial,
        "the initial bucket alone is {initial}"
    );
    assert!(c.throttled_requests > 0);
    assert!(c.unprocessed_items_returned > 0);
    // The client saw exactly what the proxy counted, and dynalite holds
    // exactly the items the proxy admitted.
    assert_eq!(
        c.throttled_requests,
        stats.throttled.load(Ordering::Relaxed)
    );
    assert_eq!(
        c.unprocessed_items_returned,
        stats.unprocessed.load(Ordering::Relaxed)
    );
    assert_eq!(c.accepted_items, written);
    assert_eq!(count(&name).await, written);
    p.shutdown().await;
    drop_table(&name).await;
}

#[derive(Debug, Default)]
struct Stats {
    put_ok: AtomicU64,
    batch_written: AtomicU64,
    unprocessed: AtomicU64,
    throttled: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_answers_writes_without_forwarding() {
    let name = table("blackhole").await;
    let p = proxy(1_000_000.0, 300.0, Mode::Blackhole).await;
    let ddb = client(&p.url).await;

    let out = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(to_item(&sized_item("a", 5632, true))))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    let cc = out.consumed_capacity().unwrap();
    assert_eq!(cc.capacity_units(), Some(6.0));
    assert_eq!(cc.table_name(), Some(name.as_str()));

    let writes: Vec<WriteRequest> = (0..3)
        .map(|i| put_request(to_item(&sized_item(&format!("b{i}"), 3000, false))))
        .collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .unwrap();
    assert!(out.unprocessed_items().unwrap().is_empty());
    let cc = &out.consumed_capacity()[0];
    assert_eq!(cc.capacity_units(), Some(9.0));
    assert_eq!(cc.table().and_then(|t| t.capacity_units()), Some(9.0));

    let key = HashMap::from([("id".to_string(), AttributeValue::S("a".into()))]);
    ddb.update_item()
        .table_name(&name)
        .set_key(Some(key.clone()))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let out = ddb
        .delete_item()
        .table_name(&name)
        .set_key(Some(key))
        .send()
        .await
        .unwrap();
    assert!(out.consumed_capacity().is_none());

    assert_eq!(p.counters.forwarded_requests(), 0);
    assert_eq!(p.counters.accepted_wcu(), 6.0 + 9.0 + 1.0 + 1.0);
    // Reads are still forwarded, and the table stayed empty.
    let scanned = ddb.scan().table_name(&name).send().await.unwrap();
    assert_eq!(scanned.count(), 0);
    assert_eq!(p.counters.forwarded_requests(), 1);
    assert_eq!(count(&name).await, 0);
    p.shutdown().await;
    drop_table(&name).await;
}

/// A raw request to the proxy, signed-looking (the proxy does not check).
async fn raw(url: &str, op: &str, body: &str) -> (u16, String, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(url)
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-date", "20250101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-target, Signature=00",
        )
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_bad_input_have_dynamodbs_error_shapes() {
    let name = table("shapes").await;
    // No capacity at all: every write is throttled.
    let p = proxy(0.0, 300.0, Mode::Forward).await;
    let put = json!({"TableName": name, "Item": {"id": {"S": "x"}}}).to_string();
    let (status, ct, body) = raw(&p.url, "PutItem", &put).await;
    assert_eq!((status, ct.as_str()), (400, "application/x-amz-json-1.0"));
    assert_eq!(body, THROTTLED_BODY);
    let batch = json!({"RequestItems": {&name: [{"PutRequest": {"Item": {"id": {"S": "x"}}}}]}})
        .to_string();
    let (status, _, body) = raw(&p.url, "BatchWriteItem", &batch).await;
    assert_eq!((status, body.as_str()), (400, THROTTLED_BODY));
    let (status, _, body) = raw(&p.url, "DeleteItem", &put).await;
    assert_eq!((status, body.as_str()), (400, THROTTLED_BODY));

    // The SDK sees the typed error.
    let ddb = client(&p.url).await;
    let err = ddb
        .update_item()
        .table_name(&name)
        .key("id", AttributeValue::S("x".into()))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    assert_eq!(
        err.meta().message(),
        Some(
            "The level of configured provisioned throughput for the table was exceeded. \
             Consider increasing your provisioning level with the UpdateTable API."
        )
    );

    // Malformed input is a 400 with a DynamoDB-like type, never a crash.
    for (op, bad) in [
        ("PutItem", "{not json"),
        ("PutItem", ""),
        ("PutItem", "[1, 2]"),
        ("BatchWriteItem", "{\"RequestItems\": 5}"),
        (
            "PutItem",
            "{\"TableName\": \"t\", \"Item\": {\"id\": {\"S\": 7}}}",
        ),
        (
            "PutItem",
            "{\"TableName\": \"t\", \"Item\": {\"b\": {\"B\": \"%%%\"}}}",
        ),
    ] {
        let (status, _, body) = raw(&p.url, op, bad).await;
        assert_eq!(status, 400, "{op} {bad:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["__type"], "com.amazon.coral.service#SerializationException",
            "{op} {bad:?}"
        );
    }
    for (op, bad) in [
        ("PutItem", "{\"TableName\": \"t\"}"),
        (
            "PutItem",
            "{\"TableName\": \"t\", \"Item\": {\"id\": {\"Q\": \"x\"}}}",
        ),
        ("BatchWriteItem", "{\"RequestItems\": {}}"),
        (
            "BatchWriteItem",
            "{\"RequestItems\": {\"t\": [{\"Nope\": {}}]}}",
        ),
    ] {
        let (status, _, body) = raw(&p.url, op, bad).await;
        assert_eq!(status, 400, "{op} {bad:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["__type"], "com.amazon.coral.validate#ValidationException",
            "{op} {bad:?}"
        );
    }
    assert_eq!(p.counters.forwarded_requests(), 0);
    assert_eq!(p.counters.throttled_requests(), 4);

    // Non-write operations go through, signature headers and all.
    let (status, _, body) = raw(
        &p.url,
        "DescribeTable",
        &json!({"TableName": name}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(p.counters.forwarded_requests(), 1);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    for cfg in [
        ProxyConfig::new("http://127.0.0.1:4567", f64::NAN),
        ProxyConfig::new("http://127.0.0.1:4567", -1.0),
        ProxyConfig {
            burst_secs: f64::INFINITY,
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
        ProxyConfig::new("https://127.0.0.1:4567", 1.0),
        ProxyConfig::new("not a url", 1.0),
        ProxyConfig {
            faults: backfill_ddb_proxy::Faults {
                throttle_ratio: 1.5,
                ..Default::default()
            },
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
    ] {
        let err = start(cfg.clone()).await.expect_err(&format!("{cfg:?}"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_its_url_and_counters_on_sigint() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backfill-ddb-proxy"))
        .args([
            "--upstream",
            &default_upstream(),
            "--wcu",
            "0",
            "--burst-secs",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, _, body) = raw(
        &url,
        "PutItem",
        r#"{"TableName":"t","Item":{"id":{"S":"x"}}}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (400, THROTTLED_BODY));
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let counters = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&counters).unwrap();
    assert_eq!(v["throttled_requests"], 1);
    assert_eq!(v["accepted_wcu"].as_f64(), Some(0.0));
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_5xx_and_costs_nothing() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = start(ProxyConfig {
        burst_secs: 1.0,
        ..ProxyConfig::new(format!("http://127.0.0.1:{port}"), 5.0)
    })
    .await
    .unwrap();
    let put = r#"{"TableName":"t","Item":{"id":{"S":"x"},"body":{"S":"abc"}}}"#;
    for _ in 0..10 {
        let (status, _, body) = raw(&p.url, "PutItem", put).await;
        assert_eq!(status, 502, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["__type"],
            "com.amazonaws.dynamodb.v20120810#InternalServerError"
        );
    }
    // Ten failed puts of 1 WCU against a bucket of 5: refunded, never throttled.
    assert_eq!(p.counters.throttled_requests(), 0);
    assert_eq!(p.counters.accepted_wcu(), 0.0);
    assert_eq!(p.counters.forwarded_requests(), 10);
    p.shutdown().await;
}

#[tokio::test]
async fn injected_faults_hit_their_share_and_half_of_each_batch() {
    let name = table("faults").await;
    let p = start(ProxyConfig {
        faults: backfill_ddb_proxy::Faults {
            throttle_ratio: 0.2,
            server_error_ratio: 0.2,
            unprocessed_half: false,
        },
        ..ProxyConfig::new(default_upstream(), 1e6)
    })
    .await
    .unwrap();
    let body = json!({ "TableName": name }).to_string();
    let (mut throttled, mut failed, mut ok) = (0, 0, 0);
    for _ in 0..500 {
        match raw(&p.url, "DescribeTable", &body).await {
            (400, _, b) if b == THROTTLED_BODY => throttled += 1,
            (500, _, b) if b.contains("InternalServerError") => failed += 1,
            (200, _, _) => ok += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // 20% each, give or take what 500 draws allow.
    assert!(
        (70..=130).contains(&throttled),
        "{throttled} throttled of 500"
    );
    assert!((70..=130).contains(&failed), "{failed} failed of 500");
    assert_eq!(throttled + failed + ok, 500);
    assert_eq!(p.counters.injected_faults(), (throttled + failed) as u64);
    p.shutdown().await;

    let p = start(ProxyConfig {
        faults: backfill_ddb_proxy::Faults {
            unprocessed_half: true,
            ..Default::default()
        },
        ..ProxyConfig::new(default_upstream(), 1e6)
    })
    .await
    .unwrap();
    let ddb = client(&p.url).await;
    let writes: Vec<WriteRequest> = (0..5)
        .map(|i| put_request(to_item(&sized_item(&format!("half-{i}"), 100, false))))
        .collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .send()
        .await
        .unwrap();
    let rest = out.unprocessed_items().unwrap()[&name].len();
    assert_eq!(rest, 2, "of 5 requests, the last 2 come back");
    assert_eq!(p.counters.injected_faults(), 2);
    assert_eq!(p.counters.accepted_items(), 3);
}
