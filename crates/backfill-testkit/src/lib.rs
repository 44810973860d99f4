//! Test support: the real Postgres server and the AWS-API emulators that
//! `scripts/stack-up.sh` starts, as per-test fixtures with unique names, so
//! tests run in parallel without touching each other's tables or queues.
//!
//! Endpoints come from the environment the scripts export, with the local
//! defaults: `BACKFILL_TEST_PG_URL` (postgres://postgres:postgres@127.0.0.1:5432/test),
//! `BACKFILL_TEST_DYNAMODB_URL` (http://127.0.0.1:4567, dynalite),
//! `BACKFILL_TEST_SQS_URL` (http://127.0.0.1:4566, moto).

pub mod corpus;
pub mod faults;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType;
use backfill_aws::{AwsClients, StaticCredentials};
use backfill_config::{
    AwsConfig, BackfillConfig, ControlConfig, ProducerConfig, QueueConfig, Secret, SourceConfig,
    TableConfig, WorkerConfig,
};
use backfill_control::ControlTable;
use backfill_dynamo::{DynamoSink, RetryPolicy};
use backfill_queue::JobQueue;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// Endpoints of the local stack.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub pg_url: String,
    pub dynamodb_url: String,
    pub sqs_url: String,
}

impl TestEnv {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        TestEnv {
            pg_url: var(
                "BACKFILL_TEST_PG_URL",
                "postgres://postgres:postgres@127.0.0.1:5432/test",
            ),
            dynamodb_url: var("BACKFILL_TEST_DYNAMODB_URL", "http://127.0.0.1:4567"),
            sqs_url: var("BACKFILL_TEST_SQS_URL", "http://127.0.0.1:4566"),
        }
    }

    pub fn aws_config(&self) -> AwsConfig {
        AwsConfig {
            region: "us-east-1".into(),
            endpoint_url: None,
            dynamodb_endpoint_url: Some(self.dynamodb_url.clone()),
            sqs_endpoint_url: Some(self.sqs_url.clone()),
            // moto serves S3 beside SQS.
            s3_endpoint_url: Some(self.sqs_url.clone()),
            attempt_timeout_secs: 60,
        }
    }

    pub async fn aws(&self) -> AwsClients {
        AwsClients::with_static_credentials(
            &self.aws_config(),
            StaticCredentials {
                access_key_id: "test".into(),
                secret_access_key: "test".into(),
            },
        )
        .await
    }
}

/// A name no other test uses: `prefix_` and 10 hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..10])
}

/// One test's own corner of the stack: a Postgres schema, a job queue with
/// its DLQ, a control table.
pub struct TestStack {
    pub env: TestEnv,
    pub name: String,
    /// The test's schema; tables go in it.
    pub schema: String,
    /// A read-write pool for setting up source tables.
    pub pg: PgPool,
    pub aws: AwsClients,
    pub queue_url: String,
    pub dlq_url: String,
    pub control_table: String,
    /// Whether `cleanup` ran; if not, dropping the stack drops its schema
    /// (a failed test's tables do not pile up in the shared database).
    cleaned: bool,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // Drop cannot await, and the test's runtime may be gone: a thread
        // of its own with a connection of its own.
        let (url, schema) = (self.env.pg_url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(drop_schema(&url, &schema))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("test stack {}: could not drop its schema", self.name);
        }
    }
}

