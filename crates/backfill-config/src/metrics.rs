//! `[metrics]`: the worker's HTTP server for metrics and health.
//!
//! Its own module because its address is parsed (and checked) here, for
//! validation and for the server alike.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, ConfigError};

/// The worker's HTTP server for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` the server listens on; an empty string runs no server.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// `/healthz` fails once no worker loop has ticked for this long. The
    /// fleet loop ticks every `capacity.heartbeat_secs`, so it must be longer.
    #[serde(default = "default_liveness_max_age_secs")]
    pub liveness_max_age_secs: u64,
}

fn default_metrics_listen() -> String {
    // The port Prometheus' exporter registry lists for ad-hoc exporters.
    "0.0.0.0:9464".to_string()
}
fn default_liveness_max_age_secs() -> u64 {
    120
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
            liveness_max_age_secs: default_liveness_max_age_secs(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve on, or `None` when the server is disabled.
    /// Validation has checked that a non-empty `listen` parses.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|e| {
            invalid(
                "metrics.listen",
                format!(
                    "`{listen}` is not a socket address ({e}); give ip:port such as 0.0.0.0:9464, or \"\" to run no server"
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::GOOD;
    use crate::BackfillConfig;

    #[test]
    fn metrics_defaults_and_bad_listen_names_the_key() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("0.0.0.0:9464".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 120);

        let off = format!("{GOOD}\n[metrics]\nlisten = \"\"\n");
        let cfg = BackfillConfig::from_toml_str(&off).unwrap();
        assert_eq!(cfg.metrics.listen_addr().unwrap(), None);

        let v6 = format!("{GOOD}\n[metrics]\nlisten = \"[::]:9100\"\nliveness_max_age_secs = 30\n");
        let cfg = BackfillConfig::from_toml_str(&v6).unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("[::]:9100".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 30);

        for bad in ["9464", "localhost:9464", "0.0.0.0:port", "0.0.0.0:99999"] {
            let text = format!("{GOOD}\n[metrics]\nlisten = \"{bad}\"\n");
            let err = BackfillConfig::from_toml_str(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("metrics.listen") && err.contains(bad), "{err}");
        }

        let short = format!("{GOOD}\n[metrics]\nliveness_max_age_secs = 2\n");
        let err = BackfillConfig::from_toml_str(&short)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.liveness_max_age_secs"), "{err}");
    }

    #[test]
    fn environment_overrides_the_metrics_section() {
        let dir = std::env::temp_dir().join(format!("backfill-cfg-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, GOOD).unwrap();
        let load = |pairs: &[(&str, &str)]| {
            BackfillConfig::load_with_env(
                &path,
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let cfg = load(&[
            ("BACKFILL__METRICS__LISTEN", "127.0.0.1:9000"),
            ("BACKFILL__METRICS__LIVENESS_MAX_AGE_SECS", "45"),
        ])
        .unwrap();
        assert_eq!(
            cfg.metrics.listen_addr().unwrap(),
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(cfg.metrics.liveness_max_age_secs, 45);
        let cfg = load(&[("BACKFILL__METRICS__LISTEN", "")]).unwrap();
        assert_eq!(cfg.metrics.listen_addr().unwrap(), None, "empty disables");
        let err = load(&[("BACKFILL__METRICS__LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
