//! What an operator watches on a worker: Prometheus metrics ([`Metrics`]),
//! liveness and readiness ([`Health`]), and a small HTTP server ([`serve`])
//! that answers `/metrics`, `/healthz` and `/readyz`.
//!
//! The crate knows nothing of Postgres, SQS or DynamoDB: the worker counts
//! into it, Prometheus and the kubelet read from it. `docs/OBSERVABILITY.md`
//! describes every metric and endpoint.

mod drift;
mod health;
mod metrics;
mod server;

pub use health::Health;
pub use metrics::{
    JobOutcome, Metrics, TextFormat, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};
pub use server::serve;

/// Why the metrics server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics server: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