async fn drop_schema(pg_url: &str, schema: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(pg_url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

impl TestStack {
    /// Creates the schema, the queues (redrive after `max_receive_count`) and the control table.
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::with_receive_count(prefix, 5).await
    }

    pub async fn with_receive_count(prefix: &str, max_receive_count: u32) -> Result<Self> {
        let env = TestEnv::from_env();
        let name = unique(prefix);
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .connect(&env.pg_url)
            .await
            .with_context(|| {
                format!(
                    "connecting to the test Postgres at {} (run scripts/stack-up.sh)",
                    backfill_config::redact_url(&env.pg_url)
                )
            })?;
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&pg)
            .await?;
        let aws = env.aws().await;
        let (queue_url, dlq_url) = backfill_queue::create_queues(
            &aws.sqs,
            &name,
            &format!("{name}-dlq"),
            max_receive_count,
            30,
        )
        .await
        .context("creating test queues in the SQS emulator (run scripts/stack-up.sh)")?;
        let control_table = format!("{name}_control");
        DynamoSink::new(aws.dynamodb.clone(), RetryPolicy::default())
            .ensure_table(
                &control_table,
                ("pk", ScalarAttributeType::S),
                Some(("sk", ScalarAttributeType::S)),
            )
            .await
            .context(
                "creating the control table in the DynamoDB emulator (run scripts/stack-up.sh)",
            )?;
        Ok(TestStack {
            env,
            schema: name.clone(),
            name,
            pg,
            aws,
            queue_url,
            dlq_url,
            control_table,
            cleaned: false,
        })
    }

    /// `schema.table` of a table in this test's schema.
    pub fn source(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// A DynamoDB table name unique to this test.
    pub fn target(&self, table: &str) -> String {
        format!("{}_{table}", self.name)
    }

    /// Runs SQL on the source database (setup only).
    pub async fn sql(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sql)
            .execute(&self.pg)
            .await
            .with_context(|| format!("running {sql}"))?;
        Ok(())
    }

    /// A config that points at this test's stack.
    pub fn config(&self, tables: Vec<TableConfig>) -> BackfillConfig {
        BackfillConfig {
            source: SourceConfig {
                url: Secret::new(self.env.pg_url.clone()),
                max_connections: 4,
                pause_query: None,
                pause_above: None,
                pause_check_secs: 5,
            },
            aws: self.env.aws_config(),
            queue: QueueConfig {
                url: self.queue_url.clone(),
                dlq_url: self.dlq_url.clone(),
                max_receive_count: 5,
                visibility_timeout_secs: 30,
                wait_time_secs: 1,
                signing_key_env: None,
            },
            control: ControlConfig {
                table: self.control_table.clone(),
            },
            producer: ProducerConfig::default(),
            worker: WorkerConfig::default(),
            capacity: Default::default(),
            offload: None,
            archive: None,
            // A fixed port would collide between parallel tests; a test that
            // wants the server starts it itself on port 0.
            metrics: backfill_config::MetricsConfig {
                listen: String::new(),
                ..Default::default()
            },
            tables,
        }
    }

    pub fn queue(&self) -> JobQueue {
        JobQueue::new(self.aws.sqs.clone(), &self.queue_url, &self.dlq_url)
    }

    pub fn sink(&self) -> DynamoSink {
        DynamoSink::new(self.aws.dynamodb.clone(), RetryPolicy::default())
    }

    pub fn control(&self) -> ControlTable {
        ControlTable::new(self.aws.dynamodb.clone(), &self.control_table)
    }

    /// Stores `jobs` as run `run_id`'s plan, as `produce` would, for tests
    /// that enqueue jobs by hand: workers take only jobs the control table
    /// planned, for a run it holds and a table that run names.
    pub async fn plan_jobs(&self, run_id: &str, jobs: &[backfill_job::JobMessage]) -> Result<()> {
        let mut tables: Vec<backfill_control::RunTable> = Vec::new();
        for j in jobs {
            match tables.iter_mut().find(|t| t.source == j.table) {
                Some(t) => t.jobs += 1,
                None => tables.push(backfill_control::RunTable {
                    source: j.table.clone(),
                    target: String::new(),
                    jobs: 1,
                    estimated_rows: 0,
                    wcu_per_item: 1.0,
                    key_ceiling_wcu: None,
                }),
            }
        }
        let plan = backfill_control::RunPlan {
            tables,
            config: None,
        };
        self.control().save_plan(run_id, jobs, &plan).await?;
        Ok(())
    }

    /// A DynamoDB table for a test's target, keyed as given.
    pub async fn create_target(
        &self,
        table: &str,
        partition: (&str, ScalarAttributeType),
        sort: Option<(&str, ScalarAttributeType)>,
    ) -> Result<()> {
        self.sink().ensure_table(table, partition, sort).await?;
        Ok(())
    }

    /// Drops the test's schema; emulator resources die with the emulator.
    pub async fn cleanup(mut self) -> Result<()> {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.pg)
            .await?;
        self.cleaned = true;
        Ok(())
    }
}

