//! Archive runs through the binary, as operators run the migration's last
//! step: `archive --run R`, `work`, `archive verify`, `restore`; against
//! Postgres and the S3 emulator.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::{ArchiveConfig, BackfillConfig};
use backfill_testkit::corpus::corpus;
use backfill_testkit::{config_toml, table, unique, TestStack};

mod common;

use common::{backfill, spawn_worker, wait_for_job_start};

fn with_archive(stack: &TestStack, cfg: &mut BackfillConfig) -> String {
    let bucket = unique("arch").replace('_', "-").to_lowercase();
    cfg.archive = Some(ArchiveConfig {
        bucket: bucket.clone(),
        prefix: format!("{}/", stack.name),
        row_group_rows: 2,
        zstd_level: 3,
        upload_part_bytes: 5 * 1024 * 1024,
        text_columns: Vec::new(),
    });
    bucket
}

async fn make_bucket(stack: &TestStack, bucket: &str) -> Result<()> {
    stack.aws.s3.create_bucket().bucket(bucket).send().await?;
    Ok(())
}

/// Rows in one table and not the other, both ways, compared by each
/// column's text, with the two normalisations the archive documents: json
/// compared as jsonb (its whitespace and key order are not kept) and
/// timetz at UTC (the reader normalises it).
async fn except_both_ways(stack: &TestStack, a: &str, b: &str) -> Result<i64> {
    let cols = "id, i2, i4, i8, n, n38, r, d, t, vc, ch, b, by, u, dt, tm, (tz AT TIME ZONE 'UTC')::text, ts, tstz, iv, \
                j::jsonb, jb, ai, at, a2, e::text, ip::text, cidr_::text, mac::text, m::text, pt::text";
    let q = format!(
        "SELECT count(*) FROM ((SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}) \
         UNION ALL (SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a})) d"
    );
    let pool = sqlx::PgPool::connect(&stack.env.pg_url).await?;
    let n: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await?;
    Ok(n)
}

/// The Python of the emulators' virtualenv, where pyarrow is installed.
fn python() -> std::path::PathBuf {
    std::env::var_os("BACKFILL_TEST_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/venv/bin/python")
        })
}

/// pyarrow, an independent reader, finds the documented types and values.
async fn read_with_pyarrow(stack: &TestStack, bucket: &str, src: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listed = stack
        .aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{}/{src}/run=a1/", stack.name))
        .send()
        .await?;
    for key in listed.contents().iter().filter_map(|o| o.key()) {
        if !key.ends_with(".parquet") {
            continue;
        }
        let body = stack
            .aws
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await?;
        let bytes = body.body.collect().await?.into_bytes();
        let name = key.rsplit('/').next().context("a file name")?;
        std::fs::write(dir.path().join(name), bytes)?;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_archive.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(dir.path())
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} (pyarrow from scripts/emulators/requirements.txt)",
                python().display()
            )
        })?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ty = |c: &str| v["types"][c].as_str().unwrap_or_default().to_string();
    assert_eq!(ty("i8"), "int64");
    assert_eq!(ty("n38"), "decimal128(38, 0)");
    assert_eq!(ty("n"), "string", "unconstrained numeric is text");
    assert_eq!(ty("r"), "float");
    assert_eq!(ty("d"), "double");
    assert_eq!(ty("by"), "binary");
    assert_eq!(ty("dt"), "date32[day]");
    assert_eq!(ty("tstz"), "timestamp[us, tz=UTC]");
    assert_eq!(ty("ts"), "string", "listed in text_columns");
    assert_eq!(ty("tm"), "time64[us]");
    assert!(ty("iv").starts_with("struct<months: int32"), "{}", ty("iv"));
    assert_eq!(ty("ai"), "list<item: int32>");
    assert_eq!(v["pg_types"]["n38"], "numeric(38,0)");
    assert_eq!(v["pg_types"]["tstz"], "timestamp with time zone");
    let row = |id: &str, c: &str| v["rows"][id][c].clone();
    assert_eq!(row("1", "i8"), serde_json::json!(i64::MIN));
    assert_eq!(row("2", "n38"), "99999999999999999999999999999999999999");
    assert_eq!(row("1", "r"), "-0.0");
    assert_eq!(row("2", "d"), "nan");
    assert_eq!(row("2", "by"), "deadbeef");
    assert_eq!(
        row("2", "dt"),
        serde_json::json!(i32::MAX),
        "infinity is Postgres' own sentinel"
    );
    assert_eq!(
        row("1", "dt"),
        serde_json::json!(-719_162),
        "0001-01-01 in days since 1970"
    );
    assert_eq!(
        row("2", "tstz"),
        serde_json::json!(1_709_279_999_999_999i64)
    );
    assert_eq!(row("1", "ai"), serde_json::json!([1, null, 3]));
    assert_eq!(row("2", "t"), "😀 日本 \t\n \"quotes\" \\");
    assert_eq!(row("5", "t").as_str().map(str::len), Some(430_080));
    assert_eq!(row("4", "i8"), serde_json::Value::Null);
    Ok(())
}

