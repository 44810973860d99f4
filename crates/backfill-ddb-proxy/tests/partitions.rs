//! Partitions against the running dynalite, through the real SDK: a hot
//! partition-key value is held to its partition's rate while the table has
//! room, its items come back unprocessed while other keys' go through, and
//! throttles name the limit that refused them as DynamoDB does.

mod common;

use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::DeleteRequest;
use backfill_ddb_proxy::{error::KEY_RANGE_MESSAGE, partition_of};
use common::*;

const KEY_RANGE: &str = "TableWriteKeyRangeThroughputExceeded";
const TABLE: &str = "TableWriteProvisionedThroughputExceeded";

/// A proxy accounting partitions of `pk`.
async fn partitioned(
    wcu: f64,
    partitions: Option<u32>,
    partition_wcu: f64,
    pk: &str,
) -> ProxyHandle {
    start(ProxyConfig {
        burst_secs: 1.0,
        partition_key: Some(pk.into()),
        partitions,
        partition_wcu_per_sec: partition_wcu,
        partition_burst_secs: 1.0,
        ..ProxyConfig::new(default_upstream(), wcu)
    })
    .await
    .expect("proxy starts")
}

/// A table keyed by `pk` (S) and `sk` (N).
async fn pk_table(prefix: &str) -> String {
    keyed_table(
        prefix,
        ("pk", ScalarAttributeType::S),
        Some(("sk", ScalarAttributeType::N)),
    )
    .await
}

/// A small item (1 WCU) of partition key `pk`.
fn item(pk: &str, sk: u32) -> Item {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.into())),
        ("sk".to_string(), AttributeValue::N(sk.to_string())),
        ("body".to_string(), AttributeValue::S("x".repeat(100))),
    ])
}

fn key(pk: &str, sk: u32) -> Item {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.into())),
        ("sk".to_string(), AttributeValue::N(sk.to_string())),
    ])
}

fn partition(pk: &str, partitions: u32) -> u32 {
    partition_of(&json!({ "S": pk }), partitions)
}

