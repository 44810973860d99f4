//! Message signing: an HMAC-SHA256 of the exact body, so that a worker can
//! tell a job the producer (or `backfill dlq replay`) sent from one anybody
//! with `sqs:SendMessage` on the queue made up.
//!
//! The signature travels beside the body (the queue puts it in a message
//! attribute), never inside it: the body and its decoding stay the same
//! whether signing is on or off, and a body signed once can be replayed
//! as it is. The key is the operator's, read from the environment by the
//! config crate; this module only ever sees its bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the SQS message attribute that carries the signature.
pub const SIGNATURE_ATTRIBUTE: &str = "backfill_signature";

/// The scheme tag in front of the hex digest, so that a later scheme can
/// be told apart and refused by name instead of failing as "mismatch".
const SCHEME: &str = "hmac-sha256:";

/// Shortest key accepted: an HMAC key shorter than its hash's output
/// (32 bytes) weakens it, and a key this short is a typo, not a choice.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a message's signature is not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the message is not signed (no `{SIGNATURE_ATTRIBUTE}` attribute) and this worker requires signed jobs")]
    Missing,
    #[error("the message's signature is not of the form `{SCHEME}<64 hex digits>`")]
    Malformed,
    #[error("the message's signature does not match its body (wrong key or altered body)")]
    Mismatch,
    #[error("a signing key must be at least {MIN_KEY_BYTES} bytes; this one is {0}")]
    KeyTooShort(usize),
}

/// Signs and checks job bodies with one key.
#[derive(Clone)]
pub struct MessageSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for MessageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageSigner(***)")
    }
}

impl MessageSigner {
    /// A signer with `key`, which must be at least [`MIN_KEY_BYTES`] long.
    pub fn new(key: &[u8]) -> Result<Self, SignatureError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(SignatureError::KeyTooShort(key.len()));
        }
        Ok(MessageSigner { key: key.to_vec() })
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(body.as_bytes());
        mac
    }

    /// The signature of `body`: `hmac-sha256:<hex>`.
    pub fn sign(&self, body: &str) -> String {
        format!(
            "{SCHEME}{}",
            hex::encode(self.mac(body).finalize().into_bytes())
        )
    }

    /// Checks `signature` against `body` in constant time.
    pub fn verify(&self, body: &str, signature: Option<&str>) -> Result<(), SignatureError> {
        let sig = signature.ok_or(SignatureError::Missing)?;
        let digest = sig
            .strip_prefix(SCHEME)
            .and_then(|h| hex::decode(h).ok())
            .filter(|d| d.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        // `verify_slice` compares in constant time: the time taken says
        // nothing about how many leading bytes of a guess were right.
        self.mac(body)
            .verify_slice(&digest)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_body_verifies_and_an_altered_one_does_not() {
        let s = MessageSigner::new(KEY).unwrap();
        let sig = s.sign("{\"a\":1}");
        assert!(
            sig.starts_with("hmac-sha256:") && sig.len() == 12 + 64,
            "{sig}"
        );
        assert_eq!(s.verify("{\"a\":1}", Some(&sig)), Ok(()));
        assert_eq!(
            s.verify("{\"a\":2}", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        let other = MessageSigner::new(b"another key, also thirty-two bytes!").unwrap();
        assert_eq!(
            other.verify("{\"a\":1}", Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_and_malformed_signatures_say_so() {
        let s = MessageSigner::new(KEY).unwrap();
        assert_eq!(s.verify("b", None), Err(SignatureError::Missing));
        for bad in [
            "",
            "hmac-sha256:",
            "hmac-sha256:zz",
            "sha1:00",
            &format!("hmac-sha256:{}", "0".repeat(62)),
        ] {
            assert_eq!(
                s.verify("b", Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_short_key_is_refused_and_never_printed() {
        assert_eq!(
            MessageSigner::new(b"short").unwrap_err(),
            SignatureError::KeyTooShort(5)
        );
        let dbg = format!("{:?}", MessageSigner::new(KEY).unwrap());
        assert!(!dbg.contains("0123"), "{dbg}");
    }
}
