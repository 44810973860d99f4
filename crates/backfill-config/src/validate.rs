//! Validation: every rule the types cannot express, across all sections.
//!
//! One function in one module, in a fixed order, so that the first error
//! a broken file reports does not depend on how the sections are split.

use std::collections::HashSet;

use crate::error::{invalid, ConfigError};
use crate::key::check_key;
use crate::tables::Oversize;
use crate::BackfillConfig;

impl BackfillConfig {
    /// Checks every value the types cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.source.url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "source.url",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        if self.source.pause_query.is_some() != self.source.pause_above.is_some() {
            return Err(invalid(
                "source.pause_above",
                "pause_query and pause_above go together",
            ));
        }
        if self.source.pause_check_secs == 0 {
            return Err(invalid("source.pause_check_secs", "must be at least 1"));
        }
        if self.source.max_connections == 0 {
            return Err(invalid("source.max_connections", "must be at least 1"));
        }
        if self.aws.region.trim().is_empty() {
            return Err(invalid("aws.region", "must not be empty"));
        }
        if self.aws.attempt_timeout_secs < u64::from(self.queue.wait_time_secs) + 5 {
            return Err(invalid(
                "aws.attempt_timeout_secs",
                format!(
                    "must be at least 5 s longer than queue.wait_time_secs ({} s), or every long poll of the queue times out",
                    self.queue.wait_time_secs
                ),
            ));
        }
        for (key, value) in [
            ("aws.endpoint_url", &self.aws.endpoint_url),
            ("aws.dynamodb_endpoint_url", &self.aws.dynamodb_endpoint_url),
            ("aws.sqs_endpoint_url", &self.aws.sqs_endpoint_url),
            ("aws.s3_endpoint_url", &self.aws.s3_endpoint_url),
        ] {
            if let Some(v) = value {
                check_http_url(key, v)?;
            }
        }
        check_http_url("queue.url", &self.queue.url)?;
        check_http_url("queue.dlq_url", &self.queue.dlq_url)?;
        if self.queue.url == self.queue.dlq_url {
            return Err(invalid("queue.dlq_url", "must differ from queue.url"));
        }
        if !(1..=1000).contains(&self.queue.max_receive_count) {
            return Err(invalid("queue.max_receive_count", "must be 1 to 1000"));
        }
        if !(1..=43_200).contains(&self.queue.visibility_timeout_secs) {
            return Err(invalid(
                "queue.visibility_timeout_secs",
                "must be 1 to 43200 (SQS limit)",
            ));
        }
        if self.queue.wait_time_secs > 20 {
            return Err(invalid(
                "queue.wait_time_secs",
                "must be 0 to 20 (SQS limit)",
            ));
        }
        if let Some(name) = &self.queue.signing_key_env {
            // Upper case only: a key pasted here by mistake (hex or base64)
            // is refused, and this error does not repeat it.
            let ok = name.len() <= 128
                && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(invalid(
                    "queue.signing_key_env",
                    "must be the NAME of an environment variable (A-Z, 0-9, _), such as BACKFILL_JOB_SIGNING_KEY, never the key itself",
                ));
            }
        }
        check_table_name("control.table", &self.control.table)?;
        if self.producer.rows_per_job == 0 {
            return Err(invalid("producer.rows_per_job", "must be at least 1"));
        }
        if self.producer.samples_per_job == 0 {
            return Err(invalid("producer.samples_per_job", "must be at least 1"));
        }
        if self.producer.max_sample_rows == 0 {
            return Err(invalid("producer.max_sample_rows", "must be at least 1"));
        }
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        if !(1..=100_000).contains(&self.worker.page_rows) {
            return Err(invalid("worker.page_rows", "must be 1 to 100000"));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.worker.page_bytes) {
            return Err(invalid("worker.page_bytes", "must be 64 KiB to 1 GiB"));
        }
        if self.worker.verify_reads_per_sec == 0 {
            return Err(invalid(
                "worker.verify_reads_per_sec",
                "must be at least 1 (read requests a second)",
            ));
        }
        if !(1..=64).contains(&self.worker.stripes) {
            return Err(invalid("worker.stripes", "must be 1 (off) to 64"));
        }
        if !(1..=64).contains(&self.worker.write_concurrency) {
            return Err(invalid("worker.write_concurrency", "must be 1 to 64"));
        }
        if !(0.0..=1.0).contains(&self.worker.max_reject_fraction) {
            return Err(invalid("worker.max_reject_fraction", "must be 0 to 1"));
        }
        if !(0.0..=1.0).contains(&self.worker.verify_sample_rate) {
            return Err(invalid("worker.verify_sample_rate", "must be 0 to 1"));
        }
        if self.worker.max_write_attempts == 0 {
            return Err(invalid("worker.max_write_attempts", "must be at least 1"));
        }
        if self.capacity.heartbeat_secs == 0
            || self.capacity.worker_expiry_secs <= self.capacity.heartbeat_secs
        {
            return Err(invalid(
                "capacity.worker_expiry_secs",
                "must be longer than capacity.heartbeat_secs (which must be at least 1)",
            ));
        }
        let k = self.capacity.key_wcu_per_sec;
        if !(k.is_finite() && k >= 0.0) {
            return Err(invalid(
                "capacity.key_wcu_per_sec",
                "must be a number of WCU/s, 0 or more (0 turns pacing by key off)",
            ));
        }
        self.metrics.listen_addr()?;
        if self.metrics.liveness_max_age_secs <= self.capacity.heartbeat_secs {
            return Err(invalid(
                "metrics.liveness_max_age_secs",
                format!(
                    "must be longer than capacity.heartbeat_secs ({}), the fleet loop's tick",
                    self.capacity.heartbeat_secs
                ),
            ));
        }
        if self.tables.is_empty() {
            return Err(invalid("tables", "lists no table to copy"));
        }
        let mut sources = HashSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            let at = |k: &str| format!("tables[{i}].{k}");
            if t.source.trim().is_empty() {
                return Err(invalid(at("source"), "must not be empty"));
            }
            if t.source.split('.').count() > 2 || t.source.split('.').any(str::is_empty) {
                return Err(invalid(
                    at("source"),
                    format!("`{}` is not `table` or `schema.table`", t.source),
                ));
            }
            if !sources.insert(t.source.as_str()) {
                return Err(invalid(
                    at("source"),
                    format!("table `{}` is listed twice", t.source),
                ));
            }
            check_table_name(&at("target"), &t.target)?;
            if let Some(r) = t.read_budget_rcu {
                if r.is_nan() || r < 1.0 {
                    return Err(invalid(at("read_budget_rcu"), "must be at least 1"));
                }
            }
            match (t.write_budget_wcu, t.write_budget_fraction) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        at("write_budget_fraction"),
                        "give write_budget_wcu or write_budget_fraction, not both",
                    ))
                }
                (Some(w), None) if w.is_nan() || w < 1.0 => {
                    return Err(invalid(at("write_budget_wcu"), "must be at least 1"))
                }
                (None, Some(f)) if f.is_nan() || f <= 0.0 || f > 1.0 => {
                    return Err(invalid(
                        at("write_budget_fraction"),
                        "must be above 0 and at most 1",
                    ))
                }
                _ => {}
            }
            if t.oversize == Oversize::S3 {
                match &self.offload {
                    None => {
                        return Err(invalid(
                            at("oversize"),
                            "is \"s3\" but there is no [offload] section",
                        ))
                    }
                    Some(o) if o.bucket.is_empty() => {
                        return Err(invalid("offload.bucket", "must not be empty"))
                    }
                    Some(_) => {}
                }
            }
            if let Some(inc) = &t.include {
                if let Some(c) = inc.iter().find(|c| t.exclude.contains(c)) {
                    return Err(invalid(
                        at("exclude"),
                        format!("column {c} is also in `include`"),
                    ));
                }
            }
            let mut attrs = HashSet::new();
            for a in t.rename.values() {
                if a.is_empty() {
                    return Err(invalid(at("rename"), "an attribute name is empty"));
                }
                if !attrs.insert(a) {
                    return Err(invalid(
                        at("rename"),
                        format!("two columns are renamed to {a}"),
                    ));
                }
            }
            check_key(&at("partition_key"), &t.partition_key)?;
            if let Some(sk) = &t.sort_key {
                check_key(&at("sort_key"), sk)?;
                if sk.attribute_name() == t.partition_key.attribute_name() {
                    return Err(invalid(
                        at("sort_key.attribute"),
                        "must differ from the partition key attribute",
                    ));
                }
            }
        }
        if let Some(a) = &self.archive {
            check_archive(a)?;
        }
        Ok(())
    }
}

