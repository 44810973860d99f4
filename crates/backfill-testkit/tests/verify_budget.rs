//! A verification holds its reads to the target's read budget: every
//! BatchGetItem and Scan page is charged the read capacity DynamoDB
//! reports, eventually consistent by default (half a unit per item up to
//! 4 KB), and the next read waits until the charge fits the share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_capacity::WriteLimiter;
use backfill_job::KeyRange;
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_verify::{ReadBudgets, Verifier, VerifyOptions};

#[tokio::test]
async fn reads_are_held_to_the_read_budget() -> Result<()> {
    let stack = TestStack::new("rbudget").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 200) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let ddb = stack.aws.dynamodb.clone();
    for id in 1..=200 {
        ddb.put_item()
            .table_name(&target)
            .item("id", A::N(id.to_string()))
            .item("v", A::S(format!("v{id}")))
            .send()
            .await?;
    }
    let t = table(src, target.clone(), &["id"], None);
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let opts = VerifyOptions {
        page_rows: 50,
        max_reads_per_sec: std::num::NonZeroU32::new(10_000).expect("not zero"),
        ..Default::default()
    };

    // 200 items read eventually consistent cost 100 RCU; at 25 RCU/s the
    // check takes about three seconds past the first charge.
    let budgets = ReadBudgets::default();
    let limiter = Arc::new(WriteLimiter::new(&target, 25.0));
    budgets.set(&target, limiter);
    let held = Verifier::new(source, stack.sink(), opts).with_read_budgets(budgets.clone());
    let start = Instant::now();
    let report = held.verify_range(&t, &KeyRange::all()).await?;
    let budgeted = start.elapsed();
    assert!(report.is_clean(), "{report:#?}");
    // DynamoDB's own count of what was read, charged in full.
    assert_eq!(budgets.charged(&target), 100.0);
    assert!(budgeted >= Duration::from_millis(2500), "{budgeted:?}");
    // And the same reads, strongly consistent, cost twice as much: the
    // budget reads DynamoDB's own count.
    let (_, eventual) = stack
        .sink()
        .get_items_costed(&target, vec![key(1), key(2)], false)
        .await?;
    let (_, strong) = stack
        .sink()
        .get_items_costed(&target, vec![key(1), key(2)], true)
        .await?;
    assert_eq!((eventual, strong), (1.0, 2.0));
    stack.cleanup().await
}

fn key(id: i32) -> backfill_item::Item {
    std::collections::HashMap::from([("id".to_string(), A::N(id.to_string()))])
}
