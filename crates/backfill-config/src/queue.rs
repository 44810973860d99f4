//! `[queue]`: the SQS job queue, its dead-letter queue and job signing.
//!
//! The signing key is read here, from the variable the section names,
//! so that the key itself never passes through the file or the snapshot.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, ConfigError};
use crate::secret::Secret;

/// The SQS job queue and its dead-letter queue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub url: String,
    pub dlq_url: String,
    /// Receives before SQS itself moves a message to the DLQ (redrive policy).
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    /// How long a received job stays invisible; a heartbeat extends it.
    #[serde(default = "default_visibility_timeout")]
    pub visibility_timeout_secs: u32,
    /// Long-poll wait of each receive (0 to 20).
    #[serde(default = "default_wait_time")]
    pub wait_time_secs: u32,
    /// The environment variable that holds the job-signing key. When set,
    /// the producer and `dlq replay` sign every job (HMAC-SHA256) and
    /// workers refuse unsigned or wrongly signed ones. Only the variable's
    /// name is configuration: the key itself never enters a file, the run's
    /// config snapshot or a log.
    #[serde(default)]
    pub signing_key_env: Option<String>,
}

impl QueueConfig {
    /// The job-signing key, read from the variable `signing_key_env` names
    /// (`None`: signing is off). Errors name the key and the variable.
    pub fn signing_key(&self) -> Result<Option<Secret>, ConfigError> {
        self.signing_key_from(|name| std::env::var(name).ok())
    }

    /// As [`QueueConfig::signing_key`], with the environment given (for tests).
    pub fn signing_key_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let Some(name) = &self.signing_key_env else {
            return Ok(None);
        };
        match env(name) {
            None => Err(invalid(
                "queue.signing_key_env",
                format!("the environment variable {name} is not set (signing is on: set it, or remove signing_key_env)"),
            )),
            Some(k) if k.len() < MIN_SIGNING_KEY_BYTES => Err(invalid(
                "queue.signing_key_env",
                format!(
                    "the key in {name} is {} bytes; a signing key must be at least {MIN_SIGNING_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                    k.len()
                ),
            )),
            Some(k) => Ok(Some(Secret::new(k))),
        }
    }
}

/// Shortest signing key accepted (HMAC-SHA256's output size).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

fn default_max_receive_count() -> u32 {
    5
}
fn default_visibility_timeout() -> u32 {
    120
}
fn default_wait_time() -> u32 {
    20
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::GOOD;
    use crate::BackfillConfig;

    #[test]
    fn the_signing_key_comes_from_the_named_variable_and_never_from_the_file() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(
            cfg.queue.signing_key_from(|_| panic!("not read")).unwrap(),
            None
        );

        let with = GOOD.replace("[queue]", "[queue]\nsigning_key_env = \"JOB_KEY\"");
        let cfg = BackfillConfig::from_toml_str(&with).unwrap();
        let key = "k".repeat(MIN_SIGNING_KEY_BYTES);
        let got = cfg
            .queue
            .signing_key_from(|n| (n == "JOB_KEY").then(|| key.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), key);
        assert!(!format!("{cfg:?}").contains(&key));

        let err = cfg
            .queue
            .signing_key_from(|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queue.signing_key_env") && err.contains("JOB_KEY is not set"),
            "{err}"
        );
        let err = cfg
            .queue
            .signing_key_from(|_| Some("short-secret".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("12 bytes") && !err.contains("short-secret"),
            "{err}"
        );

        // A key pasted where the variable's name belongs is refused without being repeated.
        let pasted = "3f9a0c1e5b7d2a4c6e8f0a1b3c5d7e9f";
        let bad = GOOD.replace(
            "[queue]",
            &format!("[queue]\nsigning_key_env = \"{pasted}\""),
        );
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            err.contains("queue.signing_key_env") && !err.contains(pasted),
            "{err}"
        );
    }
}
