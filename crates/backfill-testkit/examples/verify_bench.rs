//! Fleet verification benchmark (run by `BENCH=verify scripts/bench.sh`):
//! prints each figure with the machine it ran on.
//!
//! - Throughput: BENCH_VERIFY_ROWS (default 1,000,000) rows of ~1 KB are
//!   copied into dynalite (`backfill produce` and two `backfill work
//!   --until-idle` processes, read-back off), then verified as a fleet run
//!   with 1, 2 and 4 `backfill work --until-idle` processes in turn (a new
//!   `verify --run` each time, BENCH_VERIFY_SEGMENTS scan segments, default
//!   8). Per case: rows checked + items scanned over the wall time from
//!   `verify --run` to the last worker's exit, the same over the workers'
//!   CPU time (user + system, from wait4), DynamoDB read requests per
//!   second against the target (BatchGetItem, Scan, Query, GetItem naming
//!   it, counted by a pass-through TCP proxy in this process), and each
//!   worker's peak RSS. `worker.verify_reads_per_sec` is 10,000 per worker,
//!   far above what the emulator answers, so it is not the limit. The
//!   report must be clean (exit 0).
//! - Memory: one worker verifies BENCH_VERIFY_BIG_ROWS (default
//!   10,000,000) rows of ~100 bytes that were never copied (every row
//!   missing). A probe of BENCH_VERIFY_PROBE_ROWS (100,000) measures the
//!   emulator's rate first; when the full size would take more than
//!   BENCH_VERIFY_BIG_SECS (300) the size is cut to what fits (printed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_testkit::{config_toml, table, TestStack};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The `backfill` binary: the release build, or `BENCH_BIN`.
fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| "target/release/backfill".into())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// `worker.verify_reads_per_sec` of every process: far above what the
/// emulator answers, so the limiter is never the bound.
const READS_PER_SEC: u32 = 10_000;

/// What one worker process used, from wait4.
#[derive(Debug, Clone, Copy)]
struct Usage {
    /// From the start of the case (before `verify --run`) to its exit.
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
}

fn command(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--config")
        .arg(config)
        .args(["--log-format", "text"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// `backfill <args>` run to the end: exit code and stdout (stderr passes through).
fn backfill(config: &Path, args: &[&str]) -> Result<(i32, String)> {
    let out = command(config, args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} (cargo build --release -p backfill-cli)", bin()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Starts `n` `backfill work --until-idle` processes at once and waits for
/// each with wait4 (which accounts the process alone); each must exit 0.
fn run_workers(config: &Path, n: usize, since: Instant) -> Result<Vec<Usage>> {
    let mut pids = Vec::new();
    for _ in 0..n {
        let child = command(config, &["work", "--until-idle"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("starting {} (cargo build --release -p backfill-cli)", bin())
            })?;
        pids.push(child.id() as libc::pid_t);
    }
    let waits: Vec<_> = pids
        .into_iter()
        .map(|pid| {
            std::thread::spawn(move || -> Result<Usage> {
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
                    wall: since.elapsed(),
                    cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                    max_rss_kb: usage.ru_maxrss,
                })
            })
        })
        .collect();
    waits
        .into_iter()
        .map(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("wait thread panicked"))?
        })
        .collect()
}

/// A pass-through proxy in front of dynalite that counts the read requests
/// naming `table` (the SDK sends HTTP/1.1 requests with a Content-Length,
/// one at a time per connection, so only the request side is parsed).
struct ReadCounter {
    url: String,
    reads: Arc<AtomicU64>,
}

async fn read_counter(upstream: &str, table: &str) -> Result<ReadCounter> {
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let reads = Arc::new(AtomicU64::new(0));
    let (counted, table) = (reads.clone(), table.to_string());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, counted, table) = (upstream.clone(), counted.clone(), table.clone());
            tokio::spawn(async move {
                if let Err(e) = relay(client, &upstream, &counted, &table).await {
                    eprintln!("read counter: {e:#}");
                }
            });
        }
    });
    Ok(ReadCounter { url, reads })
}

