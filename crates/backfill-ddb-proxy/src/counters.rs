//! What the proxy has done so far, readable from any thread while it runs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Seconds of per-second history kept: an hour, enough for any benchmark
/// without growing for ever in a proxy left running.
pub const HISTORY_SECS: usize = 3600;

/// One partition's counters.
#[derive(Debug, Default)]
pub struct PartitionCounters {
    /// Write capacity admitted and consumed in this partition, in
    /// millionths of a unit.
    pub wcu_micros: AtomicU64,
    /// Writes this partition's bucket refused (each refused item of a
    /// batch counts once).
    pub throttles: AtomicU64,
}

/// What the proxy has done so far. The totals are atomics: read them from
/// any thread while the proxy runs.
#[derive(Debug)]
pub struct Counters {
    /// Write capacity admitted and consumed, in millionths of a unit (read
    /// it with [`Counters::accepted_wcu`]).
    pub accepted_wcu_micros: AtomicU64,
    /// Write calls admitted, in whole or in part.
    pub accepted_write_requests: AtomicU64,
    /// Single items written (a batch counts each of its admitted requests).
    pub accepted_items: AtomicU64,
    /// Calls answered with `ProvisionedThroughputExceededException` because
    /// a limit refused them (injected throttles are counted apart).
    pub throttled_requests: AtomicU64,
    /// Of those, the ones the table's limit refused.
    pub throttled_table: AtomicU64,
    /// Of those, the ones a partition refused (a hot key).
    pub throttled_key_range: AtomicU64,
    /// Write requests the proxy itself returned in `UnprocessedItems`.
    pub unprocessed_items_returned: AtomicU64,
    /// Of those, the ones deferred because their partition refused them.
    pub unprocessed_key_range: AtomicU64,
    /// Calls sent to the upstream (any operation).
    pub forwarded_requests: AtomicU64,
    /// Calls answered with an injected throttle ([`crate::Faults::throttle_ratio`]).
    pub injected_throttles: AtomicU64,
    /// Calls answered with an injected 500 ([`crate::Faults::server_error_ratio`]).
    pub injected_server_errors: AtomicU64,
    /// Write requests returned unprocessed by [`crate::Faults::unprocessed_half`]
    /// (also counted in `unprocessed_items_returned`).
    pub injected_unprocessed: AtomicU64,
    partitions: Vec<PartitionCounters>,
    history: History,
}

impl Default for Counters {
    /// Counters without partitions.
    fn default() -> Self {
        Counters::new(0)
    }
}

impl Counters {
    /// Counters for `partitions` partitions (0 when partitions are not
    /// accounted), the per-second history starting now.
    pub fn new(partitions: usize) -> Counters {
        Counters {
            accepted_wcu_micros: AtomicU64::new(0),
            accepted_write_requests: AtomicU64::new(0),
            accepted_items: AtomicU64::new(0),
            throttled_requests: AtomicU64::new(0),
            throttled_table: AtomicU64::new(0),
            throttled_key_range: AtomicU64::new(0),
            unprocessed_items_returned: AtomicU64::new(0),
            unprocessed_key_range: AtomicU64::new(0),
            forwarded_requests: AtomicU64::new(0),
            injected_throttles: AtomicU64::new(0),
            injected_server_errors: AtomicU64::new(0),
            injected_unprocessed: AtomicU64::new(0),
            partitions: (0..partitions)
                .map(|_| PartitionCounters::default())
                .collect(),
            history: History::new(),
        }
    }

    /// Write capacity units admitted and consumed.
    pub fn accepted_wcu(&self) -> f64 {
        micros(&self.accepted_wcu_micros)
    }
    pub fn accepted_write_requests(&self) -> u64 {
        load(&self.accepted_write_requests)
    }
    pub fn accepted_items(&self) -> u64 {
        load(&self.accepted_items)
    }
    pub fn throttled_requests(&self) -> u64 {
        load(&self.throttled_requests)
    }
    pub fn throttled_table(&self) -> u64 {
        load(&self.throttled_table)
    }
    pub fn throttled_key_range(&self) -> u64 {
        load(&self.throttled_key_range)
    }
    pub fn unprocessed_items_returned(&self) -> u64 {
        load(&self.unprocessed_items_returned)
    }
    pub fn unprocessed_key_range(&self) -> u64 {
        load(&self.unprocessed_key_range)
    }
    pub fn forwarded_requests(&self) -> u64 {
        load(&self.forwarded_requests)
    }
    /// Faults injected so far: throttles, 500s and unprocessed items.
    pub fn injected_faults(&self) -> u64 {
        load(&self.injected_throttles)
            + load(&self.injected_server_errors)
            + load(&self.injected_unprocessed)
    }