/// The `(pk, sk)` of each unprocessed put for `table`, in order.
fn unprocessed_keys(
    out: &aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput,
    table: &str,
) -> Vec<(String, u32)> {
    out.unprocessed_items()
        .and_then(|u| u.get(table))
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    let i = w.put_request().unwrap().item();
                    (
                        i["pk"].as_s().unwrap().clone(),
                        i["sk"].as_n().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn exists(ddb: &Client, table: &str, pk: &str, sk: u32) -> bool {
    ddb.get_item()
        .table_name(table)
        .set_key(Some(key(pk, sk)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_one_key_is_held_to_its_partition_rate() {
    let name = pk_table("onekey").await;
    // The table could take all 25; the partition holds 5.
    let p = partitioned(1000.0, None, 5.0, "pk").await;
    assert_eq!(p.counters.partitions(), 1, "1,000 WCU/s is one partition");
    let ddb = client(&p.url).await;
    let writes: Vec<WriteRequest> = (0..25).map(|i| put_request(item("tenant-7", i))).collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .send()
        .await
        .unwrap();
    let rest = unprocessed_keys(&out, &name);
    let written = 25 - rest.len() as u32;
    assert!((5..=6).contains(&written), "{written} written");
    let want: Vec<(String, u32)> = (written..25).map(|i| ("tenant-7".into(), i)).collect();
    assert_eq!(rest, want, "the rest come back in order");
    let c = p.counters.snapshot();
    assert_eq!(c.unprocessed_key_range, 25 - written as u64);
    assert_eq!(c.unprocessed_items_returned, 25 - written as u64);
    assert_eq!(c.throttled_requests, 0);
    assert_eq!(c.partitions[0].throttles, 25 - written as u64);
    assert_eq!(c.accepted_wcu, written as f64);
    assert_eq!(count(&name).await, written as u64);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_partition_defers_only_its_items_until_it_refills() {
    const N: u32 = 8;
    let name = pk_table("hotbatch").await;
    let p = partitioned(1000.0, Some(N), 5.0, "pk").await;
    let ddb = client(&p.url).await;
    let hot = "hot ☃";
    let hp = partition(hot, N);
    // Exhaust the hot partition.
    let warm: Vec<WriteRequest> = (100..105).map(|i| put_request(item(hot, i))).collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, warm)
        .send()
        .await
        .unwrap();
    assert!(unprocessed_keys(&out, &name).is_empty());

    // Twelve awkward keys, two per other partition, between 13 hot items.
    let shapes = ["cold-", "ключ-", " ", "🦀", "a\u{0}b", "1e3-", "%%"];
    let mut per = [0u32; N as usize];
    let cold: Vec<String> = (0..)
        .map(|i| format!("{}{i}", shapes[i % shapes.len()]))
        .filter(|k| {
            let q = partition(k, N);
            q != hp && {
                per[q as usize] += 1;
                per[q as usize] <= 2
            }
        })
        .take(12)
        .collect();
    let mut all = Vec::new();
    let mut cold_iter = cold.iter();
    for sk in 0..25u32 {
        let pk = if sk % 2 == 0 {
            hot.to_string()
        } else {
            cold_iter.next().unwrap().clone()
        };
        all.push((pk, sk));
    }
    let writes: Vec<WriteRequest> = all
        .iter()
        .map(|(pk, sk)| put_request(item(pk, *sk)))
        .collect();
    let out = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .send()
        .await
        .unwrap();
    let rest = unprocessed_keys(&out, &name);
    assert!(rest.iter().all(|(pk, _)| pk == hot), "{rest:?}");
    // A slow round trip may have let one more hot item in.
    assert!((12..=13).contains(&rest.len()), "{rest:?}");
    let mut sorted = rest.clone();
    sorted.sort_by_key(|(_, sk)| *sk);
    assert_eq!(rest, sorted, "deferred items keep their order");
    for (pk, sk) in all.iter().filter(|(pk, _)| pk != hot) {
        assert!(exists(&ddb, &name, pk, *sk).await, "{pk:?} {sk}");
    }
    assert!(p.counters.unprocessed_key_range() >= 12);
    assert_eq!(p.counters.throttled_table(), 0);

    // Resent as the partition refills, the hot items all land.
    let mut unprocessed = out.unprocessed_items().cloned().unwrap_or_default();
    for _ in 0..40 {
        if unprocessed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        match ddb
            .batch_write_item()
            .set_request_items(Some(unprocessed.clone()))
            .send()
            .await
        {
            Ok(out) => unprocessed = out.unprocessed_items().cloned().unwrap_or_default(),
            Err(e) => {
                let e = e.into_service_error();
                let BatchWriteItemError::ProvisionedThroughputExceededException(t) = &e else {
                    panic!("{e:?}");
                };
                assert_eq!(t.throttling_reasons()[0].reason(), Some(KEY_RANGE));
            }
        }
    }
    assert!(unprocessed.is_empty(), "{unprocessed:?}");
    for (pk, sk) in all
        .iter()
        .cloned()
        .chain((100..105).map(|i| (hot.to_string(), i)))
    {
        assert!(exists(&ddb, &name, &pk, sk).await, "{pk:?} {sk}");
    }
    assert_eq!(count(&name).await, 30);
    assert_eq!(p.counters.partition_wcu(hp as usize), 18.0);
    assert_eq!(p.counters.hottest_partition(), Some((hp as usize, 18.0)));
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_hot_partition_is_a_key_range_throttle() {
    let name = pk_table("keyrange").await;
    let p = partitioned(1000.0, Some(4), 2.0, "pk").await;
    let ddb = client(&p.url).await;
    let hp = partition("p", 4) as usize;
    for sk in 0..2 {
        ddb.put_item()
            .table_name(&name)
            .set_item(Some(item("p", sk)))
            .send()
            .await
            .unwrap();
    }
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(item("p", 2)))
        .send()
        .await
        .unwrap_err();
    let Some(PutItemError::ProvisionedThroughputExceededException(t)) = err.as_service_error()
    else {
        panic!("{err:?}");
    };
    let reason = &t.throttling_reasons()[0];
    assert_eq!(reason.reason(), Some(KEY_RANGE));
    let arn = format!("arn:aws:dynamodb:us-east-1:000000000000:table/{name}");
    assert_eq!(reason.resource(), Some(arn.as_str()));
    assert_eq!(t.message(), Some(KEY_RANGE_MESSAGE));

    // Updates and deletes name the key too, and pay the same partition.
    let err = ddb
        .update_item()
        .table_name(&name)
        .set_key(Some(key("p", 0)))
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
    let err = ddb
        .delete_item()
        .table_name(&name)
        .set_key(Some(key("p", 0)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );

    // Another partition's key is not held back.
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|k| partition(k, 4) as usize != hp)
        .unwrap();
    ddb.put_item()
        .table_name(&name)
        .set_item(Some(item(&other, 0)))
        .send()
        .await
        .unwrap();
    let c = p.counters.snapshot();
    assert_eq!(c.throttled_key_range, 3);
    assert_eq!(c.throttled_table, 0);
    assert_eq!(c.throttled_requests, 3);
    assert_eq!(c.partitions[hp].throttles, 3);
    assert_eq!(count(&name).await, 3);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_table_names_the_table() {
    let name = pk_table("tablelimit").await;
    let p = partitioned(3.0, Some(4), 1000.0, "pk").await;
    let ddb = client(&p.url).await;
    for sk in 0..3 {
        ddb.put_item()
            .table_name(&name)
            .set_item(Some(item(&format!("k{sk}"), sk)))
            .send()
            .await
            .unwrap();
    }
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(item("k9", 9)))
        .send()
        .await
        .unwrap_err();
    let Some(PutItemError::ProvisionedThroughputExceededException(t)) = err.as_service_error()
    else {
        panic!("{err:?}");
    };
    assert_eq!(t.throttling_reasons()[0].reason(), Some(TABLE));
    assert_eq!(
        t.message(),
        Some(
            "The level of configured provisioned throughput for the table was exceeded. \
             Consider increasing your provisioning level with the UpdateTable API."
        )
    );
    let writes: Vec<WriteRequest> = (10..13)
        .map(|i| put_request(item(&format!("k{i}"), i)))
        .chain([WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(key("k0", 0)))
                    .build()
                    .unwrap(),
            )
            .build()])
        .collect();
    let err = ddb
        .batch_write_item()
        .request_items(&name, writes)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let BatchWriteItemError::ProvisionedThroughputExceededException(t) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(t.throttling_reasons()[0].reason(), Some(TABLE));
    let c = p.counters.snapshot();
    assert_eq!((c.throttled_table, c.throttled_key_range), (2, 0));
    // The partitions were refunded what the table refused.
    assert!(c.partitions.iter().all(|q| q.throttles == 0));
    assert_eq!(c.partitions.iter().map(|q| q.wcu).sum::<f64>(), 3.0);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_counters_add_up_to_the_accepted_wcu() {
    let name = pk_table("sums").await;
    let p = partitioned(1e6, Some(8), 1e6, "pk").await;
    let ddb = client(&p.url).await;
    let keys = ["tenant-7", "ключ", "🦀 naïve", " ", "1e3", "1000"];
    for (i, k) in keys.iter().enumerate() {
        // 1 to 3 WCU each.
        let mut it = item(k, i as u32);
        it.insert(
            "body".into(),
            AttributeValue::S("x".repeat(1000 * i / 2 + 10)),
        );
        ddb.put_item()
            .table_name(&name)
            .set_item(Some(it))
            .send()
            .await
            .unwrap();
    }
    let writes: Vec<WriteRequest> = (0..20)
        .map(|i| put_request(item("tenant-7", 100 + i)))
        .chain((0..3).map(|i| {
            WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(key(keys[i], i as u32)))
                        .build()
                        .unwrap(),
                )
                .build()
        }))
        .collect();
    ddb.batch_write_item()
        .request_items(&name, writes)
        .send()
        .await
        .unwrap();
    ddb.update_item()
        .table_name(&name)
        .set_key(Some(key("ключ", 77)))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    // A failed condition is charged; a write the upstream refuses (an empty
    // key string) is not.
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(item("tenant-7", 100)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_conditional_check_failed_exception(), "{err:?}");
    let before = p.counters.accepted_wcu();
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(item("", 1)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        !err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    assert_eq!(p.counters.accepted_wcu(), before);

    let c = p.counters.snapshot();
    let sum: f64 = c.partitions.iter().map(|q| q.wcu).sum();
    assert_eq!(sum, c.accepted_wcu, "{c}");
    let hot = partition("tenant-7", 8) as usize;
    assert_eq!(p.counters.hottest_partition().map(|(i, _)| i), Some(hot));
    let v: Value = serde_json::from_str(&c.to_string()).unwrap();
    assert_eq!(v["partitions"].as_array().unwrap().len(), 8);
    let per_second = p.counters.per_second_wcu();
    assert_eq!(per_second.iter().sum::<f64>(), c.accepted_wcu);
    assert!(p.counters.peak_second_wcu() > 0.0);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_numbers_are_one_key_and_items_without_the_key_pay_the_table() {
    let name = keyed_table("numkey", ("n", ScalarAttributeType::N), None).await;
    let p = partitioned(1000.0, Some(16), 2.0, "n").await;
    let ddb = client(&p.url).await;
    let put = |n: &str| {
        ddb.put_item()
            .table_name(&name)
            .item("n", AttributeValue::N(n.into()))
            .send()
    };
    put("1e3").await.unwrap();
    put("1000").await.unwrap();
    let err = put("1000.00").await.unwrap_err().into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    let other = (1001..)
        .map(|n| n.to_string())
        .find(|n| partition_of(&json!({ "N": n }), 16) != partition_of(&json!({ "N": "1000" }), 16))
        .unwrap();
    put(&other).await.unwrap();
    assert_eq!(count(&name).await, 2, "1e3 and 1000 are one item");
    p.shutdown().await;

    // A partition key the items lack: the table alone pays.
    let p = partitioned(1000.0, Some(16), 0.0, "tenant").await;
    let ddb = client(&p.url).await;
    for n in 0..5 {
        ddb.put_item()
            .table_name(&name)
            .item("n", AttributeValue::N(n.to_string()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(p.counters.accepted_wcu(), 5.0);
    assert!(p
        .counters
        .snapshot()
        .partitions
        .iter()
        .all(|q| q.wcu == 0.0));
    p.shutdown().await;
    drop_table(&name).await;
}
