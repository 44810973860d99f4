//! `audit`: the drift watch of the dual-write weeks. A long-lived process
//! that, every `--every`, audits in each table the rows changed since the
//! last round's watermark (its version column) and a random sample of the
//! older ones, records each round in the control table and counts what it
//! found on its metrics endpoint, where an alert watches for any drift.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::{BackfillConfig, TableConfig};
use backfill_control::{ControlTable, DriftRound};
use backfill_metrics::{Health, Metrics};
use backfill_verify::{TableReport, Verifier};
use tokio_util::sync::CancellationToken;

use crate::work::shutdown_on_signal;
use crate::{connect_source, offloader, sink};

/// How long a difference gets to settle before it is read again (a write
/// of the application in flight between the two stores), as `verify` does.
const RECHECK_AFTER: Duration = Duration::from_secs(2);
/// How often the process proves it is alive while it waits for a round.
const TICK: Duration = Duration::from_secs(5);

/// What `backfill audit` was asked to do.
pub(crate) struct AuditArgs {
    pub every: Duration,
    pub table: Option<String>,
    pub sample_percent: f64,
    pub limit: u32,
    pub max_reads_per_sec: u32,
    pub once: bool,
}

/// Where a table's first round after a start audits changed rows from: the
/// watermark its newest stored round handed on, so a restarted watch (a
/// rollout, an evicted pod) misses no change made while it was down.
pub(crate) fn resume_from(stored: Option<&DriftRound>) -> Option<String> {
    stored.and_then(|r| r.watermark_to.clone())
}

/// Where the round after this one goes on. With a watermark, from the
/// highest version this round read (rows come lowest first, so with more
/// changes than `--limit` the next round takes up where this one stopped),
/// or the same watermark when nothing changed. Without one, from the newest
/// version the table held when the round started: everything changed after
/// that has a version at least as high.
pub(crate) fn next_watermark(
    from: Option<&str>,
    highest_read: Option<&str>,
    newest_at_start: Option<&str>,
) -> Option<String> {
    match from {
        Some(from) => Some(highest_read.unwrap_or(from).to_string()),
        None => newest_at_start.map(str::to_string),
    }
}

/// Whether the watermark cannot move: the round read `--limit` changed rows
/// and all of them had the watermark's own version, so each next round
/// reads the same rows again and never the ones after.
pub(crate) fn stalled(round: &DriftRound, limit: u32) -> bool {
    round.watermark_from.is_some()
        && round.watermark_from == round.watermark_to
        && round.changed_checked >= u64::from(limit)
}

