//! Run records (`pk = RUN#<run>`, `sk = RUN`): storing a run's plan, its
//! state as the producer moves it, counting finished jobs into it,
//! cancelling it, and listing runs.
//!
//! *Invariant:* an ended run (`finished`, `cancelled`) is never reopened:
//! every write that sets a run's state is conditional on it not having
//! ended (cancelling excepted, which only ever ends it).

use std::collections::HashMap;

use backfill_job::JobMessage;

use crate::records::run_record;
use crate::{
    get_n, get_s, job_sk, n, now, run_pk, s, ControlError, ControlTable, Item, JobState, RunPlan,
    RunRecord, RunState, Update, Written, RUN_SK,
};

impl ControlTable {
    /// The run's record, if the run was planned before.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, ControlError> {
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(run_id)))
                .key("sk", s(RUN_SK))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| self.err("GetItem", &e))?;
        resp.item
            .map(|item| run_record(&self.table, run_id, &item))
            .transpose()
    }

    /// Every run in the table, newest first.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, ControlError> {
        let mut out = Vec::new();
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :run")
            .expression_attribute_values(":run", s(RUN_SK))
            .consistent_read(true);
        let items = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            let mut pages = scan.clone().into_paginator().items().send();
            async move {
                let mut items = Vec::new();
                while let Some(item) = pages.next().await {
                    items.push(item?);
                }
                Ok(items)
            }
        })
        .await
        .map_err(|e| self.err("Scan", &e))?;
        for item in items {
            let pk = get_s(&item, "pk").unwrap_or_default();
            if let Some(run_id) = pk.strip_prefix("RUN#") {
                out.push(run_record(&self.table, run_id, &item)?);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    /// Stores a run's plan: every job (state `planned`), then the run record.
    ///
    /// The run record is written last, so a run record means a complete
    /// plan; a producer that died before writing it left only unqueued job
    /// records, which [`ControlTable::save_plan`] replaces on the next try.
    pub async fn save_plan(
        &self,
        run_id: &str,
        jobs: &[JobMessage],
        plan: &RunPlan,
    ) -> Result<(), ControlError> {
        let tables = serde_json::to_string(&plan.tables).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: run_id.to_string(),
            sk: RUN_SK.to_string(),
            reason: format!("tables: {e}"),
        })?;
        // Another producer may have stored this run while this one planned
        // it: its job records must not be deleted under it.
        if self.get_run(run_id).await?.is_some() {
            return Err(ControlError::RunBeingProduced {
                run_id: run_id.to_string(),
            });
        }
        self.delete_jobs(run_id).await?;
        let items: Vec<Item> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                HashMap::from([
                    ("pk".to_string(), s(run_pk(run_id))),
                    ("sk".to_string(), s(job_sk(&j.job_id))),
                    ("state".to_string(), s(JobState::Planned.as_str())),
                    ("table".to_string(), s(j.table.clone())),
                    ("ordinal".to_string(), n(i)),
                    ("body".to_string(), s(j.to_body())),
                    ("updated_at".to_string(), s(now())),
                ])
            })
            .collect();
        self.put_all(items).await?;
        let mut run = HashMap::from([
            ("pk".to_string(), s(run_pk(run_id))),
            ("sk".to_string(), s(RUN_SK)),
            ("state".to_string(), s(RunState::Planned.as_str())),
            ("jobs_planned".to_string(), n(jobs.len())),
            ("jobs_done".to_string(), n(0)),
            ("rows_copied".to_string(), n(0)),
            ("tables".to_string(), s(tables)),
            ("created_at".to_string(), s(now())),
        ]);
        if let Some(c) = &plan.config {
            run.insert("config".to_string(), s(c.clone()));
        }
        let put = self.put(
            run,
            Some("attribute_not_exists(pk)"),
            backfill_aws::RetryPolicy::CALL,
        );
        match put.await? {
            Written::Applied(_) => Ok(()),
            Written::ConditionFailed => Err(ControlError::RunBeingProduced {
                run_id: run_id.to_string(),
            }),
        }
    }

    async fn delete_jobs(&self, run_id: &str) -> Result<(), ControlError> {
        for rec in self.jobs(run_id).await? {
            backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(run_pk(run_id)))
                    .key("sk", s(job_sk(&rec.job.job_id)))
                    .send()
            })
            .await
            .map_err(|e| self.err("DeleteItem", &e))?;
        }
        Ok(())
    }

    /// Sets the run's state (`producing`, `produced`), unless the run has
    /// ended: a run its workers finished while the producer was still
    /// enqueueing stays `finished`, and a cancelled one stays cancelled.
    /// Returns whether the state was set.
    pub async fn set_run_state(&self, run_id: &str, state: RunState) -> Result<bool, ControlError> {
        let update = Update {
            pk: run_pk(run_id),
            sk: RUN_SK.to_string(),
            // The first state after `planned` is the producer starting to
            // enqueue: the run's start.
            set: "SET #s = :s, updated_at = :now, started_at = if_not_exists(started_at, :now)",
            condition: "attribute_exists(pk) AND #s <> :finished AND #s <> :cancelled",
            names: &[("#s", "state")],
            values: vec![
                (":s", s(state.as_str())),
                (":finished", s(RunState::Finished.as_str())),
                (":cancelled", s(RunState::Cancelled.as_str())),
                (":now", s(now())),
            ],
            returns: None,
        };
        match self.update(update).await? {
            Written::Applied(_) => Ok(true),
            Written::ConditionFailed => match self.get_run(run_id).await? {
                None => Err(ControlError::NoSuchRun {
                    table: self.table.clone(),
                    run_id: run_id.to_string(),
                }),
                Some(_) => Ok(false),
            },
        }
    }

    /// Cancels a run: the run is marked `cancelled` (by whom, when, why),
    /// then every job not finished is marked `cancelled` too. A worker
    /// then drops such a job when it receives it (the claim fails) or at
    /// its next checkpoint if it holds it (the checkpoint fails). Returns
    /// how many jobs were cancelled now. Cancelling twice is harmless.
    pub async fn cancel_run(&self, run_id: &str, by: &str, why: &str) -> Result<u64, ControlError> {
        let update = Update {
            pk: run_pk(run_id),
            sk: RUN_SK.to_string(),
            set: "SET #s = :cancelled, cancelled_at = if_not_exists(cancelled_at, :now), \
                 cancelled_by = if_not_exists(cancelled_by, :by), cancelled_why = if_not_exists(cancelled_why, :why), updated_at = :now",
            condition: "attribute_exists(pk)",
            names: &[("#s", "state")],
            values: vec![
                (":cancelled", s(RunState::Cancelled.as_str())),
                (":by", s(by)),
                (":why", s(why)),
                (":now", s(now())),
            ],
            returns: None,
        };
        if let Written::ConditionFailed = self.update(update).await? {
            return Err(ControlError::NoSuchRun {
                table: self.table.clone(),
                run_id: run_id.to_string(),
            });
        }
        let mut cancelled = 0;
        for rec in self.jobs(run_id).await? {
            if matches!(rec.state, JobState::Done | JobState::Cancelled) {
                continue;
            }
            let update = Update {
                pk: run_pk(run_id),
                sk: job_sk(&rec.job.job_id),
                set: "SET #s = :cancelled, updated_at = :now",
                condition: "#s <> :done",
                names: &[("#s", "state")],
                values: vec![
                    (":cancelled", s(JobState::Cancelled.as_str())),
                    (":done", s(JobState::Done.as_str())),
                    (":now", s(now())),
                ],
                returns: None,
            };
            match self.update(update).await? {
                Written::Applied(_) => cancelled += 1,
                // Finished in the meantime: it stays done.
                Written::ConditionFailed => {}
            }
        }
        Ok(cancelled)
    }

    /// Counts a job's first finish into its run; the run's last job marks
    /// the run `finished` (unless it has ended already).
    pub(crate) async fn count_finished(
        &self,
        job: &JobMessage,
        rows: u64,
    ) -> Result<(), ControlError> {
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: RUN_SK.to_string(),
            set: "ADD jobs_done :one, rows_copied :rows SET updated_at = :now",
            condition: "attribute_exists(pk)",
            names: &[],
            values: vec![(":one", n(1)), (":rows", n(rows)), (":now", s(now()))],
            returns: Some(aws_sdk_dynamodb::types::ReturnValue::AllNew),
        };
        let run = match self.update(update).await? {
            Written::Applied(run) => run,
            // A job enqueued by hand, with no run record: nothing to count.
            Written::ConditionFailed => return Ok(()),
        };
        if get_n(&run, "jobs_done") < get_n(&run, "jobs_planned") {
            return Ok(());
        }
        let update = Update {
            pk: run_pk(&job.run_id),
            sk: RUN_SK.to_string(),
            set: "SET #s = :finished, finished_at = :now, updated_at = :now",
            condition: "#s <> :finished AND #s <> :cancelled",
            names: &[("#s", "state")],
            values: vec![
                (":finished", s(RunState::Finished.as_str())),
                (":cancelled", s(RunState::Cancelled.as_str())),
                (":now", s(now())),
            ],
            returns: None,
        };
        if let Written::Applied(_) = self.update(update).await? {
            tracing::info!(run = %job.run_id, "every job of the run is done: run finished");
        }
        Ok(())
    }
}