fn check_archive(a: &crate::ArchiveConfig) -> Result<(), ConfigError> {
    if a.bucket.trim().is_empty() {
        return Err(invalid("archive.bucket", "must not be empty"));
    }
    if !(1..=1_048_576).contains(&a.row_group_rows) {
        return Err(invalid("archive.row_group_rows", "must be 1 to 1048576"));
    }
    if !(1..=22).contains(&a.zstd_level) {
        return Err(invalid(
            "archive.zstd_level",
            "must be 1 to 22 (zstd's levels)",
        ));
    }
    const MIB: usize = 1024 * 1024;
    if !(5 * MIB..=5 * 1024 * MIB).contains(&a.upload_part_bytes) {
        return Err(invalid(
            "archive.upload_part_bytes",
            "must be 5 MiB to 5 GiB (S3's limits on a multipart upload's part)",
        ));
    }
    Ok(())
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(_) => Err(invalid(key, "must be an http:// or https:// URL")),
        Err(e) => Err(invalid(key, format!("not a URL: {e}"))),
    }
}

/// DynamoDB's table-name rule: 3 to 255 of `[a-zA-Z0-9_.-]`.
fn check_table_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=255).contains(&name.len()) || !ok_chars {
        return Err(invalid(
            key,
            format!("`{name}` is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ - .)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::GOOD;
    use crate::BackfillConfig;

    #[test]
    fn an_attempt_timeout_shorter_than_the_long_poll_is_refused() {
        let with = |t: &str| {
            GOOD.replace(
                "region = \"us-east-1\"",
                &format!("region = \"us-east-1\"\nattempt_timeout_secs = {t}"),
            )
        };
        // The default long poll is 20 s: 24 s would time out every receive.
        let err = BackfillConfig::from_toml_str(&with("24"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.attempt_timeout_secs"), "{err}");
        assert!(err.contains("queue.wait_time_secs"), "{err}");
        assert_eq!(
            BackfillConfig::from_toml_str(&with("25"))
                .unwrap()
                .aws
                .attempt_timeout_secs,
            25
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad = GOOD.replace("table = \"backfill_control\"", "table = \"x\"");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("control.table"), "{err}");

        let bad = GOOD.replace("columns = [\"id\"]", "columns = [\"a\", \"b\"]");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("tables[0].partition_key.attribute"), "{err}");

        let bad = GOOD.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nregoin = 1",
        );
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("regoin"), "{err}");

        let bad = GOOD.replace("[queue]", "[queue]\nmax_receive_count = \"many\"");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(err.contains("max_receive_count"), "{err}");
    }

    #[test]
    fn bad_url_error_does_not_leak_password() {
        let bad = GOOD.replace("postgres://app", "mysql://app");
        let err = BackfillConfig::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            err.contains("source.url") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
