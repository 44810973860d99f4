//! `backfill-ddb-proxy`: a DynamoDB endpoint that throttles writes like a
//! provisioned table, in front of an emulator. Prints its URL on the first
//! line of stdout; on SIGINT or SIGTERM prints its counters as one JSON line
//! and exits.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use backfill_ddb_proxy::{
    default_upstream, start_on, Faults, Mode, OnDemand, ProxyConfig, DEFAULT_BURST_SECS,
    DEFAULT_ON_DEMAND_INITIAL_WCU, DEFAULT_PARTITION_BURST_SECS, DEFAULT_PEAK_WINDOW,
    PARTITION_MAX_WCU,
};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "backfill-ddb-proxy",
    about = "DynamoDB proxy that enforces provisioned write capacity in front of an emulator"
)]
struct Args {
    /// DynamoDB endpoint to forward to (default: BACKFILL_TEST_DYNAMODB_URL, else dynalite on 127.0.0.1:4567).
    #[arg(long)]
    upstream: Option<String>,
    /// Provisioned write capacity units per second.
    #[arg(long, default_value_t = 1000.0)]
    wcu: f64,
    /// Seconds of unused capacity kept as burst.
    #[arg(long, default_value_t = DEFAULT_BURST_SECS)]
    burst_secs: f64,
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Answer admitted writes without forwarding them.
    #[arg(long)]
    blackhole: bool,
    /// Answer admitted batch writes without forwarding them; forward single writes.
    #[arg(long, conflicts_with = "blackhole")]
    blackhole_batches: bool,
    /// Share of requests (0 to 1) to answer with a throttling error on purpose.
    #[arg(long, default_value_t = 0.0)]
    inject_throttles: f64,
    /// Share of requests (0 to 1) to answer with a 500 on purpose.
    #[arg(long, default_value_t = 0.0)]
    inject_errors: f64,
    /// Return the second half of every batch write unprocessed.
    #[arg(long)]
    inject_unprocessed_half: bool,
    /// The table's partition key attribute: writes also pay their partition's rate.
    #[arg(long)]
    partition_key: Option<String>,
    /// Partitions the key space is split into (default: one per started 1,000 WCU/s).
    #[arg(long, requires = "partition_key")]
    partitions: Option<u32>,
    /// Each partition's write capacity units per second.
    #[arg(long, default_value_t = PARTITION_MAX_WCU)]
    partition_wcu: f64,
    /// Seconds of unused capacity a partition keeps as burst.
    #[arg(long, default_value_t = DEFAULT_PARTITION_BURST_SECS)]
    partition_burst_secs: f64,
    /// Act as an on-demand table (ignores --wcu and --burst-secs).
    #[arg(long)]
    on_demand: bool,
    /// WCU per second an on-demand table absorbs before it has a peak.
    #[arg(long, default_value_t = DEFAULT_ON_DEMAND_INITIAL_WCU, requires = "on_demand")]
    on_demand_initial_wcu: f64,
    /// Seconds an on-demand table remembers its peak.
    #[arg(long, default_value_t = DEFAULT_PEAK_WINDOW.as_secs_f64(), requires = "on_demand")]
    on_demand_peak_window_secs: f64,
    /// The table whose capacity this is; writes to other tables pass
    /// unpriced and uncounted (default: every write is priced).
    #[arg(long)]
    table: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = ProxyConfig {
        upstream: args.upstream.unwrap_or_else(default_upstream),
        write_capacity_per_sec: args.wcu,
        burst_secs: args.burst_secs,
        mode: if args.blackhole {
            Mode::Blackhole
        } else if args.blackhole_batches {
            Mode::BlackholeBatches
        } else {
            Mode::Forward
        },
        faults: Faults {
            throttle_ratio: args.inject_throttles,
            server_error_ratio: args.inject_errors,
            unprocessed_half: args.inject_unprocessed_half,
        },
        partition_key: args.partition_key,
        partitions: args.partitions,
        partition_wcu_per_sec: args.partition_wcu,
        partition_burst_secs: args.partition_burst_secs,
        on_demand: None,
        table: args.table,
    };
    let cfg = if args.on_demand {
        let Ok(peak_window) = Duration::try_from_secs_f64(args.on_demand_peak_window_secs) else {
            eprintln!(
                "backfill-ddb-proxy: --on-demand-peak-window-secs must be a number of seconds >= 0"
            );
            return ExitCode::FAILURE;
        };
        ProxyConfig {
            on_demand: Some(OnDemand {
                initial_wcu: args.on_demand_initial_wcu,
                peak_window,
            }),
            ..cfg
        }
    } else {
        cfg
    };
    // Handlers first: a signal that arrives once the URL is out (a script
    // that stops the proxy at once) must print the counters, not kill it.
    let stop = match stop_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backfill-ddb-proxy: cannot wait for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match start_on(cfg, SocketAddr::from(([127, 0, 0, 1], args.port))).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("backfill-ddb-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", handle.url);
        let _ = out.flush();
    }
    stop.await;
    let counters = handle.counters.clone();
    handle.shutdown().await;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", counters.snapshot());
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// SIGINT or SIGTERM, with the handlers installed when this is called (not
/// when the future is first polled).
#[cfg(unix)]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
