//! The one configuration type of the backfill, loaded in one place.
//!
//! [`BackfillConfig::load`] reads a TOML file, then applies environment
//! overrides (`BACKFILL__SECTION__KEY`, e.g. `BACKFILL__SOURCE__URL`), then
//! validates the whole. Every error names the key at fault. Secrets (the
//! source URL carries a password) are wrapped in [`Secret`], which never
//! prints its content.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Why the configuration could not be used. Each variant names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key had the wrong type.
    #[error("cannot load configuration from {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    /// A key has a value of the wrong type (the `config` crate alone would
    /// round `1.5` into an integer key or take `"5"` for a number).
    #[error("cannot load configuration from {path}: `{key}`: {reason}")]
    Type {
        path: String,
        key: String,
        reason: String,
    },
    /// A key parsed but its value is not acceptable.
    #[error("invalid configuration: `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// An environment override names no key, or gives one a wrong value.
    #[error("invalid configuration: environment variable {variable}: {reason}")]
    Env { variable: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A string that must never appear in logs or error messages.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value, for the one place that needs it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration of producer and worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    pub source: SourceConfig,
    pub aws: AwsConfig,
    pub queue: QueueConfig,
    pub control: ControlConfig,
    #[serde(default)]
    pub producer: ProducerConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub capacity: CapacityConfig,
    /// Where items over DynamoDB's 400 KB limit go, for tables with `oversize = "s3"`.
    #[serde(default)]
    pub offload: Option<OffloadConfig>,
    /// The worker's Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: MetricsConfig,
    pub tables: Vec<TableConfig>,
}

/// The worker's HTTP server for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` the server listens on; an empty string runs no server.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// `/healthz` fails once no worker loop has ticked for this long. The
    /// fleet loop ticks every `capacity.heartbeat_secs`, so it must be longer.
    #[serde(default = "default_liveness_max_age_secs")]
    pub liveness_max_age_secs: u64,
}

fn default_metrics_listen() -> String {
    // The port Prometheus' exporter registry lists for ad-hoc exporters.
    "0.0.0.0:9464".to_string()
}
fn default_liveness_max_age_secs() -> u64 {
    120
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
            liveness_max_age_secs: default_liveness_max_age_secs(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve on, or `None` when the server is disabled.
    /// Validation has checked that a non-empty `listen` parses.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|e| {
            invalid(
                "metrics.listen",
                format!(
                    "`{listen}` is not a socket address ({e}); give ip:port such as 0.0.0.0:9464, or \"\" to run no server"
                ),
            )
        })
    }
}

/// How the fleet shares its write budgets, and what capacity costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Seconds between a worker's heartbeats in the control table.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// A worker whose heartbeat is older than this stops counting.
    #[serde(default = "default_worker_expiry_secs")]
    pub worker_expiry_secs: u64,
    /// Price of one WCU for one hour of provisioned capacity, for `plan`'s cost estimate.
    #[serde(default = "default_price_per_wcu_hour")]
    pub price_per_wcu_hour: f64,
}

fn default_heartbeat_secs() -> u64 {
    2
}
fn default_worker_expiry_secs() -> u64 {
    10
}
fn default_price_per_wcu_hour() -> f64 {
    // us-east-1 provisioned write capacity, per WCU-hour.
    0.00065
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            heartbeat_secs: default_heartbeat_secs(),
            worker_expiry_secs: default_worker_expiry_secs(),
            price_per_wcu_hour: default_price_per_wcu_hour(),
        }
    }
}

/// The S3 location of offloaded items (docs/OFFLOAD.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    pub bucket: String,
    /// Key prefix, e.g. `backfill/`.
    #[serde(default)]
    pub prefix: String,
}

/// What happens to an item over DynamoDB's 400 KB limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// The job fails, naming the key and the size.
    #[default]
    Fail,
    /// The item goes to S3 whole; DynamoDB holds its key and a pointer.
    S3,
}

/// The PostgreSQL server the history is read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `postgres://user:password@host:port/db`; a secret because of the password.
    pub url: Secret,
    /// Connections per process; also the cap on concurrent source queries.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A query returning one number (replica lag in seconds, active
    /// sessions, ...); while it exceeds `pause_above`, workers read nothing.
    #[serde(default)]
    pub pause_query: Option<String>,
    #[serde(default)]
    pub pause_above: Option<f64>,
    /// Seconds between evaluations of `pause_query`.
    #[serde(default = "default_pause_check_secs")]
    pub pause_check_secs: u64,
}

fn default_pause_check_secs() -> u64 {
    5
}

fn default_max_connections() -> u32 {
    4
}

