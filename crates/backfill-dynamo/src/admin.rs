//! Table administration for local stacks and tests (create, delete, wait
//! with the SDK's waiters), and the one read the write budget needs: a
//! table's provisioned write capacity.

use std::time::Duration;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

use crate::{service_error, DynamoSink, SinkError};

/// Longest wait for a table to become active or to be gone. The SDK's
/// waiters poll every 20 s or more, so a table that is not ready at the
/// first poll takes that long (emulators answer at once).
const TABLE_WAIT: Duration = Duration::from_secs(300);

/// A table's fleet write budget in WCU/s, as [`backfill_capacity::resolve_budget`]
/// computes it; the provisioned write capacity it may need is read here,
/// beside the client, with DescribeTable.
pub async fn write_budget(
    client: &Client,
    t: &backfill_config::TableConfig,
) -> Result<Option<f64>, String> {
    let provisioned = if backfill_capacity::needs_provisioned(t) {
        let d = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            client.describe_table().table_name(&t.target).send()
        })
        .await
        .map_err(|e| {
            format!(
                "table {}: DescribeTable: {}",
                t.target,
                backfill_aws::describe(&e)
            )
        })?;
        Some(
            d.table()
                .and_then(|x| x.provisioned_throughput())
                .and_then(|p| p.write_capacity_units())
                .unwrap_or(0),
        )
    } else {
        None
    };
    backfill_capacity::resolve_budget(t, provisioned)
}

/// A target table's capacity now, as DescribeTable reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCapacity {
    /// Billed per request (on demand) rather than provisioned.
    pub on_demand: bool,
    /// Provisioned write capacity units (`None` on demand).
    pub provisioned_wcu: Option<i64>,
    /// The write units per second the table is warmed to, when reported.
    pub warm_write_units: Option<i64>,
}

/// Reads `table`'s billing mode, provisioned and warm write capacity.
pub async fn target_capacity(client: &Client, table: &str) -> Result<TargetCapacity, String> {
    let d = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
        client.describe_table().table_name(table).send()
    })
    .await
    .map_err(|e| {
        format!(
            "table {table}: DescribeTable: {}",
            backfill_aws::describe(&e)
        )
    })?;
    let t = d
        .table()
        .ok_or_else(|| format!("table {table}: DescribeTable answered no table"))?;
    let on_demand = t
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .is_some_and(|m| *m == BillingMode::PayPerRequest);
    let provisioned_wcu = t
        .provisioned_throughput()
        .and_then(|p| p.write_capacity_units())
        .filter(|w| *w > 0 && !on_demand);
    Ok(TargetCapacity {
        on_demand,
        provisioned_wcu,
        warm_write_units: t.warm_throughput().and_then(|w| w.write_units_per_second()),
    })
}

/// Pre-warms an on-demand `table` to `write_units` per second
/// (UpdateTable with WarmThroughput). Warm throughput cannot be lowered
/// again, and AWS bills raising it once.
pub async fn prewarm(client: &Client, table: &str, write_units: i64) -> Result<(), String> {
    use aws_sdk_dynamodb::types::WarmThroughput;
    let warm = WarmThroughput::builder()
        .write_units_per_second(write_units)
        .build();
    backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
        client
            .update_table()
            .table_name(table)
            .warm_throughput(warm.clone())
            .send()
    })
    .await
    .map_err(|e| {
        format!(
            "table {table}: UpdateTable (warm throughput {write_units}): {}",
            backfill_aws::describe(&e)
        )
    })?;
    Ok(())
}

/// A waiter that gave up or failed, as the sink's error for `table`.
fn waiter_error<O, E>(
    table: &str,
    op: &'static str,
    e: aws_smithy_runtime_api::client::waiters::error::WaiterError<O, E>,
) -> SinkError
where
    E: std::error::Error + Send + Sync + 'static,
    O: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    let retryable = matches!(e, WaiterError::ExceededMaxWait(_));
    SinkError::Service {
        table: table.to_string(),
        op,
        message: format!(
            "waiting for the table: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ),
        retryable,
    }
}

impl DynamoSink {
    /// Deletes a table and waits until it is gone; `false` when there was none.
    /// For local demos only.
    pub async fn delete_table(&self, table: &str) -> Result<bool, SinkError> {
        match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client.delete_table().table_name(table).send()
        })
        .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(service_error(table, "DeleteTable", &e)),
        }
        self.client
            .wait_until_table_not_exists()
            .table_name(table)
            .wait(TABLE_WAIT)
            .await
            .map_err(|e| waiter_error(table, "DeleteTable", e))?;
        Ok(true)
    }

    /// Creates an on-demand table with the given key unless one exists, and
    /// waits until it is active. For local stacks and tests; production
    /// tables are created by their owners.
    pub async fn ensure_table(
        &self,
        table: &str,
        partition: (&str, ScalarAttributeType),
        sort: Option<(&str, ScalarAttributeType)>,
    ) -> Result<(), SinkError> {
        let exists = match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client.describe_table().table_name(table).send()
        })
        .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => return Err(service_error(table, "DescribeTable", &e)),
        };
        if !exists {
            let mut req = self
                .client
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest);
            for (name, ty, kt) in std::iter::once((partition.0, partition.1, KeyType::Hash))
                .chain(sort.map(|(n, t)| (n, t, KeyType::Range)))
            {
                req = req
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(name)
                            .attribute_type(ty)
                            .build()
                            .expect("name and type are set"),
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(name)
                            .key_type(kt)
                            .build()
                            .expect("name and type are set"),
                    );
            }
            match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || req.clone().send()).await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(service_error(table, "CreateTable", &e)),
            }
        }
        self.client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_WAIT)
            .await
            .map_err(|e| waiter_error(table, "CreateTable", e))?;
        Ok(())
    }
}
