//! How the binary reports trouble: each cause once, the endpoints a
//! failed call went to, the step that creates what is missing, and a word
//! while a command waits on a service.

use std::time::Instant;

use backfill_config::BackfillConfig;

/// The error and its causes on one line, each said once: many errors (the
/// config crate's, sqlx's) repeat their cause's text in their own message,
/// and anyhow's `{:#}` would print it again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Where the command's calls go: the source's host and the AWS endpoints.
pub fn endpoints(cfg: &BackfillConfig) -> String {
    let aws = |e: Option<&str>| e.unwrap_or("the regional endpoint").to_string();
    format!(
        "source {}, DynamoDB {}, SQS {}",
        cfg.source.redacted_url(),
        aws(cfg.aws.dynamodb_endpoint()),
        aws(cfg.aws.sqs_endpoint())
    )
}

/// Logs every 10 s (first after 5 s) that the command is still waiting.
pub async fn slow_call_watchdog(endpoints: String) {
    let started = Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    loop {
        tracing::warn!(
            waited_secs = started.elapsed().as_secs(),
            "still waiting for an answer ({endpoints}); each AWS call attempt gives up after aws.attempt_timeout_secs"
        );
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    }
}

/// An error from talking to a service (refused, timed out, an answer that
/// is not the service's) names the endpoints the command used.
pub fn with_endpoints(e: anyhow::Error, cfg: &BackfillConfig) -> anyhow::Error {
    let text = error_chain(&e);
    let about_aws = ["dispatch failure", "timeout", "timed out", "HTTP "]
        .iter()
        .any(|needle| text.contains(needle));
    if about_aws && !text.contains("source postgres") {
        let aws = |e: Option<&str>| e.unwrap_or("the regional endpoint").to_string();
        e.context(format!(
            "talking to AWS (DynamoDB at {}, SQS at {})",
            aws(cfg.aws.dynamodb_endpoint()),
            aws(cfg.aws.sqs_endpoint())
        ))
    } else {
        e
    }
}

/// A queue or control table that does not exist yet is a stack that was
/// never bootstrapped: say which step creates it instead of the raw
/// ResourceNotFound / NonExistentQueue.
pub fn bootstrap_hint(e: anyhow::Error, cfg: &BackfillConfig) -> anyhow::Error {
    let text = error_chain(&e);
    if text.contains("NonExistentQueue") {
        e.context(format!(
            "the queue {} (or its DLQ {}) does not exist: run `backfill bootstrap` first, or check queue.url",
            cfg.queue.url, cfg.queue.dlq_url
        ))
    } else if text.contains("ResourceNotFound") && text.contains(&cfg.control.table) {
        e.context(format!(
            "control table {} does not exist: run `backfill bootstrap` first, or check control.table",
            cfg.control.table
        ))
    } else {
        e
    }
}
