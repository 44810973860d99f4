//! Who pays for a write: its partition's bucket and the table's.
//!
//! A write is admitted when both can pay. The partition is asked first and
//! refunded if the table then refuses, so a write the table turns away
//! leaves its partition as it was. A batch is admitted item by item in
//! order: an item whose partition cannot pay is deferred and the batch goes
//! on (later items may be in other partitions, as DynamoDB's own batches
//! do), but once the table refuses, that item and every later one are
//! deferred (the table has nothing left for anyone).

use crate::bucket::TokenBucket;
use crate::error::ThrottleReason;
use crate::ondemand::OnDemandLimit;

/// The table-wide limit: a provisioned rate, or on-demand scaling.
#[derive(Debug)]
pub(crate) enum TableLimit {
    Provisioned(TokenBucket),
    OnDemand(OnDemandLimit),
}

impl TableLimit {
    fn try_take(&self, cost: u64) -> bool {
        match self {
            TableLimit::Provisioned(b) => b.try_take(cost),
            TableLimit::OnDemand(o) => o.try_take(cost),
        }
    }

    fn refund(&self, units: u64) {
        match self {
            TableLimit::Provisioned(b) => b.refund(units),
            TableLimit::OnDemand(o) => o.refund(units),
        }
    }

    fn reason(&self) -> ThrottleReason {
        match self {
            TableLimit::Provisioned(_) => ThrottleReason::TableProvisioned,
            TableLimit::OnDemand(_) => ThrottleReason::MaxOnDemand,
        }
    }
}

/// The table's limit and its partitions' buckets.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) table: TableLimit,
    /// The partition key attribute, when partitions are accounted.
    pub(crate) key: Option<String>,
    pub(crate) partitions: Vec<TokenBucket>,
}

/// One write to admit: its cost and its partition (`None`: no key
/// attribute, or partitions are not accounted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Charge {
    pub(crate) cost: u64,
    pub(crate) partition: Option<u32>,
}

/// What a batch's admission decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchAdmission {
    /// Indices of the admitted writes, in order.
    pub(crate) admitted: Vec<usize>,
    /// Indices of the deferred writes, in order.
    pub(crate) deferred: Vec<usize>,
    /// Of those, the ones deferred because their partition refused.
    pub(crate) key_range_deferred: u64,
    /// The partitions that refused a write, once per refusal.
    pub(crate) refusing_partitions: Vec<u32>,
    /// Whether the table refused a write.
    pub(crate) table_refused: bool,
}

impl BatchAdmission {
    /// Why the whole call is throttled, when nothing was admitted: the
    /// table, if it refused (spreading keys would not help), else a
    /// partition.
    pub(crate) fn reason(&self, table: ThrottleReason) -> ThrottleReason {
        if self.table_refused || self.refusing_partitions.is_empty() {
            table
        } else {
            ThrottleReason::KeyRange
        }
    }
}

impl Budget {
    /// The partition of an item or key map, if partitions are accounted
    /// and it has the key attribute.
    pub(crate) fn partition_of_item(&self, item: Option<&serde_json::Value>) -> Option<u32> {
        let key = self.key.as_deref()?;
        let value = crate::partition::key_value(item?, key)?;
        Some(crate::partition::partition_of(
            value,
            self.partitions.len() as u32,
        ))
    }

    /// The on-demand limiter, when the table is on-demand.
    pub(crate) fn on_demand(&self) -> Option<&OnDemandLimit> {
        match &self.table {
            TableLimit::OnDemand(o) => Some(o),
            TableLimit::Provisioned(_) => None,
        }
    }

    /// The reason a refusal by the table carries.
    pub(crate) fn table_reason(&self) -> ThrottleReason {
        self.table.reason()
    }

    fn bucket(&self, p: Option<u32>) -> Option<&TokenBucket> {
        self.partitions.get(p? as usize)
    }