async fn relay(client: TcpStream, upstream: &str, reads: &AtomicU64, table: &str) -> Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let (cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
    let mut cr = BufReader::new(cr);
    let mut head = Vec::with_capacity(1024);
    let mut body = Vec::new();
    loop {
        head.clear();
        let (mut length, mut target) = (None, String::new());
        loop {
            let start = head.len();
            if cr.read_until(b'\n', &mut head).await? == 0 {
                back.abort();
                return Ok(());
            }
            let line = String::from_utf8_lossy(&head[start..]).trim().to_string();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "x-amz-target" => target = value.to_string(),
                    "transfer-encoding" => bail!("a chunked request: cannot count it"),
                    _ => {}
                }
            }
        }
        body.resize(length.unwrap_or(0), 0);
        cr.read_exact(&mut body).await?;
        let op = target.rsplit('.').next().unwrap_or("");
        if matches!(op, "BatchGetItem" | "Scan" | "Query" | "GetItem")
            && memchr_str(&body, table.as_bytes())
        {
            reads.fetch_add(1, Ordering::Relaxed);
        }
        sw.write_all(&head).await?;
        sw.write_all(&body).await?;
    }
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Ten columns of mixed types, as the worker benchmark seeds them; `pad`
/// bytes of text make up the row size.
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

/// Rows of about 100 bytes: a key and two short columns.
fn seed_small_sql(src: &str, rows: u64) -> String {
    format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, status text NOT NULL, note text); \
         INSERT INTO {src} SELECT g, (ARRAY['new','paid','shipped'])[1 + g % 3], \
         left(repeat(md5(g::text), 3), 80) FROM generate_series(1, {rows}) g; ANALYZE {src};"
    )
}

/// The summed report of a verification run (`verify report --json`).
struct Report {
    code: i32,
    json: serde_json::Value,
}

impl Report {
    fn count(&self, key: &str) -> u64 {
        self.json["tables"][0][key].as_u64().unwrap_or(u64::MAX)
    }
}

fn report(config: &Path, run: &str) -> Result<Report> {
    let (code, out) = backfill(config, &["verify", "report", "--run", run, "--json"])?;
    let json = serde_json::from_str(&out).with_context(|| format!("verify report: {out}"))?;
    Ok(Report { code, json })
}

/// `verify --run run`, then `workers` processes until the queue is idle;
/// the wall time is from before `verify --run` to the last exit.
fn verification(
    config: &Path,
    run: &str,
    segments: u32,
    workers: usize,
) -> Result<(Duration, Vec<Usage>, Report)> {
    let started = Instant::now();
    let (code, out) = backfill(
        config,
        &["verify", "--run", run, "--segments", &segments.to_string()],
    )?;
    ensure!(code == 0, "verify --run {run} exited {code}: {out}");
    let usage = run_workers(config, workers, started)?;
    let wall = usage.iter().map(|u| u.wall).max().unwrap_or_default();
    Ok((wall, usage, report(config, run)?))
}

