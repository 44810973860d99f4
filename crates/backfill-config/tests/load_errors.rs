//! Loading errors say where the fault is: the variable that set a bad key,
//! a directory passed as the file.

use backfill_config::BackfillConfig;

const GOOD: &str = r#"
[source]
url = "postgres://app:pw@127.0.0.1:5432/db"
[aws]
region = "us-east-1"
[queue]
url = "http://127.0.0.1:4566/000000000000/jobs"
dlq_url = "http://127.0.0.1:4566/000000000000/jobs-dlq"
[control]
table = "backfill_control"
[[tables]]
source = "public.orders"
target = "orders"
partition_key = { columns = ["id"] }
"#;

fn file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("backfill-load-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    path
}

fn load_err(path: &std::path::Path, env: &[(&str, &str)]) -> String {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    BackfillConfig::load_with_env(path, env)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_typo_in_a_variable_names_the_variable() {
    let path = file("typo");
    for var in [
        "BACKFILL__WORKR__CONCURRENCY",
        "BACKFILL__WORKER__CONCURENCY",
    ] {
        let err = load_err(&path, &[(var, "3")]);
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains("c.toml"), "the file is not at fault: {err}");
    }
    // A bad value from a variable names it too.
    let err = load_err(&path, &[("BACKFILL__WORKER__CONCURRENCY", "many")]);
    assert!(err.contains("BACKFILL__WORKER__CONCURRENCY"), "{err}");
}

#[test]
fn a_directory_is_not_a_config_file() {
    let path = file("dir");
    let dir = path.parent().unwrap();
    let err = load_err(dir, &[]);
    assert!(err.contains("is a directory"), "{err}");
}