    /// Admits one write or says who refused it.
    pub(crate) fn admit_one(&self, c: Charge) -> Result<(), ThrottleReason> {
        let part = self.bucket(c.partition);
        if let Some(b) = part {
            if !b.try_take(c.cost) {
                return Err(ThrottleReason::KeyRange);
            }
        }
        if !self.table.try_take(c.cost) {
            if let Some(b) = part {
                b.refund(c.cost);
            }
            return Err(self.table.reason());
        }
        Ok(())
    }

    /// Admits the writes of a batch in order; only the first `offered` may
    /// be admitted, the rest are deferred unasked.
    pub(crate) fn admit_batch(&self, charges: &[Charge], offered: usize) -> BatchAdmission {
        let mut out = BatchAdmission::default();
        for (i, &c) in charges.iter().enumerate() {
            if i >= offered || out.table_refused {
                out.deferred.push(i);
                continue;
            }
            match self.admit_one(c) {
                Ok(()) => out.admitted.push(i),
                Err(ThrottleReason::KeyRange) => {
                    out.deferred.push(i);
                    out.key_range_deferred += 1;
                    if let Some(p) = c.partition {
                        out.refusing_partitions.push(p);
                    }
                }
                Err(_) => {
                    out.deferred.push(i);
                    out.table_refused = true;
                }
            }
        }
        out
    }

    /// Gives back what admitted writes cost, when they were not made.
    pub(crate) fn refund(&self, charges: impl IntoIterator<Item = Charge>) {
        let charges: Vec<Charge> = charges.into_iter().collect();
        let total = charges.iter().fold(0u64, |t, c| t.saturating_add(c.cost));
        self.refund_units(total, &units_per_partition(charges));
    }

    /// Gives back `table` units to the table and each `(partition, units)`
    /// to its partition.
    pub(crate) fn refund_units(&self, table: u64, partitions: &[(u32, u64)]) {
        for &(p, units) in partitions {
            if let Some(b) = self.bucket(Some(p)) {
                b.refund(units);
            }
        }
        self.table.refund(table);
    }
}

