//! The metric families of a worker, in one registry.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of the OpenMetrics text format (what Prometheus asks for first).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic Prometheus text format (0.0.4), for scrapers
/// that do not ask for OpenMetrics.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How a received job ended, as the `outcome` label of the job families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// The whole range was copied and the job recorded done.
    Done,
    /// Another delivery had finished (or now owns) the job.
    Duplicate,
    /// Sent to the dead-letter queue.
    DeadLettered,
    /// Left on the queue to come back after its visibility timeout.
    Retried,
    /// Handed back to the queue at shutdown.
    Released,
    /// Stopped because its run was cancelled.
    Cancelled,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 6] = [
        JobOutcome::Done,
        JobOutcome::Duplicate,
        JobOutcome::DeadLettered,
        JobOutcome::Retried,
        JobOutcome::Released,
        JobOutcome::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Duplicate => "duplicate",
            JobOutcome::DeadLettered => "dead_lettered",
            JobOutcome::Retried => "retried",
            JobOutcome::Released => "released",
            JobOutcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for JobOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The text format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    OpenMetrics,
    Prometheus,
}

impl TextFormat {
    /// OpenMetrics when the scraper's `Accept` header names it (Prometheus
    /// does), the classic text format otherwise (curl, older scrapers).
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => TextFormat::OpenMetrics,
            _ => TextFormat::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            TextFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            TextFormat::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TableLabels {
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    table: String,
    outcome: JobOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type F64Counter = Counter<f64, AtomicU64>;
pub(crate) type F64Gauge = Gauge<f64, AtomicU64>;

/// Job durations from half a second to about two hours: a job is a range of
/// some ten thousand to a million rows, copied at whatever the budget allows.
fn job_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 15))
}

/// Every metric a worker exposes. Cheap to share in an `Arc`; every method
/// takes `&self` (the families are atomics behind a read-mostly lock).
///
/// `table` is the source table (`schema.table`) for row and job families and
/// the DynamoDB target table for capacity ones (WCU, throttles, retries,
/// budgets), as the worker's config names them.
#[derive(Debug)]
pub struct Metrics {
    pub(crate) registry: Registry,
    rows_read: Family<TableLabels, Counter>,
    rows_written: Family<TableLabels, Counter>,
    items_verified: Family<TableLabels, Counter>,
    wcu_consumed: Family<TableLabels, F64Counter>,
    throttles: Family<TableLabels, Counter>,
    key_range_throttles: Family<TableLabels, Counter>,
    write_retries: Family<TableLabels, Counter>,
    job_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    jobs: Family<JobLabels, Counter>,
    handed_back: Family<TableLabels, Counter>,
    dlq_sends: Family<KindLabels, Counter>,
    budget_share: Family<TableLabels, F64Gauge>,
    budget: Family<TableLabels, F64Gauge>,
    jobs_in_hand: Gauge,
    /// Only the drift watch's registry has them ([`Metrics::with_drift`]).
    pub(crate) drift: Option<crate::drift::DriftFamilies>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn table(t: &str) -> TableLabels {
    TableLabels {
        table: t.to_string(),
    }
}

fn job(t: &str, outcome: JobOutcome) -> JobLabels {
    JobLabels {
        table: t.to_string(),
        outcome,
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            rows_read: Family::default(),
            rows_written: Family::default(),
            items_verified: Family::default(),
            wcu_consumed: Family::default(),
            throttles: Family::default(),
            key_range_throttles: Family::default(),
            write_retries: Family::default(),
            job_duration: Family::new_with_constructor(job_duration_histogram),
            jobs: Family::default(),
            handed_back: Family::default(),
            dlq_sends: Family::default(),
            budget_share: Family::default(),
            budget: Family::default(),
            jobs_in_hand: Gauge::default(),
            drift: None,
        };
        let mut registry = Registry::default();
        registry.register(
            "backfill_jobs_handed_back",
            "Times a running job handed the rest of its range back as a new job, so that idle workers took part of the run's tail, per source table",
            m.handed_back.clone(),
        );
        registry.register(
            "backfill_rows_read",
            "Rows read from the source table",
            m.rows_read.clone(),
        );
        registry.register(
            "backfill_rows_written",
            "Rows of the source table written to DynamoDB (items skipped because DynamoDB held a newer version are not counted)",
            m.rows_written.clone(),
        );
        registry.register(
            "backfill_items_verified",
            "Items read back after writing and found equal to their rows",
            m.items_verified.clone(),
        );
        registry.register(
            "backfill_wcu_consumed",
            "Write capacity units DynamoDB reported as consumed by the copy, per target table",
            m.wcu_consumed.clone(),
        );
        registry.register(
            "backfill_throttles",
            "Write requests DynamoDB throttled (refused or left partly unprocessed for capacity), per target table",
            m.throttles.clone(),
        );
        registry.register(
            "backfill_key_range_throttles",
            "Of backfill_throttles, those that slowed partition-key values alone (a hot key range, or items left unprocessed while writes are paced by key); the rest slowed the fleet's share",
            m.key_range_throttles.clone(),
        );
        registry.register(
            "backfill_write_retries",
            "Write requests sent again (unprocessed items or a retryable error), per target table",
            m.write_retries.clone(),
        );
        registry.register_with_unit(
            "backfill_job_duration",
            "Time from receiving a job to its outcome",
            Unit::Seconds,
            m.job_duration.clone(),
        );
        registry.register(
            "backfill_jobs",
            "Received jobs by outcome: done, duplicate, dead_lettered, retried, released, cancelled",
            m.jobs.clone(),
        );
        registry.register(
            "backfill_dlq_sends",
            "Jobs this worker sent to the dead-letter queue, by kind (permanent, retries_exhausted, malformed_message)",
            m.dlq_sends.clone(),
        );
        registry.register(
            "backfill_budget_share_wcu",
            "This worker's current share of the fleet's write budget (WCU/s), per target table",
            m.budget_share.clone(),
        );
        registry.register(
            "backfill_budget_wcu",
            "The fleet's write budget (WCU/s, all workers together), per target table",
            m.budget.clone(),
        );
        registry.register(
            "backfill_jobs_in_hand",
            "Jobs this worker is copying now",
            m.jobs_in_hand.clone(),
        );
        m.registry = registry;
        m
    }

