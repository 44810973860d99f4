//! Rejects: rows that cannot become items (an unrepresentable value, an
//! empty or ambiguous key, an item over 400 KB with nowhere to go).
//!
//! A job writes every good row and records each reject here instead of
//! failing whole, so one bad value never keeps good rows out of DynamoDB.
//! Records live beside the run's jobs (`pk = RUN#<run>`, `sk =
//! REJECT#<job>#<hash of the key>`): writing one twice (a page copied again
//! after a redelivery) leaves one record. The job's `rejects` attribute
//! counts them; a job that finished with any shows as `done_with_rejects`
//! until `rejects retry` has written them all.

use backfill_job::{display_key, JobMessage, KeyTuple};
use sha2::{Digest, Sha256};

use crate::{get_s, job_sk, n, now, run_pk, s, ControlError, ControlTable, Item, Update};

const REJECT_PREFIX: &str = "REJECT#";

/// One column of a rejected row, and why it cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectProblem {
    pub column: String,
    pub reason: String,
}

/// A rejected row as the control table keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectRecord {
    pub run_id: String,
    /// The source table (`schema.table`).
    pub table: String,
    pub job_id: String,
    /// The row's key, exact, to read it again.
    pub key: KeyTuple,
    /// Every column of the row at fault.
    pub problems: Vec<RejectProblem>,
    /// When it was recorded (RFC 3339).
    pub at: String,
    /// The worker (or operator) that recorded it.
    pub by: String,
}

impl RejectRecord {
    /// The key as messages show it: `(1, "a")`.
    pub fn key_display(&self) -> String {
        display_key(&self.key)
    }

    fn sk(&self) -> String {
        reject_sk(&self.job_id, &self.key)
    }
}

fn reject_sk(job_id: &str, key: &KeyTuple) -> String {
    // A key can be up to kilobytes of text; its hash keeps the sort key
    // short and still one per row.
    let json = serde_json::to_vec(key).unwrap_or_default();
    let hash = Sha256::digest(&json);
    format!("{REJECT_PREFIX}{job_id}#{}", hex::encode(&hash[..16]))
}

impl ControlTable {
    /// Records rejected rows of `job` (idempotent: a row recorded again
    /// replaces its record).
    pub async fn record_rejects(
        &self,
        job: &JobMessage,
        by: &str,
        rows: Vec<(KeyTuple, Vec<RejectProblem>)>,
    ) -> Result<(), ControlError> {
        if rows.is_empty() {
            return Ok(());
        }
        let at = now();
        let items: Vec<Item> = rows
            .into_iter()
            .map(|(key, problems)| RejectRecord {
                run_id: job.run_id.clone(),
                table: job.table.clone(),
                job_id: job.job_id.clone(),
                key,
                problems,
                at: at.clone(),
                by: by.to_string(),
            })
            .map(|r| self.reject_item(&r))
            .collect::<Result<_, _>>()?;
        self.put_all(items).await?;
        Ok(())
    }

    fn reject_item(&self, r: &RejectRecord) -> Result<Item, ControlError> {
        let body = serde_json::to_string(r).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: r.run_id.clone(),
            sk: r.sk(),
            reason: format!("cannot encode the reject: {e}"),
        })?;
        Ok(Item::from([
            ("pk".to_string(), s(run_pk(&r.run_id))),
            ("sk".to_string(), s(r.sk())),
            ("body".to_string(), s(body)),
        ]))
    }

    /// The run's reject records whose sort key starts with `prefix`.
    fn reject_query(
        &self,
        run_id: &str,
        prefix: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :r)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":r", s(prefix))
            .consistent_read(true)
    }

    /// Every reject of a run, in job and key-hash order.
    pub async fn rejects(&self, run_id: &str) -> Result<Vec<RejectRecord>, ControlError> {
        let query = self.reject_query(run_id, REJECT_PREFIX.to_string());
        self.query_all(query)
            .await?
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk").unwrap_or_default();
                let body = get_s(item, "body").unwrap_or_default();
                serde_json::from_str(&body).map_err(|e| ControlError::Corrupt {
                    table: self.table.clone(),
                    run_id: run_id.to_string(),
                    sk,
                    reason: format!("reject record: {e}"),
                })
            })
            .collect()
    }

    /// How many rejects one job has recorded.
    pub async fn count_rejects(&self, run_id: &str, job_id: &str) -> Result<u64, ControlError> {
        let query = self
            .reject_query(run_id, format!("{REJECT_PREFIX}{job_id}#"))
            .select(aws_sdk_dynamodb::types::Select::Count);
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            let mut pages = query.clone().into_paginator().send();
            async move {
                let mut n = 0u64;
                while let Some(page) = pages.next().await {
                    n += page?.count.max(0) as u64;
                }
                Ok(n)
            }
        })
        .await
        .map_err(|e| self.err("Query", &e))
    }

    /// Replaces a reject's problems (a retry that still fails, for a new reason).
    pub async fn update_reject(&self, r: &RejectRecord) -> Result<(), ControlError> {
        let item = self.reject_item(r)?;
        self.put(item, None, backfill_aws::RetryPolicy::CALL)
            .await?;
        Ok(())
    }

    /// A reject written after all (or whose row is gone): its record is
    /// deleted and its job counts one reject fewer. Deleting a record that
    /// is already gone changes no count, so two retries cannot both count.
    pub async fn resolve_reject(&self, r: &RejectRecord) -> Result<(), ControlError> {
        let deleted = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&r.run_id)))
                .key("sk", s(r.sk()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| self.err("DeleteItem", &e))?;
        if deleted.attributes.is_none() {
            return Ok(());
        }
        let update = Update {
            pk: run_pk(&r.run_id),
            sk: job_sk(&r.job_id),
            set: "ADD rejects :minus SET updated_at = :now",
            condition: "attribute_exists(pk) AND rejects > :zero",
            names: &[],
            values: vec![(":minus", n(-1)), (":zero", n(0)), (":now", s(now()))],
            returns: None,
        };
        // A job gone or already at zero: there is nothing to count down.
        self.update(update).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_job::KeyValue;

    #[test]
    fn one_record_per_row_whatever_the_key_holds() {
        let a = vec![KeyValue::Text("a#b".into()), KeyValue::Text("c".into())];
        let b = vec![KeyValue::Text("a".into()), KeyValue::Text("b#c".into())];
        assert_ne!(reject_sk("j", &a), reject_sk("j", &b));
        assert_eq!(reject_sk("j", &a), reject_sk("j", &a.clone()));
        let long = vec![KeyValue::Text("x".repeat(5000))];
        assert!(reject_sk("j", &long).len() < 100);
    }
}
