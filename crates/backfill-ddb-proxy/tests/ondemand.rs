//! An on-demand table against the running dynalite, through the real SDK:
//! it absorbs its starting level, then twice its previous peak, throttles
//! above that with the on-demand reason, and warm throughput raises the
//! level at once.

mod common;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::WarmThroughput;
use backfill_ddb_proxy::error::ON_DEMAND_MESSAGE;
use backfill_ddb_proxy::OnDemand;
use common::*;

/// Writes `n` small items (1 WCU each) in batches of 25 from `first`, and
/// returns how many were written (the rest came back unprocessed).
async fn batch(ddb: &Client, table: &str, first: usize, n: usize) -> usize {
    let mut written = 0;
    for start in (first..first + n).step_by(25) {
        let writes: Vec<WriteRequest> = (start..(start + 25).min(first + n))
            .map(|i| put_request(to_item(&sized_item(&format!("od-{i}"), 100, false))))
            .collect();
        let sent = writes.len();
        match ddb
            .batch_write_item()
            .request_items(table, writes)
            .send()
            .await
        {
            Ok(out) => {
                written += sent
                    - out
                        .unprocessed_items()
                        .and_then(|u| u.get(table))
                        .map_or(0, Vec::len)
            }
            Err(e) => assert!(e
                .into_service_error()
                .is_provisioned_throughput_exceeded_exception()),
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_absorbs_twice_its_peak_and_warm_throughput_raises_it() {
    let name = table("ondemand").await;
    let p = start(ProxyConfig {
        on_demand: Some(OnDemand {
            initial_wcu: 20.0,
            peak_window: Duration::from_secs(30),
        }),
        ..ProxyConfig::new(default_upstream(), 0.0)
    })
    .await
    .unwrap();
    let ddb = client(&p.url).await;

    // A new table: its starting level, then the on-demand throttle. The
    // proxy counts seconds from the table's first write (within a few ms).
    let grid = std::time::Instant::now();
    let first = batch(&ddb, &name, 0, 25).await;
    assert!((20..=21).contains(&first), "{first} written");
    let err = ddb
        .put_item()
        .table_name(&name)
        .set_item(Some(to_item(&sized_item("od-put", 100, false))))
        .send()
        .await
        .unwrap_err();
    let Some(PutItemError::ProvisionedThroughputExceededException(t)) = err.as_service_error()
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        t.throttling_reasons()[0].reason(),
        Some("TableWriteMaxOnDemandThroughputExceeded")
    );
    assert_eq!(t.message(), Some(ON_DEMAND_MESSAGE));

    // In a later second, twice that peak. Sent 150 ms into one of the
    // proxy's seconds: a batch that straddles into the next second is
    // measured against that second's own (higher) peak, which is how the
    // whole suite's load once let all 75 through.
    let next = (grid.elapsed().as_secs_f64() + 1.0).ceil();
    tokio::time::sleep_until((grid + Duration::from_secs_f64(next + 0.15)).into()).await;
    let sent_at = std::time::Instant::now();
    let second = batch(&ddb, &name, 100, 75).await;
    let took = sent_at.elapsed().as_secs_f64();
    // About twice the peak of 20: more than the first second took and
    // short of the 75 sent; the allowance refills at 40 a second while
    // the three requests go out.
    assert!(second >= 40, "{second} written in {took:.2} s");
    if took < 0.8 {
        let most = (45.0 + 40.0 * took) as usize;
        assert!(
            second <= most,
            "{second} written in {took:.2} s (at most {most})"
        );
    }

    // Pre-warming raises the level at once; dynalite never sees the field.
    let out = ddb
        .update_table()
        .table_name(&name)
        .warm_throughput(
            WarmThroughput::builder()
                .write_units_per_second(200)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let desc = out.table_description().unwrap();
    assert_eq!(desc.table_name(), Some(name.as_str()));
    assert_eq!(
        desc.warm_throughput()
            .and_then(|w| w.write_units_per_second()),
        Some(200)
    );
    let warmed = batch(&ddb, &name, 1000, 200).await;
    assert_eq!(warmed, 200);

    // Together with a real change, the update goes through without it.
    ddb.update_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .warm_throughput(
            WarmThroughput::builder()
                .write_units_per_second(300)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let c = p.counters.snapshot();
    assert!(c.throttled_table >= 1, "{c}");
    assert_eq!(c.throttled_key_range, 0);
    assert_eq!(c.accepted_items as usize, first + second + warmed);
    assert_eq!(count(&name).await as usize, first + second + warmed);
    p.shutdown().await;
    drop_table(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_warm_throughput_is_a_validation_error() {
    let name = table("warmbad").await;
    let p = start(ProxyConfig {
        on_demand: Some(OnDemand::default()),
        ..ProxyConfig::new(default_upstream(), 0.0)
    })
    .await
    .unwrap();
    let ddb = client(&p.url).await;
    let err = ddb
        .update_table()
        .table_name(&name)
        .warm_throughput(WarmThroughput::builder().write_units_per_second(-5).build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("ValidationException"), "{err:?}");
    // Missing table: the upstream's answer to the DescribeTable comes back.
    let err = ddb
        .update_table()
        .table_name(format!("{name}-missing"))
        .warm_throughput(WarmThroughput::builder().write_units_per_second(5).build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    // The default on-demand table takes 4,000 WCU at once.
    assert_eq!(batch(&ddb, &name, 0, 100).await, 100);
    p.shutdown().await;
    drop_table(&name).await;
}
