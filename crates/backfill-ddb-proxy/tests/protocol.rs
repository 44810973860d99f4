//! The proxy's wire behaviour against the running dynalite: DynamoDB's
//! error shapes, bad configuration, the binary's own output, an upstream
//! that is down, and injected faults.

mod common;

use common::*;

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
    let table_throttle = throttled_body(ThrottleReason::TableProvisioned, &name);
    assert_eq!(body, table_throttle);
    let batch = json!({"RequestItems": {&name: [{"PutRequest": {"Item": {"id": {"S": "x"}}}}]}})
        .to_string();
    let (status, _, body) = raw(&p.url, "BatchWriteItem", &batch).await;
    assert_eq!((status, &body), (400, &table_throttle));
    let (status, _, body) = raw(&p.url, "DeleteItem", &put).await;
    assert_eq!((status, &body), (400, &table_throttle));
    // A request that names no table gets DynamoDB's bare body.
    let nameless = json!({"Item": {"id": {"S": "x"}}}).to_string();
    let (status, _, body) = raw(&p.url, "PutItem", &nameless).await;
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
    assert_eq!(p.counters.throttled_requests(), 5);
    assert_eq!(p.counters.throttled_table(), 5);
    assert_eq!(p.counters.throttled_key_range(), 0);

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
        ProxyConfig {
            partition_key: Some(String::new()),
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
        ProxyConfig {
            partition_key: Some("id".into()),
            partitions: Some(0),
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
        ProxyConfig {
            partition_key: Some("id".into()),
            partitions: Some(backfill_ddb_proxy::MAX_PARTITIONS + 1),
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
        ProxyConfig {
            partition_wcu_per_sec: -5.0,
            ..ProxyConfig::new("http://127.0.0.1:4567", 1.0)
        },
        ProxyConfig {
            partition_burst_secs: f64::NAN,
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
            "--partition-key",
            "id",
            "--partitions",
            "2",
            "--partition-wcu",
            "500",
            "--partition-burst-secs",
            "2",
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
    assert_eq!(
        (status, body),
        (400, throttled_body(ThrottleReason::TableProvisioned, "t"))
    );
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
    assert_eq!(v["throttled_table"], 1);
    assert_eq!(v["accepted_wcu"].as_f64(), Some(0.0));
    assert_eq!(
        v["partitions"],
        json!([{"wcu": 0, "throttles": 0}, {"wcu": 0, "throttles": 0}])
    );
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
    let injected = throttled_body(ThrottleReason::TableProvisioned, &name);
    let (mut throttled, mut failed, mut ok) = (0, 0, 0);
    for _ in 0..500 {
        match raw(&p.url, "DescribeTable", &body).await {
            (400, _, b) if b == injected => throttled += 1,
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
