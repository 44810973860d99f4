//! What must never be printed: the [`Secret`] wrapper and URL redaction.
//!
//! Kept apart from the sections that hold secrets so that the one rule
//! (no secret in a log, an error or a config snapshot) has one home.

use std::fmt;

use serde::Deserialize;

/// A string that must never appear in logs or error messages.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value, for the one place that needs it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// In a config snapshot a secret is shown as `redact_url` shows it: a URL
/// with its password replaced, anything else hidden whole.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces the password of a URL with `***`; an unparsable URL is hidden whole.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::GOOD;
    use crate::BackfillConfig;

    #[test]
    fn secret_is_never_printed() {
        let cfg = BackfillConfig::from_toml_str(GOOD).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!cfg.source.redacted_url().contains("hunter2"));
        assert!(cfg.source.redacted_url().contains("127.0.0.1"));
    }
}