#[tokio::test]
async fn the_corpus_archives_verifies_and_restores_equal_and_a_changed_part_is_named() -> Result<()>
{
    let stack = TestStack::new("archive").await?;
    let src = corpus(&stack).await?;
    // A row of 420 KB, over DynamoDB's item limit: the archive takes it.
    stack
        .sql(&format!(
            "INSERT INTO {src} (id, t) VALUES (5, repeat('x', 430080)); ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("corpus");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target, &["id"], None)]);
    cfg.producer.rows_per_job = 2;
    let bucket = with_archive(&stack, &mut cfg);
    // Postgres' last timestamp (294276 AD) is past what Parquet's
    // microseconds since 1970 hold: that column is archived as its text.
    if let Some(a) = cfg.archive.as_mut() {
        a.text_columns = vec![format!("{src}.ts")];
    }
    make_bucket(&stack, &bucket).await?;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;

    let (code, out, err) = backfill(&path, &["archive", "--run", "a1"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    // Before any worker the run has no manifest: verify says so, exit 1.
    let (code, out, _) = backfill(&path, &["archive", "verify", "--run", "a1"]).await?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no manifest"), "{out}");

    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = backfill(&path, &["archive", "verify", "--run", "a1"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every part matches"), "{out}");

    read_with_pyarrow(&stack, &bucket, &src).await?;

    let restored = format!("{}.restored", stack.schema);
    let (code, out, err) = backfill(
        &path,
        &[
            "restore", "--run", "a1", "--table", &src, "--into", &restored,
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restored 5 rows"), "{out}");
    assert_eq!(except_both_ways(&stack, &src, &restored).await?, 0);
    // Never into an existing table.
    let (code, _, err) = backfill(
        &path,
        &[
            "restore", "--run", "a1", "--table", &src, "--into", &restored,
        ],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");

    // One object changed after it was written, and one source row changed.
    let manifest_key = format!("{}/{src}/run=a1/_manifest.json", stack.name);
    let body = stack
        .aws
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&manifest_key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    let manifest: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(manifest["rows"], 5);
    let part = manifest["parts"][0]["key"]
        .as_str()
        .context("a part")?
        .to_string();
    stack
        .aws
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&part)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            b"PAR1 not the part".to_vec(),
        ))
        .send()
        .await?;
    stack
        .sql(&format!("UPDATE {src} SET t = 'changed' WHERE id = 5"))
        .await?;
    let (code, out, _) = backfill(&path, &["archive", "verify", "--run", "a1"]).await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("part {part} FAILED")) && out.contains("SHA-256"),
        "{out}"
    );
    assert!(
        out.contains("the source's range") && out.contains("now has 5 rows (digest"),
        "the changed source row's range is named: {out}"
    );
    // The corrupt part's keys cannot be read; plant a second difference in
    // an intact archive to see them named: a new run, then a row changed,
    // one added and one deleted.
    let (code, out, err) = backfill(&path, &["archive", "--run", "a2"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    stack
        .sql(&format!(
            "UPDATE {src} SET t = 'changed again' WHERE id = 5; INSERT INTO {src} (id) VALUES (6); DELETE FROM {src} WHERE id = 4;"
        ))
        .await?;
    let (code, out, _) = backfill(&path, &["archive", "verify", "--run", "a2"]).await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("key (5) changed since it was archived"),
        "{out}"
    );
    assert!(out.contains("key (6) not in the archive"), "{out}");
    assert!(
        out.contains("key (4) archived, no longer in the source"),
        "{out}"
    );
    assert!(
        out.contains("1 rows not in the archive, 1 changed, 1 no longer in the source"),
        "{out}"
    );
    stack.cleanup().await
}

/// A worker killed mid-part: no part of it is visible, its job is written
/// again by the next worker, the manifest lists every range once, and no
/// incomplete upload is left.
#[tokio::test]
async fn a_worker_killed_mid_archive_loses_no_part_and_leaves_no_half_part() -> Result<()> {
    let stack = TestStack::new("archkill").await?;
    let src = stack.source("big");
    // ~2 KB of hex per row, which zstd cannot shrink much: each part is a
    // multipart upload of more than one 5 MiB part.
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 64) i) \
             FROM generate_series(1, 12000) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("big");
    stack.create_target(&target, ("id", T::N), None).await?;
    // A second table in the same run: the run's last job writes both
    // tables' manifests.
    let small = stack.source("small");
    stack
        .sql(&format!(
            "CREATE TABLE {small} (k text PRIMARY KEY, n int); \
             INSERT INTO {small} SELECT 'k' || g, g FROM generate_series(1, 10) g; ANALYZE {small};"
        ))
        .await?;
    let small_target = stack.target("small");
    stack
        .create_target(&small_target, ("k", T::S), None)
        .await?;
    let mut cfg = stack.config(vec![
        table(src.clone(), target, &["id"], None),
        table(small.clone(), small_target, &["k"], None),
    ]);
    cfg.producer.rows_per_job = 6000;
    cfg.worker.page_rows = 50;
    let bucket = with_archive(&stack, &mut cfg);
    if let Some(a) = cfg.archive.as_mut() {
        a.row_group_rows = 1000;
    }
    make_bucket(&stack, &bucket).await?;
    let path = std::env::temp_dir().join(format!("{}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let (code, out, err) = backfill(&path, &["archive", "--run", "k1"]).await?;
    assert_eq!(code, 0, "{out}{err}");

    let mut first = spawn_worker(&path, &[])?;
    assert!(
        wait_for_job_start(&mut first).await?,
        "the first worker took no job"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill().await?;
    let dir = format!("{}/{src}/run=k1/", stack.name);
    let listed = stack
        .aws
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&dir)
        .send()
        .await?;
    let visible = listed.contents().len();
    assert!(
        visible < 2,
        "the killed worker's job left no visible part: {listed:?}"
    );

    let (code, _, err) = backfill(&path, &["work", "--until-idle"]).await?;
    assert_eq!(code, 0, "{err}");
    let jobs = stack.control().jobs("k1").await?;
    assert!(
        jobs.iter().any(|j| j.attempts >= 2),
        "a job of the killed worker was archived again: {jobs:#?}"
    );
    let (code, out, err) = backfill(&path, &["archive", "verify", "--run", "k1"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{small}: part")), "{out}");
    let uploads = stack
        .aws
        .s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .prefix(&dir)
        .send()
        .await?;
    assert!(
        uploads.uploads().is_empty(),
        "incomplete uploads were aborted: {uploads:?}"
    );
    let listed = stack
        .aws
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&dir)
        .send()
        .await?;
    let parts: Vec<_> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    assert_eq!(parts.len(), 2, "one part per range: {parts:?}");
    stack.cleanup().await
}
