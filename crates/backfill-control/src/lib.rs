//! The control table: each run and each of its jobs, in one DynamoDB table.
//!
//! It is what makes the producer idempotent (a run's plan is stored once and
//! re-producing enqueues only what was never enqueued) and what lets two
//! workers that received the same message (SQS delivers at least once) agree
//! that a finished job stays finished: state changes are conditional writes,
//! never transactions (the emulator has none, and none are needed).
//!
//! The table's layout (`pk`, `sk`) and the file that owns each record:
//!
//! | `pk`          | `sk`                          | what                      | file          |
//! |---------------|-------------------------------|---------------------------|---------------|
//! | `RUN#<run>`   | `RUN`                         | the run: state, counts    | `runs.rs`     |
//! | `RUN#<run>`   | `JOB#<job>`                   | a job: state, checkpoint  | `jobs.rs`     |
//! |               |                               | a job's range handed back | `handback.rs` |
//! | `RUN#<run>`   | `REJECT#<job>#<key hash>`     | a row that is no item     | `rejects.rs`  |
//! | `RUN#<run>`   | `VERIFY#<job>`                | a verification's findings | `findings.rs` |
//! | `RUN#<run>`   | `AUDIT#<time>#<job>`          | an operator's action      | `replay.rs`   |
//! | `DLQ`         | `AUDIT#<time>#<message>`      | the same, for a non-job   | `replay.rs`   |
//! | `FLEET`       | `WORKER#<id>`                 | a worker's heartbeat      | `fleet.rs`    |
//! | `DRIFT#<src>` | `ROUND#<epoch ms, 15 digits>` | a drift-watch round       | `drift.rs`    |
//!
//! `records.rs` turns items into records and back, `error.rs` says what
//! failed, and `accept.rs` decides whether a message is a planned job. This
//! file holds [`ControlTable`] and the few calls every record goes through:
//! a conditional update, a put, a paginated query. The crate writes through
//! its own calls, not the bulk sink: a control record is a handful of
//! small items, never a batch under a write budget.

use std::time::SystemTime;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use backfill_aws::{describe, is_retryable, RetryPolicy};
use futures::{StreamExt, TryStreamExt};

mod accept;
mod drift;
mod error;
mod findings;
mod fleet;
mod handback;
mod jobs;
mod json_records;
mod parts;
mod records;
mod rejects;
mod replay;
mod runs;

pub use accept::{check_planned, Rejection};
/// The fleet count and its division policy belong to capacity; re-exported
/// so `backfill_control::FleetCount` still names it.
pub use backfill_capacity::FleetCount;
/// A heartbeat's hot keys are the key pacer's own; re-exported so that
/// readers of heartbeats (`status`) need not link capacity.
pub use backfill_capacity::HotKey;
pub use drift::DriftRound;
pub use error::ControlError;
pub use findings::{VerifyFindings, MAX_LISTED_PER_JOB};
pub use fleet::{TargetLoad, WorkerBeat, HOT_KEYS_PER_BEAT};
pub use handback::HandedBack;
pub use parts::ArchivePart;
pub use records::{
    Annotation, Checkpoint, Claim, JobRecord, JobState, RunPlan, RunRecord, RunState, RunTable,
};
pub use rejects::{RejectProblem, RejectRecord};
pub use replay::{AuditAction, AuditRecord, ReplayReset, DLQ_AUDIT_PK};

use records::{get_n, get_s, n, s, Item};

/// Access to the control table.
#[derive(Debug, Clone)]
pub struct ControlTable {
    client: Client,
    table: String,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

const RUN_SK: &str = "RUN";

fn job_sk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

/// Puts in flight at once when a plan's jobs or a page's rejects are
/// stored: what the bulk writer was given for them before.
const PUT_CONCURRENCY: usize = 4;

/// One conditional UpdateItem, as [`ControlTable::update`] sends it.
/// Every state change is one of these: the condition is what keeps two
/// workers (or a worker and an operator) from undoing each other's writes.
struct Update<'a> {
    pk: String,
    sk: String,
    /// The update expression.
    set: &'a str,
    /// The condition expression; required, because an unconditional state
    /// change is what this table never makes.
    condition: &'a str,
    names: &'a [(&'a str, &'a str)],
    values: Vec<(&'a str, AttributeValue)>,
    /// What the response carries back (`AllNew`, `AllOld`), if anything.
    returns: Option<ReturnValue>,
}

/// What a conditional write did.
enum Written {
    /// Written; the attributes asked for with `returns` (else empty).
    Applied(Item),
    /// The condition did not hold: nothing was written.
    ConditionFailed,
}

impl ControlTable {
    /// The control table `table`, read and written with `client` (built by
    /// `backfill_aws`, so its calls are retried by our one retry layer).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        ControlTable {
            client,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Sends one conditional update, retried on retryable errors; a failed
    /// condition is an answer (`ConditionFailed`), not an error, since each
    /// caller decides what it means.
    async fn update(&self, u: Update<'_>) -> Result<Written, ControlError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(u.pk))
            .key("sk", s(u.sk))
            .update_expression(u.set)
            .condition_expression(u.condition);
        for (k, v) in u.names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in u.values {
            req = req.expression_attribute_values(k, v);
        }
        if let Some(r) = u.returns {
            req = req.return_values(r);
        }
        match backfill_aws::retry(RetryPolicy::CALL, || req.clone().send()).await {
            Ok(out) => Ok(Written::Applied(out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failed(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(self.err("UpdateItem", &e)),
        }
    }

    /// Puts one whole item, under `condition` if given, retried on
    /// retryable errors with `policy`.
    async fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        policy: RetryPolicy,
    ) -> Result<Written, ControlError> {
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_string));
        match backfill_aws::retry(policy, || req.clone().send()).await {
            Ok(_) => Ok(Written::Applied(Item::new())),
            Err(e) if is_condition_failed(&e) => Ok(Written::ConditionFailed),
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    /// Puts every item (whole-item, idempotent puts), a few at a time.
    /// Returns when all are written; on error some may be, and the caller
    /// writes the whole set again, which the puts being idempotent allows.
    /// Each put is retried as persistently as the bulk writer retried
    /// these items before (the data path's policy): a plan or a page's
    /// rejects are worth more than one throttle.
    async fn put_all(&self, items: Vec<Item>) -> Result<(), ControlError> {
        futures::stream::iter(items)
            .map(|item| self.put(item, None, RetryPolicy::default()))
            .buffer_unordered(PUT_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    /// Every item a query finds, page after page (the SDK's paginator). A
    /// page that fails retryably reads the whole listing again: these are
    /// one run's records, and a listing half read is no answer.
    pub(crate) async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, ControlError> {
        backfill_aws::retry(RetryPolicy::CALL, || {
            let mut pages = query.clone().into_paginator().items().send();
            async move {
                let mut out = Vec::new();
                while let Some(item) = pages.next().await {
                    out.push(item?);
                }
                Ok(out)
            }
        })
        .await
        .map_err(|e| self.err("Query", &e))
    }

    fn err<E, R>(
        &self,
        op: &'static str,
        e: &aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> ControlError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + backfill_aws::HasStatus,
    {
        ControlError::Service {
            table: self.table.clone(),
            op,
            message: describe(e),
            retryable: is_retryable(e),
        }
    }
}

fn is_condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|x| x.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}
