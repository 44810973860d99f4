//! `backfill status` and `backfill cancel`: the operator's view of a run.
//!
//! Status prints progress bars on a terminal, plain lines otherwise (logs,
//! CI, `watch`), and JSON with `--json`; `--watch` redraws until the run
//! ends or Ctrl-C.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_control::ControlTable;
use backfill_queue::JobQueue;
use backfill_status::{RunStatus, TableStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How `status` prints.
pub struct StatusOptions {
    pub run: Option<String>,
    pub watch: bool,
    pub json: bool,
    pub interval_secs: u64,
}

pub async fn status(cfg: &BackfillConfig, opts: StatusOptions) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let queue = JobQueue::new(aws.sqs.clone(), &cfg.queue.url, &cfg.queue.dlq_url);
    let read = || {
        backfill_status::gather(
            cfg,
            &control,
            &aws.dynamodb,
            Some(&queue),
            opts.run.as_deref(),
        )
    };
    let mut s = read().await?;
    let bars = !opts.json && std::io::stdout().is_terminal();
    if !opts.watch {
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else if bars {
            Bars::new(&s).update(&s);
        } else {
            print!("{}", render_plain(&s));
        }
        return Ok(exit_code(&s));
    }
    let every = Duration::from_secs(opts.interval_secs.max(1));
    let mut view = bars.then(|| Bars::new(&s));
    loop {
        if opts.json {
            println!("{}", serde_json::to_string(&s)?);
        } else if let Some(v) = &mut view {
            v.update(&s);
        } else {
            println!("{}", render_plain(&s));
        }
        if s.is_over() {
            return Ok(exit_code(&s));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(exit_code(&s)),
        }
        // Watching the same run, even when a newer one starts meanwhile.
        let run = s.run_id.clone();
        s = backfill_status::gather(cfg, &control, &aws.dynamodb, Some(&queue), Some(&run)).await?;
    }
}

/// 0 while healthy or finished, 1 when jobs failed or the run was cancelled:
/// scripts can wait on `status --watch` and know how it ended.
fn exit_code(s: &RunStatus) -> ExitCode {
    if s.jobs.failed > 0 || s.state == backfill_control::RunState::Cancelled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn cancel(cfg: &BackfillConfig, run: &str, by: &str, reason: &str) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let control = ControlTable::new(aws.dynamodb.clone(), &cfg.control.table);
    let cancelled = control.cancel_run(run, by, reason).await?;
    println!(
        "run {run} cancelled by {by} ({reason}): {cancelled} unfinished jobs marked cancelled; \
         workers drop them when they receive them or at their next checkpoint"
    );
    Ok(ExitCode::SUCCESS)
}

/// `--by` when given, else the user running the command; says on stderr
/// which name the audit record gets when it had to guess.
pub fn by_or_user(by: Option<String>) -> String {
    match by {
        Some(b) => b,
        None => {
            let user = current_user();
            eprintln!(
                "note: no --by given: recording the action as by {user:?} (from $USER or $LOGNAME)"
            );
            user
        }
    }
}

/// The user running the command, for audit fields.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Plain lines: a header for the run, one line per table, then failures.
pub fn render_plain(s: &RunStatus) -> String {
    let mut out = String::new();
    let j = &s.jobs;
    out.push_str(&format!(
        "run {} [{}]: {}/{} jobs done, {} running, {} failed, {} queued{}{}; {}{} rows; {}; ETA {}\n",
        s.run_id,
        s.state,
        j.done,
        j.total,
        j.running,
        j.failed,
        j.queued,
        if j.cancelled > 0 {
            format!(", {} cancelled", j.cancelled)
        } else {
            String::new()
        },
        orphaned(j),
        thousands(s.rows_copied),
        s.estimated_rows
            .map(|e| format!(" of ~{}", thousands(e)))
            .unwrap_or_default(),
        rate(s.rows_per_sec),
        if j.is_stalled() {
            "none: only failed jobs are left (`backfill dlq list`, then `dlq replay` after a fix)".to_string()
        } else {
            eta(s.eta_secs)
        },
    ));
    let q = |c: Option<backfill_status::QueueCounts>| match c {
        Some(c) => format!("{} visible, {} in flight", c.visible, c.in_flight),
        None => "unreadable".to_string(),
    };
    if let Some(v) = &s.verification {
        out.push_str(&verification_line(&s.run_id, v));
    }
    out.push_str(&format!(
        "  fleet: {} workers live, {} busy; queue: {}; DLQ: {}\n",
        s.workers_live,
        s.workers_busy,
        q(s.queue),
        q(s.dlq)
    ));
    if let Some(c) = &s.cancelled {
        out.push_str(&format!("  cancelled by {} at {}: {}\n", c.by, c.at, c.why));
    }
    for t in &s.tables {
        out.push_str(&format!(
            "  {} -> {}: {}/{} jobs done, {} running, {} failed, {} queued{}; {}; {}; {}; ETA {}\n",
            t.source,
            t.target,
            t.jobs.done,
            t.jobs.total,
            t.jobs.running,
            t.jobs.failed,
            t.jobs.queued,
            orphaned(&t.jobs),
            rows(t),
            rate(t.rows_per_sec),
            capacity(t),
            table_eta(t),
        ));
        for note in table_notes(t) {
            out.push_str(&format!("    {note}\n"));
        }
        if t.rejects > 0 {
            out.push_str(&format!(
                "    {} rejected rows (rows that cannot become items): `backfill rejects list --run {}`\n",
                thousands(t.rejects),
                s.run_id
            ));
        }
    }
    for f in &s.failures {
        out.push_str(&format!(
            "  failed: {} job {} {} after {} attempts{}: {}\n",
            f.table,
            f.job_id,
            f.range,
            f.attempts,
            f.at.as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default(),
            if f.error.is_empty() {
                "(no error recorded)"
            } else {
                &f.error
            }
        ));
    }
    out
}