impl SourceConfig {
    /// The URL with any password replaced, safe to print.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// Replaces the password of a URL with `***`; an unparsable URL is hidden whole.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

/// Where the AWS services are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// One endpoint for every service (an emulator that serves all of them).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// DynamoDB endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub dynamodb_endpoint_url: Option<String>,
    /// SQS endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub sqs_endpoint_url: Option<String>,
    /// S3 endpoint, overriding `endpoint_url`.
    #[serde(default)]
    pub s3_endpoint_url: Option<String>,
    /// Longest one attempt of an AWS call may take, connecting included,
    /// before it is abandoned and retried: a request the service (or a
    /// proxy on the way) accepted but never answered would otherwise hold
    /// its job until the process is stopped. Must be longer than
    /// `queue.wait_time_secs`, SQS's long poll.
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: u64,
}

fn default_attempt_timeout() -> u64 {
    60
}

impl AwsConfig {
    pub fn dynamodb_endpoint(&self) -> Option<&str> {
        self.dynamodb_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.s3_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
    pub fn sqs_endpoint(&self) -> Option<&str> {
        self.sqs_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
}

/// The SQS job queue and its dead-letter queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub url: String,
    pub dlq_url: String,
    /// Receives before SQS itself moves a message to the DLQ (redrive policy).
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    /// How long a received job stays invisible; a heartbeat extends it.
    #[serde(default = "default_visibility_timeout")]
    pub visibility_timeout_secs: u32,
    /// Long-poll wait of each receive (0 to 20).
    #[serde(default = "default_wait_time")]
    pub wait_time_secs: u32,
    /// The environment variable that holds the job-signing key. When set,
    /// the producer and `dlq replay` sign every job (HMAC-SHA256) and
    /// workers refuse unsigned or wrongly signed ones. Only the variable's
    /// name is configuration: the key itself never enters a file, the run's
    /// config snapshot or a log.
    #[serde(default)]
    pub signing_key_env: Option<String>,
}

impl QueueConfig {
    /// The job-signing key, read from the variable `signing_key_env` names
    /// (`None`: signing is off). Errors name the key and the variable.
    pub fn signing_key(&self) -> Result<Option<Secret>, ConfigError> {
        self.signing_key_from(|name| std::env::var(name).ok())
    }

    /// As [`QueueConfig::signing_key`], with the environment given (for tests).
    pub fn signing_key_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let Some(name) = &self.signing_key_env else {
            return Ok(None);
        };
        match env(name) {
            None => Err(invalid(
                "queue.signing_key_env",
                format!("the environment variable {name} is not set (signing is on: set it, or remove signing_key_env)"),
            )),
            Some(k) if k.len() < MIN_SIGNING_KEY_BYTES => Err(invalid(
                "queue.signing_key_env",
                format!(
                    "the key in {name} is {} bytes; a signing key must be at least {MIN_SIGNING_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                    k.len()
                ),
            )),
            Some(k) => Ok(Some(Secret::new(k))),
        }
    }
}

/// Shortest signing key accepted (HMAC-SHA256's output size).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

fn default_max_receive_count() -> u32 {
    5
}
fn default_visibility_timeout() -> u32 {
    120
}
fn default_wait_time() -> u32 {
    20
}

/// The DynamoDB table that holds runs and jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub table: String,
}

/// How the producer splits tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Rows a job should cover, about.
    #[serde(default = "default_rows_per_job")]
    pub rows_per_job: u64,
    /// Key samples taken per planned job; more gives more even jobs.
    #[serde(default = "default_samples_per_job")]
    pub samples_per_job: u64,
    /// Upper bound on the sample size, whatever the table size.
    #[serde(default = "default_max_sample_rows")]
    pub max_sample_rows: u64,
}

fn default_rows_per_job() -> u64 {
    100_000
}
fn default_samples_per_job() -> u64 {
    20
}
fn default_max_sample_rows() -> u64 {
    1_000_000
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            rows_per_job: default_rows_per_job(),
            samples_per_job: default_samples_per_job(),
            max_sample_rows: default_max_sample_rows(),
        }
    }
}

