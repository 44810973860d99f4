//! `backfill status` and `backfill cancel` as an operator runs them: plain
//! lines when stdout is not a terminal, JSON for scripts, exit codes that
//! say how the run stands, and what the workers' heartbeats say slows them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_control::{HotKey, TargetLoad};
use backfill_source::PgSource;
use backfill_testkit::{config_toml, table, TestStack};

mod common;
use common::backfill;

#[tokio::test]
async fn status_prints_plain_lines_and_json_and_cancel_ends_the_run() -> Result<()> {
    let stack = TestStack::new("cli_status").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' FROM generate_series(1, 600) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut t = table(src.clone(), target.clone(), &["id"], None);
    t.write_budget_wcu = Some(250.0);
    let mut cfg = stack.config(vec![t]);
    cfg.producer.rows_per_job = 100;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r1").await?;

    let (code, out, err) = backfill(&path, &["status"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "run r1 [produced]: 0/{n} jobs done, 0 running, 0 failed, {n} queued; 0 of ~",
            n = report.jobs_total
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{src} -> {target}: 0/{} jobs done",
            report.jobs_total
        )),
        "{out}"
    );
    assert!(out.contains("0/250 WCU/s (0% of budget)"), "{out}");
    assert!(
        out.contains(&format!("queue: {} visible", report.jobs_total)),
        "{out}"
    );

    assert!(!out.contains("throttled:"), "{out}");

    // A worker met throttles and a hot key: status shows them from its
    // heartbeat, merged with the other worker's.
    let hot = |label: &str, rate: f64, throttles: u64| HotKey {
        label: label.into(),
        rate,
        throttles,
    };
    for (worker, load) in [
        (
            "w-hot-1",
            TargetLoad {
                table_throttles: 5,
                key_range_throttles: 300,
                hot_keys: vec![hot("id=7", 200.0, 8), hot("id=9", 100.0, 3)],
            },
        ),
        (
            "w-hot-2",
            TargetLoad {
                table_throttles: 7,
                key_range_throttles: 40,
                hot_keys: vec![hot("id=7", 250.0, 4)],
            },
        ),
    ] {
        stack
            .control()
            .heartbeat(
                worker,
                cfg.capacity.worker_expiry_secs,
                true,
                &HashMap::new(),
                &HashMap::from([(target.clone(), load)]),
            )
            .await?;
    }
    let (code, out, err) = backfill(&path, &["status", "--run", "r1"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("throttled: 12 table-wide, 340 key-range"),
        "{out}"
    );
    assert!(
        out.contains("hot keys: id=7 at 450 WCU/s (12 throttles), id=9 at 100 WCU/s (3 throttles)"),
        "{out}"
    );
    assert!(
        !out.contains("key layout reaches"),
        "600 partition-key values reach 250 WCU/s: {out}"
    );

    let (code, out, err) = backfill(&path, &["status", "--run", "r1", "--json"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).context("status --json is JSON")?;
    assert_eq!(v["run_id"], "r1");
    assert_eq!(v["jobs"]["queued"], report.jobs_total as u64);
    let t = &v["tables"][0];
    assert_eq!(t["budget_wcu"], 250.0);
    assert_eq!(t["throttles"]["table_wide"], 12, "{t}");
    assert_eq!(t["throttles"]["key_range"], 340, "{t}");
    assert_eq!(t["hot_keys"][0]["label"], "id=7", "{t}");
    assert_eq!(t["hot_keys"][0]["wcu_per_sec"], 450.0, "{t}");
    assert_eq!(t["hot_keys"][0]["throttles"], 12, "{t}");
    assert_eq!(t["hot_keys"].as_array().map(Vec::len), Some(2), "{t}");
    // The plan stored what the key layout reaches: 600 ids, each its own
    // partition-key value.
    assert!(
        t["key_ceiling_wcu"].as_f64().is_some_and(|c| c > 250.0),
        "{t}"
    );

    let (code, out, err) = backfill(
        &path,
        &["cancel", "--run", "r1", "--reason", "wrong mapping"],
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("cancelled by oncall-jo (wrong mapping)"),
        "{out}"
    );

    // A cancelled run exits 1 and says who cancelled it and why; --watch
    // returns at once for a run that has ended.
    let (code, out, _) = backfill(&path, &["status", "--run", "r1", "--watch"]).await?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("run r1 [cancelled]"), "{out}");
    assert!(out.contains("cancelled by oncall-jo at "), "{out}");
    assert!(out.contains(": wrong mapping"), "{out}");

    let (code, _, err) = backfill(&path, &["status", "--run", "nope"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("has no run nope"), "{err}");
    stack.cleanup().await
}
