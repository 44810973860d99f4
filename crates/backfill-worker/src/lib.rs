//! The worker: takes jobs from SQS, copies each key range from Postgres to
//! DynamoDB, and acknowledges the job or sends it to the DLQ with the reason.
//!
//! Shape (after mini-redis): one [`CancellationToken`] for shutdown; a
//! semaphore permit is taken *before* a message is received and moves into
//! the job's task, so a worker never holds more messages than it can copy.
//! A job is acknowledged (deleted) only after every item of its range is
//! written; until then SQS will hand it out again, so nothing is lost when a
//! worker dies at any point.
//!
//! A message is admitted before any work ([`Worker::admit`]): its size, its
//! signature when signing is on, its layout, and then the control table's
//! word that its run exists, names its table and planned exactly this job.
//! A message that fails any of these goes to the DLQ as it is, with the
//! reason and an `error_kind` (`oversized_message`, `malformed_message`,
//! `unknown_version`, `forged`), and is never recorded against a job: a
//! forged message must not be able to mark a real job failed.
//!
//! Failure policy, decided in one place ([`JobError::is_retryable`]):
//! - retryable (throttling, network, Postgres unavailable): the message is
//!   left to come back after its visibility timeout;
//! - permanent (malformed message, table gone, a row that cannot become an
//!   item, DynamoDB refusing the request): the job goes to the DLQ at once
//!   with the reason in message attributes, and the original is deleted.

mod copy;
mod rejects;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_capacity::WriteLimiter;
use backfill_config::BackfillConfig;
use backfill_control::{Claim, ControlError, ControlTable, Rejection, RunRecord};
use backfill_dynamo::{DynamoSink, SinkError};
use backfill_item::MapError;
use backfill_job::JobMessage;
use backfill_metrics::{Health, JobOutcome, Metrics};
use backfill_offload::S3Offloader;
use backfill_queue::{DeadLetter, JobQueue, QueueError, ReceivedMessage};
use backfill_source::{PgSource, SchemaError, SourceError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use copy::CopyProgress;
pub use rejects::{retry_rejects, RetryPath, RetryReport, RetryRequest};

/// Why a job could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("table {0} is not in this worker's configuration")]
    UnknownTable(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("table {table}, key {key}: the item is {size} bytes, over DynamoDB's 400 KB limit (set `oversize = \"s3\"` to offload such items)")]
    Oversize {
        table: String,
        key: String,
        size: usize,
    },
    #[error(transparent)]
    Offload(#[from] backfill_offload::OffloadError),
    #[error("table {table} has `oversize = \"s3\"` but this worker has no S3 offloader ([offload] section)")]
    NoOffloader { table: String },
    #[error("table {table}: {rejects} of {rows} rows read cannot become items (more than the {limit} allowed by worker.max_reject_fraction and worker.reject_allowance): is the mapping wrong? The first: {first}; `backfill rejects list` names them all")]
    TooManyRejects {
        table: String,
        rejects: u64,
        rows: u64,
        limit: u64,
        first: String,
    },
    #[error(
        "DynamoDB table {table}: {mismatches} items differ from their rows after writing: {detail}"
    )]
    Verify {
        table: String,
        mismatches: usize,
        detail: String,
    },
}

/// A key that cannot bound ranges, or is not the job's, fails the job as
/// the source error it was before the schema checks moved to
/// `backfill-model`: same message, never retryable.
impl From<SchemaError> for JobError {
    fn from(e: SchemaError) -> Self {
        JobError::Source(SourceError::from(e))
    }
}

impl JobError {
    /// Whether trying the same job again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::UnknownTable(_)
            | JobError::Map(_)
            | JobError::Verify { .. }
            | JobError::TooManyRejects { .. }
            | JobError::Oversize { .. }
            | JobError::NoOffloader { .. } => false,
            JobError::Offload(e) => e.is_retryable(),
            JobError::Source(e) => e.is_retryable(),
            JobError::Sink(e) => e.is_retryable(),
            JobError::Control(e) => e.is_retryable(),
            JobError::Queue(e) => e.is_retryable(),
        }
    }
}