/// How a worker takes and copies jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs copied at once by one worker process.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Rows read from Postgres per page (one keyset query), at most.
    #[serde(default = "default_page_rows")]
    pub page_rows: u32,
    /// Bytes of row data per page, about: a page holds fewer than
    /// `page_rows` rows when its rows are big, so a worker's memory stays
    /// bounded whatever the row size (the first page of a job is small and
    /// later ones are sized from the rows seen).
    #[serde(default = "default_page_bytes")]
    pub page_bytes: u64,
    /// BatchWriteItem requests in flight at once per job.
    #[serde(default = "default_write_concurrency")]
    pub write_concurrency: usize,
    /// Attempts of one BatchWriteItem (UnprocessedItems resent) before the
    /// job is released to be retried later.
    #[serde(default = "default_max_write_attempts")]
    pub max_write_attempts: u32,
    /// Fraction (0 to 1) of written items read back and compared after each
    /// page (BatchGetItem, consistent read). 1 checks every item; 0 none.
    #[serde(default = "default_verify_sample_rate")]
    pub verify_sample_rate: f64,
    /// Seconds a shutting-down worker waits for its jobs to release.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// A job whose rejects (rows that cannot become items) exceed this
    /// fraction of its rows read fails instead of ending `done_with_rejects`,
    /// so a wrong mapping stops after a page or two.
    #[serde(default = "default_max_reject_fraction")]
    pub max_reject_fraction: f64,
    /// Rejects a job may always have, whatever the fraction (so one bad row
    /// in a job's small first page does not fail it).
    #[serde(default = "default_reject_allowance")]
    pub reject_allowance: u64,
}

fn default_max_reject_fraction() -> f64 {
    0.01
}
fn default_reject_allowance() -> u64 {
    10
}

fn default_concurrency() -> usize {
    4
}
fn default_page_rows() -> u32 {
    1000
}
fn default_page_bytes() -> u64 {
    2 * 1024 * 1024
}
fn default_verify_sample_rate() -> f64 {
    1.0
}
fn default_write_concurrency() -> usize {
    4
}
fn default_max_write_attempts() -> u32 {
    15
}
fn default_shutdown_grace() -> u64 {
    25
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: default_concurrency(),
            page_rows: default_page_rows(),
            page_bytes: default_page_bytes(),
            write_concurrency: default_write_concurrency(),
            verify_sample_rate: default_verify_sample_rate(),
            max_write_attempts: default_max_write_attempts(),
            shutdown_grace_secs: default_shutdown_grace(),
            max_reject_fraction: default_max_reject_fraction(),
            reject_allowance: default_reject_allowance(),
        }
    }
}

/// One table to copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table` or `table` (schema `public`) in Postgres.
    pub source: String,
    /// The DynamoDB table name.
    pub target: String,
    pub partition_key: KeyAttribute,
    #[serde(default)]
    pub sort_key: Option<KeyAttribute>,
    /// Columns to copy (default: all). Key and version columns are read anyway.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Columns never copied.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Attribute names that differ from column names: `{ column = "attribute" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Per-column form overrides: `{ column = "string" | "number" | "json" }`.
    #[serde(default)]
    pub types: BTreeMap<String, TypeOverride>,
    /// What a SQL NULL becomes.
    #[serde(default)]
    pub nulls: NullPolicy,
    /// What a value without a DynamoDB form (NaN, Infinity, a number of more
    /// than 38 significant digits or out of range) becomes.
    #[serde(default)]
    pub unrepresentable: Unrepresentable,
    /// A column (e.g. `updated_at`, `version`) that makes writes conditional:
    /// an item whose version attribute is newer or equal is never overwritten.
    #[serde(default)]
    pub version_column: Option<String>,
    /// What an item over 400 KB does: `fail` its job or go to `s3`.
    #[serde(default)]
    pub oversize: Oversize,
    /// What a key built from several columns does with a value that
    /// contains the key's separator (which would make two rows one item):
    /// `reject` the row, or `escape` the value.
    #[serde(default)]
    pub ambiguous_keys: AmbiguousKeys,
    /// The fleet's write budget for the target, in WCU per second (all
    /// workers together). Give this or `write_budget_fraction`, or neither (no limit).
    #[serde(default)]
    pub write_budget_wcu: Option<f64>,
    /// The budget as a fraction (0 to 1) of the target's provisioned write
    /// capacity, read with DescribeTable; the rest is left to the application.
    #[serde(default)]
    pub write_budget_fraction: Option<f64>,
}

/// A per-column override of the DynamoDB form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeOverride {
    /// S: the value's text form (jsonb as its JSON text, numeric as its digits).
    String,
    /// N: the value must be a DynamoDB number.
    Number,
    /// M / L: the value's text must be JSON.
    Json,
}

/// What a SQL NULL becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NullPolicy {
    /// The attribute is left out of the item.
    #[default]
    Omit,
    /// The attribute is stored as `{"NULL": true}`.
    Null,
}

/// What a joined key does with a part that contains its separator
/// (docs/MAPPING.md, "Keys from several columns").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousKeys {
    /// The row is a reject naming the column: the application's own keys
    /// decide how such a value is written, and the backfill cannot guess.
    #[default]
    Reject,
    /// A backslash is put before each backslash and each separator
    /// character in the part, for applications that escape the same way.
    Escape,
}

/// What a value without a DynamoDB form becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unrepresentable {
    /// The job fails, naming table, key and column.
    #[default]
    Fail,
    /// The value is stored as S of its exact text form.
    String,
}

