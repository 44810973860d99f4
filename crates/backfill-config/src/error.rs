//! The one error type of configuration loading, and its most common shape.
//!
//! Every section module and the loader build these errors, so they live
//! below all of them rather than in any one section.

/// Why the configuration could not be used. Each variant names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key had the wrong type.
    #[error("cannot load configuration from {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    /// A key has a value of the wrong type (the `config` crate alone would
    /// round `1.5` into an integer key or take `"5"` for a number).
    #[error("cannot load configuration from {path}: `{key}`: {reason}")]
    Type {
        path: String,
        key: String,
        reason: String,
    },
    /// A key parsed but its value is not acceptable.
    #[error("invalid configuration: `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// An environment override names no key, or gives one a wrong value.
    #[error("invalid configuration: environment variable {variable}: {reason}")]
    Env { variable: String, reason: String },
}

pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}
