//! `backfill audit --every`: the drift watch as the long-lived process it is
//! in the cluster. Rounds run on their schedule and are stored in the
//! control table, the watermark follows the changed rows, a drift planted
//! in DynamoDB shows on the process's metrics endpoint, SIGTERM stops it
//! cleanly, and a restarted watch goes on from the stored watermark.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_control::DriftRound;
use backfill_testkit::{config_toml, table, TestStack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

mod common;

use common::{backfill, BIN};

fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn spawn_audit(config: &std::path::Path, args: &[&str]) -> Result<Child> {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["--log-format", "text", "audit"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning backfill audit")
}

/// The value of one sample line (`name{labels} value`) of a scrape.
async fn scrape(addr: SocketAddr, sample: &str) -> Result<Option<f64>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw)).await??;
    Ok(raw
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok()))
}

/// Polls the stored rounds of `source` until `done` holds for them.
async fn rounds_until(
    stack: &TestStack,
    source: &str,
    what: &str,
    done: impl Fn(&[DriftRound]) -> bool,
) -> Result<Vec<DriftRound>> {
    let start = Instant::now();
    loop {
        let rounds = stack.control().drift_rounds(source).await?;
        if done(&rounds) {
            return Ok(rounds);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no stored round {what} within 60 s: {rounds:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn from(r: &DriftRound) -> Option<&str> {
    r.watermark_from.as_deref()
}

fn to(r: &DriftRound) -> Option<&str> {
    r.watermark_to.as_deref()
}

#[tokio::test]
async fn rounds_follow_the_watermark_and_planted_drift_shows_in_the_metrics() -> Result<()> {
    let stack = TestStack::new("drift").await?;
    let src = stack.source("t");
    // The version is a global sequence, as an application's dual-write sets it.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text, version bigint NOT NULL); \
             INSERT INTO {src} SELECT g, 'v' || g, g FROM generate_series(1, 200) g;"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.version_column = Some("version".into());
    let mut cfg = stack.config(vec![t]);
    let addr = free_port()?;
    cfg.metrics.listen = addr.to_string();
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;

    let (code, _, err) = backfill(&path, &["produce", "--run", "r"]).await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");

    let mut watch = spawn_audit(&path, &["--every", "1s", "--sample-percent", "0"])?;
    // The first round has no watermark: it starts watching at the newest
    // version; the next one audits the rows from there.
    let rounds = rounds_until(&stack, &src, "from the newest version", |r| {
        r.iter().any(|r| from(r) == Some("200"))
    })
    .await?;
    assert_eq!(from(&rounds[0]), None, "{rounds:#?}");
    assert_eq!(to(&rounds[0]), Some("200"), "{rounds:#?}");
    assert!(rounds.iter().all(DriftRound::is_clean), "{rounds:#?}");

    // The application changes five rows in both stores: DynamoDB first (an
    // item newer than its row is no drift), then Postgres in one commit, so
    // a round reads all five or none.
    let ddb = stack.aws.dynamodb.clone();
    for id in 5..10 {
        ddb.put_item()
            .table_name(&target)
            .item("id", A::N(id.to_string()))
            .item("v", A::S(format!("new{id}")))
            .item("version", A::N((1000 + id).to_string()))
            .send()
            .await?;
    }
    stack
        .sql(&format!(
            "UPDATE {src} SET v = 'new' || id, version = 1000 + id WHERE id BETWEEN 5 AND 9"
        ))
        .await?;
    let rounds = rounds_until(&stack, &src, "that read the changed rows", |r| {
        r.iter()
            .any(|r| from(r) == Some("200") && to(r) == Some("1009"))
    })
    .await?;
    let advanced = rounds
        .iter()
        .find(|r| to(r) == Some("1009"))
        .context("the advancing round")?;
    assert_eq!(
        advanced.changed_checked, 6,
        "rows 200 and 5..9: {advanced:#?}"
    );
    assert!(
        advanced.is_clean(),
        "a dual-write is no drift: {advanced:#?}"
    );
    assert!(advanced.finished_ms >= advanced.started_ms);
    // Rounds come on the schedule: several a second apart, in order.
    let starts: Vec<u64> = rounds.iter().map(|r| r.started_ms).collect();
    assert!(starts.windows(2).all(|w| w[1] >= w[0] + 900), "{starts:?}");

    // Drift: row 21's item is deleted, then the application changes rows 20
    // and 21 in Postgres (one commit) and both DynamoDB writes are lost.
    ddb.delete_item()
        .table_name(&target)
        .key("id", A::N("21".into()))
        .send()
        .await?;
    stack
        .sql(&format!(
            "UPDATE {src} SET v = 'pg-only', version = 1000 + id WHERE id IN (20, 21)"
        ))
        .await?;
    let missing = format!("backfill_drift_missing_total{{table=\"{src}\"}}");
    let different = format!("backfill_drift_different_total{{table=\"{src}\"}}");
    let checked = format!("backfill_drift_rows_checked_total{{table=\"{src}\"}}");
    let start = Instant::now();
    loop {
        let (m, d) = (
            scrape(addr, &missing).await?,
            scrape(addr, &different).await?,
        );
        if m.unwrap_or(0.0) >= 1.0 && d.unwrap_or(0.0) >= 1.0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no drift on /metrics within 60 s: missing {m:?}, different {d:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(scrape(addr, &checked).await?.unwrap_or(0.0) >= 8.0);
    let last = scrape(addr, "backfill_drift_last_round_timestamp_seconds")
        .await?
        .context("no last-round time")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    assert!((now.as_secs_f64() - last).abs() < 60.0, "{last}");
    let rounds = stack.control().drift_rounds(&src).await?;
    let drifted = rounds
        .iter()
        .find(|r| !r.is_clean())
        .context("a stored round with the drift")?;
    assert_eq!(
        (drifted.changed_checked, drifted.missing, drifted.different),
        (3, 1, 1),
        "rows 9, 20 and 21: {drifted:#?}"
    );
    assert_eq!(from(drifted), Some("1009"));
    assert_eq!(to(drifted), Some("1021"));

    // SIGTERM stops the watch cleanly.
    let pid = watch.id().context("audit pid")?;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), watch.wait()).await??;
    let mut log = String::new();
    if let Some(mut e) = watch.stderr.take() {
        e.read_to_string(&mut log).await?;
    }
    assert!(exit.success(), "exit {exit}: {log}");
    assert!(log.contains("DRIFT"), "{log}");

    // A restarted watch resumes at the stored watermark; one round of it
    // (`--once`) exits 1, since row 21's item is still missing.
    let (code, _, err) = backfill(&path, &["audit", "--once", "--sample-percent", "0"]).await?;
    assert_eq!(code, 1, "{err}");
    let last = stack
        .control()
        .latest_drift_round(&src)
        .await?
        .context("the --once round")?;
    assert_eq!(from(&last), Some("1021"), "{last:#?}");
    assert_eq!((last.changed_checked, last.missing), (1, 1), "{last:#?}");
    let _ = std::fs::remove_file(&path);
    stack.cleanup().await
}
