//! `work`: a worker process, its metrics server and its graceful shutdown
//! on SIGTERM or Ctrl-C through one cancellation token.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_worker::{WorkOptions, Worker};
use tokio_util::sync::CancellationToken;

use crate::{connect_source, job_queue, offloader, sink};

pub(crate) async fn work(cfg: BackfillConfig, opts: WorkOptions) -> Result<ExitCode> {
    let listen = cfg.metrics.listen_addr()?;
    let source = connect_source(&cfg).await?;
    let problems = backfill_worker::preflight(&cfg, &source).await?;
    if !problems.is_empty() {
        anyhow::bail!(
            "the configured tables do not match the source; no job was taken:\n  {}",
            problems.join("\n  ")
        );
    }
    let aws = AwsClients::from_config(&cfg.aws).await;
    let queue = job_queue(&cfg, &aws)?;
    let sink = sink(&cfg, &aws);
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let offloader = offloader(&cfg, &aws);
    let archive = match cfg.archive {
        Some(_) => Some(crate::archive::store(&cfg, &aws)?),
        None => None,
    };
    let mut worker = Worker::new(Arc::new(cfg), source, sink, queue, control);
    if let Some(o) = offloader {
        worker = worker.with_offloader(o);
    }
    if let Some(a) = archive {
        worker = worker.with_archive(a);
    }
    let worker = Arc::new(worker);
    // Its own token, not the signal's: through the shutdown grace period
    // /readyz says "shutting down" and the last counts stay scrapeable,
    // and the server stops only once the worker has returned.
    let metrics_stop = CancellationToken::new();
    let server = match listen {
        Some(addr) => {
            let (bound, task) = backfill_metrics::serve(
                addr,
                worker.metrics().clone(),
                worker.health().clone(),
                metrics_stop.clone(),
            )
            .await?;
            tracing::info!(address = %bound, "metrics and health endpoints listening (/metrics, /healthz, /readyz)");
            Some(task)
        }
        None => {
            tracing::info!("metrics.listen is empty: no metrics or health endpoints");
            None
        }
    };
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let started = Instant::now();
    let summary = worker.run(cancel, opts).await;
    metrics_stop.cancel();
    if let Some(task) = server {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "the metrics server task failed");
        }
    }
    if let Some(e) = &summary.fatal {
        anyhow::bail!("the worker could not start: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{}", work_summary(&summary, secs));
    Ok(ExitCode::SUCCESS)
}

/// The worker's last line: what it wrote (handed-back jobs included) and
/// what became of its jobs, naming only the outcomes that happened.
fn work_summary(s: &backfill_worker::WorkSummary, secs: f64) -> String {
    let mut out = format!(
        "worker: {} rows written in {secs:.1}s ({:.0} rows/s); {} jobs done ({} rows in them, {} read by this worker)",
        s.rows_written,
        s.rows_written as f64 / secs.max(1e-9),
        s.jobs_done,
        s.rows_copied,
        s.rows_read,
    );
    for (n, what) in [
        (
            s.jobs_released,
            "handed back to the queue at shutdown (they resume from their checkpoints)",
        ),
        (s.jobs_dead_lettered, "dead-lettered"),
        (s.jobs_retried, "left to be retried"),
        (s.jobs_duplicate, "duplicates of finished jobs"),
        (s.jobs_cancelled, "dropped because their run was cancelled"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out
}

/// Cancels on SIGTERM (Kubernetes scale-in) or Ctrl-C.
pub(crate) async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing or handing back the jobs in hand");
    cancel.cancel();
}
