//! A clustered table's jobs read the stripes their planned cuts start:
//! produced jobs carry cuts and copy every row once, a planned job whose
//! cuts are out of key order goes to the DLQ by name, copying nothing, a
//! stripe on a hot partition holds back only itself, and a job whose
//! stripes are mostly done lets the next job start.

use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::{BackfillConfig, KeyAttribute};
use backfill_job::{JobMessage, KeyRange, KeyValue};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

async fn work_until_idle(stack: &TestStack, cfg: &BackfillConfig) -> Result<WorkSummary> {
    work_until_idle_through(stack, cfg, stack.sink()).await
}

/// [`work_until_idle`] writing through `sink` (a proxy's, say).
async fn work_until_idle_through(
    stack: &TestStack,
    cfg: &BackfillConfig,
    sink: backfill_dynamo::DynamoSink,
) -> Result<WorkSummary> {
    let source = PgSource::connect(cfg.source.url.expose(), 4).await?;
    let w = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        sink,
        stack.queue(),
        stack.control(),
    ));
    Ok(w.run(
        CancellationToken::new(),
        WorkOptions {
            until_idle: true,
            ..Default::default()
        },
    )
    .await)
}

/// `tenants` tenants of `per` rows each, keyed `tenant, sku`, with a target
/// partitioned by tenant. Tenant names hold the separators and quotes of
/// the bound text form.
async fn clustered(stack: &TestStack, tenants: u32, per: u32) -> Result<BackfillConfig> {
    let src = stack.source("inventory");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, sku int, v text, PRIMARY KEY (tenant, sku)); \
             INSERT INTO {src} SELECT 'tenant,\"' || lpad(t::text, 3, '0') || ')é', s, repeat('x', 50) \
             FROM generate_series(1, {tenants}) t, generate_series(1, {per}) s; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("inventory");
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
        .await?;
    let mut t = table(src, target, &["tenant"], None);
    t.sort_key = Some(KeyAttribute::columns(&["sku"], None));
    let mut cfg = stack.config(vec![t]);
    cfg.worker.stripes = 4;
    cfg.worker.page_rows = 40;
    Ok(cfg)
}

fn tenant(t: u32) -> String {
    format!("tenant,\"{t:03})é")
}

/// Tenant names, in key order, that the proxy's hash puts on partition `p`
/// of two.
fn names_on(p: u32) -> impl Iterator<Item = String> {
    (0..1000)
        .map(|i| format!("t,\"{i:03}"))
        .filter(move |t| backfill_ddb_proxy::partition_of(&serde_json::json!({ "S": t }), 2) == p)
}

/// A table of `tenants` (name, rows), keyed `tenant, sku`, copied in four
/// stripes through a proxy whose two partitions take `partition_wcu`
/// WCU/s each: the source, the config, the proxy and a sink through it.
async fn two_partitions(
    stack: &TestStack,
    name: &str,
    tenants: &[(&str, u32)],
    partition_wcu: f64,
) -> Result<(
    String,
    BackfillConfig,
    backfill_ddb_proxy::ProxyHandle,
    backfill_dynamo::DynamoSink,
)> {
    use backfill_ddb_proxy::{start, Mode, ProxyConfig};
    let src = stack.source(name);
    let values: Vec<String> = tenants
        .iter()
        .map(|(t, n)| format!("('{}', {n})", t.replace('\'', "''")))
        .collect();
    stack
        .sql(&format!(
            "CREATE TABLE {src} (tenant text, sku int, v text, PRIMARY KEY (tenant, sku)); \
             INSERT INTO {src} SELECT t.name, s, repeat('x', 100) \
             FROM (VALUES {}) t(name, n), generate_series(1, t.n) s; ANALYZE {src};",
            values.join(", ")
        ))
        .await?;
    let target = stack.target(name);
    stack
        .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
        .await?;
    let proxy = start(ProxyConfig {
        mode: Mode::Forward,
        partition_key: Some("tenant".into()),
        partitions: Some(2),
        partition_wcu_per_sec: partition_wcu,
        partition_burst_secs: 0.5,
        table: Some(target.clone()),
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 100_000.0)
    })
    .await?;
    let mut t = table(src.clone(), target, &["tenant"], None);
    t.sort_key = Some(KeyAttribute::columns(&["sku"], None));
    let mut cfg = stack.config(vec![t]);
    cfg.worker.stripes = 4;
    cfg.worker.page_rows = 40;
    let client = backfill_aws::AwsClients::for_emulator(&proxy.url)
        .await
        .dynamodb;
    let sink = backfill_dynamo::DynamoSink::new(client, backfill_aws::RetryPolicy::default());
    Ok((src, cfg, proxy, sink))
}

/// The key a stripe of `tenant` starts at.
fn stripe_key(tenant: &str) -> Vec<KeyValue> {
    vec![KeyValue::Text(tenant.to_string()), KeyValue::Int(1)]
}

