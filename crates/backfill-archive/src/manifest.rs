//! The manifest of one table's archive run: written last, so a run whose
//! manifest exists is complete, and everything `archive verify` and
//! `restore` need to trust and read the parts.

use serde::{Deserialize, Serialize};

/// The manifest's format, for readers that come years later.
pub const MANIFEST_FORMAT: &str = "backfill-archive/1";

/// One column as every part stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestColumn {
    pub name: String,
    /// `format_type()` of the source column, e.g. `numeric(12,2)`.
    pub pg_type: String,
    /// The Arrow type of the Parquet column, as Arrow prints it.
    pub arrow_type: String,
    /// `text` or `json` where the value is stored as its text form
    /// (unconstrained numeric, money, multi-dimensional arrays); absent
    /// where the Parquet type holds the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// One part: one job's key range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    pub job_id: String,
    /// The object's key in the bucket.
    pub key: String,
    /// The key range (`lo` included, `hi` excluded; open where absent).
    pub range: serde_json::Value,
    pub rows: u64,
    /// The order-independent digest of the rows, 32 hex digits.
    pub digest: String,
    pub sha256: String,
    pub bytes: u64,
    /// When the part's job began reading the source.
    pub read_at: String,
}

/// A table's archive run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub table: String,
    pub run_id: String,
    pub bucket: String,
    pub key_columns: Vec<String>,
    pub columns: Vec<ManifestColumn>,
    pub rows: u64,
    /// The digest of all rows: the parts' digests summed.
    pub digest: String,
    /// The source was read between these times (each part is one
    /// consistent read of its range; the application kept writing).
    pub source_read_from: String,
    pub source_read_to: String,
    pub written_at: String,
    pub parts: Vec<ManifestPart>,
}

/// Why a manifest cannot be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("table {table}, run {run_id}: {reason}")]
    Invalid {
        table: String,
        run_id: String,
        reason: String,
    },
}

/// Parses a digest's 32 hex digits.
pub fn parse_digest(hex: &str) -> Option<u128> {
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
}

impl Manifest {
    /// The manifest of `parts` (each recorded by its job), checked: every
    /// part has the same columns, a digest and a checksum.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        table: &str,
        run_id: &str,
        bucket: &str,
        key_columns: Vec<String>,
        columns: Vec<ManifestColumn>,
        mut parts: Vec<ManifestPart>,
        written_at: String,
    ) -> Result<Manifest, ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            table: table.to_string(),
            run_id: run_id.to_string(),
            reason,
        };
        parts.sort_by(|a, b| a.key.cmp(&b.key));
        let mut sum: u128 = 0;
        let mut rows = 0u64;
        for p in &parts {
            let d = parse_digest(&p.digest).ok_or_else(|| {
                invalid(format!(
                    "part {} has no valid digest ({:?})",
                    p.key, p.digest
                ))
            })?;
            if p.sha256.len() != 64 {
                return Err(invalid(format!("part {} has no SHA-256", p.key)));
            }
            sum = sum.wrapping_add(d);
            rows += p.rows;
        }
        let from = parts
            .iter()
            .map(|p| p.read_at.clone())
            .min()
            .unwrap_or_default();
        let to = parts
            .iter()
            .map(|p| p.read_at.clone())
            .max()
            .unwrap_or_default();
        Ok(Manifest {
            format: MANIFEST_FORMAT.to_string(),
            table: table.to_string(),
            run_id: run_id.to_string(),
            bucket: bucket.to_string(),
            key_columns,
            columns,
            rows,
            digest: format!("{sum:032x}"),
            source_read_from: from,
            source_read_to: to,
            written_at,
            parts,
        })
    }

    /// Reads a manifest, refusing another format.
    pub fn parse(table: &str, run_id: &str, body: &[u8]) -> Result<Manifest, ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            table: table.to_string(),
            run_id: run_id.to_string(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("the manifest is not valid: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "the manifest's format is {:?}; this build reads {MANIFEST_FORMAT:?}",
                m.format
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(key: &str, rows: u64, digest: u128) -> ManifestPart {
        ManifestPart {
            job_id: key.into(),
            key: key.into(),
            range: serde_json::json!({}),
            rows,
            digest: format!("{digest:032x}"),
            sha256: "a".repeat(64),
            bytes: 10,
            read_at: format!("2026-12-07T10:00:0{rows}Z"),
        }
    }

    #[test]
    fn a_manifest_sums_its_parts_and_reads_back() {
        let m = Manifest::build(
            "public.t",
            "r1",
            "b",
            vec!["id".into()],
            vec![],
            vec![part("p2", 2, u128::MAX), part("p1", 1, 2)],
            "now".into(),
        )
        .unwrap();
        assert_eq!(m.rows, 3);
        // The sum wraps as the copy's digest does.
        assert_eq!(m.digest, format!("{:032x}", 1u128));
        assert_eq!(m.parts[0].key, "p1");
        assert_eq!(m.source_read_from, "2026-12-07T10:00:01Z");
        let back = Manifest::parse("public.t", "r1", &serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn bad_parts_and_other_formats_are_refused_by_name() {
        let mut bad = part("p1", 1, 0);
        bad.digest = "xyz".into();
        let e = Manifest::build(
            "public.t",
            "r1",
            "b",
            vec![],
            vec![],
            vec![bad],
            "now".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("public.t") && e.contains("p1"), "{e}");
        let e = Manifest::parse("public.t", "r1", br#"{"format":"x/9"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid") || e.contains("format"), "{e}");
        assert!(Manifest::parse("public.t", "r1", b"\xff").is_err());
        assert_eq!(parse_digest(&"f".repeat(32)), Some(u128::MAX));
        assert_eq!(parse_digest("ff"), None);
    }
}
