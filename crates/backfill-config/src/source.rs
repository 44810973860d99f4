//! `[source]`: the PostgreSQL server the history is read from.
//!
//! A section of its own because it is the one section that holds a secret
//! (the URL's password) and the one the workers' read throttle reads.

use serde::{Deserialize, Serialize};

use crate::secret::{redact_url, Secret};

/// The PostgreSQL server the history is read from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `postgres://user:password@host:port/db`; a secret because of the password.
    pub url: Secret,
    /// Connections per process; also the cap on concurrent source queries.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A query returning one number (replica lag in seconds, active
    /// sessions, ...); while it exceeds `pause_above`, workers read nothing.
    #[serde(default)]
    pub pause_query: Option<String>,
    #[serde(default)]
    pub pause_above: Option<f64>,
    /// Seconds between evaluations of `pause_query`.
    #[serde(default = "default_pause_check_secs")]
    pub pause_check_secs: u64,
}

fn default_pause_check_secs() -> u64 {
    5
}

fn default_max_connections() -> u32 {
    4
}

impl SourceConfig {
    /// The URL with any password replaced, safe to print.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }
}