/// How `run` ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkOptions {
    /// Exit once the queue holds nothing (visible, in flight or delayed) and
    /// this worker has no job in hand.
    pub until_idle: bool,
    /// Take at most this many jobs, finish them and exit: a run-to-completion
    /// pod (KEDA ScaledJob) copies its share and leaves.
    pub max_jobs: Option<u64>,
}

/// Why a received message is not taken as a job.
#[derive(Debug)]
enum Refusal {
    /// It never will be: to the DLQ at once, as it is.
    Permanent {
        kind: &'static str,
        reason: String,
        /// What the message claims to be, when it parsed: context for the
        /// DLQ's attributes, not trusted.
        job: Option<JobMessage>,
    },
    /// The control table could not answer: the message comes back if that
    /// may change, to the DLQ if not.
    Unavailable(ControlError),
}

/// What happened to one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done {
        rows: u64,
        rows_read: u64,
    },
    /// Another delivery had finished the job already.
    Duplicate,
    DeadLettered,
    /// Left on the queue to be retried after its visibility timeout.
    Retry,
    /// Handed back at shutdown.
    Released,
    /// Dropped because its run was cancelled.
    Cancelled,
}

/// Totals of one `run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkSummary {
    /// Why the worker could not start (a budget it could not resolve).
    pub fatal: Option<String>,
    pub jobs_done: u64,
    pub jobs_duplicate: u64,
    pub jobs_dead_lettered: u64,
    pub jobs_retried: u64,
    pub jobs_released: u64,
    /// Jobs dropped because their run was cancelled.
    pub jobs_cancelled: u64,
    /// Rows of finished jobs, checkpointed ones included.
    pub rows_copied: u64,
    /// Rows this worker read from the source (a resumed job skips what its
    /// checkpoint covers).
    pub rows_read: u64,
    /// Rows this worker wrote, in finished jobs or not (a job handed back
    /// at shutdown keeps its written rows, behind its checkpoint).
    pub rows_written: u64,
}

impl WorkSummary {
    fn record(&mut self, o: Outcome) {
        match o {
            Outcome::Done { rows, rows_read } => {
                self.rows_read += rows_read;
                self.jobs_done += 1;
                self.rows_copied += rows;
            }
            Outcome::Duplicate => self.jobs_duplicate += 1,
            Outcome::DeadLettered => self.jobs_dead_lettered += 1,
            Outcome::Retry => self.jobs_retried += 1,
            Outcome::Released => self.jobs_released += 1,
            Outcome::Cancelled => self.jobs_cancelled += 1,
        }
    }
}

impl Outcome {
    /// The `outcome` label of the job metrics.
    fn metric(self) -> JobOutcome {
        match self {
            Outcome::Done { .. } => JobOutcome::Done,
            Outcome::Duplicate => JobOutcome::Duplicate,
            Outcome::DeadLettered => JobOutcome::DeadLettered,
            Outcome::Retry => JobOutcome::Retried,
            Outcome::Released => JobOutcome::Released,
            Outcome::Cancelled => JobOutcome::Cancelled,
        }
    }
}

