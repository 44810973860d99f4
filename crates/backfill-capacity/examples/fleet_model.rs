//! The 750 GB run projected (`cargo run --release -p backfill-capacity
//! --example fleet_model`): 750 million items of 1 KB at a 40,000 WCU/s
//! budget, with worker pods added as KEDA adds them and one killed each
//! hour, under a simulated clock. The fleet's own code decides each
//! worker's rate: the division of the budget ([`FleetCount::divisor`],
//! [`share`]), the join ramp ([`JOIN_START`]) and the backoff ([`Aimd`]),
//! fed simulated instants. What this machine cannot run for five hours is
//! modelled; the assumptions are the constants below, printed with the
//! result, and written down in docs/PERFORMANCE.md.
//!
//! Knobs (env): MODEL_ITEMS, MODEL_BUDGET, MODEL_POD_WCU, MODEL_PODS,
//! MODEL_ROWS_PER_JOB, MODEL_KILL_EVERY_SECS (0 = never).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use backfill_capacity::{share, Aimd, FleetCount, JOIN_START};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Simulated time step.
const DT: f64 = 0.1;
/// `capacity.heartbeat_secs` and `worker_expiry_secs` (the defaults).
const HEARTBEAT: f64 = 2.0;
const EXPIRY: f64 = 10.0;
/// `worker.concurrency` (the default): jobs in hand per pod.
const CONCURRENCY: usize = 4;
/// KEDA's `pollingInterval` and `queueLength` (k8s/components).
const KEDA_POLL: f64 = 15.0;
const KEDA_QUEUE_LENGTH: usize = 4;
/// From KEDA's decision to a pod's first write: schedule, pull, start,
/// resolve budgets (assumed).
const POD_START: f64 = 45.0;
/// `queue.visibility_timeout_secs` (the default): a killed pod's jobs
/// come back after it.
const VISIBILITY: f64 = 120.0;
/// DynamoDB keeps up to 300 s of unused capacity as burst; the table is
/// assumed freshly raised to the budget, so it starts with none.
const BURST_SECS: f64 = 300.0;
/// Provisioned write capacity, us-east-1, per WCU-hour; on-demand, per
/// million write request units.
const PRICE_WCU_HOUR: f64 = 0.00065;
const PRICE_ON_DEMAND_PER_M: f64 = 0.625;

struct Job {
    rows: f64,
    /// Rows since the last checkpoint (a page): lost if the pod dies.
    since_checkpoint: f64,
}

struct Pod {
    /// When it writes its first row (it starts `POD_START` after KEDA asks).
    up_at: f64,
    /// When it stopped heartbeating (killed), if it did.
    died_at: Option<f64>,
    aimd: Aimd,
    share: f64,
    next_beat: f64,
    jobs: Vec<Job>,
    /// When it last had jobs in hand: while jobs wait, a worker counts as
    /// busy until `EXPIRY` after that, as the worker's heartbeat reports it.
    last_busy: f64,
}

impl Pod {
    fn busy(&self, t: f64, waiting: bool) -> bool {
        !self.jobs.is_empty() || (waiting && t - self.last_busy < EXPIRY)
    }
}

