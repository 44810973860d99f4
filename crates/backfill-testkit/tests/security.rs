//! Bad input and security against the real Postgres and the emulators:
//! every kind of bad or forged message reaches the DLQ with its reason and
//! leaves the good job and the control table alone; signing; hostile
//! identifiers; read-only and TLS source sessions; no password in errors.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use aws_sdk_sqs::types::MessageAttributeValue;
use backfill_config::BackfillConfig;
use backfill_control::JobState;
use backfill_dlq::{Dlq, Filter, ReplayOptions};
use backfill_job::signing::{MessageSigner, SIGNATURE_ATTRIBUTE};
use backfill_job::{JobMessage, KeyRange, KeyValue};
use backfill_queue::JobQueue;
use backfill_source::PgSource;
use backfill_testkit::{table, TestStack};
use backfill_worker::{WorkOptions, WorkSummary, Worker};
use tokio_util::sync::CancellationToken;

async fn work_until_idle(
    stack: &TestStack,
    cfg: &BackfillConfig,
    queue: JobQueue,
) -> Result<WorkSummary> {
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let w = Arc::new(Worker::new(
        Arc::new(cfg.clone()),
        source,
        stack.sink(),
        queue,
        stack.control(),
    ));
    Ok(w.run(CancellationToken::new(), until_idle()).await)
}

// The other options at their defaults, whatever options the worker grows
// (a branch adds `max_jobs`).
#[allow(clippy::needless_update)]
fn until_idle() -> WorkOptions {
    WorkOptions {
        until_idle: true,
        ..Default::default()
    }
}

/// Every DLQ message as (error_kind, error, run_id attribute).
async fn dead_letters(stack: &TestStack) -> Result<Vec<(String, String, Option<String>)>> {
    let mut out = Vec::new();
    loop {
        let got = stack
            .aws
            .sqs
            .receive_message()
            .queue_url(&stack.dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .send()
            .await?;
        if got.messages().is_empty() {
            return Ok(out);
        }
        for m in got.messages() {
            let attrs = m.message_attributes().cloned().unwrap_or_default();
            let get = |k: &str| {
                attrs
                    .get(k)
                    .and_then(|v| v.string_value())
                    .map(str::to_string)
            };
            out.push((
                get("error_kind").unwrap_or_default(),
                get("error").unwrap_or_default(),
                get("run_id"),
            ));
        }
    }
}

fn find<'a>(
    dead: &'a [(String, String, Option<String>)],
    needle: &str,
) -> &'a (String, String, Option<String>) {
    dead.iter()
        .find(|(_, e, _)| e.contains(needle))
        .unwrap_or_else(|| panic!("no dead letter says {needle:?}: {dead:#?}"))
}

