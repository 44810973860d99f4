//! `produce` enqueues exactly the plan it stored, and two producers of one
//! new run never clobber each other.

use anyhow::Result;
use backfill_control::{ControlError, RunPlan};
use backfill_job::{JobMessage, KeyRange};
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};

#[tokio::test]
async fn a_second_producer_of_a_new_run_is_told_it_is_being_produced() -> Result<()> {
    let stack = TestStack::new("prod_twice").await?;
    let jobs = vec![JobMessage::new(
        "r",
        "public.t",
        vec!["id".into()],
        KeyRange::all(),
    )];
    let control = stack.control();
    control.save_plan("r", &jobs, &RunPlan::default()).await?;
    let err = control
        .save_plan("r", &jobs, &RunPlan::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ControlError::RunBeingProduced { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("run r is being produced"), "{text}");
    assert!(!text.contains("ConditionalCheckFailed"), "{text}");
    // The first plan's job is still there.
    assert_eq!(control.jobs("r").await?.len(), 1);
    stack.cleanup().await
}

#[tokio::test]
async fn produce_refuses_a_plan_that_reads_back_short() -> Result<()> {
    let stack = TestStack::new("prod_short").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 500);"
        ))
        .await?;
    let mut cfg = stack.config(vec![table(src, stack.target("t"), &["id"], None)]);
    cfg.producer.rows_per_job = 100;
    let source = PgSource::connect(&stack.env.pg_url, 2).await?;
    let queue = stack.queue();
    let control = stack.control();
    // A stored plan whose job records are gone (a wrong or damaged table).
    let plan = backfill_producer::plan(&cfg, &source, "r").await?;
    let jobs: Vec<JobMessage> = plan.jobs().cloned().collect();
    assert!(jobs.len() > 1);
    control.save_plan("r", &jobs, &RunPlan::default()).await?;
    for j in &jobs {
        stack
            .aws
            .dynamodb
            .delete_item()
            .table_name(&stack.control_table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("RUN#r".into()),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("JOB#{}", j.job_id)),
            )
            .send()
            .await?;
    }
    let err = backfill_producer::produce(&cfg, &source, &queue, &control, "r")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "holds 0 job records but the run's plan has {}",
            jobs.len()
        )),
        "{err}"
    );
    assert_eq!(queue.depth().await?.total(), 0);
    stack.cleanup().await
}