fn main() {
    let items: f64 = env("MODEL_ITEMS", 750_000_000.0);
    let budget: f64 = env("MODEL_BUDGET", 40_000.0);
    // What one pod sustains (1 vCPU): the fleet benchmark's rows per
    // CPU-second on this machine, with half left for the pod's other work.
    let pod_wcu: f64 = env("MODEL_POD_WCU", 6_000.0);
    let max_pods: usize = env("MODEL_PODS", (budget / pod_wcu).ceil() as usize + 2);
    let rows_per_job: f64 = env("MODEL_ROWS_PER_JOB", 200_000.0);
    let kill_every: f64 = env("MODEL_KILL_EVERY_SECS", 3600.0);
    let page_rows = 1000.0;

    let base = Instant::now();
    let at = |t: f64| base + Duration::from_secs_f64(t);
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut left = items;
    while left > 0.0 {
        let rows = left.min(rows_per_job);
        queue.push_back(Job {
            rows,
            since_checkpoint: 0.0,
        });
        left -= rows;
    }
    let jobs_total = queue.len();
    // Jobs hidden by a dead pod, visible again at the given time.
    let mut hidden: Vec<(f64, Job)> = Vec::new();
    let mut pods: Vec<Pod> = Vec::new();
    // Time is counted in whole steps, so a second always has the same
    // number of them.
    let steps_per_sec = (1.0 / DT).round() as u64;
    let (mut step, mut t) = (0u64, 0.0f64);
    let (mut next_poll, mut next_kill, mut next_print) = (0.0f64, kill_every, 0.0f64);
    let mut tokens = 0.0f64;
    let (mut written, mut redone, mut throttled_ticks, mut kills) = (0.0f64, 0.0f64, 0u64, 0u32);
    let (mut first_write, mut last_write) = (None::<f64>, 0.0f64);
    let mut peak_second = 0.0f64;
    let mut this_second = (0u64, 0.0f64);
    let mut timeline = Vec::new();
    let remaining = |queue: &VecDeque<Job>, hidden: &[(f64, Job)], pods: &[Pod]| {
        queue.len()
            + hidden.len()
            + pods
                .iter()
                .filter(|p| p.died_at.is_none())
                .map(|p| p.jobs.len())
                .sum::<usize>()
    };
    while remaining(&queue, &hidden, &pods) > 0 && t < 7.0 * 86_400.0 {
        // KEDA: one pod per `queueLength` visible messages, up to the cap.
        if t >= next_poll {
            next_poll += KEDA_POLL;
            let alive = pods.iter().filter(|p| p.died_at.is_none()).count();
            let want = queue.len().div_ceil(KEDA_QUEUE_LENGTH).min(max_pods);
            for _ in alive..want {
                pods.push(Pod {
                    up_at: t + POD_START,
                    died_at: None,
                    aimd: Aimd::new(JOIN_START, at(t + POD_START)),
                    share: budget,
                    next_beat: t + POD_START,
                    jobs: Vec::new(),
                    last_busy: f64::NEG_INFINITY,
                });
            }
        }
        // One pod killed each hour: its jobs come back after the
        // visibility timeout, resuming at their last checkpoint.
        if kill_every > 0.0 && t >= next_kill {
            next_kill += kill_every;
            if let Some(p) = pods
                .iter_mut()
                .find(|p| p.died_at.is_none() && p.up_at <= t && !p.jobs.is_empty())
            {
                p.died_at = Some(t);
                kills += 1;
                for mut j in p.jobs.drain(..) {
                    redone += j.since_checkpoint;
                    j.rows += j.since_checkpoint;
                    j.since_checkpoint = 0.0;
                    hidden.push((t + VISIBILITY, j));
                }
            }
        }
        hidden.retain_mut(|(when, j)| {
            if *when <= t {
                queue.push_front(std::mem::replace(
                    j,
                    Job {
                        rows: 0.0,
                        since_checkpoint: 0.0,
                    },
                ));
                false
            } else {
                true
            }
        });
        // Heartbeats: each pod divides the budget by the fleet it sees
        // (a dead pod counts until its heartbeat expires).
        let waiting = !queue.is_empty();
        let seen = |pods: &[Pod]| FleetCount {
            live: pods
                .iter()
                .filter(|p| p.up_at <= t && p.died_at.is_none_or(|d| t - d < EXPIRY))
                .count(),
            busy: pods
                .iter()
                .filter(|p| {
                    p.up_at <= t
                        && p.died_at.is_none_or(|d| t - d < EXPIRY)
                        && (p.busy(t, waiting) || p.died_at.is_some())
                })
                .count(),
        };
        let fleet = seen(&pods);
        for p in pods
            .iter_mut()
            .filter(|p| p.died_at.is_none() && p.up_at <= t)
        {
            if t >= p.next_beat {
                p.next_beat = t + HEARTBEAT;
                p.share = share(budget, fleet.divisor(p.busy(t, waiting), waiting));
            }
            while p.jobs.len() < CONCURRENCY {
                match queue.pop_front() {
                    Some(j) => p.jobs.push(j),
                    None => break,
                }
            }
        }
        // Demand: each live pod's limiter rate, bounded by what it sustains.
        let mut demand = Vec::with_capacity(pods.len());
        for p in pods.iter() {
            let d = if p.died_at.is_none() && p.up_at <= t && !p.jobs.is_empty() {
                let rows_left: f64 = p.jobs.iter().map(|j| j.rows).sum();
                (p.share * p.aimd.factor()).min(pod_wcu).min(rows_left / DT) * DT
            } else {
                0.0
            };
            demand.push(d);
        }
        let asked: f64 = demand.iter().sum();
        tokens = (tokens + budget * DT).min(budget * BURST_SECS);
        let admitted_share = if asked > tokens { tokens / asked } else { 1.0 };
        let throttled = asked > tokens;
        if throttled {
            throttled_ticks += 1;
        }
        let now = at(t);
        let mut wrote_now = 0.0f64;
        for (p, d) in pods.iter_mut().zip(demand) {
            if d <= 0.0 {
                continue;
            }
            let mut got = d * admitted_share;
            // Split among the pod's jobs, smallest first, so what a job
            // that finishes does not need goes to the others.
            p.jobs.sort_by(|a, b| a.rows.total_cmp(&b.rows));
            let mut n = p.jobs.len() as f64;
            for j in p.jobs.iter_mut() {
                let take = (got / n).min(j.rows);
                j.rows -= take;
                j.since_checkpoint = (j.since_checkpoint + take) % page_rows;
                got -= take;
                n -= 1.0;
                tokens -= take;
                written += take;
                wrote_now += take;
            }
            p.jobs.retain(|j| j.rows > 1e-6);
            p.last_busy = t;
            if throttled {
                p.aimd.on_throttle(now);
            } else {
                p.aimd.on_success(now);
            }
        }
        if wrote_now > 0.0 {
            first_write.get_or_insert(t);
            last_write = t + DT;
        }
        let sec = step / steps_per_sec;
        if sec != this_second.0 {
            if this_second.1 > peak_second && std::env::var_os("MODEL_DEBUG").is_some() {
                eprintln!(
                    "second {} wrote {:.0}: shares {:?} factors {:?} jobs {:?}",
                    this_second.0,
                    this_second.1,
                    pods.iter().map(|p| p.share as u64).collect::<Vec<_>>(),
                    pods.iter()
                        .map(|p| (p.aimd.factor() * 100.0) as u64)
                        .collect::<Vec<_>>(),
                    pods.iter().map(|p| p.jobs.len()).collect::<Vec<_>>()
                );
            }
            peak_second = peak_second.max(this_second.1);
            this_second = (sec, 0.0);
        }
        this_second.1 += wrote_now;
        if t >= next_print {
            next_print += 1800.0;
            let alive = pods
                .iter()
                .filter(|p| p.died_at.is_none() && p.up_at <= t)
                .count();
            timeline.push(format!(
                "  t={:>5.2} h  pods writing {alive:>2}  rate {:>6.0} WCU/s  jobs left {:>5.1}%",
                t / 3600.0,
                wrote_now / DT,
                100.0 * remaining(&queue, &hidden, &pods) as f64 / jobs_total as f64
            ));
        }
        step += 1;
        t = step as f64 * DT;
    }
    let first = first_write.unwrap_or(0.0);
    let secs = last_write - first;
    let hours = secs / 3600.0;
    println!("750 GB run, projected by the fleet model (simulated clock, {DT} s steps)");
    println!(
        "assumptions: {items:.0} items of 1 KB (1 WCU each); budget {budget:.0} WCU/s, table provisioned at it with no burst banked; \
         pods of {pod_wcu:.0} WCU/s each, at most {max_pods}, {CONCURRENCY} jobs each, jobs of {rows_per_job:.0} rows ({jobs_total} jobs); \
         KEDA polls every {KEDA_POLL} s, one pod per {KEDA_QUEUE_LENGTH} queued jobs, a pod writes {POD_START} s after it is asked for; \
         heartbeat {HEARTBEAT} s, expiry {EXPIRY} s; one pod killed every {kill_every} s, its jobs back after {VISIBILITY} s, resuming at their last page"
    );
    for l in &timeline {
        println!("{l}");
    }
    println!(
        "first to last write: {hours:.2} h ({secs:.0} s); {written:.0} WCU written, of which {redone:.0} rewritten after kills ({kills} pods killed)"
    );
    println!(
        "utilisation {:.3} of the budget from first to last write; highest second {:.3}; {throttled_ticks} of {:.0} steps over the table's capacity",
        written / (budget * secs),
        peak_second / budget,
        secs / DT
    );
    let provisioned = budget * hours.ceil() * PRICE_WCU_HOUR;
    let on_demand = written / 1e6 * PRICE_ON_DEMAND_PER_M;
    println!(
        "cost of the copy's capacity: provisioned {budget:.0} WCU for {:.0} h = ${provisioned:.0}; on demand ${on_demand:.0}; \
         the hand-run migration: 48 h and about $250",
        hours.ceil()
    );
}
