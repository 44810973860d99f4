//! The fixture the unit tests of several modules load.
//!
//! One minimal valid file, shared, so that each test states only what it
//! changes.

pub(crate) const GOOD: &str = r#"
        [source]
        url = "postgres://app:hunter2@127.0.0.1:5432/db"
        [aws]
        region = "us-east-1"
        [queue]
        url = "http://127.0.0.1:4566/000000000000/jobs"
        dlq_url = "http://127.0.0.1:4566/000000000000/jobs-dlq"
        [control]
        table = "backfill_control"
        [[tables]]
        source = "public.orders"
        target = "orders"
        partition_key = { columns = ["id"] }
    "#;
