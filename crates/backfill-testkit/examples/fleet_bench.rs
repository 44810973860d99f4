//! Fleet benchmark (`BENCH=fleet scripts/bench.sh`): separate `backfill
//! work` processes copy ~1 KB rows through the answer-only, partition-true
//! capacity proxy under one fleet budget, and the figures are printed:
//! achieved WCU/s against the budget from the first write to the last
//! (tails included) and in steady state, the highest one-second rate,
//! throttled requests by reason, the hottest partition's WCU/s, CPU per
//! worker, and rows in Postgres against items the proxy accepted.
//!
//! Cases: `hashed` (key `id bigint`, partition key `id`), `clustered`
//! (key `tenant, sku`, partition key `tenant`, 1,000 rows per tenant in key
//! order, jobs read interleaved stripes) and `clustered-unstriped` (the
//! same with `worker.stripes = 1`, to show what interleaving buys);
//! `ondemand` (the hashed table on a new on-demand target that absorbs
//! 4,000 WCU/s at first and twice its recent peak after, below the budget:
//! the fleet must follow its ramp) and `ondemand-prewarmed` (the same after
//! `backfill plan --prewarm`, which sets the table's warm throughput to the
//! budget: it must start at the budget).
//!
//! Knobs: BENCH_FLEET_WORKERS (8), BENCH_FLEET_BUDGET (WCU/s, 20000),
//! BENCH_FLEET_SECS (seconds of writes at the budget, 120),
//! BENCH_FLEET_CASES (comma-separated, all three), BENCH_FLEET_CONCURRENCY
//! (jobs per worker, 4), BENCH_FLEET_JOB_SECS (seconds a job takes at an
//! even share, 10), BENCH_FLEET_STRIPES (of a clustered job, 8),
//! BENCH_ONDEMAND_INITIAL (WCU/s a new on-demand
//! table absorbs, 4000), BENCH_BIN (the `backfill` binary).

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::KeyAttribute;
use backfill_ddb_proxy::{start, Mode, OnDemand, ProxyConfig};
use backfill_source::PgSource;
use backfill_testkit::{config_toml, table, TestStack};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| "target/release/backfill".to_string())
}

/// What one worker process used, from wait4.
struct Usage {
    cpu: Duration,
    wall: Duration,
    max_rss_kb: i64,
}

fn run_worker(config: &std::path::Path) -> Result<Usage> {
    let started = Instant::now();
    let child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["--log-format", "text", "work", "--until-idle"])
        .env(
            "RUST_LOG",
            std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} (cargo build --release -p backfill-cli)", bin()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (std's Child never waited).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(r == pid, "wait4: {}", std::io::Error::last_os_error());
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "a worker failed (status {status})"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Usage {
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        wall: started.elapsed(),
        max_rss_kb: usage.ru_maxrss,
    })
}

/// How long one sample of the partitions' rates spans.
const SPREAD_EVERY: Duration = Duration::from_secs(5);

/// Partition rates per [`SPREAD_EVERY`] over the run.
struct Spread {
    at: Instant,
    last: Vec<f64>,
    /// Each interval's partition rates (WCU/s), sorted.
    rates: Vec<Vec<f64>>,
    /// Each interval's partition rates by partition.
    by_partition: Vec<Vec<f64>>,
}

impl Spread {
    fn new(partitions: usize) -> Self {
        Spread {
            at: Instant::now(),
            last: vec![0.0; partitions],
            rates: Vec::new(),
            by_partition: Vec::new(),
        }
    }

    fn sample(&mut self, c: &backfill_ddb_proxy::Counters, now: Instant) {
        let secs = now.duration_since(self.at).as_secs_f64();
        if secs < SPREAD_EVERY.as_secs_f64() || self.last.is_empty() {
            return;
        }
        let now_wcu: Vec<f64> = (0..self.last.len()).map(|i| c.partition_wcu(i)).collect();
        let mut r: Vec<f64> = now_wcu
            .iter()
            .zip(&self.last)
            .map(|(n, l)| (n - l) / secs)
            .collect();
        self.by_partition.push(r.clone());
        r.sort_by(f64::total_cmp);
        self.rates.push(r);
        self.last = now_wcu;
        self.at = now;
    }

    /// Partition `i`'s rate in each interval, in hundreds of WCU/s.
    fn series(&self, i: usize) -> String {
        let r: Vec<String> = self
            .by_partition
            .iter()
            .filter_map(|r| r.get(i))
            .map(|w| format!("{:.1}", w / 100.0))
            .collect();
        r.join(" ")
    }