/// A DynamoDB key attribute built from one or more source columns, or from
/// a template such as `USER#{user_id}` (single-table designs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAttribute {
    /// Source columns; several are joined with `#` into a string.
    #[serde(default)]
    pub columns: Vec<String>,
    /// A template: `{column}` is replaced by the column's value, `{{` and `}}` are braces.
    #[serde(default)]
    pub template: Option<String>,
    /// Attribute name in DynamoDB; defaults to the column's name when there is one column.
    #[serde(default)]
    pub attribute: Option<String>,
}

/// A parsed key template: literal text and column placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Column(String),
}

/// Parses `USER#{user_id}` into parts; `{{` and `}}` are literal braces.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{t}`: unclosed `{{`")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("`{t}`: empty `{{}}`"));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Column(name));
            }
            '}' => return Err(format!("`{t}`: unmatched `}}` (write `}}}}` for a brace)")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(parts)
}

fn template_columns(t: &str) -> Result<Vec<String>, String> {
    Ok(parse_template(t)?
        .into_iter()
        .filter_map(|p| match p {
            TemplatePart::Column(c) => Some(c),
            TemplatePart::Literal(_) => None,
        })
        .collect())
}

impl KeyAttribute {
    /// The source columns the attribute is built from, templates included.
    pub fn source_columns(&self) -> Vec<String> {
        match &self.template {
            Some(t) => template_columns(t).unwrap_or_default(),
            None => self.columns.clone(),
        }
    }

    /// The attribute name in DynamoDB (validated to exist by [`BackfillConfig::validate`]).
    pub fn attribute_name(&self) -> &str {
        match &self.attribute {
            Some(a) => a,
            None => self.columns.first().map(String::as_str).unwrap_or(""),
        }
    }
}

impl TableConfig {
    /// A table copied whole, keyed by `partition_key`, every option at its default.
    pub fn new(
        source: impl Into<String>,
        target: impl Into<String>,
        partition_key: KeyAttribute,
    ) -> Self {
        TableConfig {
            source: source.into(),
            target: target.into(),
            partition_key,
            sort_key: None,
            include: None,
            exclude: Vec::new(),
            rename: BTreeMap::new(),
            types: BTreeMap::new(),
            nulls: NullPolicy::default(),
            unrepresentable: Unrepresentable::default(),
            version_column: None,
            oversize: Oversize::default(),
            ambiguous_keys: AmbiguousKeys::default(),
            write_budget_wcu: None,
            write_budget_fraction: None,
        }
    }
}

impl KeyAttribute {
    /// A key from columns (joined with `#` when several), named `attribute` or after its one column.
    pub fn columns(columns: &[&str], attribute: Option<&str>) -> Self {
        KeyAttribute {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            template: None,
            attribute: attribute.map(str::to_string),
        }
    }

    /// A key from a template such as `USER#{user_id}`.
    pub fn template(template: &str, attribute: &str) -> Self {
        KeyAttribute {
            columns: Vec::new(),
            template: Some(template.to_string()),
            attribute: Some(attribute.to_string()),
        }
    }
}

