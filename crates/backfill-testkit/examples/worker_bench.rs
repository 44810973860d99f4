//! Worker, planning and verify benchmark (run by `scripts/bench.sh`):
//! prints each figure with the machine it ran on.
//!
//! - Worker throughput: one `backfill work --until-idle` process (the
//!   release binary) copies a seeded table of ten mixed-type columns, rows of
//!   about 200 bytes and about 1 KB, into the capacity proxy in its
//!   answer-only mode (batch writes answered, not forwarded; no budget), end
//!   to end from Postgres to the write requests; then into dynalite itself
//!   for reference. Rows per CPU-second of the worker (its user + system
//!   time, from wait4), wall rows/s, and its peak RSS.
//! - Memory under big rows: the same with rows of about 64 KB.
//! - Planning: `plan` on tables of 1 and 10 million rows, single and
//!   composite keys.
//! - Verify: rows per second of `verify` over the reference copy.
//!
//! BENCH_ROWS sets the rows of the throughput tables (default 300,000),
//! BENCH_PLAN_ROWS the planning sizes (default "1000000,10000000");
//! BENCH_CPU=<n> pins each worker to CPU n; BENCH_INSTRUCTIONS=1 counts each worker's instructions under callgrind
//! (BENCH_CALLGRIND_ARGS adds options, e.g. `--cache-sim=yes`);
//! BENCH_REPEAT the runs of each answer-only case, whose median is printed
//! (default 3); BENCH_CASES picks parts, a comma list of `200b`, `1kb`, `64kb`,
//! `dynalite`, `verify` and `plan` (default all; `verify` needs `dynalite`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::BackfillConfig;
use backfill_ddb_proxy::{start, Mode, ProxyConfig};
use backfill_source::PgSource;
use backfill_testkit::{config_toml, table, TestStack};

/// The worker binary: the release build, or `BENCH_BIN` (to compare two
/// builds in the same period of the host).
fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| "target/release/backfill".into())
}

/// What one worker process used.
struct Usage {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
    /// Minor page faults: memory handed back to the OS and touched again.
    minor_faults: i64,
    /// User-space instructions, with BENCH_INSTRUCTIONS.
    instructions: Option<u64>,
    /// CPU time of [`reference_work`] just before the run.
    reference: Duration,
}

