//! `[capacity]`: how the fleet shares its write budgets, and their price.
//!
//! Fleet-wide, unlike `[worker]`: every worker must agree on these.

use serde::{Deserialize, Serialize};

/// How the fleet shares its write budgets, and what capacity costs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Seconds between a worker's heartbeats in the control table.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// A worker whose heartbeat is older than this stops counting.
    #[serde(default = "default_worker_expiry_secs")]
    pub worker_expiry_secs: u64,
    /// Price of one WCU for one hour of provisioned capacity, for `plan`'s cost estimate.
    #[serde(default = "default_price_per_wcu_hour")]
    pub price_per_wcu_hour: f64,
    /// Most WCU/s one worker writes to one partition-key value. DynamoDB
    /// keeps all items of a key in one partition, which serves at most
    /// 1,000 WCU/s; the default leaves a margin. 0 turns pacing by key off.
    #[serde(default = "default_key_wcu_per_sec")]
    pub key_wcu_per_sec: f64,
    /// Price of one million on-demand write request units, for `plan`'s
    /// cost beside the provisioned one.
    #[serde(default = "default_price_per_million_wru")]
    pub price_per_million_wru: f64,
}

fn default_price_per_million_wru() -> f64 {
    // us-east-1 on-demand writes, per million write request units.
    0.625
}

fn default_key_wcu_per_sec() -> f64 {
    900.0
}

fn default_heartbeat_secs() -> u64 {
    2
}
fn default_worker_expiry_secs() -> u64 {
    10
}
fn default_price_per_wcu_hour() -> f64 {
    // us-east-1 provisioned write capacity, per WCU-hour.
    0.00065
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            heartbeat_secs: default_heartbeat_secs(),
            worker_expiry_secs: default_worker_expiry_secs(),
            price_per_wcu_hour: default_price_per_wcu_hour(),
            key_wcu_per_sec: default_key_wcu_per_sec(),
            price_per_million_wru: default_price_per_million_wru(),
        }
    }
}