#[tokio::test]
async fn each_bad_or_forged_message_is_dead_lettered_with_its_reason_and_harms_nothing(
) -> Result<()> {
    let stack = TestStack::new("sec_bad").await?;
    let src = stack.source("items");
    let other = stack.source("other");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY, v text); \
             INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 100) g; \
             CREATE TABLE {other} (id int PRIMARY KEY); \
             INSERT INTO {other} SELECT generate_series(1, 50);"
        ))
        .await?;
    let target = stack.target("items");
    let other_target = stack.target("other");
    stack.create_target(&target, ("id", T::N), None).await?;
    stack
        .create_target(&other_target, ("id", T::N), None)
        .await?;
    // The worker is configured for both tables; the run names only `items`.
    let cfg = stack.config(vec![
        table(src.clone(), target.clone(), &["id"], None),
        table(other.clone(), other_target.clone(), &["id"], None),
    ]);
    let good = JobMessage::new(
        "r",
        &src,
        vec!["id".into()],
        KeyRange {
            lo: None,
            hi: Some(vec![KeyValue::Int(1000)]),
        },
    );
    stack.plan_jobs("r", std::slice::from_ref(&good)).await?;

    let good_body = good.to_body();
    let no_such_run = JobMessage::new("nope", &src, vec!["id".into()], KeyRange::all());
    let table_not_in_run = JobMessage::new("r", &other, vec!["id".into()], KeyRange::all());
    // The good job's id with the range opened above: it would copy more.
    let wider = JobMessage {
        range: KeyRange::all(),
        ..good.clone()
    };
    let other_key = JobMessage {
        key_columns: vec!["v".into()],
        ..good.clone()
    };
    // A new range with a correctly derived id, never planned.
    let unplanned = JobMessage::new(
        "r",
        &src,
        vec!["id".into()],
        KeyRange {
            lo: Some(vec![KeyValue::Int(1000)]),
            hi: None,
        },
    );
    let bodies = vec![
        "{this is not json".to_string(),
        good_body[..good_body.len() / 2].to_string(),
        format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024)),
        good_body.replacen("\"version\":1", "\"version\":7", 1),
        no_such_run.to_body(),
        table_not_in_run.to_body(),
        wider.to_body(),
        other_key.to_body(),
        unplanned.to_body(),
        good_body.clone(),
    ];
    let bad = bodies.len() as u64 - 1;
    stack.queue().send_raw(&stack.queue_url, bodies).await?;

    let summary = work_until_idle(&stack, &cfg, stack.queue()).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, bad, "{summary:?}");
    assert_eq!(summary.jobs_retried, 0, "nothing loops: {summary:?}");
    assert_eq!(stack.queue().depth().await?.total(), 0);
    assert_eq!(stack.sink().count_items(&target).await?, 100);
    assert_eq!(
        stack.sink().count_items(&other_target).await?,
        0,
        "a table the run does not name is never copied"
    );

    let dead = dead_letters(&stack).await?;
    assert_eq!(dead.len() as u64, bad, "{dead:#?}");
    assert_eq!(find(&dead, "key must be a string").0, "malformed_message");
    assert_eq!(
        find(
            &dead,
            &format!("truncated after {} bytes", good_body.len() / 2)
        )
        .0,
        "malformed_message"
    );
    assert_eq!(
        find(&dead, "over the 65536-byte limit").0,
        "oversized_message"
    );
    let v = find(&dead, "version 7 is not the supported 1");
    assert_eq!(v.0, "unknown_version");
    assert!(v.1.contains(&good.job_id), "names the job: {v:?}");
    let f = find(&dead, "run nope does not exist in control table");
    assert_eq!(f.0, "forged");
    assert_eq!(
        f.2.as_deref(),
        Some("nope"),
        "the claimed run is kept for triage"
    );
    assert_eq!(
        find(
            &dead,
            &format!("run r does not name table {other} (it names {src})")
        )
        .0,
        "forged"
    );
    assert_eq!(
        find(
            &dead,
            "range is [-inf, +inf), but the planned job's is [-inf, (1000))"
        )
        .0,
        "forged"
    );
    assert_eq!(
        find(&dead, "key_columns is (v), but the planned job's is (id)").0,
        "forged"
    );
    assert_eq!(
        find(&dead, &format!("run r planned no job {}", unplanned.job_id)).0,
        "forged"
    );
    for (_, reason, _) in &dead {
        assert!(
            reason.starts_with("message "),
            "names the message: {reason}"
        );
    }

    // Forged messages left no trace in the control table: the good job is
    // done (not failed by the forged copy of its id), and nothing else exists.
    let jobs = stack.control().jobs("r").await?;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, JobState::Done);
    assert_eq!(jobs[0].last_error, None);
    assert!(stack.control().jobs("nope").await?.is_empty());
    stack.cleanup().await
}

fn signer(key: &str) -> MessageSigner {
    MessageSigner::new(key.as_bytes()).expect("a long enough key")
}

#[tokio::test]
async fn with_signing_on_only_correctly_signed_jobs_are_taken_and_replays_are_signed() -> Result<()>
{
    let stack = TestStack::new("sec_sign").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 90);"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    let key = "k".repeat(48);
    let signed = stack.queue().with_signer(Some(signer(&key)));
    let ranges = KeyRange::tile(vec![vec![KeyValue::Int(31)], vec![KeyValue::Int(61)]]);
    let jobs: Vec<JobMessage> = ranges
        .into_iter()
        .map(|r| JobMessage::new("r", &src, vec!["id".into()], r))
        .collect();
    stack.plan_jobs("r", &jobs).await?;

    // Signed by the queue that holds the key.
    signed.send_jobs(&jobs[..1]).await?;
    // Unsigned.
    stack
        .queue()
        .send_raw(&stack.queue_url, vec![jobs[1].to_body()])
        .await?;
    // Signed with another key.
    let wrong = signer(&"w".repeat(48)).sign(&jobs[2].to_body());
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(jobs[2].to_body())
        .message_attributes(
            SIGNATURE_ATTRIBUTE,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(wrong)
                .build()?,
        )
        .send()
        .await?;

    let summary = work_until_idle(&stack, &cfg, signed.clone()).await?;
    assert_eq!(summary.jobs_done, 1, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 2, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 30);
    let dlq = Dlq::new(signed.clone(), stack.control()).with_hold_secs(5);
    let dead = dlq.list(&Filter::default()).await?;
    let reasons: HashMap<String, (Option<String>, String)> = dead
        .iter()
        .map(|d| {
            (
                d.job_id.clone().unwrap_or_default(),
                (d.error_kind.clone(), d.error_text().to_string()),
            )
        })
        .collect();
    let unsigned = &reasons[&jobs[1].job_id];
    assert_eq!(unsigned.0.as_deref(), Some("forged"));
    assert!(unsigned.1.contains("not signed"), "{unsigned:?}");
    let mismatched = &reasons[&jobs[2].job_id];
    assert_eq!(mismatched.0.as_deref(), Some("forged"));
    assert!(
        mismatched.1.contains("does not match its body"),
        "{mismatched:?}"
    );
    // Refused before the control table was consulted: the planned jobs are untouched.
    for j in &jobs[1..] {
        let rec = stack.control().job("r", &j.job_id).await?.unwrap();
        assert_eq!(rec.state, JobState::Planned, "{rec:?}");
    }

    // An operator replays them through a queue with the key: they are signed now.
    let replay = dlq
        .replay(
            &Filter::default(),
            &ReplayOptions {
                by: "oncall".into(),
                why: "producer had no key".into(),
                dry_run: false,
                rate: None,
            },
        )
        .await?;
    assert_eq!(replay.replayed(), 2, "{replay:?}");
    let summary = work_until_idle(&stack, &cfg, signed).await?;
    assert_eq!(summary.jobs_done, 2, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 90);
    stack.cleanup().await
}