/// Renders a config as the TOML file a `backfill` process reads, for tests
/// that run the binary.
pub fn config_toml(cfg: &BackfillConfig) -> String {
    let q = |s: &str| format!("{s:?}");
    let opt = |k: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("{k} = {}\n", q(v)))
            .unwrap_or_default()
    };
    let mut out = format!(
        "[source]\nurl = {}\nmax_connections = {}\n\n[aws]\nregion = {}\n{}{}{}{}\n\
         [queue]\nurl = {}\ndlq_url = {}\nmax_receive_count = {}\nvisibility_timeout_secs = {}\nwait_time_secs = {}\n\n\
         [control]\ntable = {}\n\n\
         [producer]\nrows_per_job = {}\nsamples_per_job = {}\nmax_sample_rows = {}\n\n\
         [worker]\nconcurrency = {}\npage_rows = {}\npage_bytes = {}\nwrite_concurrency = {}\nmax_write_attempts = {}\nshutdown_grace_secs = {}\nverify_sample_rate = {:?}\nstripes = {}\nhand_back_secs = {}\nverify_reads_per_sec = {}\n",
        q(cfg.source.url.expose()),
        cfg.source.max_connections,
        q(&cfg.aws.region),
        opt("endpoint_url", &cfg.aws.endpoint_url),
        opt("dynamodb_endpoint_url", &cfg.aws.dynamodb_endpoint_url),
        opt("sqs_endpoint_url", &cfg.aws.sqs_endpoint_url),
        opt("s3_endpoint_url", &cfg.aws.s3_endpoint_url),
        q(&cfg.queue.url),
        q(&cfg.queue.dlq_url),
        cfg.queue.max_receive_count,
        cfg.queue.visibility_timeout_secs,
        cfg.queue.wait_time_secs,
        q(&cfg.control.table),
        cfg.producer.rows_per_job,
        cfg.producer.samples_per_job,
        cfg.producer.max_sample_rows,
        cfg.worker.concurrency,
        cfg.worker.page_rows,
        cfg.worker.page_bytes,
        cfg.worker.write_concurrency,
        cfg.worker.max_write_attempts,
        cfg.worker.shutdown_grace_secs,
        cfg.worker.verify_sample_rate,
        cfg.worker.stripes,
        cfg.worker.hand_back_secs,
        cfg.worker.verify_reads_per_sec,
    );
    if let Some(name) = &cfg.queue.signing_key_env {
        out = out.replacen(
            "\n[control]",
            &format!("signing_key_env = {}\n\n[control]", q(name)),
            1,
        );
    }
    if let (Some(q), Some(a)) = (&cfg.source.pause_query, cfg.source.pause_above) {
        out = out.replacen(
            "[aws]",
            &format!("pause_query = {:?}\npause_above = {a:?}\n\n[aws]", q),
            1,
        );
    }
    out = out.replacen(
        "[aws]",
        &format!(
            "pause_check_secs = {}\n\n[aws]",
            cfg.source.pause_check_secs
        ),
        1,
    );
    out.push_str(&format!(
        "\n[capacity]\nheartbeat_secs = {}\nworker_expiry_secs = {}\nprice_per_wcu_hour = {:?}\nkey_wcu_per_sec = {:?}\n",
        cfg.capacity.heartbeat_secs,
        cfg.capacity.worker_expiry_secs,
        cfg.capacity.price_per_wcu_hour,
        cfg.capacity.key_wcu_per_sec
    ));
    out.push_str(&format!(
        "\n[metrics]\nlisten = {}\nliveness_max_age_secs = {}\n",
        q(&cfg.metrics.listen),
        cfg.metrics.liveness_max_age_secs
    ));
    if let Some(o) = &cfg.offload {
        out.push_str(&format!(
            "\n[offload]\nbucket = {}\nprefix = {}\n",
            q(&o.bucket),
            q(&o.prefix)
        ));
    }
    if let Some(a) = &cfg.archive {
        out.push_str(&format!(
            "\n[archive]\nbucket = {}\nprefix = {}\nrow_group_rows = {}\nzstd_level = {}\nupload_part_bytes = {}\ntext_columns = [{}]\n",
            q(&a.bucket),
            q(&a.prefix),
            a.row_group_rows,
            a.zstd_level,
            a.upload_part_bytes,
            a.text_columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
        ));
    }
    let key = |k: &backfill_config::KeyAttribute| {
        let cols: Vec<String> = k.columns.iter().map(|c| q(c)).collect();
        let attr = k
            .attribute
            .as_ref()
            .map(|a| format!(", attribute = {}", q(a)))
            .unwrap_or_default();
        let template = k
            .template
            .as_ref()
            .map(|t| format!(", template = {}", q(t)))
            .unwrap_or_default();
        format!("{{ columns = [{}]{attr}{template} }}", cols.join(", "))
    };
    for t in &cfg.tables {
        out.push_str(&format!(
            "\n[[tables]]\nsource = {}\ntarget = {}\npartition_key = {}\n",
            q(&t.source),
            q(&t.target),
            key(&t.partition_key)
        ));
        if let Some(sk) = &t.sort_key {
            out.push_str(&format!("sort_key = {}\n", key(sk)));
        }
        let list = |v: &[String]| v.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
        if let Some(inc) = &t.include {
            out.push_str(&format!("include = [{}]\n", list(inc)));
        }
        out.push_str(&format!("exclude = [{}]\n", list(&t.exclude)));
        let map = |m: Vec<(String, String)>| {
            m.into_iter()
                .map(|(k, v)| format!("{} = {}", q(&k), q(&v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "rename = {{ {} }}\n",
            map(t.rename.clone().into_iter().collect())
        ));
        let types = t
            .types
            .iter()
            .map(|(k, v)| (k.clone(), format!("{v:?}").to_lowercase()))
            .collect();
        out.push_str(&format!("types = {{ {} }}\n", map(types)));
        out.push_str(&format!(
            "nulls = {:?}\n",
            format!("{:?}", t.nulls).to_lowercase()
        ));
        out.push_str(&format!(
            "unrepresentable = {:?}\n",
            format!("{:?}", t.unrepresentable).to_lowercase()
        ));
        out.push_str(&format!(
            "oversize = {:?}\n",
            format!("{:?}", t.oversize).to_lowercase()
        ));
        if let Some(w) = t.write_budget_wcu {
            out.push_str(&format!("write_budget_wcu = {w:?}\n"));
        }
        if let Some(f) = t.write_budget_fraction {
            out.push_str(&format!("write_budget_fraction = {f:?}\n"));
        }
        if let Some(r) = t.read_budget_rcu {
            out.push_str(&format!("read_budget_rcu = {r:?}\n"));
        }
        if let Some(v) = &t.version_column {
            out.push_str(&format!("version_column = {}\n", q(v)));
        }
    }
    out
}

/// A table config keyed by one or more columns.
pub fn table(source: String, target: String, pk: &[&str], pk_attr: Option<&str>) -> TableConfig {
    TableConfig::new(
        source,
        target,
        backfill_config::KeyAttribute::columns(pk, pk_attr),
    )
}

/// Reads every range page by page, as a worker does, and counts how often
/// each key appears: what the key-coverage tests check.
pub async fn keys_by_range(
    source: &backfill_source::PgSource,
    t: &backfill_source::TableRef,
    ranges: &[backfill_job::KeyRange],
    page: u32,
) -> Result<std::collections::BTreeMap<String, usize>> {
    let schema = source.describe(t).await?;
    let mut seen = std::collections::BTreeMap::new();
    for r in ranges {
        let q = backfill_source::reader::PageQuery::new(&schema, r);
        let mut after: Option<backfill_job::KeyTuple> = None;
        loop {
            let rows = source.read_page(&schema, &q, after.as_ref(), page).await?;
            for row in &rows {
                *seen.entry(format!("{:?}", row.key)).or_insert(0) += 1;
            }
            if rows.len() < page as usize {
                break;
            }
            after = rows.last().map(|r| r.key.clone());
        }
    }
    Ok(seen)
}

/// Polls `condition` every 50 ms until it holds or `within` has passed, and
/// says whether it held: a test waits for a state, not for a fixed time
/// that is too long on a fast machine and too short on a loaded one.
pub async fn eventually(within: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_config::{
        KeyAttribute, NullPolicy, OffloadConfig, Oversize, TypeOverride, Unrepresentable,
    };

    /// The rendered file loads back into the same settings, so process tests
    /// run the binary with the config they meant.
    #[test]
    fn config_toml_round_trips() {
        let mut t = table("s.t".into(), "target_t".into(), &["a", "b"], Some("pk"));
        t.sort_key = Some(KeyAttribute::template("X#{c}{{y}}", "sk"));
        t.include = Some(vec!["a".into(), "b".into(), "c".into()]);
        t.exclude = vec!["d".into()];
        t.rename.insert("c".into(), "see".into());
        t.types.insert("c".into(), TypeOverride::Json);
        t.nulls = NullPolicy::Null;
        t.unrepresentable = Unrepresentable::String;
        t.version_column = Some("c".into());
        t.oversize = Oversize::S3;
        t.write_budget_wcu = Some(250.0);
        let mut cfg = BackfillConfig {
            source: SourceConfig {
                url: Secret::new("postgres://u:p@h/db"),
                max_connections: 3,
                pause_query: Some("SELECT 1".into()),
                pause_above: Some(2.5),
                pause_check_secs: 7,
            },
            aws: TestEnv::from_env().aws_config(),
            queue: QueueConfig {
                url: "http://h/1/q".into(),
                dlq_url: "http://h/1/d".into(),
                max_receive_count: 3,
                visibility_timeout_secs: 7,
                wait_time_secs: 2,
                signing_key_env: None,
            },
            control: ControlConfig {
                table: "ctl".into(),
            },
            producer: ProducerConfig::default(),
            worker: WorkerConfig::default(),
            capacity: Default::default(),
            offload: Some(OffloadConfig {
                bucket: "b".into(),
                prefix: "p/".into(),
            }),
            archive: Some(backfill_config::ArchiveConfig {
                bucket: "arch".into(),
                prefix: "a/".into(),
                row_group_rows: 100,
                zstd_level: 5,
                upload_part_bytes: 6 * 1024 * 1024,
                text_columns: vec!["public.t.ts".into()],
            }),
            metrics: backfill_config::MetricsConfig {
                listen: "127.0.0.1:9999".into(),
                liveness_max_age_secs: 33,
            },
            tables: vec![t],
        };
        cfg.worker.verify_sample_rate = 0.5;
        let back =
            BackfillConfig::from_toml_str(&config_toml(&cfg)).expect("rendered config loads");
        assert_eq!(format!("{back:?}"), format!("{cfg:?}"));
    }
}