/// The CPU time of a fixed piece of work like the worker's (maps of strings
/// built, hashed and dropped), measured in this process just before a worker
/// runs: this machine's speed changes by a third from one minute to the
/// next (its host is shared), and a figure is only read right beside it.
fn reference_work() -> Duration {
    use std::hash::{Hash, Hasher};
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec for clock_gettime to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let started = cpu();
    let mut total = 0u64;
    for i in 0..100_000u64 {
        let m: std::collections::HashMap<String, String> = (0..10)
            .map(|c| (format!("col{c}"), format!("{i}-{c}-{}", "x".repeat(c * 20))))
            .collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (k, v) in &m {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        total ^= h.finish();
    }
    std::hint::black_box(total);
    cpu() - started
}

/// Where callgrind writes a worker's profile (kept for `callgrind_annotate`).
fn instructions_file(config: &Path) -> std::path::PathBuf {
    config.with_extension("callgrind")
}

/// Runs `backfill work --until-idle` with `config` and reports its usage
/// from wait4, which accounts the process alone.
fn run_worker(config: &Path) -> Result<Usage> {
    let reference = reference_work();
    let started = Instant::now();
    // BENCH_PERF=<dir>: each worker runs under `perf record`, its profile
    // written to <dir>/<config name>.perf (the figures then include perf's own cost).
    let mut cmd = match std::env::var("BENCH_PERF") {
        Ok(dir) => {
            let out = Path::new(&dir).join(
                config
                    .file_stem()
                    .map(|s| format!("{}.perf", s.to_string_lossy()))
                    .unwrap_or_else(|| "worker.perf".into()),
            );
            let mut c = Command::new("perf");
            c.args(["record", "-q", "-F", "999"]);
            // BENCH_PERF_ARGS: more `perf record` options, e.g. "--call-graph dwarf".
            if let Ok(more) = std::env::var("BENCH_PERF_ARGS") {
                c.args(more.split_whitespace());
            }
            c.arg("-o").arg(out).arg(bin());
            c
        }
        // BENCH_INSTRUCTIONS=1: under callgrind, counting the worker's
        // instructions, which (unlike CPU time on this shared machine)
        // repeat from run to run: the measure for comparing changes. It runs
        // some fifty times slower, so use it with a small BENCH_ROWS.
        Err(_) if std::env::var_os("BENCH_INSTRUCTIONS").is_some() => {
            let mut c = Command::new("valgrind");
            c.args(["--tool=callgrind", "-q"]).arg(format!(
                "--callgrind-out-file={}",
                instructions_file(config).display()
            ));
            // BENCH_CALLGRIND_ARGS: more callgrind options, e.g.
            // "--cache-sim=yes" to count (simulated) cache misses too.
            if let Ok(more) = std::env::var("BENCH_CALLGRIND_ARGS") {
                c.args(more.split_whitespace());
            }
            c.arg(bin());
            c
        }
        Err(_) => Command::new(bin()),
    };
    // BENCH_CPU=<n>: the worker runs on CPU n alone (as in a one-CPU pod),
    // so it is not moved between cores that Postgres and the proxy share.
    if let Some(cpu) = std::env::var("BENCH_CPU")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (sched_setaffinity on a set built on the stack).
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .args(["--config"])
        .arg(config)
        .args(["--log-format", "text", "work", "--until-idle"])
        .env("RUST_LOG", "warn")
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
    ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the worker failed (status {status})"
    );
    let instructions = std::fs::read_to_string(instructions_file(config))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("summary:"))
                // Instructions come first; the cache simulation adds more counts after them.
                .and_then(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        });
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Usage {
        wall: started.elapsed(),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
        minor_faults: usage.ru_minflt,
        instructions,
        reference,
    })
}

/// Ten columns of mixed types; `pad` bytes of text make up the row size.
fn seed_sql(src: &str, rows: u64, pad: usize) -> String {
    format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2), \
         status text NOT NULL, note text, created_at timestamptz NOT NULL, paid bool, \
         ref uuid, attrs jsonb, score float8); \
         INSERT INTO {src} SELECT g, g % 100000, g * 1.25, (ARRAY['new','paid','shipped'])[1 + g % 3], \
         left(repeat(md5(g::text), {reps}), {pad}), \
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0, \
         md5(g::text)::uuid, jsonb_build_object('g', g, 'ch', 'web'), g / 7.0 \
         FROM generate_series(1, {rows}) g; ANALYZE {src};",
        reps = pad / 32 + 1
    )
}

struct Copy {
    label: String,
    rows: u64,
    /// One per run over the same table, each a run of its own.
    runs: Vec<Usage>,
}

impl Copy {
    /// The median run's figures (by rows per CPU-second), the spread of all
    /// runs, and the highest peak RSS of any.
    fn print(&self) {
        let per_core = |u: &Usage| self.rows as f64 / u.cpu.as_secs_f64();
        let mut runs: Vec<&Usage> = self.runs.iter().collect();
        runs.sort_by(|a, b| per_core(a).total_cmp(&per_core(b)));
        let Some(median) = runs.get(runs.len() / 2) else {
            return;
        };
        let cpu = median.cpu.as_secs_f64();
        let wall = median.wall.as_secs_f64();
        // Every run, slowest first, with the reference work's time beside it.
        let spread = if runs.len() > 1 {
            let each: Vec<String> = runs
                .iter()
                .map(|u| {
                    format!(
                        "{:.0} ({:.0} ms)",
                        per_core(u),
                        u.reference.as_secs_f64() * 1e3
                    )
                })
                .collect();
            format!("\n    {} runs: {}", runs.len(), each.join(", "))
        } else {
            String::new()
        };
        let rss = self.runs.iter().map(|u| u.max_rss_kb).max().unwrap_or(0);
        let reference = format!(
            "  reference work {:.0} ms",
            median.reference.as_secs_f64() * 1e3
        );
        let instructions = median
            .instructions
            .map(|i| format!("  {:.0} instructions/row", i as f64 / self.rows as f64))
            .unwrap_or_default();
        println!(
            "{:<34} {:>9} rows  {:>9.0} rows/s per core  {:>9.0} rows/s wall  cpu {:>6.2} s  wall {:>6.2} s  peak RSS {:>5} MB  {:>7} page faults{instructions}{reference}{spread}",
            self.label,
            self.rows,
            per_core(median),
            self.rows as f64 / wall,
            cpu,
            wall,
            rss / 1024,
            median.minor_faults
        );
    }
}

