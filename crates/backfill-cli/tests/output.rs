//! What an on-call engineer reads when something is wrong, through the
//! binary: the cause and where it is, said once and soon.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backfill_testkit::{config_toml, table, TestStack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_backfill");

fn command(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("text")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .kill_on_drop(true);
    c
}

async fn backfill(config: &std::path::Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = command(config, args)
        .output()
        .await
        .context("running the backfill binary")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn write_config(
    stack: &TestStack,
    cfg: &backfill_config::BackfillConfig,
    name: &str,
) -> Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", stack.name));
    std::fs::write(&path, config_toml(cfg))?;
    Ok(path)
}

#[tokio::test]
async fn a_refused_source_fails_in_a_second_naming_host_and_port() -> Result<()> {
    let stack = TestStack::new("out_refused").await?;
    let mut cfg = stack.config(vec![table(
        stack.source("t"),
        stack.target("t"),
        &["id"],
        None,
    )]);
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    cfg.source.url =
        backfill_config::Secret::new(format!("postgres://postgres:secret@127.0.0.1:{port}/test"));
    let path = write_config(&stack, &cfg, "refused")?;
    let started = Instant::now();
    let (code, _, err) = backfill(&path, &["plan"]).await?;
    assert_ne!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("secret"), "{err}");
    stack.cleanup().await
}

/// A server that answers every request with a bare 404, as a wrong URL does.
async fn not_found_server() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    Ok(url)
}

#[tokio::test]
async fn an_endpoint_that_is_not_aws_is_named_with_its_http_status() -> Result<()> {
    let stack = TestStack::new("out_404").await?;
    let mut cfg = stack.config(vec![table(
        stack.source("t"),
        stack.target("t"),
        &["id"],
        None,
    )]);
    let url = not_found_server().await?;
    cfg.aws.dynamodb_endpoint_url = Some(url.clone());
    let path = write_config(&stack, &cfg, "404")?;
    let (code, _, err) = backfill(&path, &["status"]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains("unknown error"), "{err}");
    stack.cleanup().await
}

#[tokio::test]
async fn a_hung_endpoint_is_named_within_seconds() -> Result<()> {
    let stack = TestStack::new("out_hung").await?;
    let mut cfg = stack.config(vec![table(
        stack.source("t"),
        stack.target("t"),
        &["id"],
        None,
    )]);
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let held = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            socks.push(s);
        }
    });
    cfg.aws.dynamodb_endpoint_url = Some(url.clone());
    let path = write_config(&stack, &cfg, "hung")?;
    let mut child = command(&path, &["status"])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !seen.contains("still waiting") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), stderr.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => {}
        }
    }
    let _ = child.kill().await;
    held.abort();
    assert!(seen.contains("still waiting"), "{seen}");
    assert!(seen.contains(&url), "{seen}");
    stack.cleanup().await
}

