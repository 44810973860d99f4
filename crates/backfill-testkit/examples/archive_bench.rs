//! Archive benchmark (run by `BENCH=archive scripts/bench.sh`): issue #20's
//! figures for `backfill archive`, with the machine they ran on.
//!
//! - Throughput (case `1kb`): BENCH_ARCHIVE_ROWS (default 300,000) rows of
//!   ~1 KB (nine typed columns and ~960 bytes of hex text, which zstd
//!   cannot shrink to nothing as it would a repeated string) are archived
//!   by ONE `backfill work --until-idle` process into the S3 emulator
//!   (moto): `archive --run R` plans the jobs (BENCH_ARCHIVE_ROWS_PER_JOB,
//!   default 50,000 rows each), then the worker's wall time (its start to
//!   its exit, the queue's idle tail included), CPU time and peak RSS
//!   (wait4) give rows/s and rows per CPU-second.
//! - Memory (case `64kb`): BENCH_ARCHIVE_BIG_ROWS (default 3,000) rows of
//!   64 KB of hex text, in jobs of BENCH_ARCHIVE_BIG_ROWS_PER_JOB (750), so
//!   the worker (concurrency 4, the default) writes four parts at once.
//!   Its peak RSS must stay below BENCH_ARCHIVE_RSS_MB (200): the program
//!   exits non-zero otherwise.
//!
//! Each run is then checked with `archive verify --run R --no-source` (exit
//! 0) and its manifest's rows against the table's. Alongside, the CPU
//! seconds moto and the Postgres backends used while the worker ran (read
//! from /proc by a sampler), to show what bounds the time.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::ScalarAttributeType as T;
use backfill_config::ArchiveConfig;
use backfill_testkit::{config_toml, table, unique, TestStack};

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

/// What the worker process used, from wait4.
#[derive(Debug, Clone, Copy)]
struct Usage {
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

/// One `backfill work --until-idle` process, waited for with wait4 (which
/// accounts that process alone, not the benchmark's own threads); it must
/// exit 0. The wall time runs from just before the spawn to the exit.
fn run_worker(config: &Path) -> Result<Usage> {
    let started = Instant::now();
    let child = command(config, &["work", "--until-idle"])
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
        "the worker failed (status {status})"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Usage {
        wall: started.elapsed(),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
    })
}

/// CPU ticks (user + system) of each process that is moto's server or a
/// Postgres process, keyed by pid and labelled `moto` or `postgres`. Only
/// reads /proc; nothing is signalled.
fn cpu_ticks() -> HashMap<i32, (&'static str, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let base = e.path();
        let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
        let label = if comm.trim() == "postgres" {
            "postgres"
        } else if std::fs::read(base.join("cmdline"))
            .map(|c| c.windows(11).any(|w| w == b"moto_server"))
            .unwrap_or(false)
        {
            "moto"
        } else {
            continue;
        };
        // Fields after the ")" of comm: state is the 1st, utime the 12th, stime the 13th.
        let Ok(stat) = std::fs::read_to_string(base.join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(pid, (label, t(11) + t(12)));
    }
    out
}

/// Samples `cpu_ticks` every 200 ms while the worker runs, so the Postgres
/// backends that serve the worker and exit with it are counted too (up to
/// their last 200 ms). Returns CPU seconds used by moto and by Postgres
/// since the first sample.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(f64, f64)>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let first = cpu_ticks();
            let mut last = first.clone();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                last.extend(cpu_ticks());
            }
            last.extend(cpu_ticks());
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let (mut moto, mut pg) = (0u64, 0u64);
            for (pid, (label, ticks)) in &last {
                let used = ticks - first.get(pid).map_or(0, |f| f.1.min(*ticks));
                if *label == "moto" {
                    moto += used;
                } else {
                    pg += used;
                }
            }
            (moto as f64 / hz, pg as f64 / hz)
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((f64::NAN, f64::NAN))
    }
}

/// ~1 KB rows: the mixed types the other benchmarks seed (so the typed
/// conversions are part of the cost) and 30 distinct md5s of hex text.
fn seed_1kb_sql(src: &str, rows: u64) -> String {
    format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2), \
         status text NOT NULL, note text, created_at timestamptz NOT NULL, paid bool, \
         ref uuid, attrs jsonb, score float8); \
         INSERT INTO {src} SELECT g, g % 100000, g * 1.25, (ARRAY['new','paid','shipped'])[1 + g % 3], \
         (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 30) i), \
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0, \
         md5(g::text)::uuid, jsonb_build_object('g', g, 'ch', 'web'), g / 7.0 \
         FROM generate_series(1, {rows}) g; ANALYZE {src};"
    )
}

