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
//! Its modules are its concerns; docs/ARCHITECTURE.md maps them.
//!
//! What follows a failure is decided in one place, [`policy`]: a retryable
//! one leaves the message to come back after its visibility timeout; a
//! permanent one sends the job to the DLQ at once with the reason.

mod admission;
pub mod archive;
mod copy;
mod error;
mod fleet;
mod gate;
mod handback;
pub mod heartbeat;
mod outcome;
mod pages;
pub mod policy;
mod preflight;
mod rejects;
mod slot;
mod stripes;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_config::BackfillConfig;
use backfill_control::{Claim, ControlTable, RunRecord};
use backfill_dynamo::DynamoSink;
use backfill_job::JobMessage;
use backfill_metrics::{Health, Metrics};
use backfill_offload::S3Offloader;
use backfill_queue::{DeadLetter, JobQueue, ReceivedMessage};
use backfill_source::PgSource;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use policy::{Action, DeadLetterKind};

pub use copy::CopyProgress;
pub use error::JobError;
pub use heartbeat::VisibilityHeartbeat;
use outcome::Outcome;
pub use outcome::WorkSummary;
pub use preflight::preflight;
pub use rejects::{retry_rejects, RetryPath, RetryReport, RetryRequest};

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

/// A worker process's shared state: clients built once, config read once.
pub struct Worker {
    cfg: Arc<BackfillConfig>,
    source: PgSource,
    sink: DynamoSink,
    /// Per target table: its budget and limiter, and its keys' pacer.
    targets: std::sync::Mutex<fleet::Targets>,
    /// Where items over 400 KB go, for tables with `oversize = "s3"`.
    offloader: Option<S3Offloader>,
    /// Where archive jobs write their parts (`[archive]`).
    archive: Option<backfill_archive::store::ArchiveStore>,
    /// Verification jobs' reader; its limiter holds this worker's reads.
    verifier: backfill_verify::Verifier,
    /// Jobs in hand now, and when there last were any (or the worker
    /// started): whether this worker counts in the division of budgets.
    in_hand: AtomicUsize,
    last_busy: std::sync::Mutex<Instant>,
    /// WCU consumed per target table (the metrics' counters) at recent
    /// heartbeats: each reports the rate over the last ten seconds.
    consumed_at_beat: std::sync::Mutex<fleet::ConsumedSamples>,
    /// Since when idle workers have waited on an empty queue (the tail).
    tail: handback::Tail,
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
        let targets = fleet::Targets::default();
        let verifier = verify::verifier(&cfg, &source, &sink, None, &targets.reads);
        Worker {
            verifier,
            cfg,
            source,
            sink,
            queue,
            control,
            runs: std::sync::Mutex::new(HashMap::new()),
            targets: std::sync::Mutex::new(targets),
            offloader: None,
            archive: None,
            gate: tokio::sync::Mutex::new(None),
            tail: handback::Tail::default(),
            consumed_at_beat: std::sync::Mutex::default(),
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
                tasks.spawn(slot::holding(permit, async move {
                    let outcome = me.handle(msg, cancel).await;
                    *me.last_busy.lock().expect("last_busy lock") = Instant::now();
                    me.in_hand.fetch_sub(1, Ordering::Relaxed);
                    me.metrics.job_let_go();
                    outcome
                }));
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

    async fn handle_job(
        &self,
        msg: ReceivedMessage,
        mut job: JobMessage,
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
                handed_back,
            }) => {
                job = match handback::as_handed_back(self, &job, handed_back).await {
                    Ok(j) => j,
                    Err(e) => return self.after_failure(&msg, &job, JobError::Control(e)).await,
                };
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
        // Dropped when the copy ends, however it ends (a panic or an abort
        // at shutdown included), so the message is never kept hidden for a
        // job that is gone.
        let heartbeat = VisibilityHeartbeat::start(
            self.queue.clone(),
            msg.receipt_handle.clone(),
            self.cfg.queue.visibility_timeout_secs,
        );
        if job.task == backfill_job::Task::Archive {
            let result = archive::archive_job(self, &job, &cancel).await;
            drop(heartbeat);
            return self.after_archive(&msg, &job, result).await;
        }
        if !job.task.is_copy() {
            let result = verify::verify_job(self, &job, &cancel).await;
            drop(heartbeat);
            return self.after_verify(&msg, &job, result).await;
        }
        let result = copy::copy_range(self, &job, &cancel, checkpoint).await;
        drop(heartbeat);
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
                self.release(&msg).await
            }
            Err(e) => self.after_error(&msg, &job, e).await,
        }
    }

    /// Hands a job stopped by shutdown back to the queue at once
    /// (visibility 0), for another worker to take.
    async fn release(&self, msg: &ReceivedMessage) -> Outcome {
        if let Err(e) = self.queue.set_visibility(&msg.receipt_handle, 0).await {
            tracing::warn!(error = %e, "handing the job back failed; it returns after its visibility timeout");
        }
        Outcome::Released
    }

    /// What follows a job's error: by the failure policy, leave it to the
    /// delivery that owns it now, drop it (its run was cancelled), retry
    /// or dead-letter it.
    async fn after_error(&self, msg: &ReceivedMessage, job: &JobMessage, e: JobError) -> Outcome {
        let max = self.cfg.queue.max_receive_count;
        match policy::after_error(&e, msg.receive_count, max) {
            Action::LeaveToOwner => {
                // Another delivery owns the job now; its worker acknowledges it.
                tracing::info!("job claimed by another worker: stopping without acknowledging");
                Outcome::Duplicate
            }
            Action::DropCancelled => {
                tracing::info!("the job's run was cancelled while it ran: dropping the job");
                self.drop_cancelled(msg).await
            }
            Action::Retry | Action::DeadLetter(_) => self.after_failure(msg, job, e).await,
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
        let max = self.cfg.queue.max_receive_count;
        let kind = match policy::after_failure(e.is_retryable(), msg.receive_count, max) {
            Action::DeadLetter(kind) => kind,
            _ => {
                tracing::warn!(error = %reason, receive_count = msg.receive_count, "job failed, will be retried");
                if let Err(ce) = self.control.record_failure(job, &reason, false).await {
                    tracing::warn!(error = %ce, "recording the failure failed");
                }
                return Outcome::Retry;
            }
        };
        let reason = match kind {
            DeadLetterKind::RetriesExhausted => {
                format!("gave up after {} receives: {reason}", msg.receive_count)
            }
            DeadLetterKind::Permanent => reason,
        };
        if let Err(ce) = self.control.record_failure(job, &reason, true).await {
            tracing::warn!(error = %ce, "recording the failure failed");
        }
        self.dead_letter(msg, Some(job), &reason, kind.as_str())
            .await
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