impl BackfillConfig {
    /// Loads the file at `path`, applies `BACKFILL__*` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`BackfillConfig::load`], with the environment given (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let path_str = path.display().to_string();
        if !path.exists() {
            return Err(invalid(
                "--config",
                format!("file {path_str} does not exist"),
            ));
        }
        if path.is_dir() {
            return Err(invalid(
                "--config",
                format!("{path_str} is a directory, not a config file"),
            ));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BACKFILL__"))
            .collect();
        let env_names: Vec<String> = env.keys().cloned().collect();
        let loaded = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("BACKFILL")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|source| ConfigError::Load {
                path: path_str.clone(),
                source,
            })?;
        let loaded = strict(&path_str, loaded).map_err(|e| name_the_variable(e, &env_names))?;
        loaded.validate()?;
        Ok(loaded)
    }

    /// Parses TOML text (no environment), then validates.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|source| ConfigError::Load {
                path: "<string>".into(),
                source,
            })?;
        let cfg = strict("<string>", cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value the types cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.source.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "source.url",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        if self.source.pause_query.is_some() != self.source.pause_above.is_some() {
            return Err(invalid(
                "source.pause_above",
                "pause_query and pause_above go together",
            ));
        }
        if self.source.pause_check_secs == 0 {
            return Err(invalid("source.pause_check_secs", "must be at least 1"));
        }
        if self.source.max_connections == 0 {
            return Err(invalid("source.max_connections", "must be at least 1"));
        }
        if self.aws.region.trim().is_empty() {
            return Err(invalid("aws.region", "must not be empty"));
        }
        if self.aws.attempt_timeout_secs < u64::from(self.queue.wait_time_secs) + 5 {
            return Err(invalid(
                "aws.attempt_timeout_secs",
                format!(
                    "must be at least 5 s longer than queue.wait_time_secs ({} s), or every long poll of the queue times out",
                    self.queue.wait_time_secs
                ),
            ));
        }
        for (key, value) in [
            ("aws.endpoint_url", &self.aws.endpoint_url),
            ("aws.dynamodb_endpoint_url", &self.aws.dynamodb_endpoint_url),
            ("aws.sqs_endpoint_url", &self.aws.sqs_endpoint_url),
            ("aws.s3_endpoint_url", &self.aws.s3_endpoint_url),
        ] {
            if let Some(v) = value {
                check_http_url(key, v)?;
            }
        }
        check_http_url("queue.url", &self.queue.url)?;
        check_http_url("queue.dlq_url", &self.queue.dlq_url)?;
        if self.queue.url == self.queue.dlq_url {
            return Err(invalid("queue.dlq_url", "must differ from queue.url"));
        }
        if !(1..=1000).contains(&self.queue.max_receive_count) {
            return Err(invalid("queue.max_receive_count", "must be 1 to 1000"));
        }
        if !(1..=43_200).contains(&self.queue.visibility_timeout_secs) {
            return Err(invalid(
                "queue.visibility_timeout_secs",
                "must be 1 to 43200 (SQS limit)",
            ));
        }
        if self.queue.wait_time_secs > 20 {
            return Err(invalid(
                "queue.wait_time_secs",
                "must be 0 to 20 (SQS limit)",
            ));
        }
        if let Some(name) = &self.queue.signing_key_env {
            // Upper case only: a key pasted here by mistake (hex or base64)
            // is refused, and this error does not repeat it.
            let ok = name.len() <= 128
                && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(invalid(
                    "queue.signing_key_env",
                    "must be the NAME of an environment variable (A-Z, 0-9, _), such as BACKFILL_JOB_SIGNING_KEY, never the key itself",
                ));
            }
        }
        check_table_name("control.table", &self.control.table)?;
        if self.producer.rows_per_job == 0 {
            return Err(invalid("producer.rows_per_job", "must be at least 1"));
        }
        if self.producer.samples_per_job == 0 {
            return Err(invalid("producer.samples_per_job", "must be at least 1"));
        }
        if self.producer.max_sample_rows == 0 {
            return Err(invalid("producer.max_sample_rows", "must be at least 1"));
        }
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        if !(1..=100_000).contains(&self.worker.page_rows) {
            return Err(invalid("worker.page_rows", "must be 1 to 100000"));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.worker.page_bytes) {
            return Err(invalid("worker.page_bytes", "must be 64 KiB to 1 GiB"));
        }
        if !(1..=64).contains(&self.worker.write_concurrency) {
            return Err(invalid("worker.write_concurrency", "must be 1 to 64"));
        }
        if !(0.0..=1.0).contains(&self.worker.max_reject_fraction) {
            return Err(invalid("worker.max_reject_fraction", "must be 0 to 1"));
        }
        if !(0.0..=1.0).contains(&self.worker.verify_sample_rate) {
            return Err(invalid("worker.verify_sample_rate", "must be 0 to 1"));
        }
        if self.worker.max_write_attempts == 0 {
            return Err(invalid("worker.max_write_attempts", "must be at least 1"));
        }
        if self.capacity.heartbeat_secs == 0
            || self.capacity.worker_expiry_secs <= self.capacity.heartbeat_secs
        {
            return Err(invalid(
                "capacity.worker_expiry_secs",
                "must be longer than capacity.heartbeat_secs (which must be at least 1)",
            ));
        }
        self.metrics.listen_addr()?;
        if self.metrics.liveness_max_age_secs <= self.capacity.heartbeat_secs {
            return Err(invalid(
                "metrics.liveness_max_age_secs",
                format!(
                    "must be longer than capacity.heartbeat_secs ({}), the fleet loop's tick",
                    self.capacity.heartbeat_secs
                ),
            ));
        }
        if self.tables.is_empty() {
            return Err(invalid("tables", "lists no table to copy"));
        }
        let mut sources = HashSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            let at = |k: &str| format!("tables[{i}].{k}");
            if t.source.trim().is_empty() {
                return Err(invalid(at("source"), "must not be empty"));
            }
            if t.source.split('.').count() > 2 || t.source.split('.').any(str::is_empty) {
                return Err(invalid(
                    at("source"),
                    format!("`{}` is not `table` or `schema.table`", t.source),
                ));
            }
            if !sources.insert(t.source.as_str()) {
                return Err(invalid(
                    at("source"),
                    format!("table `{}` is listed twice", t.source),
                ));
            }
            check_table_name(&at("target"), &t.target)?;
            match (t.write_budget_wcu, t.write_budget_fraction) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        at("write_budget_fraction"),
                        "give write_budget_wcu or write_budget_fraction, not both",
                    ))
                }
                (Some(w), None) if w.is_nan() || w < 1.0 => {
                    return Err(invalid(at("write_budget_wcu"), "must be at least 1"))
                }
                (None, Some(f)) if f.is_nan() || f <= 0.0 || f > 1.0 => {
                    return Err(invalid(
                        at("write_budget_fraction"),
                        "must be above 0 and at most 1",
                    ))
                }
                _ => {}
            }
            if t.oversize == Oversize::S3 {
                match &self.offload {
                    None => {
                        return Err(invalid(
                            at("oversize"),
                            "is \"s3\" but there is no [offload] section",
                        ))
                    }
                    Some(o) if o.bucket.is_empty() => {
                        return Err(invalid("offload.bucket", "must not be empty"))
                    }
                    Some(_) => {}
                }
            }
            if let Some(inc) = &t.include {
                if let Some(c) = inc.iter().find(|c| t.exclude.contains(c)) {
                    return Err(invalid(
                        at("exclude"),
                        format!("column {c} is also in `include`"),
                    ));
                }
            }
            let mut attrs = HashSet::new();
            for a in t.rename.values() {
                if a.is_empty() {
                    return Err(invalid(at("rename"), "an attribute name is empty"));
                }
                if !attrs.insert(a) {
                    return Err(invalid(
                        at("rename"),
                        format!("two columns are renamed to {a}"),
                    ));
                }
            }
            check_key(&at("partition_key"), &t.partition_key)?;
            if let Some(sk) = &t.sort_key {
                check_key(&at("sort_key"), sk)?;
                if sk.attribute_name() == t.partition_key.attribute_name() {
                    return Err(invalid(
                        at("sort_key.attribute"),
                        "must differ from the partition key attribute",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The table whose `source` is `name`.
    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        self.tables.iter().find(|t| t.source == name)
    }
}

/// Deserializes the merged file and environment with serde's own type
/// rules, which the `config` crate relaxes (it rounds floats into integers
/// and parses strings as numbers); the error names the key's path.
/// A key an environment variable set (`BACKFILL__WORKER__PAGE_ROWS` sets
/// `worker.page_rows`), lower-cased as the config crate reads it.
fn env_key(name: &str) -> String {
    name.trim_start_matches("BACKFILL__")
        .split("__")
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// A type error whose key (or unknown key) came from an environment
/// variable names the variable, not the file: the file may not even have
/// the key.
fn name_the_variable(e: ConfigError, env_names: &[String]) -> ConfigError {
    let ConfigError::Type { path, key, reason } = e else {
        return e;
    };
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next());
    let from_env = env_names.iter().find(|name| {
        let k = env_key(name);
        match unknown {
            // An unknown key at `key` (the parent; `.` at the top).
            Some(field) => {
                // serde_path_to_error puts the unknown field at the end of
                // the path; a parent path alone is handled too.
                let full = if key == field || key.ends_with(&format!(".{field}")) {
                    key.clone()
                } else if key == "." || key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
                k == full || k.starts_with(&format!("{full}."))
            }
            None => {
                k == key || key.starts_with(&format!("{k}.")) || key.starts_with(&format!("{k}["))
            }
        }
    });
    match from_env {
        Some(name) => ConfigError::Env {
            variable: name.clone(),
            reason: match unknown {
                Some(field) => format!("`{field}` is not a config key ({reason})"),
                None => format!("`{key}`: {reason}"),
            },
        },
        None => ConfigError::Type { path, key, reason },
    }
}

fn strict(path: &str, merged: serde_json::Value) -> Result<BackfillConfig, ConfigError> {
    serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Type {
        path: path.to_string(),
        key: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(_) => Err(invalid(key, "must be an http:// or https:// URL")),
        Err(e) => Err(invalid(key, format!("not a URL: {e}"))),
    }
}

/// DynamoDB's table-name rule: 3 to 255 of `[a-zA-Z0-9_.-]`.
fn check_table_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=255).contains(&name.len()) || !ok_chars {
        return Err(invalid(
            key,
            format!("`{name}` is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)"),
        ));
    }
    Ok(())
}

