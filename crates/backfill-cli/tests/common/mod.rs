//! Running the `backfill` binary from tests: a worker process with its log
//! piped, and waiting until it has written some pages.

#![allow(dead_code)] // each test file uses its own part

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_backfill");

/// `backfill --config <config> <args>` as an operator runs it (as the user
/// `oncall-jo`), run to the end: its exit code, stdout and stderr.
pub async fn backfill(config: &std::path::Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("USER", "oncall-jo")
        .output()
        .await
        .context("running the backfill binary")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `backfill --config <config> work <args>`, with a text log at debug level
/// for the worker (so each page written shows) on its piped stderr.
pub fn spawn_worker(config: &std::path::Path, args: &[&str]) -> Result<Child> {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("text")
        .arg("work")
        .args(args)
        .env("RUST_LOG", "info,backfill_worker=debug")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the backfill binary")
}

/// Waits until the worker has written `pages` pages of its job; the rest of
/// its log keeps being read (and kept) so the worker never writes to a
/// closed pipe.
pub async fn wait_for_pages(
    child: &mut Child,
    pages: usize,
) -> Result<tokio::task::JoinHandle<Vec<String>>> {
    let stderr = child.stderr.take().context("stderr is piped")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut log = Vec::new();
        let mut tx = Some(tx);
        let mut seen = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("page written") {
                seen += 1;
                if seen >= pages {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
            log.push(line);
        }
        log
    });
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(())) => Ok(reader),
        _ => bail!(
            "the worker did not write {pages} pages: {:?}",
            reader.await?
        ),
    }
}

/// Waits (at most 60 s) until a spawned worker logs that it started a
/// job; whether it did. The rest of its log is left unread.
pub async fn wait_for_job_start(worker: &mut Child) -> Result<bool> {
    let stderr = worker.stderr.take().context("stderr is piped")?;
    let mut lines = BufReader::new(stderr).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("job started") {
                return true;
            }
        }
        false
    })
    .await;
    Ok(matches!(started, Ok(true)))
}