    /// How many partitions are counted (0 when partitions are off).
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Partition `i`'s counters, if there is one.
    pub fn partition(&self, i: usize) -> Option<&PartitionCounters> {
        self.partitions.get(i)
    }

    /// Write capacity units consumed in partition `i` (0 if there is none).
    pub fn partition_wcu(&self, i: usize) -> f64 {
        self.partitions
            .get(i)
            .map_or(0.0, |p| micros(&p.wcu_micros))
    }

    /// Writes partition `i` refused (0 if there is none).
    pub fn partition_throttles(&self, i: usize) -> u64 {
        self.partitions.get(i).map_or(0, |p| load(&p.throttles))
    }

    /// The partition that consumed the most capacity, and how much; `None`
    /// without partitions. Ties go to the lowest index.
    pub fn hottest_partition(&self) -> Option<(usize, f64)> {
        (0..self.partitions.len())
            .map(|i| (i, self.partition_wcu(i)))
            .fold(None, |best, (i, w)| match best {
                Some((_, b)) if b >= w => best,
                _ => Some((i, w)),
            })
    }

    /// Accepted write capacity units in each whole second since the start
    /// (the last [`HISTORY_SECS`] seconds at most), oldest first; the last
    /// element is the second under way.
    pub fn per_second_wcu(&self) -> Vec<f64> {
        self.history.per_second()
    }

    /// The most write capacity accepted in any one second so far (of the
    /// kept history).
    pub fn peak_second_wcu(&self) -> f64 {
        self.per_second_wcu().into_iter().fold(0.0, f64::max)
    }

