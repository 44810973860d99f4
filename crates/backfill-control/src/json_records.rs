//! Records a job keeps beside its own as one JSON attribute under the
//! run's partition (`sk = <PREFIX><job>`): a verification job's findings,
//! an archive job's part. One query of the run reads them all back.

use std::collections::HashMap;

use backfill_aws::RetryPolicy;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::records::Item;
use crate::{get_s, run_pk, s, ControlError, ControlTable};

impl ControlTable {
    /// Stores (or replaces) `value` as JSON in attribute `field` at `sk`.
    pub(crate) async fn put_json<T: Serialize>(
        &self,
        run_id: &str,
        sk: String,
        field: &str,
        value: &T,
    ) -> Result<(), ControlError> {
        let body = serde_json::to_string(value).map_err(|e| ControlError::Corrupt {
            table: self.table.clone(),
            run_id: run_id.to_string(),
            sk: sk.clone(),
            reason: format!("{field}: {e}"),
        })?;
        let item: Item = HashMap::from([
            ("pk".to_string(), s(run_pk(run_id))),
            ("sk".to_string(), s(sk)),
            (field.to_string(), s(body)),
        ]);
        self.put(item, None, RetryPolicy::CALL).await?;
        Ok(())
    }

    /// Every record of `run_id` whose sort key starts with `prefix`, read
    /// from its JSON attribute `field`, in sort-key order. A record that
    /// does not read is an error naming its key.
    pub(crate) async fn query_json<T: DeserializeOwned>(
        &self,
        run_id: &str,
        prefix: &str,
        field: &str,
    ) -> Result<Vec<T>, ControlError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":v", s(prefix))
            .consistent_read(true);
        self.query_all(query)
            .await?
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk").unwrap_or_default();
                let body = get_s(item, field).unwrap_or_default();
                serde_json::from_str(&body).map_err(|e| ControlError::Corrupt {
                    table: self.table.clone(),
                    run_id: run_id.to_string(),
                    sk,
                    reason: format!("{field}: {e}"),
                })
            })
            .collect()
    }
}
