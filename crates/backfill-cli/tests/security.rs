//! The binary at start: the source password never appears in `plan`
//! output, logs or errors; a config naming a table or column the source
//! does not have stops `work` before it takes a job; signing needs its key.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_testkit::{config_toml, table, TestStack};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_backfill");
const PASSWORD: &str = "pw-Zx81-never-printed";

async fn backfill(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(i32, String)> {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug,aws=info,hyper=info,h2=info,rustls=info")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .context("running the backfill binary")?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The stack's config as a file, with a password in the source URL.
fn config_file(
    stack: &TestStack,
    cfg: &backfill_config::BackfillConfig,
    tag: &str,
) -> Result<std::path::PathBuf> {
    let url = cfg.source.url.expose();
    let with_password = url.replacen("postgres:postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert_ne!(url, with_password, "the test URL has user:password@");
    let toml = config_toml(cfg).replace(url, &with_password);
    let path = std::env::temp_dir().join(format!("{}-{tag}.toml", stack.name));
    std::fs::write(&path, toml)?;
    Ok(path)
}

#[tokio::test]
async fn plan_output_and_start_errors_never_show_the_password_and_name_what_is_missing(
) -> Result<()> {
    let stack = TestStack::new("cli_sec").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' FROM generate_series(1, 300) g; ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("t");
    stack.create_target(&target, ("id", T::N), None).await?;
    let good = table(src.clone(), target.clone(), &["id"], None);
    let cfg = stack.config(vec![good.clone()]);
    let path = config_file(&stack, &cfg, "good")?;
    let (code, out) = backfill(&path, &["plan", "--run", "r"], &[]).await?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{src} -> {target}")), "{out}");
    assert!(!out.contains(PASSWORD), "the password leaked: {out}");

    // A table and a column that do not exist: `work` refuses to start, naming both.
    let missing = stack.source("gone");
    let mut bad_col = good.clone();
    bad_col.exclude = vec!["no_such_col".into()];
    let bad = stack.config(vec![
        bad_col,
        table(missing.clone(), stack.target("gone"), &["id"], None),
    ]);
    let path = config_file(&stack, &bad, "bad")?;
    let (code, out) = backfill(&path, &["work", "--until-idle"], &[]).await?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no job was taken"), "{out}");
    assert!(
        out.contains(&format!("table {missing} does not exist")),
        "{out}"
    );
    assert!(out.contains("no_such_col"), "{out}");
    assert!(!out.contains(PASSWORD), "the password leaked: {out}");

    // An unreachable source: the error names the host, not the password.
    let mut unreachable = cfg.clone();
    unreachable.source.url = backfill_config::Secret::new(cfg.source.url.expose().replacen(
        "127.0.0.1:5432",
        "127.0.0.1:1",
        1,
    ));
    let path = config_file(&stack, &unreachable, "unreachable")?;
    let (code, out) = backfill(&path, &["plan", "--run", "r"], &[]).await?;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("127.0.0.1:1"), "{out}");
    assert!(!out.contains(PASSWORD), "the password leaked: {out}");

    // Signing on without its key: a clear error before anything is sent.
    let mut signing = cfg.clone();
    signing.queue.signing_key_env = Some("BACKFILL_TEST_SIGNING_KEY".into());
    let path = config_file(&stack, &signing, "signing")?;
    let (code, out) = backfill(&path, &["produce", "--run", "r"], &[]).await?;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("BACKFILL_TEST_SIGNING_KEY is not set"),
        "{out}"
    );
    assert_eq!(stack.queue().depth().await?.total(), 0);
    let key = "0123456789abcdef".repeat(4);
    let (code, out) = backfill(
        &path,
        &["produce", "--run", "r"],
        &[("BACKFILL_TEST_SIGNING_KEY", key.as_str())],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&key), "the signing key leaked: {out}");
    let (code, out) = backfill(
        &path,
        &["work", "--until-idle"],
        &[("BACKFILL_TEST_SIGNING_KEY", key.as_str())],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(&key) && !out.contains(PASSWORD),
        "a secret leaked: {out}"
    );
    assert_eq!(stack.sink().count_items(&target).await?, 300);
    stack.cleanup().await
}