    /// Creates the zero series of a configured table, so the first page of a
    /// copy is an increase that `rate()` and `increase()` see.
    pub fn init_table(&self, source: &str, target: &str) {
        let (s, t) = (table(source), table(target));
        let _ = self.rows_read.get_or_create(&s);
        let _ = self.rows_written.get_or_create(&s);
        let _ = self.items_verified.get_or_create(&s);
        let _ = self.wcu_consumed.get_or_create(&t);
        let _ = self.throttles.get_or_create(&t);
        let _ = self.key_range_throttles.get_or_create(&t);
        let _ = self.write_retries.get_or_create(&t);
    }

    pub fn rows_read(&self, source: &str, n: u64) {
        self.rows_read.get_or_create(&table(source)).inc_by(n);
    }

    pub fn rows_written(&self, source: &str, n: u64) {
        self.rows_written.get_or_create(&table(source)).inc_by(n);
    }

    pub fn items_verified(&self, source: &str, n: u64) {
        self.items_verified.get_or_create(&table(source)).inc_by(n);
    }

    /// One write's capacity, throttles and retries (what `WriteOutcome` reports).
    pub fn write(&self, target: &str, consumed_wcu: f64, throttles: u64, retries: u64) {
        let t = table(target);
        // A negative or NaN would break the counter's monotonicity.
        if consumed_wcu.is_finite() && consumed_wcu > 0.0 {
            self.wcu_consumed.get_or_create(&t).inc_by(consumed_wcu);
        }
        if throttles > 0 {
            self.throttles.get_or_create(&t).inc_by(throttles);
        }
        if retries > 0 {
            self.write_retries.get_or_create(&t).inc_by(retries);
        }
    }

    /// Of a write's throttles, those that slowed keys, not the fleet.
    pub fn key_range_throttles(&self, target: &str, n: u64) {
        if n > 0 {
            self.key_range_throttles
                .get_or_create(&table(target))
                .inc_by(n);
        }
    }

