//! What a copy costs, and what a target can take: `plan`'s arithmetic,
//! from figures the caller read (DescribeTable, the planning sample).

/// A partition serves at most this many WCU/s, and all items of one
/// partition-key value live in one partition.
pub const PARTITION_WCU: f64 = 1_000.0;
/// Write request units per second a new on-demand table absorbs before
/// DynamoDB has scaled it (AWS documents about 4,000).
pub const NEW_ON_DEMAND_TABLE_WRU: f64 = 4_000.0;
/// The default account quota of write units per second per table.
pub const TABLE_WRITE_QUOTA: f64 = 40_000.0;

/// A table's copy at its budget, priced both ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Hours of writing at the budget.
    pub hours: f64,
    /// Provisioned capacity at the budget for the started hours.
    pub provisioned_cost: f64,
    /// The same writes on demand (priced per million write request units).
    pub on_demand_cost: f64,
}

/// `wcu` written at `budget` WCU/s, priced at `price_wcu_hour` provisioned
/// (billed by the started hour) and `price_per_million` on demand.
pub fn estimate(wcu: f64, budget: f64, price_wcu_hour: f64, price_per_million: f64) -> Estimate {
    let hours = if budget > 0.0 {
        wcu / budget / 3600.0
    } else {
        f64::INFINITY
    };
    Estimate {
        hours,
        provisioned_cost: budget * hours.ceil().max(1.0) * price_wcu_hour,
        on_demand_cost: wcu / 1e6 * price_per_million,
    }
}

/// Write units per second an on-demand table absorbs now: its warm
/// throughput when DescribeTable reports one, else a new table's level.
pub fn on_demand_absorbs(warm_write_units: Option<i64>) -> f64 {
    match warm_write_units {
        Some(w) if w > 0 => w as f64,
        _ => NEW_ON_DEMAND_TABLE_WRU,
    }
}

/// The most a key layout lets a copy write: each of `distinct_keys`
/// partition-key values at most a partition's rate (or the fleet's cap
/// per key, `key_wcu_per_sec`, when lower and not 0).
pub fn key_layout_ceiling(distinct_keys: f64, key_wcu_per_sec: f64) -> f64 {
    let per_key = if key_wcu_per_sec > 0.0 {
        key_wcu_per_sec.min(PARTITION_WCU)
    } else {
        PARTITION_WCU
    };
    distinct_keys.max(0.0) * per_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_750_gb_copy_priced_both_ways() {
        // 750 M items of 1 KB at 40,000 WCU/s: 5.2 h, billed as 6.
        let e = estimate(750e6, 40_000.0, 0.00065, 0.625);
        assert!((e.hours - 5.208).abs() < 0.01, "{}", e.hours);
        assert!((e.provisioned_cost - 156.0).abs() < 0.01);
        assert!((e.on_demand_cost - 468.75).abs() < 0.01);
        // A tiny copy still pays one started hour; no budget never ends.
        assert!((estimate(10.0, 100.0, 0.00065, 0.625).provisioned_cost - 0.065).abs() < 1e-9);
        assert!(estimate(10.0, 0.0, 0.00065, 0.625).hours.is_infinite());
    }

    #[test]
    fn what_a_table_absorbs_and_a_key_layout_reaches() {
        assert_eq!(on_demand_absorbs(None), 4_000.0);
        assert_eq!(on_demand_absorbs(Some(0)), 4_000.0);
        assert_eq!(on_demand_absorbs(Some(25_000)), 25_000.0);
        assert_eq!(key_layout_ceiling(12.0, 900.0), 10_800.0);
        assert_eq!(key_layout_ceiling(12.0, 0.0), 12_000.0);
        assert_eq!(key_layout_ceiling(12.0, 5_000.0), 12_000.0);
        assert_eq!(key_layout_ceiling(-1.0, 900.0), 0.0);
    }
}