    /// Over the intervals whose total is at least half the budget (the
    /// ramp and the tail left out): the mean slowest, median and fastest
    /// partition, and the share of partition-intervals under 500 WCU/s.
    fn report(&self, budget: f64) -> Option<String> {
        let full: Vec<&Vec<f64>> = self
            .rates
            .iter()
            .filter(|r| !r.is_empty() && r.iter().sum::<f64>() >= 0.5 * budget)
            .collect();
        if full.is_empty() {
            return None;
        }
        let n = full.len() as f64;
        let mean = |f: &dyn Fn(&Vec<f64>) -> f64| full.iter().map(|r| f(r)).sum::<f64>() / n;
        let low = full
            .iter()
            .flat_map(|r| r.iter())
            .filter(|w| **w < 500.0)
            .count();
        let all: usize = full.iter().map(|r| r.len()).sum();
        Some(format!(
            "partitions per {} s ({} intervals at half the budget or more): slowest {:.0}, median {:.0}, fastest {:.0} WCU/s on average; {:.1}% of partition-intervals under 500",
            SPREAD_EVERY.as_secs(),
            full.len(),
            mean(&|r| r[0]),
            mean(&|r| r[r.len() / 2]),
            mean(&|r| r[r.len() - 1]),
            low as f64 * 100.0 / all.max(1) as f64,
        ))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Hashed,
    Clustered {
        stripes: u32,
    },
    /// Hashed keys on an on-demand target, pre-warmed to the budget or not.
    OnDemand {
        prewarm: bool,
    },
}

async fn case(name: &str, layout: Layout) -> Result<()> {
    let workers: usize = env("BENCH_FLEET_WORKERS", 8);
    let budget: f64 = env("BENCH_FLEET_BUDGET", 20_000.0);
    let secs: u64 = env("BENCH_FLEET_SECS", 120);
    let concurrency: usize = env("BENCH_FLEET_CONCURRENCY", 4);
    let rows = (budget as u64) * secs;
    let stack = TestStack::new("fleet").await?;
    let src = stack.source("t");
    let target = stack.target("t");
    let seeded = Instant::now();
    // About 950 bytes an item: one WCU each. Inserted in key order, as a
    // table loaded over years of one tenant after another is not, but as
    // the worst case for partitions is.
    let (sql, pk) = match layout {
        Layout::Hashed | Layout::OnDemand { .. } => (
            format!(
                "CREATE UNLOGGED TABLE {src} (id bigint PRIMARY KEY, pad text); \
                 INSERT INTO {src} SELECT g, repeat('x', 920) FROM generate_series(1, {rows}) g; \
                 ANALYZE {src};"
            ),
            "id",
        ),
        Layout::Clustered { .. } => (
            format!(
                "CREATE UNLOGGED TABLE {src} (tenant text, sku int, pad text, PRIMARY KEY (tenant, sku)); \
                 INSERT INTO {src} SELECT 'tenant-' || lpad((g / 1000)::text, 7, '0'), g % 1000, repeat('x', 900) \
                 FROM generate_series(0, {rows} - 1) g; ANALYZE {src};"
            ),
            "tenant",
        ),
    };
    stack.sql(&sql).await?;
    let seeded = seeded.elapsed();
    let mut t = match layout {
        Layout::Hashed | Layout::OnDemand { .. } => {
            stack.create_target(&target, ("id", T::N), None).await?;
            table(src.clone(), target.clone(), &["id"], None)
        }
        Layout::Clustered { .. } => {
            stack
                .create_target(&target, ("tenant", T::S), Some(("sku", T::N)))
                .await?;
            let mut t = table(src.clone(), target.clone(), &["tenant"], None);
            t.sort_key = Some(KeyAttribute::columns(&["sku"], None));
            t
        }
    };
    t.write_budget_wcu = Some(budget);
    let on_demand = match layout {
        Layout::OnDemand { .. } => Some(OnDemand {
            initial_wcu: env("BENCH_ONDEMAND_INITIAL", 4000.0),
            ..OnDemand::default()
        }),
        _ => None,
    };
    // The proxy splits no partition as an on-demand table grows, which
    // DynamoDB does; an on-demand target gets the partitions of the budget
    // from the start (a new table's four would cap it at 4,000 WCU/s
    // whatever its on-demand limit: what a first run showed).
    let partitions = on_demand.map(|_| (budget / 1000.0).ceil() as u32);
    let proxy = start(ProxyConfig {
        mode: Mode::BlackholeBatches,
        partition_key: Some(pk.to_string()),
        partitions,
        on_demand,
        // The control table has capacity of its own: the window and the
        // counters are the target's writes alone.
        table: Some(target.clone()),
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), budget)
    })
    .await?;
    let mut cfg = stack.config(vec![t]);
    // Jobs of about ten seconds at an even share: short enough that the
    // last ones do not run alone for long.
    let share_per_job = budget / (workers * concurrency) as f64;
    let job_secs: f64 = env("BENCH_FLEET_JOB_SECS", 10.0);
    cfg.producer.rows_per_job = ((share_per_job * job_secs) as u64).max(1000);
    cfg.worker.concurrency = concurrency;
    cfg.worker.page_rows = 1000;
    cfg.worker.write_concurrency = 8;
    cfg.worker.verify_sample_rate = 0.0;
    if let Layout::Clustered { stripes } = layout {
        cfg.worker.stripes = stripes;
    }
    cfg.queue.wait_time_secs = 1;
    cfg.source.max_connections = 4;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let run = format!("fleet-{name}");
    backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), &run).await?;
    let mut worker_cfg = cfg.clone();
    worker_cfg.aws.dynamodb_endpoint_url = Some(proxy.url.clone());
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", stack.name));
    std::fs::write(&path, config_toml(&worker_cfg))?;
    if layout == (Layout::OnDemand { prewarm: true }) {
        // The operator's command, through the proxy: warm throughput at the budget.
        let out = Command::new(bin())
            .arg("--config")
            .arg(&path)
            .args(["plan", "--run", &run, "--prewarm"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains("pre-warmed"),
            "plan --prewarm: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let counters = proxy.counters.clone();
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || run_worker(&path))
        })
        .collect();
    // First and last moment the proxy accepted a write, to 50 ms.
    let (mut first, mut last, mut seen) = (None::<Instant>, started, 0.0f64);
    // Every partition's consumed WCU each SPREAD_EVERY: where the budget
    // that is not used goes unused (some partitions idle, or all of them
    // below their limit).
    let mut spread = Spread::new(counters.partitions());
    while handles.iter().any(|h| !h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        spread.sample(&counters, Instant::now());
        let now = counters.accepted_wcu();
        if now > seen {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            seen = now;
        }
    }
    let mut usages = Vec::new();
    for h in handles {
        usages.push(h.await??);
    }
    let first = first.context("nothing was written")?;
    let window = last.duration_since(first).as_secs_f64().max(1e-3);
    let accepted = counters.accepted_wcu();
    let items = counters.accepted_items();
    let per_second = counters.per_second_wcu();
    // Steady state: the seconds in which the first 10% to 90% of the
    // capacity was consumed (ramp and tail left out).
    let total: f64 = per_second.iter().sum();
    let (mut acc, mut from, mut to) = (0.0, None, 0);
    for (i, w) in per_second.iter().enumerate() {
        acc += w;
        if from.is_none() && acc >= 0.1 * total {
            from = Some(i + 1);
        }
        if acc <= 0.9 * total {
            to = i;
        }
    }
    let from = from.unwrap_or(0);
    let steady = if to > from {
        per_second[from..=to].iter().sum::<f64>() / (to - from + 1) as f64
    } else {
        f64::NAN
    };
    let peak = per_second.iter().copied().fold(0.0, f64::max);
    // The copy's own first and last second: at least 1% of the budget
    // (whole seconds of the proxy's series, where the window above is
    // timed to 50 ms).
    let busy: Vec<usize> = (0..per_second.len())
        .filter(|&i| per_second[i] >= 0.01 * budget)
        .collect();
    let copy_window = match (busy.first(), busy.last()) {
        (Some(&a), Some(&b)) => {
            let secs = (b - a + 1) as f64;
            Some((secs, per_second[a..=b].iter().sum::<f64>() / secs / budget))
        }
        _ => None,
    };
    let requests = counters.accepted_write_requests() + counters.throttled_requests();
    let throttled = counters.throttled_requests();
    let by = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let hottest = counters.hottest_partition().map(|(i, w)| (i, w / window));
    let jobs = stack.control().jobs(&run).await?;
    let copied: u64 = jobs.iter().map(|j| j.rows).sum();
    let cpu: Vec<f64> = usages.iter().map(|u| u.cpu.as_secs_f64()).collect();
    let cpu_total: f64 = cpu.iter().sum();
    println!(
        "{name:<20} {workers} workers, budget {budget:.0} WCU/s, {rows} rows ({} jobs of {} rows; seeded in {:.0} s)",
        jobs.len(),
        cfg.producer.rows_per_job,
        seeded.as_secs_f64()
    );
    println!(
        "  first to last write: {accepted:.0} WCU in {window:.1} s = {:.0} WCU/s = {:.3} of budget",
        accepted / window,
        accepted / window / budget
    );
    if let Some((secs, share)) = copy_window {
        println!("  the copy's first to last second (each at least 1% of the budget): {secs:.0} s at {share:.3} of budget");
    }
    println!(
        "  steady state (10%-90% of the writes, {} s): {steady:.0} WCU/s = {:.3}; highest second {peak:.0} WCU/s = {:.3}",
        to.saturating_sub(from) + 1,
        steady / budget,
        peak / budget
    );
    let active: Vec<String> = per_second
        .iter()
        .skip_while(|w| **w == 0.0)
        .map(|w| format!("{:.0}", w / 100.0))
        .collect();
    println!(
        "  WCU/s per second, in hundreds: {}",
        active.join(" ").trim_end_matches(" 0")
    );
    println!(
        "  throttled {throttled} of {requests} write requests ({:.2}%): table {}, key range {}; items returned unprocessed for a hot partition {}",
        throttled as f64 * 100.0 / requests.max(1) as f64,
        by(&counters.throttled_table),
        by(&counters.throttled_key_range),
        by(&counters.unprocessed_key_range),
    );
    if on_demand.is_some() {
        let start = per_second.iter().position(|w| *w > 0.0).unwrap_or(0);
        match per_second[start..].iter().position(|w| *w >= 0.9 * budget) {
            Some(s) => println!(
                "  on demand: first second at 0.9 of the budget {s} s after the first write; first second {:.0} WCU/s = {:.3} of budget",
                per_second[start],
                per_second[start] / budget
            ),
            None => println!("  on demand: no second reached 0.9 of the budget"),
        }
    }
    // No fleet ends before its busiest partition has taken all of its
    // items at 1,000 WCU/s: where keys hash unevenly over the partitions,
    // that, not the budget, bounds the first-to-last figure.
    let busiest = (0..counters.partitions())
        .map(|i| counters.partition_wcu(i))
        .fold(0.0, f64::max);
    if busiest > 0.0 {
        let shortest = busiest / backfill_ddb_proxy::PARTITION_MAX_WCU;
        let best = (accepted / shortest / budget).min(1.0);
        println!(
            "  partition bound: the busiest of {} partitions took {busiest:.0} WCU, at least {shortest:.1} s at 1,000 WCU/s; best first to last {best:.3} of budget, reached {:.3} of that",
            counters.partitions(),
            accepted / window / budget / best
        );
    }
    if let Some(line) = spread.report(budget) {
        println!("  {line}");
    }
    if let Some((i, _)) = hottest {
        println!(
            "  the busiest partition #{i} per {} s, in hundreds of WCU/s: {}",
            SPREAD_EVERY.as_secs(),
            spread.series(i)
        );
    }
    if let Some((i, w)) = hottest {
        println!(
            "  hottest of {} partitions: #{i} at {w:.0} WCU/s over the window (limit 1000)",
            counters.partitions()
        );
    }
    println!(
        "  CPU per worker {:.1}-{:.1} s ({:.2} cores each on average over {:.0} s); peak RSS {} MB max; rows per CPU-second {:.0}",
        cpu.iter().copied().fold(f64::INFINITY, f64::min),
        cpu.iter().copied().fold(0.0, f64::max),
        cpu_total / workers as f64 / usages.iter().map(|u| u.wall.as_secs_f64()).fold(0.0, f64::max),
        usages.iter().map(|u| u.wall.as_secs_f64()).fold(0.0, f64::max),
        usages.iter().map(|u| u.max_rss_kb).max().unwrap_or(0) / 1024,
        rows as f64 / cpu_total.max(1e-9),
    );
    println!(
        "  source rows {rows} / rows the jobs copied {copied} / items the proxy accepted {items}{}",
        if copied == rows && items >= rows {
            ""
        } else {
            "  MISMATCH"
        }
    );
    proxy.shutdown().await;
    stack.sql(&format!("DROP TABLE {src}")).await?;
    stack.cleanup().await
}

#[tokio::main]
async fn main() -> Result<()> {
    let cases = std::env::var("BENCH_FLEET_CASES")
        .unwrap_or_else(|_| "hashed,clustered,clustered-unstriped".to_string());
    for c in cases.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let layout = match c {
            "hashed" => Layout::Hashed,
            "clustered" => Layout::Clustered {
                stripes: env("BENCH_FLEET_STRIPES", 8),
            },
            "clustered-unstriped" => Layout::Clustered { stripes: 1 },
            "ondemand" => Layout::OnDemand { prewarm: false },
            "ondemand-prewarmed" => Layout::OnDemand { prewarm: true },
            other => anyhow::bail!(
                "unknown case {other:?} (hashed, clustered, clustered-unstriped, ondemand, ondemand-prewarmed)"
            ),
        };
        case(c, layout).await?;
    }
    Ok(())
}