/// A worker process's shared state: clients built once, config read once.
pub struct Worker {
    cfg: Arc<BackfillConfig>,
    source: PgSource,
    sink: DynamoSink,
    /// Per target table with a budget: its fleet budget and this worker's limiter.
    limiters: std::sync::Mutex<HashMap<String, (f64, Arc<WriteLimiter>)>>,
    /// Where items over 400 KB go, for tables with `oversize = "s3"`.
    offloader: Option<S3Offloader>,
    /// Jobs in hand now, and when there last were any (or the worker
    /// started): whether this worker counts in the division of budgets.
    in_hand: AtomicUsize,
    last_busy: std::sync::Mutex<Instant>,
    /// WCU consumed per target table (read from the metrics' counters) at
    /// the last heartbeat: the heartbeat reports the rate in between.
    consumed_at_beat: std::sync::Mutex<(Instant, HashMap<String, f64>)>,
    /// The source's lag/load gate: when it last said open.
    gate: tokio::sync::Mutex<Option<Instant>>,
    queue: JobQueue,
    control: ControlTable,
    /// Runs this worker has seen in the control table. A run's tables are
    /// fixed when its plan is stored, so a run found once needs no second
    /// read; runs not found are not kept (a forger cannot fill this).
    runs: std::sync::Mutex<HashMap<String, Arc<RunRecord>>>,
    worker_id: String,
    /// What `/metrics` shows, and what `/healthz` and `/readyz` answer.
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Worker {
    pub fn new(
        cfg: Arc<BackfillConfig>,
        source: PgSource,
        sink: DynamoSink,
        queue: JobQueue,
        control: ControlTable,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_string());
        let id = uuid::Uuid::new_v4().simple().to_string();
        let metrics = Arc::new(Metrics::new());
        for t in &cfg.tables {
            metrics.init_table(&t.source, &t.target);
        }
        let health = Arc::new(Health::new(Duration::from_secs(
            cfg.metrics.liveness_max_age_secs,
        )));
        Worker {
            cfg,
            source,
            sink,
            queue,
            control,
            runs: std::sync::Mutex::new(HashMap::new()),
            limiters: std::sync::Mutex::new(HashMap::new()),
            offloader: None,
            gate: tokio::sync::Mutex::new(None),
            consumed_at_beat: std::sync::Mutex::new((Instant::now(), HashMap::new())),
            in_hand: AtomicUsize::new(0),
            last_busy: std::sync::Mutex::new(Instant::now()),
            worker_id: format!("{host}-{}-{}", std::process::id(), &id[..6]),
            metrics,
            health,
        }
    }

