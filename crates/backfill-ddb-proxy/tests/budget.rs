//! The proxy's budget against the running dynalite
//! (`BACKFILL_TEST_DYNAMODB_URL`, default http://127.0.0.1:4567), driven by
//! the real AWS SDK: WCU counted as DynamoDB counts it, batches over budget
//! answered with `UnprocessedItems`, a hammering client held to the rate,
//! and the answer-only mode.

mod common;

use common::*;

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

/// A worker's control table has capacity of its own: writes that name
/// another table than the priced one pass unpriced and uncounted, even
/// far over the priced table's budget, and are really written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_another_table_pass_unpriced() {
    let priced = table("priced").await;
    let other = table("other").await;
    let p = start(ProxyConfig {
        burst_secs: 1.0,
        table: Some(priced.clone()),
        ..ProxyConfig::new(default_upstream(), 1.0)
    })
    .await
    .unwrap();
    let ddb = client(&p.url).await;
    // 30 WCU of singles and a 25-item batch of 3 KB (75 WCU) into the
    // other table, at a priced budget of 1 WCU/s: none is refused.
    for i in 0..30 {
        ddb.put_item()
            .table_name(&other)
            .set_item(Some(to_item(&sized_item(&format!("s{i}"), 512, false))))
            .send()
            .await
            .unwrap();
    }
    let writes: Vec<WriteRequest> = (0..25)
        .map(|i| put_request(to_item(&sized_item(&format!("b{i}"), 3000, false))))
        .collect();
    let out = ddb
        .batch_write_item()
        .request_items(&other, writes)
        .send()
        .await
        .unwrap();
    assert!(out.unprocessed_items().is_none_or(|u| u.is_empty()));
    assert_eq!(count(&other).await, 55);
    assert_eq!(p.counters.accepted_wcu(), 0.0);
    assert_eq!(p.counters.throttled_requests(), 0);

    // The priced table still pays: a second 1 KB put within the same
    // second is over its 1 WCU/s.
    let put = |id: &'static str| {
        ddb.put_item()
            .table_name(&priced)
            .set_item(Some(to_item(&sized_item(id, 512, false))))
            .send()
    };
    put("a").await.unwrap();
    let refused = put("b").await.expect_err("over the priced table's budget");
    assert!(
        format!("{:?}", refused).contains("ProvisionedThroughputExceeded"),
        "{refused:?}"
    );
    assert_eq!(p.counters.accepted_wcu(), 1.0);
    assert_eq!(p.counters.throttled_requests(), 1);
    p.shutdown().await;
    drop_table(&priced).await;
    drop_table(&other).await;
}