/// Seeds a table, then `repeats` times produces it as a new run and copies
/// it with one worker process whose DynamoDB endpoint is `endpoint` (the
/// answer-only proxy, or dynalite).
async fn copy(
    stack: &TestStack,
    label: &str,
    rows: u64,
    pad: usize,
    endpoint: &str,
    repeats: usize,
) -> Result<(Copy, BackfillConfig)> {
    let name = format!("t{pad}_{}", label.len());
    let src = stack.source(&name);
    stack.sql(&seed_sql(&src, rows, pad)).await?;
    let target = stack.target(&name);
    stack.create_target(&target, ("id", T::N), None).await?;
    let mut cfg = stack.config(vec![table(src, target, &["id"], None)]);
    cfg.producer.rows_per_job = 50_000;
    cfg.worker.concurrency = 4;
    cfg.worker.page_rows = 1000;
    cfg.worker.write_concurrency = 8;
    // The answer-only proxy keeps nothing to read back.
    cfg.worker.verify_sample_rate = 0.0;
    cfg.queue.wait_time_secs = 1;
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let mut worker_cfg = cfg.clone();
    worker_cfg.aws.dynamodb_endpoint_url = Some(endpoint.to_string());
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", stack.name));
    std::fs::write(&path, config_toml(&worker_cfg))?;
    let mut runs = Vec::new();
    for r in 0..repeats.max(1) {
        // A run of its own: producing an existing run reuses its plan.
        let run = format!("bench-{name}-{r}");
        backfill_producer::produce(&cfg, &source, &stack.queue(), &stack.control(), &run).await?;
        let path = path.clone();
        runs.push(tokio::task::spawn_blocking(move || run_worker(&path)).await??);
        let done = stack.control().jobs(&run).await?;
        let copied: u64 = done.iter().map(|j| j.rows).sum();
        if copied != rows {
            bail!("{label}: copied {copied} rows of {rows}");
        }
    }
    Ok((
        Copy {
            label: label.to_string(),
            rows,
            runs,
        },
        cfg,
    ))
}

