//! Verification as a fleet run, through the binary as operators run it:
//! `verify --run V` plans range and scan jobs, `work` processes take them
//! like copy jobs, `verify report --run V` names every planted difference
//! by key, and a worker killed mid-verification loses no range.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue as A, ScalarAttributeType as T};
use backfill_testkit::{config_toml, table, TestStack};

mod common;

use common::{backfill, spawn_worker, wait_for_job_start};

/// A copied table, then one of each difference planted: the item of
/// `k5` deleted (missing), an item no row produces (extra), row `k7`
/// changed in Postgres (different), a second row of item `T#k9`
/// (collision), and a row over DynamoDB's 400 KB item limit (unmappable).
#[tokio::test]
async fn a_fleet_verification_names_each_planted_difference_by_key() -> Result<()> {
    let stack = TestStack::new("fleetver").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (x text, y int, v text, PRIMARY KEY (x, y)); \
             INSERT INTO {src} SELECT 'k' || g, 0, 'v' || g FROM generate_series(1, 400) g; \
             ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("pk", T::S), None).await?;
    let mut t = table(src.clone(), target.clone(), &["x"], Some("pk"));
    t.partition_key = backfill_config::KeyAttribute::template("T#{x}", "pk");
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 100;
    cfg.worker.page_rows = 50;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;

    let (code, _, err) = backfill(&path, &["produce", "--run", "copy"]).await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");

    let ddb = stack.aws.dynamodb.clone();
    ddb.delete_item()
        .table_name(&target)
        .key("pk", A::S("T#k5".into()))
        .send()
        .await?;
    ddb.put_item()
        .table_name(&target)
        .item("pk", A::S("T#zz-extra".into()))
        .item("x", A::S("zz-extra".into()))
        .item("y", A::N("0".into()))
        .item("v", A::S("no row".into()))
        .send()
        .await?;
    stack
        .sql(&format!(
            "UPDATE {src} SET v = 'changed' WHERE x = 'k7'; \
             INSERT INTO {src} VALUES ('k9', 1, 'second row of T#k9'); \
             INSERT INTO {src} VALUES ('k99-big', 0, repeat('x', 500000));"
        ))
        .await?;

    let (code, out, err) =
        backfill(&path, &["verify", "--run", "check", "--segments", "3"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 scan segments"), "{out}");
    // Before any worker: the report says the run is not done, and exits 1.
    let (code, out, _) = backfill(&path, &["verify", "report", "--run", "check"]).await?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INCOMPLETE"), "{out}");

    // A worker killed while it verifies: its jobs come back after their
    // visibility timeout and the next worker verifies them whole.
    // It reads one request a second, so it is mid-job when killed.
    let mut slow = cfg.clone();
    slow.worker.verify_reads_per_sec = 1;
    let slow_path = std::env::temp_dir().join(format!("{}-slow.toml", stack.name));
    std::fs::write(&slow_path, config_toml(&slow))?;
    let mut first = spawn_worker(&slow_path, &[])?;
    assert!(
        wait_for_job_start(&mut first).await?,
        "the first worker took no job"
    );
    first.kill().await?;
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    let jobs = stack.control().jobs("check").await?;
    assert!(
        jobs.iter().any(|j| j.attempts >= 2),
        "a job of the killed worker was verified again: {jobs:#?}"
    );

    let (code, out, err) =
        backfill(&path, &["verify", "report", "--run", "check", "--json"]).await?;
    assert_eq!(code, 1, "differences exit 1: {out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
    assert_eq!(report["complete"], true, "{report:#}");
    let t = &report["tables"][0];
    let count = |k: &str| t[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        (
            count("missing"),
            count("extra"),
            count("different"),
            count("collisions"),
            count("unmappable")
        ),
        (1, 1, 1, 1, 1),
        "{report:#}"
    );
    // Every row checked once (the killed worker's jobs were not counted
    // twice) and every item scanned once over the three segments.
    assert_eq!(count("rows_checked"), 402, "{report:#}");
    assert_eq!(count("items_scanned"), 400, "{report:#}");
    let findings: Vec<&str> = t["findings"]
        .as_array()
        .context("findings")?
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    let names = |kind: &str, key: &str| {
        findings
            .iter()
            .any(|f| f.starts_with(kind) && f.contains(key))
    };
    assert!(names("missing", "T#k5"), "{findings:#?}");
    assert!(names("extra", "T#zz-extra"), "{findings:#?}");
    assert!(names("differs", "T#k7"), "{findings:#?}");
    assert!(names("collision", "k9"), "{findings:#?}");
    assert!(names("unmappable", "k99-big"), "{findings:#?}");

    // The text report and status read the same run.
    let (code, out, _) = backfill(&path, &["verify", "report", "--run", "check"]).await?;
    assert_eq!(code, 1);
    assert!(
        out.contains("DIFFERENCES") && out.contains(r#"missing pk="T#k5""#),
        "{out}"
    );
    let (code, out, err) = backfill(&path, &["status", "--run", "check"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verified: 402 rows checked, 400 items scanned; DIFFERENCES: 1 missing, 1 extra, 1 different, 1 collisions, 1 unmappable"),
        "{out}"
    );
    // Repair: the ranges with missing or different items are copied
    // again; a new verification finds only what a copy cannot mend.
    let (code, out, err) = backfill(
        &path,
        &[
            "verify", "repair", "--run", "check", "--as", "fix", "--reason", "planted",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("repair ") && out.contains("left "), "{out}");
    let audit = stack.control().audit(Some("check")).await?;
    assert!(
        audit
            .iter()
            .any(|a| a.action == backfill_control::AuditAction::Repair
                && a.by == "oncall-jo"
                && a.why == "planted"),
        "{audit:#?}"
    );
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = backfill(&path, &["verify", "--run", "check2"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = backfill(&path, &["verify", "report", "--run", "check2", "--json"]).await?;
    let again: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
    let t = &again["tables"][0];
    let count = |k: &str| t[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        (
            count("missing"),
            count("different"),
            count("extra"),
            count("collisions"),
            count("unmappable")
        ),
        (0, 0, 1, 1, 1),
        "{again:#}"
    );

    // A copy run is not a verification run.
    let (code, _, err) = backfill(&path, &["verify", "report", "--run", "copy"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("copy run"), "{err}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&slow_path);
    stack.cleanup().await
}

/// `verify --run V --of R`: each range of copy run R is confirmed by the
/// count and digest its copy recorded when the source and the target still
/// agree with them; a range changed since is compared row by row and its
/// difference named.
#[tokio::test]
async fn a_copy_run_is_confirmed_by_its_digests_and_a_changed_range_row_by_row() -> Result<()> {
    let stack = TestStack::new("confirm").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text, n numeric); \
             INSERT INTO {src} SELECT g, 'v' || g, g * 1.5 FROM generate_series(1, 300) g; \
             ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 100;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    for args in [&["produce", "--run", "copy"][..], &["work", "--until-idle"]] {
        let (code, _, err) = backfill(&path, args).await?;
        assert_eq!(code, 0, "{err}");
    }
    let copied = stack.control().jobs("copy").await?.len() as u64;

    let check = |run: &'static str| {
        let path = path.clone();
        async move {
            let (code, out, err) =
                backfill(&path, &["verify", "--run", run, "--of", "copy"]).await?;
            assert_eq!(code, 0, "{out}{err}");
            let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
            assert_eq!(code, 0, "{err}");
            let (code, out, _) =
                backfill(&path, &["verify", "report", "--run", run, "--json"]).await?;
            let v: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
            anyhow::Ok((code, v))
        }
    };
    let (code, v) = check("c1").await?;
    assert_eq!(code, 0, "{v:#}");
    let t = &v["tables"][0];
    assert_eq!(t["ranges_confirmed_by_digest"], copied, "{v:#}");
    assert_eq!(
        (t["rows_checked"].as_u64(), t["items_scanned"].as_u64()),
        (Some(300), Some(300))
    );

    stack
        .sql(&format!("UPDATE {src} SET v = 'drift' WHERE id = 150"))
        .await?;
    let (code, v) = check("c2").await?;
    assert_eq!(code, 1, "{v:#}");
    let t = &v["tables"][0];
    assert_eq!(t["ranges_confirmed_by_digest"], copied - 1, "{v:#}");
    assert_eq!(
        (t["different"].as_u64(), t["missing"].as_u64()),
        (Some(1), Some(0)),
        "{v:#}"
    );
    let named = t["findings"].as_array().is_some_and(|f| {
        f.iter().any(|l| {
            l.as_str()
                .is_some_and(|l| l.contains("150") && l.contains("drift"))
        })
    });
    assert!(named, "{v:#}");
    let _ = std::fs::remove_file(&path);
    stack.cleanup().await
}