#[tokio::test]
async fn the_producer_signs_when_it_has_the_key() -> Result<()> {
    let stack = TestStack::new("sec_prod").await?;
    let src = stack.source("items");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 500); ANALYZE {src};"
        ))
        .await?;
    let target = stack.target("items");
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src.clone(), target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 100;
    let signed = stack.queue().with_signer(Some(signer(&"p".repeat(40))));
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let report = backfill_producer::produce(&cfg, &source, &signed, &stack.control(), "r").await?;
    assert!(report.enqueued >= 2, "{report:?}");
    let summary = work_until_idle(&stack, &cfg, signed).await?;
    assert_eq!(summary.jobs_done as usize, report.enqueued, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    assert_eq!(stack.sink().count_items(&target).await?, 500);
    stack.cleanup().await
}

#[tokio::test]
async fn hostile_identifiers_are_quoted_everywhere_and_copied_exactly() -> Result<()> {
    let stack = TestStack::new("sec_ident").await?;
    let name = "we\"ird; drop table x";
    let src = stack.source(name);
    let quoted = format!("\"{}\".\"{}\"", stack.schema, name.replace('"', "\"\""));
    stack
        .sql(&format!(
            "CREATE TABLE {quoted} (\"key col\" int PRIMARY KEY, \"a\"\"b\" text, \"select\" int, \"x'); --\" text); \
             INSERT INTO {quoted} SELECT g, 'q\"' || g, g * 2, 'y' || g FROM generate_series(1, 240) g; ANALYZE {quoted};"
        ))
        .await?;
    let target = stack.target("weird");
    stack
        .create_target(&target, ("key col", T::N), None)
        .await?;
    let mut t = table(src.clone(), target.clone(), &["key col"], None);
    t.exclude = vec!["x'); --".into()];
    let mut cfg = stack.config(vec![t.clone()]);
    cfg.producer.rows_per_job = 60;
    cfg.worker.page_rows = 25;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    assert!(backfill_worker::preflight(&cfg, &source).await?.is_empty());
    let report =
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), "r").await?;
    assert!(report.jobs_total >= 2, "{report:?}");
    let summary = work_until_idle(&stack, &cfg, stack.queue()).await?;
    assert_eq!(summary.rows_copied, 240, "{summary:?}");
    assert_eq!(summary.jobs_dead_lettered, 0, "{summary:?}");
    let verify = backfill_verify::Verifier::new(source.clone(), stack.sink(), Default::default());
    assert!(verify.verify_table(&t).await?.is_clean());
    // The table is still there, and so is everything else.
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {quoted}"))
        .fetch_one(&stack.pg)
        .await?;
    assert_eq!(n, 240);

    // A config naming a table or column that does not exist fails at start, naming it.
    let missing = stack.source("no\"such; drop table x");
    let mut bad_col = t.clone();
    bad_col.include = Some(vec!["nope\"; --".into()]);
    let bad = stack.config(vec![
        table(missing.clone(), stack.target("m"), &["id"], None),
        bad_col,
    ]);
    let problems = backfill_worker::preflight(&bad, &source).await?;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains(&format!("table {missing} does not exist")),
        "{problems:#?}"
    );
    assert!(problems[1].contains("nope\"; --"), "{problems:#?}");
    let plan = backfill_producer::plan(&bad, &source, "r2").await?;
    let plan_problems = plan.problems().join("\n");
    assert!(
        plan_problems.contains(&format!("table {missing} does not exist")),
        "{plan_problems}"
    );
    assert!(plan_problems.contains("nope\"; --"), "{plan_problems}");
    stack.cleanup().await
}