async fn planning(stack: &TestStack, rows: u64) -> Result<()> {
    let single = stack.source(&format!("plan_s{rows}"));
    let composite = stack.source(&format!("plan_c{rows}"));
    let seed_started = Instant::now();
    stack
        .sql(&format!(
            "CREATE TABLE {single} (id bigint PRIMARY KEY, v int); \
             INSERT INTO {single} SELECT g * 7, g FROM generate_series(1, {rows}) g; ANALYZE {single}; \
             CREATE TABLE {composite} (tenant text, n int, v int, PRIMARY KEY (tenant, n)); \
             INSERT INTO {composite} SELECT 'tenant-' || lpad((g % 1000)::text, 4, '0'), g, g \
             FROM generate_series(1, {rows}) g; ANALYZE {composite};"
        ))
        .await?;
    let seeded = seed_started.elapsed();
    for (src, key, kind) in [
        (&single, vec!["id"], "single key"),
        (&composite, vec!["tenant", "n"], "composite key"),
    ] {
        // A key attribute of its own, so a composite key's columns stay attributes too.
        let mut cfg = stack.config(vec![table(
            src.clone(),
            stack.target("p"),
            &key,
            Some("pk"),
        )]);
        cfg.producer.rows_per_job = 100_000;
        let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
        let started = Instant::now();
        let plan = backfill_producer::plan(&cfg, &source, "bench-plan").await?;
        let took = started.elapsed();
        ensure!(plan.problems().is_empty(), "{kind}: {:?}", plan.problems());
        let jobs: usize = plan.tables.iter().map(|t| t.jobs.len()).sum();
        println!(
            "plan {:>10} rows, {:<13} {:>5} jobs in {:>6.3} s  (seeding took {:.0} s)",
            rows,
            kind,
            jobs,
            took.as_secs_f64(),
            seeded.as_secs_f64()
        );
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!("{cpu}, {cores} cores, {} GiB", mem / 1024 / 1024)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let plan_rows: Vec<u64> = std::env::var("BENCH_PLAN_ROWS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // The machine's two cores are shared with Postgres and the proxy, and
    // runs of the same binary spread by a quarter: the figure is a median.
    let repeats: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cases = std::env::var("BENCH_CASES").unwrap_or_default();
    let want = |case: &str| cases.is_empty() || cases.split(',').any(|c| c.trim() == case);
    println!("machine: {}", machine());
    let stack = TestStack::new("wbench").await?;
    let proxy = start(ProxyConfig {
        mode: Mode::BlackholeBatches,
        ..ProxyConfig::new(stack.env.dynamodb_url.clone(), 1e9)
    })
    .await?;

    println!("\n== worker throughput, one worker process (concurrency 4, pages of 1000 rows)");
    for (case, label, pad) in [
        ("200b", "~200 B rows, answer-only proxy", 40),
        ("1kb", "~1 KB rows, answer-only proxy", 850),
    ] {
        if want(case) {
            let (c, _) = copy(&stack, label, rows, pad, &proxy.url, repeats).await?;
            c.print();
        }
    }
    if want("64kb") {
        let big = (rows / 50).max(2000);
        let (c, _) = copy(
            &stack,
            "~64 KB rows, answer-only proxy",
            big,
            64_000,
            &proxy.url,
            1,
        )
        .await?;
        c.print();
    }
    if want("dynalite") || want("verify") {
        reference_and_verify(&stack, rows, want("verify")).await?;
    }
    if want("plan") {
        println!("\n== planning (sampling, so it must not grow with the table)");
        for n in plan_rows {
            planning(&stack, n).await?;
        }
    }
    proxy.shutdown().await;
    stack.cleanup().await
}

/// The 1 KB copy into dynalite itself, for reference, then (with `verify`)
/// a full verify of that copy.
async fn reference_and_verify(stack: &TestStack, rows: u64, verify: bool) -> Result<()> {
    let reference = (rows / 10).max(10_000);
    let (c, cfg) = copy(
        stack,
        "~1 KB rows, dynalite (reference)",
        reference,
        851,
        &stack.env.dynamodb_url,
        1,
    )
    .await?;
    c.print();
    if !verify {
        return Ok(());
    }
    println!("\n== verify");
    let source = PgSource::connect(cfg.source.url.expose(), 2).await?;
    let verifier = backfill_verify::Verifier::new(
        source,
        stack.sink(),
        backfill_verify::VerifyOptions {
            max_reads_per_sec: std::num::NonZeroU32::new(10_000).context("nonzero")?,
            ..Default::default()
        },
    );
    let started = Instant::now();
    let report = verifier.verify_table(&cfg.tables[0]).await?;
    let took = started.elapsed().as_secs_f64();
    ensure!(report.is_clean(), "{report:?}");
    println!(
        "verify {:>9} rows against dynalite: {:>8.0} rows/s ({:.2} s)",
        report.rows_checked,
        report.rows_checked as f64 / took,
        took
    );
    Ok(())
}
