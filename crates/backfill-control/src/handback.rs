//! A running job handing the rest of its range back as a new job, so the
//! last minutes of a run use the budget too (the tail: workers idle while
//! a few long jobs finish alone).
//!
//! The owner of job `P` over `[lo, hi)` splits it at a key `s` it has not
//! read yet: `P` keeps `[lo, s)`, a child `C` gets `[s, hi)`. No write is a
//! transaction, so the order of the writes is what keeps every row owned:
//!
//! 1. `C`'s record, `planned` (a put that never overwrites);
//! 2. `P`'s record: its new end `s` and `C` among its children, only if the
//!    writer still owns `P` and it runs. If not, `C`'s record is deleted
//!    again and `P`'s new owner copies the whole range;
//! 3. the run counts `C` among its jobs (once: the run keeps the set of
//!    children it counted), so the run cannot finish before `C`;
//! 4. `C` is sent to the queue and marked `queued`.
//!
//! A worker that dies after 2 leaves `P` narrowed with a child perhaps not
//! counted or sent: whoever claims `P` next reads both from the claim and
//! does 3 and 4 again ([`ControlTable::adopt_children`]) before copying, and
//! `P` cannot finish before that. Rows are never left without a job: they
//! belong to `P` until step 2 names the job that takes them.

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_job::{JobMessage, KeyTuple};

use crate::{
    job_sk, n, now, run_pk, s, ControlError, ControlTable, JobState, RunState, Update, Written,
    RUN_SK,
};

/// What a job's record says of the range it has handed back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandedBack {
    /// Where the job now ends (exclusive), if it handed the rest back.
    pub hi: Option<KeyTuple>,
    /// The jobs it handed back, by id.
    pub children: Vec<String>,
}

impl ControlTable {
    /// Hands `[split, hi)` of `parent` back as `child` (whose range it is),
    /// for `worker`, which owns `parent`: steps 1 to 3 of the module's
    /// order. The caller then sends `child` to the queue and marks it
    /// queued. [`ControlError::Superseded`] when `worker` no longer owns
    /// `parent` (nothing is handed back then).
    pub async fn hand_back(
        &self,
        parent: &JobMessage,
        worker: &str,
        split: &KeyTuple,
        child: &JobMessage,
    ) -> Result<(), ControlError> {
        let item = std::collections::HashMap::from([
            ("pk".to_string(), s(run_pk(&child.run_id))),
            ("sk".to_string(), s(job_sk(&child.job_id))),
            ("state".to_string(), s(JobState::Planned.as_str())),
            ("table".to_string(), s(child.table.clone())),
            // After every planned job, in the order children are made.
            ("ordinal".to_string(), n(u64::MAX / 2 + crate::epoch_ms())),
            ("body".to_string(), s(child.to_body())),
            ("parent".to_string(), s(parent.job_id.clone())),
            ("updated_at".to_string(), s(now())),
        ]);
        // Already there: an earlier try of this same hand-back wrote it.
        self.put(
            item,
            Some("attribute_not_exists(sk)"),
            backfill_aws::RetryPolicy::CALL,
        )
        .await?;
        let hi = serde_json::to_string(split).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: parent.run_id.clone(),
            sk: job_sk(&parent.job_id),
            reason: e.to_string(),
        })?;
        let update = Update {
            pk: run_pk(&parent.run_id),
            sk: job_sk(&parent.job_id),
            set: "SET hi_now = :hi, updated_at = :now ADD children :child",
            condition: "worker = :w AND #s = :running",
            names: &[("#s", "state")],
            values: vec![
                (":hi", s(hi)),
                (":child", AttributeValue::Ss(vec![child.job_id.clone()])),
                (":w", s(worker)),
                (":running", s(JobState::Running.as_str())),
                (":now", s(now())),
            ],
            returns: None,
        };
        if let Written::ConditionFailed = self.update(update).await? {
            self.delete_planned(child).await?;
            return Err(ControlError::Superseded {
                job_id: parent.job_id.clone(),
            });
        }
        self.count_child(child).await
    }

    /// Steps 3 and 4 for children a job's earlier owner handed back: each
    /// is counted in the run, and those still `planned` are returned for
    /// the caller to send and mark queued.
    pub async fn adopt_children(
        &self,
        parent: &JobMessage,
        children: &[String],
    ) -> Result<Vec<JobMessage>, ControlError> {
        let mut unsent = Vec::new();
        for id in children {
            let Some(rec) = self.job(&parent.run_id, id).await? else {
                continue;
            };
            self.count_child(&rec.job).await?;
            if rec.state == JobState::Planned {
                unsent.push(rec.job);
            }
        }
        Ok(unsent)
    }

    /// Counts `child` among its run's jobs, once.
    async fn count_child(&self, child: &JobMessage) -> Result<(), ControlError> {
        let update = Update {
            pk: run_pk(&child.run_id),
            sk: RUN_SK.to_string(),
            set: "ADD jobs_planned :one, handed_back :child SET updated_at = :now",
            condition: "attribute_exists(pk) AND NOT contains(handed_back, :id) \
                        AND #s <> :finished AND #s <> :cancelled",
            names: &[("#s", "state")],
            values: vec![
                (":one", n(1)),
                (":child", AttributeValue::Ss(vec![child.job_id.clone()])),
                (":id", s(child.job_id.clone())),
                (":finished", s(RunState::Finished.as_str())),
                (":cancelled", s(RunState::Cancelled.as_str())),
                (":now", s(now())),
            ],
            returns: None,
        };
        // Counted before, or the run ended (cancelled: the child is dropped
        // when taken, as every job of a cancelled run is).
        self.update(update).await?;
        Ok(())
    }

    /// Deletes a job record that is still `planned` (a hand-back that did
    /// not happen); one taken since is left alone.
    async fn delete_planned(&self, job: &JobMessage) -> Result<(), ControlError> {
        let req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&job.run_id)))
            .key("sk", s(job_sk(&job.job_id)))
            .condition_expression("#s = :planned")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":planned", s(JobState::Planned.as_str()));
        match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if crate::is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.err("DeleteItem", &e)),
        }
    }
}

/// The hand-back state a job's item holds (`hi_now`, `children`).
pub(crate) fn handed_back(
    table: &str,
    job: &JobMessage,
    item: &crate::Item,
) -> Result<HandedBack, ControlError> {
    let hi =
        match crate::get_s(item, "hi_now") {
            None => None,
            Some(text) => Some(serde_json::from_str::<KeyTuple>(&text).map_err(|e| {
                ControlError::Corrupt {
                    table: table.to_string(),
                    run_id: job.run_id.clone(),
                    sk: job_sk(&job.job_id),
                    reason: format!("hi_now: {e}"),
                }
            })?),
        };
    let mut children = match item.get("children") {
        Some(AttributeValue::Ss(ids)) => ids.clone(),
        _ => Vec::new(),
    };
    children.sort();
    Ok(HandedBack { hi, children })
}