/// `, 2 orphaned (...)` when jobs are recorded running by workers that are gone.
/// A verification run's findings so far, in one line.
fn verification_line(run: &str, v: &backfill_control::VerifyFindings) -> String {
    format!(
        "  verified: {} rows checked, {} items scanned; {}\n",
        thousands(v.rows_checked),
        thousands(v.items_scanned),
        if v.is_clean() {
            "no difference so far".to_string()
        } else {
            format!(
                "DIFFERENCES: {} missing, {} extra, {} different, {} collisions, {} unmappable, {} count mismatches (`backfill verify report --run {run}`)",
                v.missing, v.extra, v.different, v.collisions, v.unmappable, v.count_mismatches
            )
        }
    )
}

fn orphaned(j: &backfill_status::JobCounts) -> String {
    if j.orphaned == 0 {
        return String::new();
    }
    format!(
        ", {} orphaned (their worker is gone; back on the queue within the visibility timeout)",
        j.orphaned
    )
}

/// A table's ETA; a finished table far below its planning estimate says
/// so, since that is worth a look (rows deleted since planning, a sample
/// that misjudged the table, or rows that were not read).
fn table_eta(t: &TableStatus) -> String {
    match (t.eta_secs, t.estimated_rows) {
        (Some(e), Some(est)) if e == 0.0 && est > 0 && t.rows_copied * 2 < est => format!(
            "done, at {:.0}% of the planning estimate of ~{} rows",
            t.rows_copied as f64 / est as f64 * 100.0,
            thousands(est)
        ),
        _ if t.jobs.is_stalled() => "none: only failed jobs are left".to_string(),
        (e, _) => eta(e),
    }
}

fn rows(t: &TableStatus) -> String {
    match t.estimated_rows {
        Some(e) if e > 0 => format!(
            "{}/~{} rows ({:.0}%)",
            thousands(t.rows_copied),
            thousands(e),
            (t.rows_copied as f64 / e as f64 * 100.0).min(100.0)
        ),
        _ => format!("{} rows", thousands(t.rows_copied)),
    }
}

fn rate(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{} rows/s", thousands(r.round() as u64)),
        None => "not started".to_string(),
    }
}

fn capacity(t: &TableStatus) -> String {
    match t.budget_wcu {
        Some(b) if b > 0.0 => format!(
            "{:.0}/{:.0} WCU/s ({:.0}% of budget)",
            t.wcu_per_sec,
            b,
            t.wcu_per_sec / b * 100.0
        ),
        _ => format!("{:.0} WCU/s (no budget)", t.wcu_per_sec),
    }
}