#[tokio::test]
async fn produced_jobs_carry_their_stripes_cuts_and_copy_every_row_once() -> Result<()> {
    let stack = TestStack::new("stripes_cuts").await?;
    let mut cfg = clustered(&stack, 12, 100).await?;
    cfg.producer.rows_per_job = 300;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    let jobs = stack.control().jobs("r").await?;
    assert_eq!(jobs.len(), report.jobs_total);
    assert!(jobs.len() >= 3, "{} jobs", jobs.len());
    // Each job carries up to stripes - 1 cuts, inside its range in key order.
    let schema = source
        .describe(&backfill_source::TableRef::parse(&cfg.tables[0].source))
        .await?;
    for j in &jobs {
        assert!(
            !j.job.cuts.is_empty() && j.job.cuts.len() <= 3,
            "{:?}",
            j.job
        );
        assert!(
            source
                .cuts_in_order(&schema, &j.job.range, &j.job.cuts)
                .await?
        );
    }
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.rows_copied, 1200, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    assert_eq!(stack.sink().count_items(&cfg.tables[0].target).await?, 1200);
    stack.cleanup().await
}

#[tokio::test]
async fn a_job_whose_cuts_are_out_of_order_is_dead_lettered_by_name() -> Result<()> {
    let stack = TestStack::new("stripes_bad").await?;
    let cfg = clustered(&stack, 4, 50).await?;
    let src = cfg.tables[0].source.clone();
    let k = |t: u32, s: i64| vec![KeyValue::Text(tenant(t)), KeyValue::Int(s)];
    let cols = vec!["tenant".to_string(), "sku".to_string()];
    let good = JobMessage::new(
        "r",
        &src,
        cols.clone(),
        KeyRange {
            lo: None,
            hi: Some(k(3, 1)),
        },
    )
    .with_cuts(vec![k(1, 30), k(2, 1), k(2, 40)]);
    // Reversed: stripes cut there would read some rows twice.
    let bad = JobMessage::new(
        "r",
        &src,
        cols,
        KeyRange {
            lo: Some(k(3, 1)),
            hi: None,
        },
    )
    .with_cuts(vec![k(4, 20), k(3, 10)]);
    stack.plan_jobs("r", &[good.clone(), bad.clone()]).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![good.to_body(), bad.to_body()])
        .await?;
    let summary = work_until_idle(&stack, &cfg).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 1, "{summary:?}");
    assert_eq!(stack.sink().count_items(&cfg.tables[0].target).await?, 100);
    let dead = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(&stack.dlq_url)
        .message_attribute_names("All")
        .send()
        .await?;
    let reasons: Vec<String> = dead
        .messages()
        .iter()
        .filter_map(|m| {
            Some(
                m.message_attributes()?
                    .get("error")?
                    .string_value()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains(&format!("job {}", bad.job_id))
            && reasons[0].contains("cuts do not lie inside its range"),
        "{reasons:?}"
    );
    stack.cleanup().await
}

/// The stripes of a job go side by side, each at its own keys' pace: three
/// tenants on one slow partition do not hold back a fourth on another.
/// (Read as slices of every stripe in one page, the fourth tenant went at
/// the pace of the page, and finished with the other three.)
#[tokio::test]
async fn a_stripe_on_a_hot_partition_holds_back_only_itself() -> Result<()> {
    use std::time::{Duration, Instant};
    const PER: u32 = 150;
    const PARTITION_WCU: f64 = 100.0;
    let stack = TestStack::new("stripes_lanes").await?;
    // Tenant names the proxy's hash puts three on partition 0 and one on
    // partition 1, in key order.
    let hot: Vec<String> = names_on(0).take(3).collect();
    let cold = names_on(1).next().expect("a name on partition 1");
    let mut tenants = hot.clone();
    tenants.push(cold.clone());
    tenants.sort();
    let rows: Vec<(&str, u32)> = tenants.iter().map(|t| (t.as_str(), PER)).collect();
    let (src, mut cfg, proxy, sink) = two_partitions(&stack, "lanes", &rows, PARTITION_WCU).await?;
    let target = cfg.tables[0].target.clone();
    cfg.capacity.key_wcu_per_sec = 0.9 * PARTITION_WCU;
    // One job, one stripe per tenant.
    let job = JobMessage::new(
        "r",
        &src,
        vec!["tenant".into(), "sku".into()],
        KeyRange { lo: None, hi: None },
    )
    .with_cuts(tenants[1..].iter().map(|t| stripe_key(t)).collect());
    stack.plan_jobs("r", std::slice::from_ref(&job)).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;

    let work = work_until_idle_through(&stack, &cfg, sink);
    // When each partition had all its tenants' items, from the first write.
    let counters = proxy.counters.clone();
    let watch = async {
        let (mut first, mut done) = (None::<Instant>, [None::<Instant>; 2]);
        let want = [3.0 * f64::from(PER), f64::from(PER)];
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.iter().any(Option::is_none) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = Instant::now();
            for (p, d) in done.iter_mut().enumerate() {
                let wcu = counters.partition_wcu(p);
                if wcu > 0.0 {
                    first.get_or_insert(now);
                }
                if d.is_none() && wcu >= want[p] {
                    *d = Some(now);
                }
            }
        }
        let first = first?;
        Some((done[0]? - first, done[1]? - first))
    };
    let (summary, times) = tokio::join!(work, watch);
    let summary = summary?;
    assert_eq!(summary.rows_copied, 4 * u64::from(PER), "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 4 * u64::from(PER));
    let (hot_took, cold_took) = times.expect("both partitions got all their items");
    // 450 WCU through the hot partition's 100 WCU/s: over 4 s. The cold
    // tenant's 150 at its key's 90 WCU/s: under 2 s, not the hot pace.
    assert!(
        hot_took >= Duration::from_secs(4),
        "the hot partition was not the limit: {hot_took:?}"
    );
    assert!(
        cold_took.as_secs_f64() < 0.6 * hot_took.as_secs_f64(),
        "the cold tenant waited for the hot ones: {cold_took:?} against {hot_took:?}"
    );
    proxy.shutdown().await;
    stack.cleanup().await
}

/// A striped job whose stripes are mostly done gives up its place among
/// `worker.concurrency`: with one place, the next job is copied while the
/// first one's slow stripe (a tenant on a crowded partition) still runs,
/// instead of after it.
#[tokio::test]
async fn the_next_job_starts_while_a_jobs_last_stripe_finishes() -> Result<()> {
    use std::time::{Duration, Instant};
    // Rows of the slow stripe's tenant, of each other tenant of job A, and
    // of job B's tenant.
    const HOT: u32 = 600;
    const COLD: u32 = 20;
    const B: u32 = 50;
    let stack = TestStack::new("stripes_place").await?;
    // Job A: one tenant on the slow partition 0 and three on partition 1;
    // job B: one more on partition 1, after all of A's in key order.
    let hot = names_on(0).next().expect("a name on partition 0");
    let cold: Vec<String> = names_on(1).filter(|t| *t > hot).take(4).collect();
    let mut a: Vec<String> = cold[..3].to_vec();
    a.push(hot.clone());
    a.sort();
    let b = cold[3].clone();
    let rows: Vec<(&str, u32)> = a
        .iter()
        .map(|t| (t.as_str(), if *t == hot { HOT } else { COLD }))
        .chain(std::iter::once((b.as_str(), B)))
        .collect();
    // 100 WCU/s a partition: the hot tenant's 600 items on partition 0
    // take about 6 s; partition 1's 110 about one.
    let (src, mut cfg, proxy, sink) = two_partitions(&stack, "place", &rows, 100.0).await?;
    let target = cfg.tables[0].target.clone();
    cfg.worker.concurrency = 1;
    let cols = || vec!["tenant".into(), "sku".into()];
    let job_a = JobMessage::new(
        "r",
        &src,
        cols(),
        KeyRange {
            lo: None,
            hi: Some(stripe_key(&b)),
        },
    )
    .with_cuts(a[1..].iter().map(|t| stripe_key(t)).collect());
    let job_b = JobMessage::new(
        "r",
        &src,
        cols(),
        KeyRange {
            lo: Some(stripe_key(&b)),
            hi: None,
        },
    );
    stack
        .plan_jobs("r", &[job_a.clone(), job_b.clone()])
        .await?;
    let queue = stack.queue();
    queue
        .send_raw(&stack.queue_url, vec![job_a.to_body()])
        .await?;

    let work = work_until_idle_through(&stack, &cfg, sink);
    // B goes on the queue once A writes; then: when each partition had
    // all of its items.
    let counters = proxy.counters.clone();
    let watch = async {
        let mut done = [None::<Instant>; 2];
        let want = [f64::from(HOT), f64::from(3 * COLD + B)];
        let mut sent = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.iter().any(Option::is_none) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !sent && counters.accepted_items() > 0 {
                queue
                    .send_raw(&stack.queue_url, vec![job_b.to_body()])
                    .await?;
                sent = true;
            }
            for (p, d) in done.iter_mut().enumerate() {
                if d.is_none() && counters.partition_wcu(p) >= want[p] {
                    *d = Some(Instant::now());
                }
            }
        }
        anyhow::Ok(done)
    };
    let (summary, done) = tokio::join!(work, watch);
    let summary = summary?;
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    let all = u64::from(HOT + 3 * COLD + B);
    assert_eq!(summary.rows_copied, all, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, all);
    let [Some(hot_done), Some(cold_done)] = done? else {
        panic!("a partition never got all its items");
    };
    assert!(
        cold_done < hot_done,
        "job B waited for job A's slow stripe: partition 1 done {:?} after partition 0",
        cold_done - hot_done
    );
    proxy.shutdown().await;
    stack.cleanup().await
}