/// Units per partition of `charges` (partitions in first-seen order).
pub(crate) fn units_per_partition(charges: impl IntoIterator<Item = Charge>) -> Vec<(u32, u64)> {
    let mut out: Vec<(u32, u64)> = Vec::new();
    for c in charges {
        let Some(p) = c.partition else { continue };
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some((_, u)) => *u = u.saturating_add(c.cost),
            None => out.push((p, c.cost)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(table_rate: f64, partitions: usize, partition_rate: f64) -> Budget {
        Budget {
            table: TableLimit::Provisioned(TokenBucket::new(table_rate, 1.0)),
            key: Some("pk".into()),
            partitions: (0..partitions)
                .map(|_| TokenBucket::new(partition_rate, 1.0))
                .collect(),
        }
    }

    fn c(cost: u64, partition: u32) -> Charge {
        Charge {
            cost,
            partition: Some(partition),
        }
    }

    #[test]
    fn a_hot_partition_defers_its_items_and_the_batch_goes_on() {
        let b = budget(1000.0, 4, 5.0);
        let charges: Vec<Charge> = (0..10)
            .map(|i| c(1, if i % 2 == 0 { 0 } else { 1 }))
            .collect();
        let a = b.admit_batch(&charges, charges.len());
        assert_eq!(a.admitted, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let charges: Vec<Charge> = (0..25).map(|_| c(1, 2)).chain([c(1, 3)]).collect();
        let a = b.admit_batch(&charges, charges.len());
        assert_eq!(a.admitted, vec![0, 1, 2, 3, 4, 25]);
        assert_eq!(a.deferred, (5..25).collect::<Vec<_>>());
        assert_eq!(a.key_range_deferred, 20);
        assert_eq!(a.refusing_partitions, vec![2; 20]);
        assert!(!a.table_refused);
    }

    #[test]
    fn a_table_refusal_defers_the_rest_and_refunds_the_partition() {
        let b = budget(3.0, 2, 100.0);
        let charges = [c(1, 0), c(1, 1), c(5, 0), c(1, 1), c(1, 0)];
        let a = b.admit_batch(&charges, charges.len());
        // The third costs more than the table holds: it and all later wait.
        assert_eq!(a.admitted, vec![0, 1]);
        assert_eq!(a.deferred, vec![2, 3, 4]);
        assert!(a.table_refused);
        assert_eq!(a.key_range_deferred, 0);
        assert_eq!(
            a.reason(ThrottleReason::TableProvisioned),
            ThrottleReason::TableProvisioned
        );
        // Partition 0 paid 1, not 6: 99 of its 100 are left.
        assert!(b.partitions[0].try_take(99));
        assert!(!b.partitions[0].try_take(1));
    }

    #[test]
    fn single_writes_name_the_bucket_that_refused() {
        let b = budget(10.0, 2, 2.0);
        assert_eq!(b.admit_one(c(1, 0)), Ok(()));
        assert_eq!(b.admit_one(c(1, 0)), Ok(()));
        assert_eq!(b.admit_one(c(1, 0)), Err(ThrottleReason::KeyRange));
        assert_eq!(b.admit_one(c(2, 1)), Ok(()));
        // No key attribute: the table alone pays.
        let free = Charge {
            cost: 6,
            partition: None,
        };
        assert_eq!(b.admit_one(free), Ok(()));
        assert_eq!(b.admit_one(c(1, 1)), Err(ThrottleReason::KeyRange));
        assert_eq!(b.admit_one(free), Err(ThrottleReason::TableProvisioned));
    }

    #[test]
    fn nothing_admitted_is_a_key_range_throttle_unless_the_table_refused() {
        let b = budget(1000.0, 2, 1.0);
        assert_eq!(b.admit_one(c(1, 0)), Ok(()));
        let a = b.admit_batch(&[c(1, 0), c(1, 0)], 2);
        assert!(a.admitted.is_empty());
        assert_eq!(
            a.reason(ThrottleReason::TableProvisioned),
            ThrottleReason::KeyRange
        );
        let b = budget(0.0, 2, 1.0);
        let a = b.admit_batch(&[c(1, 0), c(1, 1)], 2);
        assert!(a.admitted.is_empty());
        assert_eq!(a.deferred, vec![0, 1]);
        assert_eq!(
            a.reason(ThrottleReason::TableProvisioned),
            ThrottleReason::TableProvisioned
        );
    }

    #[test]
    fn only_the_offered_prefix_is_asked() {
        let b = budget(1000.0, 1, 1000.0);
        let a = b.admit_batch(&[c(1, 0); 5], 3);
        assert_eq!(a.admitted, vec![0, 1, 2]);
        assert_eq!(a.deferred, vec![3, 4]);
        assert_eq!(a.key_range_deferred, 0);
    }

    #[test]
    fn refunds_reach_the_partitions_that_paid() {
        let b = budget(4.0, 2, 2.0);
        assert_eq!(
            b.admit_batch(&[c(1, 0), c(1, 0), c(1, 1), c(1, 1)], 4)
                .admitted
                .len(),
            4
        );
        assert_eq!(b.admit_one(c(1, 0)), Err(ThrottleReason::KeyRange));
        b.refund([c(1, 0), c(1, 1)]);
        assert_eq!(b.admit_one(c(1, 0)), Ok(()));
        assert_eq!(b.admit_one(c(1, 1)), Ok(()));
        assert_eq!(b.admit_one(c(1, 1)), Err(ThrottleReason::KeyRange));
    }

    #[test]
    fn units_are_summed_per_partition() {
        let none = Charge {
            cost: 9,
            partition: None,
        };
        assert_eq!(
            units_per_partition([c(2, 3), none, c(1, 0), c(4, 3)]),
            vec![(3, 6), (0, 1)]
        );
    }
}