/// 64 KB rows: a key and 2,048 distinct md5s of hex text.
fn seed_64kb_sql(src: &str, rows: u64) -> String {
    format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text NOT NULL); \
         INSERT INTO {src} SELECT g, \
         (SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 2048) i) \
         FROM generate_series(1, {rows}) g; ANALYZE {src};"
    )
}

/// The figures of one case.
struct Figures {
    rows: u64,
    source_bytes: i64,
    parquet_bytes: u64,
    parts: usize,
    seeded: Duration,
    usage: Usage,
    moto_cpu: f64,
    pg_cpu: f64,
    verify: Duration,
}

/// Seeds the table, archives it with one worker, verifies the run.
async fn case(
    stack: &TestStack,
    name: &str,
    seed: &str,
    rows: u64,
    rows_per_job: u64,
    made: &mut Made,
) -> Result<Figures> {
    let src = stack.source(name);
    let seeding = Instant::now();
    stack.sql(seed).await?;
    let seeded = seeding.elapsed();
    // The bytes Postgres holds per row (toasted values as stored).
    let (count, source_bytes): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0)::bigint FROM {src} t"
    ))
    .fetch_one(&stack.pg)
    .await?;
    ensure!(count as u64 == rows, "{src} holds {count} rows, not {rows}");
    // A table config needs a target, though an archive never writes it.
    let target = stack.target(name);
    stack.create_target(&target, ("id", T::N), None).await?;
    made.tables.push(target.clone());
    let bucket = unique("abench").replace('_', "-").to_lowercase();
    stack.aws.s3.create_bucket().bucket(&bucket).send().await?;
    made.buckets.push(bucket.clone());

    let mut cfg = stack.config(vec![table(src.clone(), target, &["id"], None)]);
    cfg.producer.rows_per_job = rows_per_job;
    cfg.queue.wait_time_secs = 1;
    cfg.archive = Some(ArchiveConfig {
        bucket: bucket.clone(),
        prefix: format!("{}/", stack.name),
        row_group_rows: 8192,
        zstd_level: 3,
        upload_part_bytes: 8 * 1024 * 1024,
        text_columns: Vec::new(),
    });
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", stack.name));
    std::fs::write(&path, config_toml(&cfg))?;
    let run = format!("a-{name}");

    let p = path.clone();
    let r = run.clone();
    let (usage, moto_cpu, pg_cpu, verify, out) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let (code, out) = backfill(&p, &["archive", "--run", &r])?;
            ensure!(code == 0, "archive --run {r} exited {code}: {out}");
            let sampler = Sampler::start();
            let usage = run_worker(&p);
            let (moto_cpu, pg_cpu) = sampler.finish();
            let usage = usage?;
            let verifying = Instant::now();
            let (code, out) = backfill(&p, &["archive", "verify", "--run", &r, "--no-source"])?;
            ensure!(
                code == 0,
                "archive verify --run {r} --no-source exited {code}: {out}"
            );
            Ok((usage, moto_cpu, pg_cpu, verifying.elapsed(), out))
        })
        .await??;
    let _ = std::fs::remove_file(&path);
    ensure!(out.contains("every part matches"), "archive verify: {out}");

    // The manifest is the run's record: its rows must be the table's.
    let key = format!("{}/{src}/run={run}/_manifest.json", stack.name);
    let body = stack
        .aws
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .body
        .collect()
        .await?
        .into_bytes();
    let manifest: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(
        manifest["rows"].as_u64() == Some(rows),
        "the manifest has {} rows, the table {rows}",
        manifest["rows"]
    );
    let parts = manifest["parts"].as_array().map_or(&[][..], |p| &p[..]);
    let parquet_bytes = parts.iter().filter_map(|p| p["bytes"].as_u64()).sum();
    Ok(Figures {
        rows,
        source_bytes,
        parquet_bytes,
        parts: parts.len(),
        seeded,
        usage,
        moto_cpu,
        pg_cpu,
        verify,
    })
}