#[tokio::test]
async fn a_write_through_the_source_pool_is_refused() -> Result<()> {
    let stack = TestStack::new("sec_ro").await?;
    let src = stack.source("t");
    stack
        .sql(&format!(
            "CREATE TABLE {src} (id int PRIMARY KEY); INSERT INTO {src} VALUES (1);"
        ))
        .await?;
    let source = PgSource::connect(&stack.env.pg_url, 3).await?;
    // Every connection of the pool, not only the first.
    for sql in [
        format!("INSERT INTO {src} VALUES (2)"),
        format!("UPDATE {src} SET id = 3"),
        format!("DELETE FROM {src}"),
        format!("CREATE TABLE {src}_new (id int)"),
        format!("DROP TABLE {src}"),
    ] {
        let e = sqlx::query(&sql)
            .execute(source.pool())
            .await
            .expect_err("a write through the source pool");
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .unwrap_or_default();
        assert_eq!(code, "25006", "{sql}: {e}");
    }
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {src}"))
        .fetch_one(&stack.pg)
        .await?;
    assert_eq!(n, 1);
    stack.cleanup().await
}

fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

#[tokio::test]
async fn tls_modes_reach_the_server_encrypted_or_fail_clearly() -> Result<()> {
    let env = backfill_testkit::TestEnv::from_env();
    let ssl_on: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&PgSource::connect(&env.pg_url, 1).await?.pool().clone())
        .await?;
    if ssl_on != "on" {
        eprintln!("the test server has no TLS: skipped");
        return Ok(());
    }
    let encrypted = |s: PgSource| async move {
        let on: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(s.pool())
                .await?;
        anyhow::Ok(on)
    };
    // require: encrypted, certificate not checked.
    let s = PgSource::connect(&with_params(&env.pg_url, "sslmode=require"), 1).await?;
    assert!(
        encrypted(s).await?,
        "sslmode=require gave a plain connection"
    );
    let s = PgSource::connect(&with_params(&env.pg_url, "sslmode=disable"), 1).await?;
    assert!(!encrypted(s).await?);
    // verify-full against a self-signed server certificate, with no root given: refused.
    let e = PgSource::connect(&with_params(&env.pg_url, "sslmode=verify-full"), 1)
        .await
        .expect_err("an unverifiable certificate")
        .to_string();
    assert!(
        !e.contains("without TLS support"),
        "no TLS backend compiled in: {e}"
    );
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // With the server's (self-signed) certificate as the root: verified,
    // and verify-full also checks the host name against it (localhost).
    let cert = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    if std::path::Path::new(cert).exists() && env.pg_url.contains("@127.0.0.1:") {
        let local = env.pg_url.replacen("@127.0.0.1:", "@localhost:", 1);
        for mode in ["verify-ca", "verify-full"] {
            let url = with_params(&local, &format!("sslmode={mode}&sslrootcert={cert}"));
            let s = PgSource::connect(&url, 1).await?;
            assert!(encrypted(s).await?, "{mode}");
        }
        // verify-full by IP: the certificate names localhost only.
        let url = with_params(
            &env.pg_url,
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        );
        let e = PgSource::connect(&url, 1)
            .await
            .expect_err("a host name the certificate does not name")
            .to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
    }
    Ok(())
}

#[tokio::test]
async fn connection_errors_never_show_the_password() -> Result<()> {
    let secret = "S3cr3t-pw_never-shown";
    for url in [
        format!("postgres://app:{secret}@no-such-host.invalid:5432/db"),
        format!("postgres://app:{secret}@127.0.0.1:1/db"),
        format!("postgres://no_such_role:{secret}@127.0.0.1:5432/test"),
        format!("postgres://app:{secret}@127.0.0.1:5432/db?sslmode=bogus"),
        format!("postgres://app:{secret}@[::1/db"),
    ] {
        let e = PgSource::connect(&url, 1)
            .await
            .expect_err("cannot connect");
        let mut texts = vec![e.to_string(), format!("{e:?}")];
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(c) = cause {
            texts.push(c.to_string());
            cause = c.source();
        }
        for t in texts {
            assert!(!t.contains(secret), "{url}: {t}");
        }
        let shown = backfill_config::redact_url(&url);
        assert!(!shown.contains(secret), "{shown}");
    }
    Ok(())
}
