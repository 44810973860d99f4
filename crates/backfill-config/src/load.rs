//! Loading: the TOML file, then `BACKFILL__*` environment overrides, then
//! serde's strict types, then validation.
//!
//! Its own module because the `config` crate's lenient typing and its
//! error paths need correcting (strict types, errors naming the variable
//! that set a key), which is a concern of its own.

use std::path::Path;

use crate::error::{invalid, ConfigError};
use crate::BackfillConfig;

impl BackfillConfig {
    /// Loads the file at `path`, applies `BACKFILL__*` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`BackfillConfig::load`], with the environment given (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let path_str = path.display().to_string();
        if !path.exists() {
            return Err(invalid(
                "--config",
                format!("file {path_str} does not exist"),
            ));
        }
        if path.is_dir() {
            return Err(invalid(
                "--config",
                format!("{path_str} is a directory, not a config file"),
            ));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BACKFILL__"))
            .collect();
        let env_names: Vec<String> = env.keys().cloned().collect();
        let loaded = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("BACKFILL")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|source| ConfigError::Load {
                path: path_str.clone(),
                source,
            })?;
        let loaded = strict(&path_str, loaded).map_err(|e| name_the_variable(e, &env_names))?;
        loaded.validate()?;
        Ok(loaded)
    }

    /// Parses TOML text (no environment), then validates.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|source| ConfigError::Load {
                path: "<string>".into(),
                source,
            })?;
        let cfg = strict("<string>", cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A key an environment variable set (`BACKFILL__WORKER__PAGE_ROWS` sets
/// `worker.page_rows`), lower-cased as the config crate reads it.
fn env_key(name: &str) -> String {
    name.trim_start_matches("BACKFILL__")
        .split("__")
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// A type error whose key (or unknown key) came from an environment
/// variable names the variable, not the file: the file may not even have
/// the key.
fn name_the_variable(e: ConfigError, env_names: &[String]) -> ConfigError {
    let ConfigError::Type { path, key, reason } = e else {
        return e;
    };
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next());
    let from_env = env_names.iter().find(|name| {
        let k = env_key(name);
        match unknown {
            // An unknown key at `key` (the parent; `.` at the top).
            Some(field) => {
                // serde_path_to_error puts the unknown field at the end of
                // the path; a parent path alone is handled too.
                let full = if key == field || key.ends_with(&format!(".{field}")) {
                    key.clone()
                } else if key == "." || key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
                k == full || k.starts_with(&format!("{full}."))
            }
            None => {
                k == key || key.starts_with(&format!("{k}.")) || key.starts_with(&format!("{k}["))
            }
        }
    });
    match from_env {
        Some(name) => ConfigError::Env {
            variable: name.clone(),
            reason: match unknown {
                Some(field) => format!("`{field}` is not a config key ({reason})"),
                None => format!("`{key}`: {reason}"),
            },
        },
        None => ConfigError::Type { path, key, reason },
    }
}

/// Deserializes the merged file and environment with serde's own type
/// rules, which the `config` crate relaxes (it rounds floats into integers
/// and parses strings as numbers); the error names the key's path.
fn strict(path: &str, merged: serde_json::Value) -> Result<BackfillConfig, ConfigError> {
    serde_path_to_error::deserialize(merged).map_err(|e| ConfigError::Type {
        path: path.to_string(),
        key: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::GOOD;
    use crate::BackfillConfig;

    #[test]
    fn good_config_loads_with_defaults() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(cfg.worker.page_rows, 1000);
        assert_eq!(cfg.tables[0].partition_key.attribute_name(), "id");
        assert_eq!(cfg.aws.attempt_timeout_secs, 60);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("backfill-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, GOOD).unwrap();
        let env = vec![
            ("BACKFILL__WORKER__PAGE_ROWS".to_string(), "77".to_string()),
            ("BACKFILL__AWS__REGION".to_string(), "eu-west-1".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = BackfillConfig::load_with_env(&path, env).unwrap();
        assert_eq!(cfg.worker.page_rows, 77);
        assert_eq!(cfg.aws.region, "eu-west-1");
        let env = vec![("BACKFILL__WORKER__PAGE_ROWS".to_string(), "0".to_string())];
        let err = BackfillConfig::load_with_env(&path, env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.page_rows"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_in_every_section_and_named() {
        for (section, line) in [
            ("[source]", "passwrd = \"x\""),
            ("[queue]", "sign = true"),
            ("[control]", "tabel = \"y\""),
            ("[[tables]]", "partition = \"id\""),
        ] {
            let bad = GOOD.replacen(section, &format!("{section}\n{line}"), 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            let key = line.split(' ').next().unwrap();
            assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
        }
        let bad = format!("{GOOD}\n[wrker]\nconcurrency = 2\n");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("wrker"), "{err}");
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_key() {
        for (from, to, key) in [
            (
                "[queue]",
                "[queue]\nvisibility_timeout_secs = -3",
                "visibility_timeout_secs",
            ),
            ("[queue]", "[queue]\nwait_time_secs = [1]", "wait_time_secs"),
            ("target = \"orders\"", "target = 7", "target"),
            (
                "partition_key = { columns = [\"id\"] }",
                "partition_key = \"id\"",
                "partition_key",
            ),
            (
                "[source]",
                "[source]\nmax_connections = 1.5",
                "max_connections",
            ),
        ] {
            let bad = GOOD.replacen(from, to, 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
        for (line, key) in [
            (
                "dlq_url = \"http://127.0.0.1:4566/000000000000/jobs-dlq\"",
                "dlq_url",
            ),
            ("table = \"backfill_control\"", "table"),
            ("target = \"orders\"", "target"),
            ("region = \"us-east-1\"", "region"),
        ] {
            let bad = GOOD.replacen(line, "", 1);
            let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("missing field `{key}`")),
                "{line}: {err}"
            );
        }
        let err = BackfillConfig::from_toml_str("").unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
    }
}
