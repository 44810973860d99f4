//! A DynamoDB proxy that throttles writes like a provisioned table does.
//!
//! DynamoDB emulators (dynalite here) never throttle, so the code paths that
//! handle `ProvisionedThroughputExceededException` and `UnprocessedItems`
//! are never exercised against them. This proxy speaks DynamoDB's JSON
//! protocol (HTTP POST, `X-Amz-Target: DynamoDB_20120810.<Op>`, a JSON body)
//! in front of an emulator and enforces a write budget:
//!
//! - Each write's capacity units are computed by the proxy from the request
//!   JSON by DynamoDB's rules (see [`request`] and [`size`]), and paid from a
//!   token bucket (see [`bucket`]) that fills at
//!   [`ProxyConfig::write_capacity_per_sec`] up to `burst_secs` of it.
//! - With a [`ProxyConfig::partition_key`], the table is also split into
//!   partitions as DynamoDB splits it (one per started 1,000 WCU/s unless
//!   [`ProxyConfig::partitions`] says otherwise). An item's partition is a
//!   process-stable hash of its key value ([`partition_of`]: FNV-1a of the
//!   type tag and the value as DynamoDB compares it, so `1e3` and `1000`
//!   share one), and each partition has its own bucket
//!   ([`ProxyConfig::partition_wcu_per_sec`], a short burst). A write must
//!   fit both its partition and the table; the partition is refunded when
//!   the table refuses. Items without the key attribute pay the table only.
//! - A `PutItem`, `UpdateItem` or `DeleteItem` that does not fit is answered
//!   `400 ProvisionedThroughputExceededException` with the service's body,
//!   `ThrottlingReasons` included: `TableWriteKeyRangeThroughputExceeded`
//!   when its partition refused it, `TableWriteProvisionedThroughputExceeded`
//!   when the table did (see [`throttled_body`]). A `BatchWriteItem` is
//!   admitted item by item in order: an item whose partition cannot pay is
//!   returned in `UnprocessedItems` and later items of other partitions
//!   still go through; once the table refuses, that item and all later ones
//!   are returned too. The admitted subset is forwarded (the body
//!   rewritten) and the rest returned, in order, after any the upstream
//!   returned itself; if nothing is admitted the whole call is throttled
//!   (with the table's reason if the table refused any item).
//! - With [`ProxyConfig::on_demand`] the table's limit is an on-demand
//!   table's instead of a provisioned rate: it absorbs
//!   [`OnDemand::initial_wcu`] per second, or twice the busiest second of
//!   the last [`OnDemand::peak_window`] if that is more, and throttles
//!   above it with `TableWriteMaxOnDemandThroughputExceeded`. An
//!   `UpdateTable` with `WarmThroughput.WriteUnitsPerSecond` raises the
//!   starting level at once; the field is stripped before forwarding
//!   (dynalite does not know it), and an update that only pre-warms is
//!   answered by the proxy with the table's description.
//! - Everything else (reads, table administration) is forwarded unchanged
//!   and not accounted.
//!
//! Requests are forwarded byte for byte with their headers, `Authorization`
//! and `X-Amz-Date` included. A rewritten batch no longer matches its SigV4
//! signature; dynalite only checks that a signature is there, so that does
//! not matter for the emulator this is meant for.
//!
//! Capacity is debited when a write is admitted and given back if the
//! upstream then does not make the write (an error answer other than a
//! failed condition, which DynamoDB charges; or items the upstream returns
//! unprocessed), to the table and to the partitions that paid. The counters
//! only count what was admitted and made, so [`Counters::accepted_wcu`] is
//! the capacity the upstream consumed; they also keep it per partition
//! ([`Counters::partition_wcu`], [`Counters::hottest_partition`]) and per
//! second ([`Counters::per_second_wcu`]), and count throttles by reason.
//!
//! [`Faults`] injects the failures a real table shows now and then, at a
//! chosen rate, to prove the client survives them: throttling (with the
//! table's reason) and 500s on any request, answered without forwarding,
//! and half of every batch returned in `UnprocessedItems`. Which requests fail is decided by a
//! counter, not a clock, so a run injects the same share every time.
//!
//! In [`Mode::Blackhole`] admitted writes are answered by the proxy without
//! forwarding (`{}`, or `{"UnprocessedItems": {...}}`, with
//! `ConsumedCapacity` computed by the proxy when asked for), so a benchmark
//! measures the client alone; everything else is still forwarded.

mod admission;
pub mod bucket;
mod counters;
pub mod error;
mod ondemand;
pub mod partition;
pub mod request;
mod server;
pub mod size;
mod writes;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use counters::{
    Counters, CountersSnapshot, PartitionCounters, PartitionSnapshot, HISTORY_SECS,
};
pub use error::{throttled_body, ProxyError, ThrottleReason, THROTTLED_BODY};
pub use ondemand::{OnDemand, DEFAULT_ON_DEMAND_INITIAL_WCU, DEFAULT_PEAK_WINDOW};
pub use partition::{default_partitions, partition_of, MAX_PARTITIONS, PARTITION_MAX_WCU};

/// DynamoDB keeps up to 300 seconds of unused capacity as burst.
pub const DEFAULT_BURST_SECS: f64 = 300.0;

/// A partition's burst: a second of its rate.
pub const DEFAULT_PARTITION_BURST_SECS: f64 = 1.0;

