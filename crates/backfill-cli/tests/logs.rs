//! The worker's logs as a log pipeline sees them: one JSON object per line
//! when stderr is not a terminal, each line of a job carrying its run, table
//! and job ids, and never the source password.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_job::{JobMessage, KeyRange};
use backfill_testkit::{config_toml, table, TestStack};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_backfill");

#[tokio::test]
async fn json_log_lines_of_a_job_carry_its_ids_and_no_secret() -> Result<()> {
    let stack = TestStack::new("cli_logs").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' FROM generate_series(1, 300) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let cfg = stack.config(vec![table(src.clone(), target, &["id"], None)]);
    let password = "s3cret-pw-Zq9";
    let mut toml = config_toml(&cfg);
    // The same server, reached with a password in the URL (trust auth
    // ignores it): it must never reach a log line.
    let url = cfg.source.url.expose();
    let with_password = url.replacen("postgres:postgres@", &format!("postgres:{password}@"), 1);
    assert_ne!(url, with_password, "the test URL has user:password@");
    toml = toml.replace(url, &with_password);
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, toml)?;
    let job = JobMessage::new("logrun", &src, vec!["id".into()], KeyRange::all());
    stack
        .plan_jobs("logrun", std::slice::from_ref(&job))
        .await?;
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![job.to_body()])
        .await?;

    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json", "work", "--until-idle"])
        .env(
            "RUST_LOG",
            "debug,aws=info,hyper=info,sqlx=info,h2=info,rustls=info",
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .context("running the worker")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(password), "the password leaked: {stderr}");

    let mut job_lines = 0;
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("a log line that is not JSON: {line}"))?;
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("job ") || message.contains("page written") {
            job_lines += 1;
            let span = &v["span"];
            assert_eq!(span["run"], "logrun", "{line}");
            assert_eq!(span["table"], src.as_str(), "{line}");
            assert_eq!(span["job"], job.job_id.as_str(), "{line}");
        }
    }
    assert!(
        job_lines >= 3,
        "job started, page written, job done: {stderr}"
    );
    stack.cleanup().await
}