fn check_key(key: &str, k: &KeyAttribute) -> Result<(), ConfigError> {
    if let Some(t) = &k.template {
        if !k.columns.is_empty() {
            return Err(invalid(
                key,
                "give either `columns` or `template`, not both",
            ));
        }
        let cols = template_columns(t).map_err(|e| invalid(format!("{key}.template"), e))?;
        if cols.is_empty() {
            return Err(invalid(format!("{key}.template"), "names no {column}"));
        }
        if k.attribute.is_none() {
            return Err(invalid(
                format!("{key}.attribute"),
                "is required with a template",
            ));
        }
        return Ok(());
    }
    if k.columns.is_empty() {
        return Err(invalid(
            format!("{key}.columns"),
            "must name at least one column",
        ));
    }
    if k.columns.iter().any(|c| c.is_empty()) {
        return Err(invalid(format!("{key}.columns"), "a column name is empty"));
    }
    match &k.attribute {
        Some(a) if a.is_empty() => Err(invalid(format!("{key}.attribute"), "must not be empty")),
        None if k.columns.len() > 1 => Err(invalid(
            format!("{key}.attribute"),
            "is required when the key is built from several columns",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [source]
        url = "postgres://app:hunter2@127.0.0.1:5432/db"
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

    #[test]
    fn good_config_loads_with_defaults() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(cfg.worker.page_rows, 1000);
        assert_eq!(cfg.tables[0].partition_key.attribute_name(), "id");
        assert_eq!(cfg.aws.attempt_timeout_secs, 60);
    }

    #[test]
    fn an_attempt_timeout_shorter_than_the_long_poll_is_refused() {
        let with = |t: &str| {
            GOOD.replace(
                "region = \"us-east-1\"",
                &format!("region = \"us-east-1\"\nattempt_timeout_secs = {t}"),
            )
        };
        // The default long poll is 20 s: 24 s would time out every receive.
        let err = BackfillConfig::from_toml_str(&with("24"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.attempt_timeout_secs"), "{err}");
        assert!(err.contains("queue.wait_time_secs"), "{err}");
        assert_eq!(
            BackfillConfig::from_toml_str(&with("25"))
                .unwrap()
                .aws
                .attempt_timeout_secs,
            25
        );
    }

    #[test]
    fn secret_is_never_printed() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!cfg.source.redacted_url().contains("hunter2"));
        assert!(cfg.source.redacted_url().contains("127.0.0.1"));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = GOOD.replace("table = \"backfill_control\"", "table = \"x\"");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("control.table"), "{err}");

        let bad = GOOD.replace("columns = [\"id\"]", "columns = [\"a\", \"b\"]");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("tables[0].partition_key.attribute"), "{err}");

        let bad = GOOD.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nregoin = 1",
        );
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("regoin"), "{err}");

        let bad = GOOD.replace("[queue]", "[queue]\nmax_receive_count = \"many\"");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("max_receive_count"), "{err}");
    }

    #[test]
    fn bad_url_error_does_not_leak_password() {
        let bad = GOOD.replace("postgres://app", "mysql://app");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            err.contains("source.url") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("backfill-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, GOOD).unwrap();
        let env = vec![
            ("BACKFILL__WORKER__PAGE_ROWS".to_string(), "77".to_string()),
            ("BACKFILL__AWS__REGION".to_string(), "eu-west-1".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = BackfillConfig::load_with_env(&path, env).unwrap();
        assert_eq!(cfg.worker.page_rows, 77);
        assert_eq!(cfg.aws.region, "eu-west-1");
        let env = vec![("BACKFILL__WORKER__PAGE_ROWS".to_string(), "0".to_string())];
        let err = BackfillConfig::load_with_env(&path, env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.page_rows"), "{err}");
    }
    #[test]
    fn metrics_defaults_and_bad_listen_names_the_key() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("0.0.0.0:9464".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 120);

        let off = format!("{GOOD}\n[metrics]\nlisten = \"\"\n");
        let cfg = BackfillConfig::from_toml_str(&off).unwrap();
        assert_eq!(cfg.metrics.listen_addr().unwrap(), None);

        let v6 = format!("{GOOD}\n[metrics]\nlisten = \"[::]:9100\"\nliveness_max_age_secs = 30\n");
        let cfg = BackfillConfig::from_toml_str(&v6).unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("[::]:9100".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 30);

        for bad in ["9464", "localhost:9464", "0.0.0.0:port", "0.0.0.0:99999"] {
            let text = format!("{GOOD}\n[metrics]\nlisten = \"{bad}\"\n");
            let err = BackfillConfig::from_toml_str(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("metrics.listen") && err.contains(bad), "{err}");
        }

        let short = format!("{GOOD}\n[metrics]\nliveness_max_age_secs = 2\n");
        let err = BackfillConfig::from_toml_str(&short)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.liveness_max_age_secs"), "{err}");
    }

    #[test]
    fn environment_overrides_the_metrics_section() {
        let dir = std::env::temp_dir().join(format!("backfill-cfg-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, GOOD).unwrap();
        let load = |pairs: &[(&str, &str)]| {
            BackfillConfig::load_with_env(
                &path,
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let cfg = load(&[
            ("BACKFILL__METRICS__LISTEN", "127.0.0.1:9000"),
            ("BACKFILL__METRICS__LIVENESS_MAX_AGE_SECS", "45"),
        ])
        .unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 45);
        let cfg = load(&[("BACKFILL__METRICS__LISTEN", "")]).unwrap();
        assert_eq!(cfg.metrics.listen_addr().unwrap(), None, "empty disables");
        let err = load(&[("BACKFILL__METRICS__LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_keys_are_refused_in_every_section_and_named() {
        for (section, line) in [
            ("[source]", "passwrd = \"x\""),
            ("[queue]", "sign = true"),
            ("[control]", "tabel = \"y\""),
            ("[[tables]]", "partition = \"id\""),
        ] {
            let bad = GOOD.replacen(section, &format!("{section}\n{line}"), 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            let key = line.split(' ').next().unwrap();
            assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
        }
        let bad = format!("{GOOD}\n[wrker]\nconcurrency = 2\n");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("wrker"), "{err}");
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_key() {
        for (from, to, key) in [
            (
                "[queue]",
                "[queue]\nvisibility_timeout_secs = -3",
                "visibility_timeout_secs",
            ),
            ("[queue]", "[queue]\nwait_time_secs = [1]", "wait_time_secs"),
            ("target = \"orders\"", "target = 7", "target"),
            (
                "partition_key = { columns = [\"id\"] }",
                "partition_key = \"id\"",
                "partition_key",
            ),
            (
                "[source]",
                "[source]\nmax_connections = 1.5",
                "max_connections",
            ),
        ] {
            let bad = GOOD.replacen(from, to, 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
        for (line, key) in [
            (
                "dlq_url = \"http://127.0.0.1:4566/000000000000/jobs-dlq\"",
                "dlq_url",
            ),
            ("table = \"backfill_control\"", "table"),
            ("target = \"orders\"", "target"),
            ("region = \"us-east-1\"", "region"),
        ] {
            let bad = GOOD.replacen(line, "", 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("missing field `{key}`")),
                "{line}: {err}"
            );
        }
        let err = BackfillConfig::from_toml_str("").unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn the_signing_key_comes_from_the_named_variable_and_never_from_the_file() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(
            cfg.queue.signing_key_from(|_| panic!("not read")).unwrap(),
            None
        );

        let with = GOOD.replace("[queue]", "[queue]\nsigning_key_env = \"JOB_KEY\"");
        let cfg = BackfillConfig::from_toml_str(&with).unwrap();
        let key = "k".repeat(MIN_SIGNING_KEY_BYTES);
        let got = cfg
            .queue
            .signing_key_from(|n| (n == "JOB_KEY").then(|| key.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), key);
        assert!(!format!("{cfg:?}").contains(&key));

        let err = cfg
            .queue
            .signing_key_from(|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queue.signing_key_env") && err.contains("JOB_KEY is not set"),
            "{err}"
        );
        let err = cfg
            .queue
            .signing_key_from(|_| Some("short-secret".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("12 bytes") && !err.contains("short-secret"),
            "{err}"
        );

        // A key pasted where the variable's name belongs is refused without being repeated.
        let pasted = "3f9a0c1e5b7d2a4c6e8f0a1b3c5d7e9f";
        let bad = GOOD.replace(
            "[queue]",
            &format!("[queue]\nsigning_key_env = \"{pasted}\""),
        );
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            err.contains("queue.signing_key_env") && !err.contains(pasted),
            "{err}"
        );
    }
}
#[cfg(test)]
mod template_tests {
    use super::*;
    #[test]
    fn template_keys_load() {
        let text = r#"
        [source]
        url = "postgres://h/db"
        [aws]
        region = "us-east-1"
        [queue]
        url = "http://h/1/q"
        dlq_url = "http://h/1/d"
        [control]
        table = "ctl"
        [[tables]]
        source = "t"
        target = "ttt"
        partition_key = { template = "USER#{id}", attribute = "pk" }
        sort_key = { columns = [], template = "O#{a}{{x}}", attribute = "sk" }
        "#;
        let cfg = BackfillConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.tables[0].partition_key.source_columns(), vec!["id"]);
        assert_eq!(
            parse_template("O#{a}{{x}}").unwrap(),
            vec![
                TemplatePart::Literal("O#".into()),
                TemplatePart::Column("a".into()),
                TemplatePart::Literal("{x}".into())
            ]
        );
        assert!(parse_template("a{b").is_err());
        assert!(parse_template("a}b").is_err());
        assert!(parse_template("{}").is_err());
    }
}