    /// All counters at one moment (each read on its own: not a transaction).
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            accepted_wcu: self.accepted_wcu(),
            accepted_write_requests: self.accepted_write_requests(),
            accepted_items: self.accepted_items(),
            throttled_requests: self.throttled_requests(),
            unprocessed_items_returned: self.unprocessed_items_returned(),
            forwarded_requests: self.forwarded_requests(),
            throttled_table: self.throttled_table(),
            throttled_key_range: self.throttled_key_range(),
            unprocessed_key_range: self.unprocessed_key_range(),
            injected_faults: self.injected_faults(),
            peak_second_wcu: self.peak_second_wcu(),
            partitions: (0..self.partitions.len())
                .map(|i| PartitionSnapshot {
                    wcu: self.partition_wcu(i),
                    throttles: self.partition_throttles(i),
                })
                .collect(),
        }
    }

    /// Counts an admitted and made write call: `units` in all, `items`
    /// items, `per_partition` the units of the items that had a partition.
    pub(crate) fn record_accepted(&self, units: u64, items: u64, per_partition: &[(u32, u64)]) {
        let m = units.saturating_mul(1_000_000);
        self.accepted_wcu_micros.fetch_add(m, Ordering::Relaxed);
        self.accepted_items.fetch_add(items, Ordering::Relaxed);
        self.accepted_write_requests.fetch_add(1, Ordering::Relaxed);
        for &(p, u) in per_partition {
            if let Some(pc) = self.partitions.get(p as usize) {
                pc.wcu_micros
                    .fetch_add(u.saturating_mul(1_000_000), Ordering::Relaxed);
            }
        }
        self.history.add(m);
    }

    pub(crate) fn record_partition_throttle(&self, partition: u32) {
        if let Some(pc) = self.partitions.get(partition as usize) {
            pc.throttles.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn micros(c: &AtomicU64) -> f64 {
    load(c) as f64 / 1e6
}

/// Accepted micro-units per second since the start, in a ring of
/// [`HISTORY_SECS`] slots each stamped with its second, so a slot left over
/// from an hour ago reads as empty.
#[derive(Debug)]
struct History {
    start: Instant,
    // A lock rather than atomics: a slot and its stamp change together,
    // and one uncontended lock per write call is nothing next to the HTTP
    // round trip around it.
    slots: Mutex<Vec<(u64, u64)>>,
}

impl History {
    fn new() -> History {
        History {
            start: Instant::now(),
            slots: Mutex::new(vec![(u64::MAX, 0); HISTORY_SECS]),
        }
    }

    fn now_sec(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn add(&self, micros: u64) {
        let sec = self.now_sec();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[(sec % HISTORY_SECS as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.saturating_add(micros);
    }

    fn per_second(&self) -> Vec<f64> {
        let now = self.now_sec();
        let first = now.saturating_sub(HISTORY_SECS as u64 - 1);
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        (first..=now)
            .map(|s| match slots[(s % HISTORY_SECS as u64) as usize] {
                (stamp, m) if stamp == s => m as f64 / 1e6,
                _ => 0.0,
            })
            .collect()
    }
}

/// One partition in a [`CountersSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionSnapshot {
    pub wcu: f64,
    pub throttles: u64,
}

/// Plain values of [`Counters`]; `Display` prints one JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct CountersSnapshot {
    pub accepted_wcu: f64,
    pub accepted_write_requests: u64,
    pub accepted_items: u64,
    pub throttled_requests: u64,
    pub unprocessed_items_returned: u64,
    pub forwarded_requests: u64,
    pub throttled_table: u64,
    pub throttled_key_range: u64,
    pub unprocessed_key_range: u64,
    pub injected_faults: u64,
    /// The most WCU accepted in one second ([`Counters::peak_second_wcu`]).
    pub peak_second_wcu: f64,
    pub partitions: Vec<PartitionSnapshot>,
}

impl fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{\"accepted_wcu\":{},\"accepted_write_requests\":{},\"accepted_items\":{},\
             \"throttled_requests\":{},\"unprocessed_items_returned\":{},\"forwarded_requests\":{},\
             \"throttled_table\":{},\"throttled_key_range\":{},\"unprocessed_key_range\":{},\
             \"injected_faults\":{},\"peak_second_wcu\":{},\"partitions\":[",
            self.accepted_wcu,
            self.accepted_write_requests,
            self.accepted_items,
            self.throttled_requests,
            self.unprocessed_items_returned,
            self.forwarded_requests,
            self.throttled_table,
            self.throttled_key_range,
            self.unprocessed_key_range,
            self.injected_faults,
            self.peak_second_wcu,
        )?;
        for (i, p) in self.partitions.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(
                f,
                "{sep}{{\"wcu\":{},\"throttles\":{}}}",
                p.wcu, p.throttles
            )?;
        }
        write!(f, "]}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_add_up_and_the_hottest_is_found() {
        let c = Counters::new(3);
        assert_eq!(c.hottest_partition(), Some((0, 0.0)));
        c.record_accepted(7, 3, &[(1, 2), (2, 5)]);
        c.record_accepted(4, 1, &[(1, 4), (9, 1)]);
        assert_eq!(c.accepted_wcu(), 11.0);
        assert_eq!(c.partition_wcu(1), 6.0);
        assert_eq!(c.partition_wcu(9), 0.0);
        assert_eq!(c.hottest_partition(), Some((1, 6.0)));
        c.record_partition_throttle(2);
        c.record_partition_throttle(99);
        assert_eq!(c.partition_throttles(2), 1);
        assert_eq!(Counters::default().hottest_partition(), None);
        assert_eq!(Counters::default().partitions(), 0);
    }

    #[test]
    fn the_snapshot_prints_as_json() {
        let c = Counters::new(2);
        c.record_accepted(3, 2, &[(0, 1), (1, 2)]);
        c.record_partition_throttle(1);
        let s = c.snapshot();
        let v: serde_json::Value = serde_json::from_str(&s.to_string()).unwrap();
        assert_eq!(v["accepted_wcu"].as_f64(), Some(3.0));
        assert_eq!(v["accepted_items"], 2);
        assert_eq!(v["peak_second_wcu"].as_f64(), Some(3.0));
        assert_eq!(v["partitions"][1]["wcu"].as_f64(), Some(2.0));
        assert_eq!(v["partitions"][1]["throttles"], 1);
        let none = Counters::default().snapshot().to_string();
        let v: serde_json::Value = serde_json::from_str(&none).unwrap();
        assert_eq!(v["partitions"], serde_json::json!([]));
    }

    #[test]
    fn history_keeps_seconds_apart_and_forgets_old_ones() {
        let h = History::new();
        h.add(2_000_000);
        h.add(500_000);
        assert_eq!(h.per_second(), vec![2.5]);
        // A slot stamped with another second reads as empty.
        h.slots.lock().unwrap()[1] = (HISTORY_SECS as u64 + 1, 9_000_000);
        assert_eq!(h.per_second(), vec![2.5]);
    }
}