#[tokio::test]
async fn replay_and_purge_without_user_fall_back_and_say_so() -> Result<()> {
    let stack = TestStack::new("out_by").await?;
    let cfg = stack.config(vec![table(
        stack.source("t"),
        stack.target("t"),
        &["id"],
        None,
    )]);
    let path = write_config(&stack, &cfg, "by")?;
    // USER and LOGNAME are removed: the record says "unknown", and the
    // command says which name it used instead of refusing.
    let (code, out, err) =
        backfill(&path, &["dlq", "replay", "--reason", "test", "--dry-run"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no --by given"), "{err}");
    let (code, out, err) = backfill(&path, &["dlq", "purge", "--reason", "test", "--yes"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no --by given"), "{err}");
    stack.cleanup().await
}

#[tokio::test]
async fn config_errors_are_said_once_and_name_their_place() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("backfill-out-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[source\nurl = 1\n")?;
    let (code, _, err) = backfill(&bad, &["status"]).await?;
    assert_ne!(code, 0);
    assert_eq!(err.matches("TOML parse error").count(), 1, "{err}");
    let (code, _, err) = backfill(&dir, &["status"]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("is a directory"), "{err}");
    Ok(())
}

#[tokio::test]
async fn dlq_list_shows_kind_and_replays_and_a_dry_run_never_says_replayed() -> Result<()> {
    let stack = TestStack::new("out_dlq").await?;
    let src = stack.source("t");
    stack
        .sql(&format!("CREATE TABLE {src} (id int PRIMARY KEY)"))
        .await?;
    let cfg = stack.config(vec![table(src.clone(), stack.target("t"), &["id"], None)]);
    let path = write_config(&stack, &cfg, "dlq")?;
    // A malformed message: the worker dead-letters it with its kind.
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body("not a job")
        .send()
        .await?;
    // And one job dead twice (two copies in the DLQ).
    let job =
        backfill_job::JobMessage::new("r", &src, vec!["id".into()], backfill_job::KeyRange::all());
    stack.plan_jobs("r", std::slice::from_ref(&job)).await?;
    for _ in 0..2 {
        stack
            .aws
            .sqs
            .send_message()
            .queue_url(&stack.dlq_url)
            .message_body(job.to_body())
            .send()
            .await?;
    }
    let (code, out, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = backfill(&path, &["dlq", "list"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("REPLAYS") && header.contains("KIND"),
        "{out}"
    );
    assert!(out.contains("malformed_message"), "{out}");

    let (code, out, err) = backfill(
        &path,
        &[
            "dlq",
            "replay",
            "--run",
            "r",
            "--dry-run",
            "--reason",
            "t",
            "--by",
            "me",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would be left (dry run)"), "{out}");
    assert!(!out.contains("replayed in this pass"), "{out}");
    stack.cleanup().await
}

#[tokio::test]
async fn status_and_dlq_list_before_bootstrap_say_to_bootstrap() -> Result<()> {
    let stack = TestStack::new("out_boot").await?;
    let mut cfg = stack.config(vec![table(
        stack.source("t"),
        stack.target("t"),
        &["id"],
        None,
    )]);
    cfg.control.table = format!("{}_never_made", stack.name);
    cfg.queue.url = format!("{}-never-made", stack.queue_url);
    cfg.queue.dlq_url = format!("{}-never-made-dlq", stack.queue_url);
    let path = write_config(&stack, &cfg, "boot")?;
    for args in [&["status"][..], &["dlq", "list"][..]] {
        let (code, out, err) = backfill(&path, args).await?;
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains("run `backfill bootstrap` first"),
            "{args:?}: {err}"
        );
    }
    stack.cleanup().await
}

/// `status` through the binary: a job recorded running by a worker that
/// is gone is `orphaned`; with only a failed job left the run has no ETA;
/// once the job is replayed its old error is no longer listed.
#[tokio::test]
async fn status_names_orphans_stalls_and_forgets_replayed_failures() -> Result<()> {
    let stack = TestStack::new("out_status").await?;
    let src = stack.source("t");
    stack
        .sql(&format!("CREATE TABLE {src} (id int PRIMARY KEY)"))
        .await?;
    let cfg = stack.config(vec![table(src.clone(), stack.target("t"), &["id"], None)]);
    let path = write_config(&stack, &cfg, "status")?;
    let job = |lo: i64, hi: i64| {
        backfill_job::JobMessage::new(
            "r",
            &src,
            vec!["id".into()],
            backfill_job::KeyRange {
                lo: Some(vec![backfill_job::KeyValue::Int(lo)]),
                hi: Some(vec![backfill_job::KeyValue::Int(hi)]),
            },
        )
    };
    let (a, b) = (job(0, 10), job(10, 20));
    stack.plan_jobs("r", &[a.clone(), b.clone()]).await?;
    let control = stack.control();
    // `a` was taken by a worker that never beat (it died).
    control.claim(&a, "ghost-worker-1").await?;
    control.record_failure(&b, "boom: the cause", true).await?;
    let (_, out, err) = backfill(&path, &["status", "--run", "r"]).await?;
    assert!(
        out.contains("1 orphaned (their worker is gone"),
        "{out}{err}"
    );
    assert!(out.contains("failed: "), "{out}");
    assert!(out.contains("boom: the cause"), "{out}");

    // `a` finishes: only the failed job is left, and nothing can move.
    control.finish(&a, 10, "00", 0).await?;
    let (code, out, _) = backfill(&path, &["status", "--run", "r"]).await?;
    assert_eq!(code, 1, "a failed job: exit 1");
    assert!(out.contains("ETA none: only failed jobs are left"), "{out}");

    // After a replay the job is queued again and its error is not a failure.
    control.reset_for_replay(&b, "me", "fixed").await?;
    let (_, out, _) = backfill(&path, &["status", "--run", "r"]).await?;
    assert!(!out.contains("boom: the cause"), "{out}");
    assert!(!out.contains("ETA none"), "{out}");
    stack.cleanup().await
}
