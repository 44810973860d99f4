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

/// DynamoDB keeps at most this much data in one partition.
pub const PARTITION_BYTES: f64 = 10e9;

/// The fewest partitions DynamoDB gives a table that takes
/// `write_units_per_sec` (one per started 1,000 WCU/s) and holds `bytes`
/// (one per started 10 GB). A table also provisioned for reads, or once
/// provisioned higher, has more: this is the worst case for spreading keys.
pub fn partitions_at_least(write_units_per_sec: f64, bytes: f64) -> u32 {
    let by = |x: f64, per: f64| {
        let n = (x / per).ceil();
        if n.is_finite() && n >= 1.0 {
            n.min(f64::from(u32::MAX))
        } else {
            1.0
        }
    };
    by(write_units_per_sec, PARTITION_WCU).max(by(bytes, PARTITION_BYTES)) as u32
}

/// The share of `partitions`' combined 1,000 WCU/s each that a copy of
/// `keys` partition-key values of about equal size can use from its first
/// write to its last: keys hash to partitions at random, so some partitions
/// hold more than their share, and the copy lasts at least as long as the
/// busiest one takes at 1,000 WCU/s. The mean load over the expected
/// busiest partition's load, by simulation with a fixed seed (the same
/// answer every run). 2,400 keys over 20 partitions: about 0.85.
pub fn key_spread_share(keys: f64, partitions: u32) -> f64 {
    if !(keys.is_finite() && keys >= 1.0) || partitions <= 1 {
        return 1.0;
    }
    // Beyond a million partitions (a billion WCU/s) nothing is bounded.
    let p = partitions.min(1 << 20) as usize;
    let mean = keys / p as f64;
    let mut rng = SplitMix(0x005e_ed0f_bac4_f111);
    // Past a hundred keys a partition its load is near normal: simulate
    // the busiest of `p` normal loads instead of every key.
    let exact = keys <= 100.0 * p as f64;
    let trials = if exact {
        (5_000_000.0 / keys).clamp(8.0, 200.0) as usize
    } else {
        (5_000_000 / p).clamp(8, 200)
    };
    let sd = (mean * (1.0 - 1.0 / p as f64)).sqrt();
    let mut busiest = 0.0;
    let mut load = vec![0u32; p];
    for _ in 0..trials {
        busiest += if exact {
            load.iter_mut().for_each(|l| *l = 0);
            for _ in 0..keys.round() as u64 {
                load[(rng.next() % p as u64) as usize] += 1;
            }
            f64::from(load.iter().copied().max().unwrap_or(0))
        } else {
            (0..p).map(|_| mean + sd * rng.normal()).fold(0.0, f64::max)
        };
    }
    (mean / (busiest / trials as f64)).clamp(0.0, 1.0)
}

/// The most WCU/s a key layout lets a copy write over its whole run: the
/// lower of [`key_layout_ceiling`] and what `partitions` partitions
/// reach with the keys spread over them ([`key_spread_share`]), when the
/// partitions are known.
pub fn key_layout_reach(distinct_keys: f64, key_wcu_per_sec: f64, partitions: Option<u32>) -> f64 {
    let ceiling = key_layout_ceiling(distinct_keys, key_wcu_per_sec);
    match partitions {
        Some(p) if p >= 1 => {
            ceiling.min(f64::from(p) * PARTITION_WCU * key_spread_share(distinct_keys, p))
        }
        _ => ceiling,
    }
}

/// A small seeded generator (splitmix64): the estimate must not change
/// between two `plan`s of one table.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = |x: u64| ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let (a, b) = (u(self.next()), u(self.next()));
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_unevenly_over_few_partitions() {
        // The fleet benchmark's clustered table: 2,400 tenants over 20
        // partitions. Its own tenants, hashed as the proxy hashes, put 146
        // on the busiest partition against a mean of 120 (0.82); the
        // expectation is near that.
        let s = key_spread_share(2_400.0, 20);
        assert!((0.80..0.90).contains(&s), "{s}");
        assert_eq!(s, key_spread_share(2_400.0, 20), "the same every time");
        // More keys a partition spread more evenly; hashed ids are even.
        assert!(key_spread_share(24_000.0, 20) > 0.93);
        assert!(key_spread_share(2.4e9, 20) > 0.999);
        // Past a hundred keys a partition the normal model takes over, and
        // agrees with counting at the border.
        let (counted, modelled) = (key_spread_share(2_000.0, 20), key_spread_share(2_001.0, 20));
        assert!((counted - modelled).abs() < 0.02, "{counted} {modelled}");
        // The 750 GB copy with tenants of 1,000 items: 750,000 values over
        // the 75 partitions its size alone gives (40,000 WCU/s gives 40).
        let big = key_spread_share(750_000.0, 75);
        assert!((0.96..0.99).contains(&big), "{big}");
        // Fewer keys than partitions: most partitions hold none.
        assert!(key_spread_share(12.0, 20) < 0.4);
        // One partition, or nonsense, bounds nothing.
        assert_eq!(key_spread_share(5.0, 1), 1.0);
        assert_eq!(key_spread_share(f64::NAN, 20), 1.0);
        assert_eq!(key_spread_share(0.0, 20), 1.0);
    }

    #[test]
    fn partitions_by_rate_and_by_size() {
        assert_eq!(partitions_at_least(20_000.0, 1e9), 20);
        assert_eq!(partitions_at_least(20_001.0, 0.0), 21);
        assert_eq!(partitions_at_least(40_000.0, 750e9), 75, "750 GB");
        assert_eq!(partitions_at_least(0.0, 0.0), 1);
        assert_eq!(partitions_at_least(f64::NAN, f64::INFINITY), 1);
    }

    #[test]
    fn a_layout_reaches_the_lower_of_its_keys_and_their_spread() {
        assert_eq!(key_layout_reach(12.0, 900.0, None), 10_800.0);
        let r = key_layout_reach(2_400.0, 900.0, Some(20));
        assert!((16_000.0..18_000.0).contains(&r), "{r}");
        // Three keys on one partition share its 1,000 WCU/s.
        assert_eq!(key_layout_reach(3.0, 900.0, Some(1)), 1_000.0);
    }

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
