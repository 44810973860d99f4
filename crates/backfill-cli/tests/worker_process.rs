//! The `backfill` binary as a process: killed with SIGKILL mid-job it loses
//! nothing; stopped with SIGTERM it hands its job back and exits 0; a wrong
//! config fails at start naming the key.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_control::JobState;
use backfill_job::{JobMessage, KeyRange};
use backfill_testkit::{config_toml, table, TestStack};
use tokio::process::Command;

mod common;

use common::{spawn_worker, wait_for_pages, BIN};

/// A source table of `rows` rows, its target, and a config written to disk
/// with a short visibility timeout and small, slow pages.
async fn setup(
    stack: &TestStack,
    rows: u32,
) -> Result<(BackfillConfig, std::path::PathBuf, JobMessage)> {
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, repeat('v', 500) FROM generate_series(1, {rows}) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target, &["id"], None)]);
    cfg.queue.visibility_timeout_secs = 3;
    cfg.worker.concurrency = 1;
    cfg.worker.page_rows = 50;
    cfg.worker.write_concurrency = 1;
    cfg.worker.shutdown_grace_secs = 10;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let job = JobMessage::new("run", &src, vec!["id".into()], KeyRange::all());
    stack.plan_jobs("run", std::slice::from_ref(&job)).await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;
    Ok((cfg, path, job))
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing() -> Result<()> {
    let stack = TestStack::new("kill").await?;
    let (cfg, path, job) = setup(&stack, 6000).await?;
    let target = &cfg.tables[0].target;

    let mut first = spawn_worker(&path, &[])?;
    wait_for_pages(&mut first, 5).await?;
    first.start_kill()?; // SIGKILL: no cleanup, no hand-back
    first.wait().await?;
    let partial = stack.sink().count_items(target).await?;
    assert!(
        partial > 0 && partial < 6000,
        "killed mid-job, {partial} items written"
    );

    // The job comes back after its visibility timeout and another worker completes it.
    let second = spawn_worker(&path, &["--until-idle"])?;
    let out = tokio::time::timeout(Duration::from_secs(120), second.wait_with_output()).await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stack.sink().count_items(target).await?, 6000);
    // The second worker resumed from the checkpoint: it did not read the
    // rows the first one had written and checkpointed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let read: u64 = stdout
        .split("rows in them, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no read count in {stdout}"))?;
    assert!(
        read >= 6000 - partial && read < 6000,
        "read {read} rows again after {partial} were written"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job resumed from its checkpoint"),
        "{stderr}"
    );
    assert_eq!(stack.queue().depth().await?.total(), 0);
    let rec = stack.control().jobs("run").await?;
    let rec = rec
        .iter()
        .find(|r| r.job.job_id == job.job_id)
        .context("job record")?;
    assert_eq!(rec.state, JobState::Done);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.rows, 6000);
    stack.cleanup().await
}

#[tokio::test]
async fn sigterm_hands_the_job_back_and_exits_zero() -> Result<()> {
    let stack = TestStack::new("term").await?;
    let (cfg, path, job) = setup(&stack, 6000).await?;
    let target = &cfg.tables[0].target;

    let mut worker = spawn_worker(&path, &[])?;
    let log = wait_for_pages(&mut worker, 3).await?;
    let pid = worker.id().context("worker pid")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), worker.wait()).await??;
    assert!(exit.success(), "exit status {exit}: {:#?}", log.await?);
    // Handed back at once (visibility 0), not after the timeout.
    let depth = stack.queue().depth().await?;
    assert_eq!(depth.visible, 1, "{depth:?}");
    // With the pages it wrote checkpointed, so the next worker need not redo them.
    let rec = stack
        .control()
        .job(&job.run_id, &job.job_id)
        .await?
        .context("the job's record")?;
    let saved = rec.checkpoint_rows;
    assert!(saved >= 150, "checkpointed {saved} rows after 3 pages");
    // Its summary counts the rows it wrote, and says the job was handed
    // back, not that a run was cancelled.
    let mut summary = String::new();
    if let Some(mut out) = worker.stdout.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut out, &mut summary).await?;
    }
    let written: u64 = summary
        .split("worker: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no written count in {summary}"))?;
    assert!(written >= saved, "{summary}");
    assert!(summary.contains("1 handed back"), "{summary}");
    assert!(!summary.contains("cancelled"), "{summary}");

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        spawn_worker(&path, &["--until-idle"])?.wait_with_output(),
    )
    .await??;
    assert!(out.status.success());
    assert_eq!(stack.sink().count_items(target).await?, 6000);
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("job resumed from its checkpoint"),
        "the second worker started over: {log}"
    );
    stack.cleanup().await
}

#[tokio::test]
async fn a_wrong_config_fails_at_start_naming_the_key() -> Result<()> {
    let dir = std::env::temp_dir().join(backfill_testkit::unique("badcfg"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[source]\nurl = \"postgres://u:s3cret@h/db\"\n[aws]\nregion = \"us-east-1\"\n\
         [queue]\nurl = \"http://q/1/a\"\ndlq_url = \"http://q/1/b\"\nvisibility_timeout_secs = 0\n\
         [control]\ntable = \"ctl\"\n[[tables]]\nsource = \"t\"\ntarget = \"ttt\"\npartition_key = { columns = [\"id\"] }\n",
    )?;
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("plan")
        .output()
        .await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue.visibility_timeout_secs"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("plan")
        .env("BACKFILL__QUEUE__VISIBILITY_TIMEOUT_SECS", "30")
        .env("BACKFILL__CONTROL__TABLE", "x")
        .output()
        .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control.table"), "{err}");
    Ok(())
}