fn header() {
    println!(
        "{:<6} {:>8} {:>9} {:>10} {:>5} {:>7} {:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "case",
        "rows",
        "source MB",
        "parquet MB",
        "parts",
        "wall s",
        "rows/s",
        "cpu s",
        "rows/CPU-s",
        "RSS MB",
        "moto cpu",
        "pg cpu",
        "verify s"
    );
}

fn line(name: &str, f: &Figures) {
    let mb = |b: f64| b / 1024.0 / 1024.0;
    let (wall, cpu) = (f.usage.wall.as_secs_f64(), f.usage.cpu.as_secs_f64());
    println!(
        "{name:<6} {:>8} {:>9.1} {:>10.1} {:>5} {wall:>7.1} {:>7.0} {cpu:>6.1} {:>10.0} {:>8} {:>8.1} {:>8.1} {:>8.1}",
        f.rows,
        mb(f.source_bytes as f64),
        mb(f.parquet_bytes as f64),
        f.parts,
        f.rows as f64 / wall,
        f.rows as f64 / cpu,
        f.usage.max_rss_kb / 1024,
        f.moto_cpu,
        f.pg_cpu,
        f.verify.as_secs_f64()
    );
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

/// What the benchmark made in the emulators, which stay up after it.
#[derive(Default)]
struct Made {
    tables: Vec<String>,
    buckets: Vec<String>,
}

/// Deletes the buckets (moto keeps objects in memory), tables and queues
/// the benchmark made.
async fn remove(stack: &TestStack, made: &Made) {
    let s3 = &stack.aws.s3;
    for b in &made.buckets {
        // Few objects (a part per job and the manifest): one listing page.
        if let Ok(list) = s3.list_objects_v2().bucket(b).send().await {
            for k in list.contents().iter().filter_map(|o| o.key()) {
                let _ = s3.delete_object().bucket(b).key(k).send().await;
            }
        }
        if let Err(e) = s3.delete_bucket().bucket(b).send().await {
            eprintln!("deleting bucket {b}: {e}");
        }
    }
    for t in made
        .tables
        .iter()
        .chain(std::iter::once(&stack.control_table))
    {
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

async fn cases(stack: &TestStack, made: &mut Made) -> Result<()> {
    let rows = env_u64("BENCH_ARCHIVE_ROWS", 300_000);
    let per_job = env_u64("BENCH_ARCHIVE_ROWS_PER_JOB", 50_000);
    let big = env_u64("BENCH_ARCHIVE_BIG_ROWS", 3_000);
    let big_per_job = env_u64("BENCH_ARCHIVE_BIG_ROWS_PER_JOB", 750);
    let rss_limit_mb = env_u64("BENCH_ARCHIVE_RSS_MB", 200) as i64;
    let list = std::env::var("BENCH_ARCHIVE_CASES").unwrap_or_default();
    let want = |c: &str| list.is_empty() || list.split(',').any(|x| x.trim() == c);
    println!(
        "one `backfill work` process (concurrency 4) archiving into moto; row_group_rows 8192, \
         zstd 3, upload parts 8 MiB; wall = the worker's start to its exit (idle tail included); \
         moto/pg cpu = CPU seconds those processes used meanwhile"
    );
    header();
    if want("1kb") {
        let src = stack.source("a1k");
        let f = case(stack, "a1k", &seed_1kb_sql(&src, rows), rows, per_job, made).await?;
        line("1kb", &f);
        eprintln!(
            "1kb: {rows} rows in jobs of {per_job}, seeding took {:.0} s",
            f.seeded.as_secs_f64()
        );
    }
    if want("64kb") {
        let src = stack.source("a64k");
        let seed = seed_64kb_sql(&src, big);
        let f = case(stack, "a64k", &seed, big, big_per_job, made).await?;
        line("64kb", &f);
        eprintln!(
            "64kb: {big} rows in jobs of {big_per_job}, seeding took {:.0} s",
            f.seeded.as_secs_f64()
        );
        let rss = f.usage.max_rss_kb / 1024;
        println!(
            "peak RSS of one worker archiving 64 KB rows: {rss} MB (must be < {rss_limit_mb} MB)"
        );
        ensure!(
            rss < rss_limit_mb,
            "peak RSS {rss} MB is not below {rss_limit_mb} MB"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    println!("machine: {}", machine());
    let stack = TestStack::new("abench").await?;
    let mut made = Made::default();
    let result = cases(&stack, &mut made).await;
    remove(&stack, &made).await;
    stack.cleanup().await?;
    result
}