    /// The worker's metrics, for the metrics server (and its own fleet
    /// heartbeat's WCU rate).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The worker's liveness and readiness, for the probes.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Waits while the source's `pause_query` is above `pause_above` (the
    /// gh-ost idea: the backfill never adds load to a lagging or busy
    /// primary or replica). Evaluated at most every `pause_check_secs`;
    /// `false` if cancelled while waiting.
    pub(crate) async fn source_open(&self, cancel: &CancellationToken) -> bool {
        let src = &self.cfg.source;
        let (Some(sql), Some(limit)) = (&src.pause_query, src.pause_above) else {
            return true;
        };
        let every = Duration::from_secs(src.pause_check_secs);
        // One evaluation at a time for the whole worker.
        let mut last_open = self.gate.lock().await;
        loop {
            if last_open.is_some_and(|t| t.elapsed() < every) {
                return true;
            }
            match self.source.gauge(sql).await {
                Ok(v) if v <= limit => {
                    *last_open = Some(Instant::now());
                    return true;
                }
                Ok(v) => tracing::warn!(
                    value = v,
                    limit,
                    "source above its pause threshold: reading paused"
                ),
                Err(e) => tracing::warn!(error = %e, "source pause query failed: reading paused"),
            }
            *last_open = None;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cancel.cancelled() => return false,
            }
        }
    }

    /// Items over 400 KB of tables with `oversize = "s3"` go to S3 through this.
    pub fn with_offloader(mut self, offloader: S3Offloader) -> Self {
        self.offloader = Some(offloader);
        self
    }

    /// The sink for writes to `target`: limited to this worker's share when
    /// the target has a budget.
    pub(crate) fn sink_for(&self, target: &str) -> DynamoSink {
        match self.limiters.lock().expect("limiters lock").get(target) {
            Some((_, l)) => self.sink.limited(l.clone()),
            None => self.sink.clone(),
        }
    }

    /// WCU per second per target since the previous call. The totals are
    /// the metrics' counters, so `/metrics` and the fleet heartbeat (which
    /// `status` reads) never disagree.
    fn consumed_rates(&self) -> HashMap<String, f64> {
        let now: HashMap<String, f64> = self
            .cfg
            .tables
            .iter()
            .map(|t| (t.target.clone(), self.metrics.wcu_consumed_total(&t.target)))
            .collect();
        let mut last = self.consumed_at_beat.lock().expect("consumed lock");
        let secs = last.0.elapsed().as_secs_f64().max(1e-3);
        let rates = now
            .iter()
            .map(|(t, total)| {
                let before = last.1.get(t).copied().unwrap_or(0.0);
                (t.clone(), ((total - before) / secs).max(0.0))
            })
            .collect();
        *last = (Instant::now(), now);
        rates
    }

    /// This worker's current write rate for `target` (WCU/s), if it has a budget.
    pub fn write_rate(&self, target: &str) -> Option<f64> {
        self.limiters
            .lock()
            .expect("limiters lock")
            .get(target)
            .map(|(_, l)| l.rate())
    }

    /// Resolves every table's fleet budget (a fraction of provisioned
    /// capacity is read with DescribeTable) and builds its limiter at the
    /// whole budget; the first heartbeat divides it by the live workers.
    async fn resolve_budgets(&self) -> Result<(), String> {
        let mut out = HashMap::new();
        for t in &self.cfg.tables {
            let Some(budget) = backfill_capacity::resolve_budget(self.sink.client(), t).await?
            else {
                continue;
            };
            tracing::info!(target = %t.target, budget_wcu = budget, "fleet write budget");
            self.metrics.set_budget(&t.target, budget);
            out.insert(
                t.target.clone(),
                (budget, Arc::new(WriteLimiter::new(&t.target, budget))),
            );
        }
        *self.limiters.lock().expect("limiters lock") = out;
        Ok(())
    }

    /// One heartbeat in the control table, and each budget re-divided by the
    /// live workers.
    async fn fleet_beat(&self) {
        let expiry = self.cfg.capacity.worker_expiry_secs;
        let busy = self.in_hand.load(Ordering::Relaxed) > 0
            || self.last_busy.lock().expect("last_busy lock").elapsed()
                < Duration::from_secs(expiry);
        let rates = self.consumed_rates();
        let beat = async {
            self.control
                .heartbeat(&self.worker_id, expiry, busy, &rates)
                .await?;
            self.control.live_workers(expiry).await
        };
        match beat.await {
            Ok(fleet) => {
                let divide = fleet.divisor(busy);
                for (target, (budget, l)) in self.limiters.lock().expect("limiters lock").iter() {
                    let share = backfill_capacity::share(*budget, divide);
                    l.set_share(share);
                    self.metrics.set_budget_share(target, share);
                }
                self.health.set_heartbeat_sent();
            }
            Err(e) => tracing::warn!(error = %e, "fleet heartbeat failed"),
        }
    }

    /// Heartbeats every few seconds until cancelled; then deregisters so the
    /// others take the freed share at once.
    async fn fleet_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.health.tick();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(self.cfg.capacity.heartbeat_secs)) => {}
                _ = cancel.cancelled() => break,
            }
            self.fleet_beat().await;
        }
        if let Err(e) = self.control.deregister(&self.worker_id).await {
            tracing::warn!(error = %e, "deregistering from the fleet failed");
        }
    }

    pub fn id(&self) -> &str {
        &self.worker_id
    }

    /// Takes and copies jobs until `cancel` fires (or, with `until_idle`,
    /// until there is nothing left). On cancel: stops taking jobs, lets each
    /// job stop after its current page and hands it back to the queue, and
    /// returns within `worker.shutdown_grace_secs`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, opts: WorkOptions) -> WorkSummary {
        let concurrency = self.cfg.worker.concurrency;
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut summary = WorkSummary::default();
        let wait = if opts.until_idle {
            self.cfg.queue.wait_time_secs.min(1)
        } else {
            self.cfg.queue.wait_time_secs
        } as i32;
        let visibility = self.cfg.queue.visibility_timeout_secs as i32;
        let mut failures = 0u32;
        let mut idle_checks = 0u32;
        let mut taken = 0u64;
        if let Err(e) = self.resolve_budgets().await {
            tracing::error!(error = %e, "cannot resolve the write budgets");
            summary.fatal = Some(e);
            return summary;
        }
        self.health.set_budgets_resolved();
        // Registered and sized before the first write, so a worker joining a
        // running fleet never starts at the whole budget.
        self.fleet_beat().await;
        let fleet_stop = CancellationToken::new();
        let fleet = tokio::spawn(self.clone().fleet_loop(fleet_stop.clone()));
        tracing::info!(worker = %self.worker_id, concurrency, "worker started");
        loop {
            self.health.tick();
            while let Some(done) = tasks.try_join_next() {
                record_join(&mut summary, done);
            }
            let room = match opts.max_jobs {
                Some(max) if taken >= max => {
                    tracing::info!(
                        max_jobs = max,
                        "took --max-jobs jobs: finishing them and exiting"
                    );
                    self.finish_in_hand(&mut tasks, &mut summary, &cancel).await;
                    break;
                }
                Some(max) => (max - taken).min(10) as usize,
                None => 10,
            };
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = cancel.cancelled() => break,
            };
            let mut held = vec![first];
            while held.len() < room {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                r = self.queue.receive(held.len() as i32, wait, visibility) => r,
                _ = cancel.cancelled() => break,
            };
            let messages = match received {
                Ok(m) => {
                    failures = 0;
                    self.health.receive_succeeded();
                    m
                }
                Err(e) => {
                    failures += 1;
                    self.health.receive_failed();
                    let delay = backfill_aws::backoff_delay(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(20),
                    );
                    tracing::warn!(error = %e, retry_in = ?delay, "receiving from the queue failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            };
            if messages.is_empty() {
                drop(held);
                if opts.until_idle && tasks.is_empty() {
                    match self.queue.depth().await {
                        Ok(d) if d.total() == 0 => {
                            idle_checks += 1;
                            if idle_checks >= 2 {
                                tracing::info!("queue is empty and no job is in hand: exiting");
                                break;
                            }
                        }
                        Ok(_) => idle_checks = 0,
                        Err(e) => tracing::warn!(error = %e, "reading the queue depth failed"),
                    }
                }
                continue;
            }
            idle_checks = 0;
            taken += messages.len() as u64;
            for (msg, permit) in messages.into_iter().zip(held.drain(..)) {
                let me = self.clone();
                let cancel = cancel.clone();
                me.in_hand.fetch_add(1, Ordering::Relaxed);
                me.metrics.job_taken();
                tasks.spawn(async move {
                    let outcome = me.handle(msg, cancel).await;
                    *me.last_busy.lock().expect("last_busy lock") = Instant::now();
                    me.in_hand.fetch_sub(1, Ordering::Relaxed);
                    me.metrics.job_let_go();
                    drop(permit);
                    outcome
                });
            }
        }
        // No more jobs are taken: out of rotation while the ones in hand stop.
        self.health.set_shutting_down();
        self.drain(tasks, &mut summary).await;
        fleet_stop.cancel();
        let _ = fleet.await;
        // Rows written whatever became of their jobs (done, handed back at
        // shutdown, failed later): the metrics count every page written.
        summary.rows_written = self
            .cfg
            .tables
            .iter()
            .map(|t| self.metrics.rows_written_total(&t.source))
            .sum();
        tracing::info!(worker = %self.worker_id, ?summary, "worker stopped");
        summary
    }

    /// Lets the jobs in hand run to their end; a shutdown meanwhile leaves
    /// the rest to `drain`.
    async fn finish_in_hand(
        &self,
        tasks: &mut JoinSet<Outcome>,
        summary: &mut WorkSummary,
        cancel: &CancellationToken,
    ) {
        while !tasks.is_empty() {
            self.health.tick();
            tokio::select! {
                Some(done) = tasks.join_next() => record_join(summary, done),
                _ = cancel.cancelled() => return,
                // Keeps liveness ticking while a long job runs.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Waits for the jobs in hand to stop, at most the grace period; a job
    /// still running then is abandoned and comes back after its visibility timeout.
    async fn drain(&self, mut tasks: JoinSet<Outcome>, summary: &mut WorkSummary) {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.worker.shutdown_grace_secs);
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
                Ok(Some(done)) => record_join(summary, done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        jobs = tasks.len(),
                        "shutdown grace period over: abandoning jobs in hand"
                    );
                    tasks.abort_all();
                    break;
                }
            }
        }
    }

    async fn handle(&self, msg: ReceivedMessage, cancel: CancellationToken) -> Outcome {
        let received = Instant::now();
        let job = match self.admit(&msg).await {
            Ok(j) => j,
            Err(refusal) => {
                let span = tracing::info_span!("message", message_id = %msg.message_id);
                let outcome = self.refuse(&msg, refusal).instrument(span).await;
                // A refused message names no table it could be trusted for
                // (and a forged name must not become a metric label).
                self.metrics
                    .job_finished("", outcome.metric(), received.elapsed());
                return outcome;
            }
        };
        let span =
            tracing::info_span!("job", run = %job.run_id, table = %job.table, job = %job.job_id);
        let table = job.table.clone();
        let outcome = self.handle_job(msg, job, cancel).instrument(span).await;
        self.metrics
            .job_finished(&table, outcome.metric(), received.elapsed());
        outcome
    }

    /// Takes a message as a job only if it is one: not oversized, signed
    /// when signing is on, well formed, and planned in the control table
    /// exactly so (run, table, key columns, range).
    async fn admit(&self, msg: &ReceivedMessage) -> Result<JobMessage, Refusal> {
        let refuse = |kind, reason: String, job| Refusal::Permanent { kind, reason, job };
        let at_fault =
            |reason: &dyn std::fmt::Display| format!("message {}: {reason}", msg.message_id);
        // The size first: nothing else is worth computing over a huge body.
        if msg.body.len() > backfill_job::MAX_BODY_BYTES {
            let e = backfill_job::JobError::Oversized {
                bytes: msg.body.len(),
                max: backfill_job::MAX_BODY_BYTES,
            };
            return Err(refuse(e.kind(), at_fault(&e), None));
        }
        if let Some(signer) = self.queue.signer() {
            if let Err(e) = signer.verify(&msg.body, msg.signature.as_deref()) {
                let claimed = JobMessage::from_body(&msg.body).ok();
                return Err(refuse("forged", at_fault(&e), claimed));
            }
        }
        let job =
            JobMessage::from_body(&msg.body).map_err(|e| refuse(e.kind(), at_fault(&e), None))?;
        let run = self
            .run_record(&job.run_id)
            .await
            .map_err(Refusal::Unavailable)?;
        let planned = self
            .control
            .job(&job.run_id, &job.job_id)
            .await
            .map_err(Refusal::Unavailable)?;
        let checked = backfill_control::check_planned(
            self.control.table_name(),
            &job,
            run.as_deref(),
            planned.as_ref().map(|r| &r.job),
        );
        checked.map_err(|e: Rejection| refuse("forged", at_fault(&e), Some(job.clone())))?;
        Ok(job)
    }

    /// The run's record, read once per run and process.
    async fn run_record(&self, run_id: &str) -> Result<Option<Arc<RunRecord>>, ControlError> {
        if let Some(r) = self.runs.lock().expect("runs lock").get(run_id) {
            return Ok(Some(r.clone()));
        }
        let Some(run) = self.control.get_run(run_id).await? else {
            return Ok(None);
        };
        let run = Arc::new(run);
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run_id.to_string(), run.clone());
        Ok(Some(run))
    }

    /// A refused message goes to the DLQ as it is; one the control table
    /// could not vouch for comes back, until its last receive.
    async fn refuse(&self, msg: &ReceivedMessage, refusal: Refusal) -> Outcome {
        match refusal {
            Refusal::Permanent { kind, reason, job } => {
                self.dead_letter(msg, job.as_ref(), &reason, kind).await
            }
            // A corrupt record or a request DynamoDB refuses will not change
            // on the next receive.
            Refusal::Unavailable(e) if !e.is_retryable() => {
                let reason = format!(
                    "message {}: cannot check it against the control table: {e}",
                    msg.message_id
                );
                self.dead_letter(msg, None, &reason, "permanent").await
            }
            Refusal::Unavailable(e) if msg.receive_count < self.cfg.queue.max_receive_count => {
                tracing::warn!(error = %e, receive_count = msg.receive_count, "cannot check the message against the control table, will be retried");
                Outcome::Retry
            }
            Refusal::Unavailable(e) => {
                let reason = format!(
                    "message {}: gave up after {} receives: cannot check it against the control table: {e}",
                    msg.message_id, msg.receive_count
                );
                self.dead_letter(msg, None, &reason, "retries_exhausted")
                    .await
            }
        }
    }

    async fn handle_job(
        &self,
        msg: ReceivedMessage,
        job: JobMessage,
        cancel: CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let checkpoint = match self.control.claim(&job, &self.worker_id).await {
            Ok(Claim::AlreadyDone) => {
                tracing::info!("job already done by another delivery: acknowledging");
                return match self.queue.delete(&msg.receipt_handle).await {
                    Ok(()) => Outcome::Duplicate,
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting a duplicate message failed");
                        Outcome::Retry
                    }
                };
            }
            Ok(Claim::Cancelled) => {
                tracing::info!("the job's run was cancelled: dropping the job");
                return self.drop_cancelled(&msg).await;
            }
            Ok(Claim::Started {
                attempts,
                checkpoint,
            }) => {
                match &checkpoint {
                    Some(ck) => tracing::info!(
                        attempts,
                        range = %job.range,
                        resume_after = %backfill_job::display_key(&ck.last_key),
                        rows_done = ck.rows,
                        "job resumed from its checkpoint"
                    ),
                    None => tracing::info!(attempts, range = %job.range, "job started"),
                }
                checkpoint
            }
            Err(e) => return self.after_failure(&msg, &job, JobError::Control(e)).await,
        };
        let heartbeat = self.spawn_heartbeat(&msg);
        let result = copy::copy_range(self, &job, &cancel, checkpoint).await;
        heartbeat.abort();
        if let Err(JobError::Control(ControlError::Superseded { .. })) = &result {
            // Another delivery owns the job now; its worker acknowledges it.
            tracing::info!("job claimed by another worker: stopping without acknowledging");
            return Outcome::Duplicate;
        }
        if let Err(JobError::Control(ControlError::Cancelled { .. })) = &result {
            tracing::info!("the job's run was cancelled while it was copied: dropping the job");
            return self.drop_cancelled(&msg).await;
        }
        match result {
            Ok(CopyProgress {
                rows,
                complete: true,
                digest,
                skipped_newer,
                verified,
                rows_read,
                ..
            }) => {
                // Counted from the records, so rejects recorded before a
                // checkpoint the job resumed from are counted too.
                let rejects = match self.control.count_rejects(&job.run_id, &job.job_id).await {
                    Ok(n) => n,
                    Err(e) => return self.after_failure(&msg, &job, JobError::Control(e)).await,
                };
                if let Err(e) = self
                    .control
                    .finish(&job, rows, &digest.sum_hex(), rejects)
                    .await
                {
                    return self.after_failure(&msg, &job, JobError::Control(e)).await;
                }
                if let Err(e) = self.queue.delete(&msg.receipt_handle).await {
                    // The job is done and recorded; a redelivery is acknowledged as a duplicate.
                    tracing::warn!(error = %e, "deleting the finished job's message failed");
                }
                tracing::info!(
                    rows,
                    rejects,
                    verified,
                    skipped_newer,
                    secs = started.elapsed().as_secs_f64(),
                    "{}",
                    if rejects > 0 {
                        "job done with rejects"
                    } else {
                        "job done"
                    }
                );
                Outcome::Done { rows, rows_read }
            }
            Ok(CopyProgress { rows, .. }) => {
                tracing::info!(rows, "shutting down: handing the job back to the queue");
                if let Err(e) = self.queue.set_visibility(&msg.receipt_handle, 0).await {
                    tracing::warn!(error = %e, "handing the job back failed; it returns after its visibility timeout");
                }
                Outcome::Released
            }
            Err(e) => self.after_failure(&msg, &job, e).await,
        }
    }

    /// Acknowledges the message of a cancelled run's job, so the queue
    /// drains instead of handing it out again.
    async fn drop_cancelled(&self, msg: &ReceivedMessage) -> Outcome {
        match self.queue.delete(&msg.receipt_handle).await {
            Ok(()) => Outcome::Cancelled,
            Err(e) => {
                tracing::warn!(error = %e, "deleting a cancelled job's message failed");
                Outcome::Retry
            }
        }
    }

    /// Retryable failures leave the message to come back; permanent ones,
    /// and retryable ones on the last receive SQS allows, go to the DLQ now
    /// so the reason travels with the job.
    async fn after_failure(&self, msg: &ReceivedMessage, job: &JobMessage, e: JobError) -> Outcome {
        let reason = e.to_string();
        let last_receive = msg.receive_count >= self.cfg.queue.max_receive_count;
        if e.is_retryable() && !last_receive {
            tracing::warn!(error = %reason, receive_count = msg.receive_count, "job failed, will be retried");
            if let Err(ce) = self.control.record_failure(job, &reason, false).await {
                tracing::warn!(error = %ce, "recording the failure failed");
            }
            return Outcome::Retry;
        }
        let (kind, reason) = if e.is_retryable() {
            (
                "retries_exhausted",
                format!("gave up after {} receives: {reason}", msg.receive_count),
            )
        } else {
            ("permanent", reason)
        };
        if let Err(ce) = self.control.record_failure(job, &reason, true).await {
            tracing::warn!(error = %ce, "recording the failure failed");
        }
        self.dead_letter(msg, Some(job), &reason, kind).await
    }

    async fn dead_letter(
        &self,
        msg: &ReceivedMessage,
        job: Option<&JobMessage>,
        reason: &str,
        kind: &str,
    ) -> Outcome {
        let dl = DeadLetter {
            reason,
            kind,
            run_id: job.map(|j| j.run_id.as_str()),
            table: job.map(|j| j.table.as_str()),
            job_id: job.map(|j| j.job_id.as_str()),
        };
        match self.queue.dead_letter(msg, &dl).await {
            Ok(()) => {
                tracing::error!(error = reason, kind, "job sent to the dead-letter queue");
                self.metrics.dlq_sent(kind);
                Outcome::DeadLettered
            }
            Err(e) => {
                tracing::error!(error = %e, reason, "sending to the dead-letter queue failed; the job will come back");
                Outcome::Retry
            }
        }
    }

    /// Keeps a long job hidden from other workers: every third of the
    /// visibility timeout, the timeout starts again.
    fn spawn_heartbeat(&self, msg: &ReceivedMessage) -> tokio::task::JoinHandle<()> {
        let queue = self.queue.clone();
        let receipt = msg.receipt_handle.clone();
        let visibility = self.cfg.queue.visibility_timeout_secs;
        tokio::spawn(
            async move {
                let period = Duration::from_secs_f64((f64::from(visibility) / 3.0).max(0.5));
                loop {
                    tokio::time::sleep(period).await;
                    if let Err(e) = queue.set_visibility(&receipt, visibility as i32).await {
                        tracing::warn!(error = %e, "extending the job's visibility failed");
                    }
                }
            }
            .in_current_span(),
        )
    }
}

/// Checks every configured table against the source's catalog before a
/// worker takes a job: the table exists, has a key that can bound ranges,
/// and every column the config names (keys, include, exclude, renames,
/// types, version) is the table's. Returns the problems, each naming the
/// table and column; an error only when the source cannot be asked.
///
/// A table dropped later still fails only its own jobs (to the DLQ); this
/// catches a wrong config before a fleet starts on it.
pub async fn preflight(
    cfg: &BackfillConfig,
    source: &PgSource,
) -> Result<Vec<String>, SourceError> {
    let mut problems = Vec::new();
    for t in &cfg.tables {
        let schema = match source
            .describe(&backfill_source::TableRef::parse(&t.source))
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if let Err(e) = schema.check_key_types() {
            problems.push(e.to_string());
        }
        if let Err(e) = backfill_item::ItemMapper::new(t, &schema) {
            problems.push(e.to_string());
        }
    }
    Ok(problems)
}

fn record_join(summary: &mut WorkSummary, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(o) => summary.record(o),
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            tracing::error!(error = %e, "a job task panicked; its message comes back after its visibility timeout")
        }
    }
}