/// What holds a table's write rate back, one line each, only when there
/// is something to say: throttles by reason, the hottest partition-key
/// values, and a key layout that cannot reach the budget.
fn table_notes(t: &TableStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if !t.throttles.is_zero() {
        notes.push(format!(
            "throttled: {} table-wide, {} key-range",
            thousands(t.throttles.table_wide),
            thousands(t.throttles.key_range)
        ));
    }
    if !t.hot_keys.is_empty() {
        let keys: Vec<String> = t
            .hot_keys
            .iter()
            .map(|k| {
                format!(
                    "{} at {} WCU/s ({} throttle{})",
                    k.label,
                    thousands(k.wcu_per_sec.round() as u64),
                    thousands(k.throttles),
                    if k.throttles == 1 { "" } else { "s" }
                )
            })
            .collect();
        notes.push(format!("hot keys: {}", keys.join(", ")));
    }
    if let (Some(reach), Some(budget)) = (t.key_layout_limit(), t.budget_wcu) {
        notes.push(format!(
            "key layout reaches at most {} of {} WCU/s (too few partition-key values, or spread unevenly over its partitions; see `backfill plan`)",
            thousands(reach.round() as u64),
            thousands(budget.round() as u64)
        ));
    }
    notes
}

fn eta(e: Option<f64>) -> String {
    match e {
        Some(0.0) => "done".to_string(),
        Some(e) => human_duration(e),
        None => "unknown".to_string(),
    }
}

/// Seconds as an operator reads them: "45 s", "12 min", "3.5 h".
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{:.0} min", s as f64 / 60.0),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Progress bars: a header line and one bar per table (jobs done of all).
struct Bars {
    _multi: MultiProgress,
    header: ProgressBar,
    tables: Vec<ProgressBar>,
}

impl Bars {
    fn new(s: &RunStatus) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new(0));
        // Each line is rendered here (`bar_line`), so the bar and its
        // percentage are one figure; `wide_msg` cuts it to the terminal.
        let style = ProgressStyle::with_template("{wide_msg}").expect("static template");
        header.set_style(style.clone());
        let tables = s
            .tables
            .iter()
            .map(|_| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b
            })
            .collect();
        Bars {
            _multi: multi,
            header,
            tables,
        }
    }

    fn update(&mut self, s: &RunStatus) {
        let plain = render_plain(s);
        let head_lines = if s.verification.is_some() { 3 } else { 2 };
        let head: Vec<String> = plain
            .lines()
            .take(head_lines)
            .map(|l| fit(l, WATCH_WIDTH))
            .collect();
        self.header.set_message(head.join("\n"));
        let name_width = s.tables.iter().map(|t| t.source.len()).max().unwrap_or(10);
        for (b, t) in self.tables.iter().zip(&s.tables) {
            let mut lines = vec![bar_line(t, name_width, WATCH_WIDTH)];
            lines.extend(
                table_notes(t)
                    .iter()
                    .map(|n| fit(&format!("    {n}"), WATCH_WIDTH)),
            );
            b.set_message(lines.join("\n"));
        }
        if s.is_over() {
            self.header.finish();
            for b in &self.tables {
                b.finish();
            }
        }
    }
}

/// The widest `--watch` line: it fits a 120-column terminal (and a
/// narrower one cuts it, through `wide_msg`).
const WATCH_WIDTH: usize = 120;

/// `text` cut to `width` characters, the cut marked with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How far a table is, 0 to 1: rows against the planning estimate while
/// there is one and the table is not done, else jobs done of all.
fn progress(t: &TableStatus) -> f64 {
    let j = &t.jobs;
    let live = j.total.saturating_sub(j.cancelled);
    if live > 0 && j.done == live {
        return 1.0;
    }
    match t.estimated_rows {
        Some(e) if e > 0 => (t.rows_copied as f64 / e as f64).min(0.99),
        _ if live > 0 => j.done as f64 / live as f64,
        _ => 0.0,
    }
}

/// One table's `--watch` line: name, a bar and its percentage (the same
/// figure), jobs, rows, rate and ETA, at most `width` characters.
fn bar_line(t: &TableStatus, name_width: usize, width: usize) -> String {
    const BAR: usize = 20;
    let p = progress(t);
    let filled = ((p * BAR as f64).round() as usize).min(BAR);
    let line = format!(
        "  {:<name_width$} [{}{}] {:>3.0}%  {}/{} jobs, {} running, {} failed{} | {} rows | {} | ETA {}",
        t.source,
        "=".repeat(filled),
        " ".repeat(BAR - filled),
        p * 100.0,
        t.jobs.done,
        t.jobs.total,
        t.jobs.running,
        t.jobs.failed,
        if t.jobs.orphaned > 0 {
            format!(", {} orphaned", t.jobs.orphaned)
        } else {
            String::new()
        },
        thousands(t.rows_copied),
        rate(t.rows_per_sec),
        table_eta(t),
    );
    fit(&line, width)
}

#[cfg(test)]
mod tests;