fn rss_list(usage: &[Usage]) -> String {
    usage
        .iter()
        .map(|u| format!("{}", u.max_rss_kb / 1024))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Part 1: copy, then verify with 1, 2 and 4 workers.
async fn throughput(
    stack: &TestStack,
    rows: u64,
    segments: u32,
    made: &mut Vec<String>,
) -> Result<()> {
    let src = stack.source("v1k");
    let target = stack.target("v1k");
    let seeding = Instant::now();
    stack.sql(&seed_sql(&src, rows, 851)).await?;
    let seeded = seeding.elapsed();
    stack.create_target(&target, ("id", T::N), None).await?;
    made.push(target.clone());
    let mut cfg = stack.config(vec![table(src, target.clone(), &["id"], None)]);
    cfg.producer.rows_per_job = 50_000;
    cfg.worker.concurrency = 4;
    cfg.worker.write_concurrency = 8;
    cfg.worker.verify_sample_rate = 0.0;
    cfg.worker.verify_reads_per_sec = READS_PER_SEC;
    cfg.queue.wait_time_secs = 1;
    let copy_path = std::env::temp_dir().join(format!("{}-copy.toml", stack.name));
    std::fs::write(&copy_path, config_toml(&cfg))?;

    let started = Instant::now();
    let (code, out) = backfill(&copy_path, &["produce", "--run", "copy"])?;
    ensure!(code == 0, "produce exited {code}: {out}");
    let p = copy_path.clone();
    let copy = tokio::task::spawn_blocking(move || run_workers(&p, 2, started)).await??;
    let copy_wall = copy.iter().map(|u| u.wall).max().unwrap_or_default();
    let copied: u64 = stack
        .control()
        .jobs("copy")
        .await?
        .iter()
        .map(|j| j.rows)
        .sum();
    ensure!(copied == rows, "copied {copied} rows of {rows}");
    println!(
        "copied {rows} rows of ~1 KB into dynalite with 2 workers (read-back off) in {:.0} s: {:.0} rows/s  (seeding Postgres took {:.0} s)",
        copy_wall.as_secs_f64(),
        rows as f64 / copy_wall.as_secs_f64(),
        seeded.as_secs_f64()
    );

    // The verifiers reach dynalite through the counting proxy.
    let counter = read_counter(&stack.env.dynamodb_url, &target).await?;
    let mut vcfg = cfg.clone();
    vcfg.aws.dynamodb_endpoint_url = Some(counter.url.clone());
    let path = std::env::temp_dir().join(format!("{}-verify.toml", stack.name));
    std::fs::write(&path, config_toml(&vcfg))?;
    println!(
        "\n== fleet verification of {rows} copied rows ({} range jobs, {segments} scan segments; \
         worker.verify_reads_per_sec {READS_PER_SEC} per worker, concurrency 4)",
        rows.div_ceil(50_000)
    );
    for workers in [1usize, 2, 4] {
        let run = format!("verify-{workers}");
        let before = counter.reads.load(Ordering::Relaxed);
        let (p, r) = (path.clone(), run.clone());
        let (wall, usage, rep) =
            tokio::task::spawn_blocking(move || verification(&p, &r, segments, workers)).await??;
        let reads = counter.reads.load(Ordering::Relaxed) - before;
        ensure!(
            rep.code == 0,
            "verify report --run {run} exited {}: {:#}",
            rep.code,
            rep.json
        );
        let (checked, scanned) = (rep.count("rows_checked"), rep.count("items_scanned"));
        ensure!(
            checked == rows && scanned == rows,
            "{run}: {checked} rows checked and {scanned} items scanned of {rows}"
        );
        let cpu: f64 = usage.iter().map(|u| u.cpu.as_secs_f64()).sum();
        let wall = wall.as_secs_f64();
        let work = (checked + scanned) as f64;
        println!(
            "{workers} worker(s)  {checked} rows checked + {scanned} items scanned  wall {wall:>6.1} s  \
             {:>7.0} rows/s wall  {:>7.0} rows per CPU-second (cpu {cpu:.1} s)  \
             {reads} read requests, {:.0}/s  peak RSS MB: {}  report clean",
            work / wall,
            work / cpu,
            reads as f64 / wall,
            rss_list(&usage)
        );
    }
    let _ = std::fs::remove_file(&copy_path);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// One worker verifying `rows` rows that have no item.
async fn missing_rows(
    stack: &TestStack,
    name: &str,
    rows: u64,
    made: &mut Vec<String>,
) -> Result<(Duration, Usage, Report, Duration)> {
    let src = stack.source(name);
    let target = stack.target(name);
    let seeding = Instant::now();
    stack.sql(&seed_small_sql(&src, rows)).await?;
    let seeded = seeding.elapsed();
    stack.create_target(&target, ("id", T::N), None).await?;
    made.push(target.clone());
    let mut cfg = stack.config(vec![table(src, target, &["id"], None)]);
    cfg.producer.rows_per_job = 100_000;
    cfg.worker.verify_reads_per_sec = READS_PER_SEC;
    cfg.queue.wait_time_secs = 1;
    let path: PathBuf = std::env::temp_dir().join(format!("{}-{name}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let (p, run) = (path.clone(), name.to_string());
    let (wall, usage, rep) =
        tokio::task::spawn_blocking(move || verification(&p, &run, 4, 1)).await??;
    let _ = std::fs::remove_file(&path);
    ensure!(
        rep.code == 1,
        "every row is missing, yet the report exited {}",
        rep.code
    );
    ensure!(
        rep.json["complete"] == true,
        "{name}: incomplete: {:#}",
        rep.json
    );
    ensure!(
        rep.count("missing") == rows && rep.count("rows_checked") == rows,
        "{name}: {} missing of {rows}",
        rep.count("missing")
    );
    let usage = usage.into_iter().next().context("one worker")?;
    Ok((wall, usage, rep, seeded))
}

/// Part 2: one worker's peak RSS over a table of missing rows.
async fn memory(
    stack: &TestStack,
    big: u64,
    probe: u64,
    budget_secs: u64,
    made: &mut Vec<String>,
) -> Result<()> {
    println!("\n== memory: one worker verifying rows never copied (every row missing)");
    let (wall, usage, _, _) = missing_rows(stack, "probe", probe, made).await?;
    let rate = probe as f64 / wall.as_secs_f64();
    println!(
        "probe  {probe:>9} rows of ~100 B  wall {:>6.1} s  {rate:>7.0} rows/s  cpu {:.1} s  peak RSS {} MB",
        wall.as_secs_f64(),
        usage.cpu.as_secs_f64(),
        usage.max_rss_kb / 1024
    );
    let fits = (rate * budget_secs as f64) as u64;
    let step = if fits >= 1_000_000 {
        1_000_000
    } else {
        100_000
    };
    let fits = fits / step * step;
    let size = if fits < big { fits.max(probe) } else { big };
    if size < big {
        println!(
            "size used: {size} rows ({big} would take about {:.0} s at the probe's rate; the budget is {budget_secs} s)",
            big as f64 / rate
        );
    }
    let (wall, usage, rep, seeded) = missing_rows(stack, "big", size, made).await?;
    let listed = rep.json["tables"][0]["findings"]
        .as_array()
        .map_or(0, |f| f.len());
    println!(
        "big    {size:>9} rows of ~100 B  wall {:>6.1} s  {:>7.0} rows/s  cpu {:.1} s  peak RSS {} MB \
         (target < 200 MB)  report: {} missing, {listed} listed, {} jobs  (seeding took {:.0} s)",
        wall.as_secs_f64(),
        size as f64 / wall.as_secs_f64(),
        usage.cpu.as_secs_f64(),
        usage.max_rss_kb / 1024,
        rep.count("missing"),
        rep.json["jobs"],
        seeded.as_secs_f64()
    );
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

/// Deletes the DynamoDB tables and queues the benchmark made (the stack
/// stays up, so they would otherwise stay in the emulators).
async fn remove(stack: &TestStack, tables: &[String]) {
    for t in tables.iter().chain(std::iter::once(&stack.control_table)) {
        if let Err(e) = stack.aws.dynamodb.delete_table().table_name(t).send().await {
            eprintln!("deleting table {t}: {e}");
        }
    }
    for q in [&stack.queue_url, &stack.dlq_url] {
        if let Err(e) = stack.aws.sqs.delete_queue().queue_url(q).send().await {
            eprintln!("deleting queue {q}: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = env_u64("BENCH_VERIFY_ROWS", 1_000_000);
    let big = env_u64("BENCH_VERIFY_BIG_ROWS", 10_000_000);
    let probe = env_u64("BENCH_VERIFY_PROBE_ROWS", 100_000);
    let budget = env_u64("BENCH_VERIFY_BIG_SECS", 300);
    let segments = env_u64("BENCH_VERIFY_SEGMENTS", 8) as u32;
    let cases = std::env::var("BENCH_VERIFY_CASES").unwrap_or_default();
    let want = |case: &str| cases.is_empty() || cases.split(',').any(|c| c.trim() == case);
    println!("machine: {}", machine());
    let stack = TestStack::new("vbench").await?;
    let mut made = Vec::new();
    let mut result = Ok(());
    if want("fleet") {
        result = throughput(&stack, rows, segments, &mut made).await;
    }
    if result.is_ok() && want("memory") {
        result = memory(&stack, big, probe, budget, &mut made).await;
    }
    remove(&stack, &made).await;
    stack.cleanup().await?;
    result
}
