//! Job records (`pk = RUN#<run>`, `sk = JOB#<job>`): listing and reading
//! them, and every change of a job's state: queued, claimed, checkpointed,
//! finished, failed.
//!
//! *Invariants:* only `save_plan` (in `runs.rs`) creates a job record (and
//! `hand_back`, the children of a job its owner splits), so
//! each write here is conditional on the record existing; `done` is never
//! regressed; a checkpoint is written only by the job's current owner.

use backfill_job::JobMessage;

use crate::records::{checkpoint, job_record};
use crate::{
    job_sk, n, now, run_pk, s, Checkpoint, Claim, ControlError, ControlTable, JobRecord, JobState,
    Update, Written,
};

impl ControlTable {
    /// Every job of a run, in plan order.
    pub async fn jobs(&self, run_id: &str) -> Result<Vec<JobRecord>, ControlError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :job)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":job", s("JOB#"))
            .consistent_read(true);
        let mut out = Vec::new();
        for item in self.query_all(query).await? {
            out.push(job_record(&self.table, run_id, &item)?);
        }
        out.sort_by_key(|(ordinal, _)| *ordinal);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// One job of a run, if the control table has it.
    pub async fn job(&self, run_id: &str, job_id: &str) -> Result<Option<JobRecord>, ControlError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(run_id)))
                .key("sk", s(job_sk(job_id)))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| self.err("GetItem", &e))?;
        match resp.item {
            None => Ok(None),
            Some(item) => Ok(Some(job_record(&self.table, run_id, &item)?.1)),
        }
    }

    async fn job_state(&self, job: &JobMessage) -> Result<Option<JobState>, ControlError> {
        Ok(self.job(&job.run_id, &job.job_id).await?.map(|r| r.state))
    }

    /// Marks planned jobs as sent to the queue.
    pub async fn mark_queued(&self, run_id: &str, job_ids: &[&str]) -> Result<(), ControlError> {
        for id in job_ids {
            let update = Update {
                pk: run_pk(run_id),
                sk: job_sk(id),
                set: "SET #s = :queued, updated_at = :now",
                condition: "#s = :planned",
                names: &[("#s", "state")],
                values: vec![
                    (":queued", s(JobState::Queued.as_str())),
                    (":planned", s(JobState::Planned.as_str())),
                    (":now", s(now())),
                ],
                returns: None,
            };
            // Already past `planned` (a worker took it): nothing to do.
            self.update(update).await?;
        }
        Ok(())
    }

    /// Takes a job for `worker`: counts the attempt, unless the job is done.
    /// Only a job the control table holds (a planned one) can be claimed: a
    /// claim never creates a record, so a made-up message cannot make one.
    pub async fn claim(&self, job: &JobMessage, worker: &str) -> Result<Claim, ControlError> {
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: job_sk(&job.job_id),
            set: "SET #s = :running, worker = :w, updated_at = :now, started_at = if_not_exists(started_at, :now), attempts = if_not_exists(attempts, :zero) + :one",
            condition: "attribute_exists(#s) AND #s <> :done AND #s <> :cancelled",
            names: &[("#s", "state")],
            values: vec![
                (":running", s(JobState::Running.as_str())),
                (":done", s(JobState::Done.as_str())),
                (":cancelled", s(JobState::Cancelled.as_str())),
                (":w", s(worker)),
                (":now", s(now())),
                (":zero", n(0)),
                (":one", n(1)),
            ],
            returns: Some(aws_sdk_dynamodb::types::ReturnValue::AllNew),
        };
        match self.update(update).await? {
            Written::Applied(attrs) => Ok(Claim::Started {
                attempts: crate::get_n(&attrs, "attempts").max(1),
                checkpoint: checkpoint(&self.table, job, &attrs)?,
                handed_back: crate::handback::handed_back(&self.table, job, &attrs)?,
            }),
            // Done, cancelled or never planned; which one decides what the worker does.
            Written::ConditionFailed => match self.job_state(job).await? {
                Some(JobState::Cancelled) => Ok(Claim::Cancelled),
                Some(_) => Ok(Claim::AlreadyDone),
                None => Err(ControlError::NoSuchJob {
                    table: self.table.clone(),
                    run_id: job.run_id.clone(),
                    job_id: job.job_id.clone(),
                }),
            },
        }
    }

    /// Records how far `worker` got with a job, after a page is durable. Fails
    /// with [`ControlError::Superseded`] when another worker has claimed the
    /// job since (a redelivery): this worker must stop, and its checkpoint
    /// never overwrites the new owner's.
    pub async fn checkpoint(
        &self,
        job: &JobMessage,
        worker: &str,
        ck: &Checkpoint,
    ) -> Result<(), ControlError> {
        let key = serde_json::to_string(&ck.last_key).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: job.run_id.clone(),
            sk: job_sk(&job.job_id),
            reason: e.to_string(),
        })?;
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: job_sk(&job.job_id),
            set: "SET ck_key = :k, ck_rows = :r, ck_count = :c, ck_sum = :h, updated_at = :now",
            condition: "worker = :w AND #s = :running",
            names: &[("#s", "state")],
            values: vec![
                (":k", s(key)),
                (":r", n(ck.rows)),
                (":c", n(ck.digest_count)),
                (":h", s(format!("{:032x}", ck.digest_sum))),
                (":w", s(worker)),
                (":running", s(JobState::Running.as_str())),
                (":now", s(now())),
            ],
            returns: None,
        };
        match self.update(update).await? {
            Written::Applied(_) => Ok(()),
            Written::ConditionFailed => match self.job_state(job).await? {
                Some(JobState::Cancelled) => Err(ControlError::Cancelled {
                    run_id: job.run_id.clone(),
                    job_id: job.job_id.clone(),
                }),
                _ => Err(ControlError::Superseded {
                    job_id: job.job_id.clone(),
                }),
            },
        }
    }

    /// Records a job as done with the rows it copied and the digest (an
    /// order-independent hash sum) of the items those rows became, and
    /// counts it in its run; the run's last job marks the run `finished`.
    /// A job finished before (a redelivery) is counted once.
    pub async fn finish(
        &self,
        job: &JobMessage,
        rows: u64,
        digest: &str,
        rejects: u64,
    ) -> Result<(), ControlError> {
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: job_sk(&job.job_id),
            set: "SET #s = :done, #r = :rows, digest = :digest, rejects = :rejects, updated_at = :now, finished_at = :now REMOVE last_error",
            condition: "attribute_exists(#s) AND #s <> :done",
            names: &[("#s", "state"), ("#r", "rows")],
            values: vec![
                (":digest", s(digest)),
                (":rejects", n(rejects)),
                (":done", s(JobState::Done.as_str())),
                (":rows", n(rows)),
                (":now", s(now())),
            ],
            returns: None,
        };
        match self.update(update).await? {
            Written::Applied(_) => self.count_finished(job, rows).await,
            // Finished before (a redelivery), or never planned: counted already, or never.
            Written::ConditionFailed => Ok(()),
        }
    }

    /// Records why a job failed; `dead` when it went to the DLQ. Never
    /// regresses a finished job.
    pub async fn record_failure(
        &self,
        job: &JobMessage,
        error: &str,
        dead: bool,
    ) -> Result<(), ControlError> {
        let state = if dead {
            JobState::Failed
        } else {
            JobState::Queued
        };
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: job_sk(&job.job_id),
            set: "SET #s = :state, last_error = :e, last_error_at = :now, updated_at = :now",
            condition: "attribute_exists(#s) AND #s <> :done",
            names: &[("#s", "state")],
            values: vec![
                (":state", s(state.as_str())),
                (":done", s(JobState::Done.as_str())),
                (":e", s(error.chars().take(4000).collect::<String>())),
                (":now", s(now())),
            ],
            returns: None,
        };
        // A done job stays done; a job never planned gets no record.
        self.update(update).await?;
        Ok(())
    }
}