    /// A received job's outcome and how long it took from receipt.
    pub fn job_finished(&self, source: &str, outcome: JobOutcome, took: Duration) {
        let l = job(source, outcome);
        self.jobs.get_or_create(&l).inc();
        self.job_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// A job that handed the rest of its range back as a new job.
    pub fn job_handed_back(&self, source: &str) {
        self.handed_back.get_or_create(&table(source)).inc();
    }

    /// A job sent to the dead-letter queue, by kind.
    pub fn dlq_sent(&self, kind: &str) {
        self.dlq_sends
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The fleet's budget for `target` (WCU/s).
    pub fn set_budget(&self, target: &str, wcu: f64) {
        self.budget.get_or_create(&table(target)).set(wcu);
    }

    /// This worker's share of the budget for `target` (WCU/s).
    pub fn set_budget_share(&self, target: &str, wcu: f64) {
        self.budget_share.get_or_create(&table(target)).set(wcu);
    }

    /// A job was taken in hand.
    pub fn job_taken(&self) {
        self.jobs_in_hand.inc();
    }

    /// A job in hand ended (whatever its outcome).
    pub fn job_let_go(&self) {
        self.jobs_in_hand.dec();
    }

    /// WCU consumed so far writing to `target_table` (0 before any write).
    pub fn wcu_consumed_total(&self, target_table: &str) -> f64 {
        self.wcu_consumed
            .get(&table(target_table))
            .map_or(0.0, |c| c.get())
    }

    /// Write requests to `target_table` DynamoDB throttled so far, for
    /// any reason (0 before any).
    pub fn throttles_total(&self, target_table: &str) -> u64 {
        self.throttles
            .get(&table(target_table))
            .map_or(0, |c| c.get())
    }

    /// Of [`Metrics::throttles_total`], those that slowed partition-key
    /// values alone.
    pub fn key_range_throttles_total(&self, target_table: &str) -> u64 {
        self.key_range_throttles
            .get(&table(target_table))
            .map_or(0, |c| c.get())
    }

    /// Rows of `table` (the source) written so far.
    pub fn rows_written_total(&self, table_name: &str) -> u64 {
        self.rows_written
            .get(&table(table_name))
            .map_or(0, |c| c.get())
    }

    /// Rows of `table` (the source) read so far.
    pub fn rows_read_total(&self, table_name: &str) -> u64 {
        self.rows_read
            .get(&table(table_name))
            .map_or(0, |c| c.get())
    }

    /// Jobs of `table` (the source) that ended with `outcome`.
    pub fn jobs_total(&self, table_name: &str, outcome: JobOutcome) -> u64 {
        self.jobs
            .get(&job(table_name, outcome))
            .map_or(0, |c| c.get())
    }

    pub fn jobs_in_hand(&self) -> i64 {
        self.jobs_in_hand.get()
    }

    /// Every family in `format`.
    pub fn encode(&self, format: TextFormat) -> Result<String, fmt::Error> {
        let mut out = String::new();
        match format {
            TextFormat::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            TextFormat::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn openmetrics_text_has_every_family_with_its_labels() {
        let m = Metrics::new();
        m.init_table("public.orders", "orders");
        m.rows_read("public.orders", 1000);
        m.rows_written("public.orders", 998);
        m.items_verified("public.orders", 250);
        m.write("orders", 12.5, 2, 3);
        m.job_finished("public.orders", JobOutcome::Done, Duration::from_secs(3));
        m.job_finished(
            "public.orders",
            JobOutcome::Retried,
            Duration::from_millis(200),
        );
        m.dlq_sent("permanent");
        m.set_budget("orders", 500.0);
        m.set_budget_share("orders", 250.0);
        m.job_taken();
        m.job_taken();
        m.job_taken();
        m.job_let_go();
        let text = m.encode(TextFormat::OpenMetrics).unwrap();
        for want in [
            "backfill_rows_read_total{table=\"public.orders\"} 1000",
            "backfill_rows_written_total{table=\"public.orders\"} 998",
            "backfill_items_verified_total{table=\"public.orders\"} 250",
            "backfill_wcu_consumed_total{table=\"orders\"} 12.5",
            "backfill_throttles_total{table=\"orders\"} 2",
            "backfill_write_retries_total{table=\"orders\"} 3",
            "backfill_jobs_total{table=\"public.orders\",outcome=\"done\"} 1",
            "backfill_jobs_total{table=\"public.orders\",outcome=\"retried\"} 1",
            "backfill_job_duration_seconds_count{table=\"public.orders\",outcome=\"done\"} 1",
            "backfill_job_duration_seconds_sum{table=\"public.orders\",outcome=\"done\"} 3.0",
            "backfill_job_duration_seconds_bucket{le=\"4.0\",table=\"public.orders\",outcome=\"done\"} 1",
            "backfill_job_duration_seconds_bucket{le=\"2.0\",table=\"public.orders\",outcome=\"done\"} 0",
            "backfill_dlq_sends_total{kind=\"permanent\"} 1",
            "backfill_budget_wcu{table=\"orders\"} 500.0",
            "backfill_budget_share_wcu{table=\"orders\"} 250.0",
            "backfill_jobs_in_hand 2",
            "# TYPE backfill_job_duration_seconds histogram",
            "# UNIT backfill_job_duration_seconds seconds",
            "# TYPE backfill_rows_read counter",
        ] {
            assert!(text.lines().any(|l| l == want), "no line {want:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn prometheus_text_names_counters_with_total() {
        let m = Metrics::new();
        m.rows_written("s.t", 5);
        let text = m.encode(TextFormat::Prometheus).unwrap();
        assert!(
            line(&text, "# TYPE backfill_rows_written_total counter").is_some(),
            "{text}"
        );
        assert_eq!(
            line(&text, "backfill_rows_written_total{"),
            Some("backfill_rows_written_total{table=\"s.t\"} 5")
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn init_table_exposes_zero_series_and_accessors_read_back() {
        let m = Metrics::new();
        m.init_table("s.src", "dst");
        let text = m.encode(TextFormat::OpenMetrics).unwrap();
        assert!(
            text.contains("backfill_rows_written_total{table=\"s.src\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("backfill_wcu_consumed_total{table=\"dst\"} 0.0"),
            "{text}"
        );
        assert_eq!(m.rows_written_total("s.src"), 0);
        m.rows_written("s.src", 7);
        m.rows_written("s.src", 3);
        m.write("dst", 1.5, 0, 0);
        m.write("dst", 2.0, 0, 0);
        // Nonsense capacity never makes a counter go down or turn NaN.
        m.write("dst", -4.0, 0, 0);
        m.write("dst", f64::NAN, 0, 0);
        assert_eq!(m.rows_written_total("s.src"), 10);
        assert_eq!(m.wcu_consumed_total("dst"), 3.5);
        assert_eq!(m.wcu_consumed_total("other"), 0.0);
        m.write("dst", 1.0, 5, 0);
        m.key_range_throttles("dst", 3);
        assert_eq!(m.throttles_total("dst"), 5);
        assert_eq!(m.key_range_throttles_total("dst"), 3);
        assert_eq!(m.throttles_total("other"), 0);
        assert_eq!(m.key_range_throttles_total("other"), 0);
        assert_eq!(m.rows_written_total("other"), 0);
        // Reading a table that was never counted does not create a series.
        let text = m.encode(TextFormat::OpenMetrics).unwrap();
        assert!(!text.contains("other"), "{text}");
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(
            TextFormat::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            TextFormat::OpenMetrics
        );
        assert_eq!(TextFormat::from_accept(Some("*/*")), TextFormat::Prometheus);
        assert_eq!(TextFormat::from_accept(None), TextFormat::Prometheus);
        assert!(TextFormat::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text"));
        assert!(TextFormat::Prometheus
            .content_type()
            .starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn outcome_labels_are_snake_case() {
        let names: Vec<&str> = JobOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "done",
                "duplicate",
                "dead_lettered",
                "retried",
                "released",
                "cancelled"
            ]
        );
    }
}