/// The time to wait before the next round: rounds start `every` apart,
/// and one that took longer than that is followed at once.
pub(crate) fn wait_before_next(every: Duration, round_took: Duration) -> Duration {
    every.saturating_sub(round_took)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One table's round: the changed rows (with a watermark), then the sample.
/// The newest version is read before the sample, so a row changed while
/// the round runs is in the next round's changed rows.
async fn table_round(
    verifier: &Verifier,
    t: &TableConfig,
    args: &AuditArgs,
    watermark: Option<String>,
) -> Result<DriftRound> {
    let started_ms = epoch_ms();
    let watermark = watermark.filter(|_| t.version_column.is_some());
    let mut changed = None;
    let mut newest = None;
    if t.version_column.is_some() {
        match &watermark {
            Some(w) => {
                changed = Some(
                    verifier
                        .audit(t, None, Some(w.as_str()), args.limit, RECHECK_AFTER)
                        .await?,
                )
            }
            None => newest = verifier.newest_version(t).await?,
        }
    }
    let sampled = if args.sample_percent > 0.0 {
        Some(
            verifier
                .audit(
                    t,
                    Some(args.sample_percent),
                    None,
                    args.limit,
                    RECHECK_AFTER,
                )
                .await?,
        )
    } else {
        None
    };
    let count =
        |f: fn(&TableReport) -> u64| changed.as_ref().map_or(0, f) + sampled.as_ref().map_or(0, f);
    Ok(DriftRound {
        source: t.source.clone(),
        target: t.target.clone(),
        started_ms,
        finished_ms: epoch_ms(),
        watermark_to: next_watermark(
            watermark.as_deref(),
            changed.as_ref().and_then(|r| r.version_high.as_deref()),
            newest.as_deref(),
        ),
        watermark_from: watermark,
        changed_checked: changed.as_ref().map_or(0, |r| r.rows_checked),
        sampled_checked: sampled.as_ref().map_or(0, |r| r.rows_checked),
        missing: count(|r| r.missing_count),
        different: count(|r| r.different_count),
        unmappable: count(|r| r.unmappable_count),
    })
}

pub(crate) async fn audit(cfg: BackfillConfig, args: AuditArgs) -> Result<ExitCode> {
    anyhow::ensure!(!args.every.is_zero(), "--every must be longer than 0");
    let tables: Vec<TableConfig> = match &args.table {
        Some(name) => vec![cfg
            .table(name)
            .with_context(|| format!("table {name} is not in the config"))?
            .clone()],
        None => cfg.tables.clone(),
    };
    let listen = cfg.metrics.listen_addr()?;
    let source = connect_source(&cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let opts = backfill_verify::VerifyOptions {
        max_reads_per_sec: std::num::NonZeroU32::new(args.max_reads_per_sec)
            .context("--max-reads-per-sec must be at least 1")?,
        ..Default::default()
    };
    let mut verifier = Verifier::new(source, sink(&cfg, &aws), opts);
    if let Some(o) = offloader(&cfg, &aws) {
        verifier = verifier.with_offloader(o);
    }

    let mut watermarks: HashMap<String, Option<String>> = HashMap::new();
    for t in &tables {
        let stored = control
            .latest_drift_round(&t.source)
            .await
            .with_context(|| format!("reading the last drift round of {}", t.source))?;
        let from = resume_from(stored.as_ref());
        if let Some(w) = &from {
            tracing::info!(table = %t.source, watermark = %w, "resuming from the last round's watermark");
        }
        watermarks.insert(t.source.clone(), from);
    }

    let metrics = Arc::new(Metrics::with_drift());
    for t in &tables {
        metrics.init_drift_table(&t.source);
    }
    let health = Arc::new(Health::new(Duration::from_secs(
        cfg.metrics.liveness_max_age_secs,
    )));
    let metrics_stop = CancellationToken::new();
    let server = match listen {
        Some(addr) => {
            let (bound, task) = backfill_metrics::serve(
                addr,
                metrics.clone(),
                health.clone(),
                metrics_stop.clone(),
            )
            .await?;
            tracing::info!(address = %bound, "drift metrics listening (/metrics, /healthz)");
            Some(task)
        }
        None => None,
    };
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));

    let mut drift_found = false;
    let mut failed = false;
    'rounds: loop {
        let started = Instant::now();
        for t in &tables {
            health.tick();
            let from = watermarks.get(&t.source).cloned().flatten();
            let round = tokio::select! {
                _ = cancel.cancelled() => break 'rounds,
                r = table_round(&verifier, t, &args, from) => r,
            };
            let round = match round {
                Ok(r) => r,
                Err(e) => {
                    // The watermark stays, so the next round covers these rows.
                    failed = true;
                    tracing::warn!(table = %t.source, error = %crate::errors::error_chain(&e), "audit round failed");
                    continue;
                }
            };
            let round = match control.record_drift_round(&round).await {
                Ok(stored) => stored,
                Err(e) => {
                    failed = true;
                    tracing::warn!(table = %t.source, error = %e, "recording the drift round failed");
                    round
                }
            };
            metrics.drift_round(
                &t.source,
                round.rows_checked(),
                round.missing,
                round.different,
            );
            drift_found |= !round.is_clean();
            if stalled(&round, args.limit) {
                tracing::warn!(table = %t.source, limit = args.limit, "more than --limit rows have the watermark's version: the watermark cannot move; raise --limit");
            }
            if round.is_clean() {
                tracing::info!(table = %t.source, changed = round.changed_checked, sampled = round.sampled_checked,
                    from = ?round.watermark_from, to = ?round.watermark_to, "audit round clean");
            } else {
                tracing::warn!(table = %t.source, changed = round.changed_checked, sampled = round.sampled_checked,
                    missing = round.missing, different = round.different, unmappable = round.unmappable,
                    from = ?round.watermark_from, to = ?round.watermark_to, "DRIFT: rows and items disagree");
            }
            watermarks.insert(t.source.clone(), round.watermark_to.clone());
        }
        metrics.drift_round_finished(epoch_ms() as f64 / 1000.0);
        if args.once {
            break;
        }
        let deadline = Instant::now() + wait_before_next(args.every, started.elapsed());
        while Instant::now() < deadline {
            health.tick();
            let step = deadline.saturating_duration_since(Instant::now()).min(TICK);
            tokio::select! {
                _ = cancel.cancelled() => break 'rounds,
                _ = tokio::time::sleep(step) => {}
            }
        }
    }
    metrics_stop.cancel();
    if let Some(task) = server {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "the metrics server task failed");
        }
    }
    // A single round (`--once`) answers like `verify`: 1 on any drift or
    // failure. The long-lived watch reports through its metrics and stops
    // cleanly on SIGTERM.
    Ok(if args.once && (drift_found || failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(from: Option<&str>, to: Option<&str>, changed: u64) -> DriftRound {
        DriftRound {
            watermark_from: from.map(str::to_string),
            watermark_to: to.map(str::to_string),
            changed_checked: changed,
            ..Default::default()
        }
    }

    #[test]
    fn a_restart_resumes_from_the_stored_watermark() {
        assert_eq!(resume_from(None), None);
        assert_eq!(resume_from(Some(&round(None, None, 0))), None);
        assert_eq!(
            resume_from(Some(&round(Some("5"), Some("9"), 3))),
            Some("9".into())
        );
    }

    #[test]
    fn the_watermark_advances_to_the_highest_version_read() {
        // First round: nothing to start from, so the newest version now.
        assert_eq!(next_watermark(None, None, Some("200")), Some("200".into()));
        assert_eq!(next_watermark(None, None, None), None, "an empty table");
        // Later rounds: the highest version read, else where it was.
        assert_eq!(
            next_watermark(Some("200"), Some("1011"), None),
            Some("1011".into())
        );
        assert_eq!(next_watermark(Some("200"), None, None), Some("200".into()));
        // A timestamp watermark is carried as the text it was read as.
        assert_eq!(
            next_watermark(
                Some("2026-12-01T00:00:00+00:00"),
                Some("2026-12-01T00:09:59.5+00:00"),
                None
            ),
            Some("2026-12-01T00:09:59.5+00:00".into())
        );
    }

    #[test]
    fn a_watermark_that_cannot_move_is_noticed() {
        assert!(stalled(&round(Some("7"), Some("7"), 100), 100));
        assert!(!stalled(&round(Some("7"), Some("8"), 100), 100));
        assert!(!stalled(&round(Some("7"), Some("7"), 3), 100));
        assert!(!stalled(&round(None, None, 0), 100));
    }

    #[test]
    fn rounds_start_every_period_and_an_overrun_goes_on_at_once() {
        let every = Duration::from_secs(600);
        assert_eq!(
            wait_before_next(every, Duration::from_secs(45)),
            Duration::from_secs(555)
        );
        assert_eq!(
            wait_before_next(every, Duration::from_secs(900)),
            Duration::ZERO
        );
    }
}