/// The upstream used when none is given: `BACKFILL_TEST_DYNAMODB_URL`, or
/// dynalite on its usual port.
pub fn default_upstream() -> String {
    std::env::var("BACKFILL_TEST_DYNAMODB_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4567".to_string())
}

/// What the proxy does with admitted writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward them to the upstream and relay its answer.
    #[default]
    Forward,
    /// Answer writes without forwarding: a benchmark measures the client
    /// alone. Reads and other operations are still forwarded.
    Blackhole,
    /// Answer `BatchWriteItem` (the bulk copy) without forwarding, and
    /// forward single-item writes: a worker's control-table updates are
    /// conditional single writes whose answers it reads, so a worker
    /// benchmark keeps them real while the copy goes nowhere.
    BlackholeBatches,
}

/// How the proxy is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Base URL of the DynamoDB endpoint behind the proxy (plain `http`).
    pub upstream: String,
    /// Provisioned write capacity units per second.
    pub write_capacity_per_sec: f64,
    /// Seconds of unused capacity kept as burst ([`DEFAULT_BURST_SECS`] like
    /// DynamoDB; tests use a second or so).
    pub burst_secs: f64,
    /// Forward admitted writes, or answer them in place.
    pub mode: Mode,
    /// Failures injected on purpose (none by default).
    pub faults: Faults,
    /// The table's partition (hash) key attribute. With it, writes are also
    /// paid from their partition's bucket; without it (the default) only
    /// the table's limit applies. Items without the attribute pay the
    /// table alone.
    pub partition_key: Option<String>,
    /// How many partitions the key space is split into; `None`: DynamoDB's
    /// count for the provisioned rate ([`default_partitions`]).
    pub partitions: Option<u32>,
    /// Each partition's write rate, WCU per second ([`PARTITION_MAX_WCU`],
    /// DynamoDB's ceiling, by default).
    pub partition_wcu_per_sec: f64,
    /// Seconds of unused capacity a partition keeps as burst (1 by default:
    /// a partition's burst is short, unlike the table's).
    pub partition_burst_secs: f64,
    /// The table is on-demand ([`OnDemand`]): `write_capacity_per_sec` and
    /// `burst_secs` are not used, and writes over what the table absorbs
    /// are throttled with `TableWriteMaxOnDemandThroughputExceeded`.
    pub on_demand: Option<OnDemand>,
    /// The table whose capacity this is. Writes that name another table
    /// (a worker's control table, which has capacity of its own) are
    /// forwarded unpriced and uncounted, so the counters hold the target's
    /// writes alone. `None`: every write is priced as the one table's.
    pub table: Option<String>,
}

/// Failures the proxy injects on purpose, for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Share of requests (any operation, 0 to 1) answered with
    /// `ProvisionedThroughputExceededException` without being forwarded.
    pub throttle_ratio: f64,
    /// Share of requests (0 to 1) answered `500 InternalServerError`
    /// without being forwarded.
    pub server_error_ratio: f64,
    /// Every `BatchWriteItem` of two or more requests gets its second half
    /// back in `UnprocessedItems`, unwritten.
    pub unprocessed_half: bool,
}

impl ProxyConfig {
    /// Forwarding to `upstream` with `write_capacity_per_sec` and
    /// DynamoDB's 300 s of burst.
    pub fn new(upstream: impl Into<String>, write_capacity_per_sec: f64) -> Self {
        ProxyConfig {
            upstream: upstream.into(),
            write_capacity_per_sec,
            burst_secs: DEFAULT_BURST_SECS,
            mode: Mode::Forward,
            faults: Faults::default(),
            partition_key: None,
            partitions: None,
            partition_wcu_per_sec: PARTITION_MAX_WCU,
            partition_burst_secs: DEFAULT_PARTITION_BURST_SECS,
            on_demand: None,
            table: None,
        }
    }

    /// The partitions accounted: 0 without a partition key, else
    /// [`ProxyConfig::partitions`] or DynamoDB's count for the rate.
    pub fn partition_count(&self) -> u32 {
        match (&self.partition_key, self.partitions) {
            (None, _) => 0,
            (Some(_), Some(n)) => n,
            (Some(_), None) => default_partitions(match self.on_demand {
                Some(od) => od.initial_wcu,
                None => self.write_capacity_per_sec,
            }),
        }
    }
}

/// A running proxy. Dropping it stops the proxy (without waiting); call
/// [`ProxyHandle::shutdown`] to wait for it.
#[derive(Debug)]
pub struct ProxyHandle {
    /// `http://127.0.0.1:<port>`: the endpoint URL to give DynamoDB clients.
    pub url: String,
    /// The address the proxy listens on.
    pub addr: SocketAddr,
    /// Live counters.
    pub counters: Arc<Counters>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// Stops accepting, lets requests in flight finish (a few seconds at
    /// most) and returns when the proxy has stopped.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a proxy on `127.0.0.1` on a free port.
pub async fn start(cfg: ProxyConfig) -> std::io::Result<ProxyHandle> {
    start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a proxy on `addr`. A configuration that cannot work is an
/// `InvalidInput` error wrapping [`ProxyError::Config`].
pub async fn start_on(cfg: ProxyConfig, addr: SocketAddr) -> std::io::Result<ProxyHandle> {
    let shared = server::Shared::new(&cfg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let counters = shared.counters.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve(listener, Arc::new(shared), shutdown.clone()));
    Ok(ProxyHandle {
        url: format!("http://{addr}"),
        addr,
        counters,
        shutdown,
        task: Some(task),
    })
}
