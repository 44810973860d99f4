//! The sink's side of per-key pacing: which partition-key value an item
//! has, and why DynamoDB throttled a call.
//!
//! A throttle now says why (`ThrottlingReasons`): a hot key range slows
//! the keys of that call ([`backfill_capacity::KeyPacer`]); the table's
//! provisioned rate, or anything unnamed, slows the whole fleet's share
//! ([`backfill_capacity::WriteLimiter`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, ThrottlingReason};
use backfill_capacity::KeyPacer;
use backfill_item::{Shape, ShapedItem};

use crate::Item;

/// Why DynamoDB refused a write for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// One partition (key range) is over its 1,000 WCU/s.
    KeyRange,
    /// The table's provisioned rate, or a reason not named: the fleet slows.
    Table,
    /// An on-demand table's or the account's ceiling.
    OnDemand,
}

impl ThrottleReason {
    /// The label metrics count this reason under.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::KeyRange => "key_range",
            ThrottleReason::Table => "table",
            ThrottleReason::OnDemand => "on_demand",
        }
    }

    /// The reason of a throttle: key range only when every reason given is
    /// a key range (one table-wide reason means the fleet must slow).
    pub fn of(reasons: &[ThrottlingReason]) -> ThrottleReason {
        let named: Vec<&str> = reasons.iter().filter_map(|r| r.reason()).collect();
        if !named.is_empty() && named.iter().all(|r| r.contains("KeyRange")) {
            ThrottleReason::KeyRange
        } else if named
            .iter()
            .any(|r| r.contains("OnDemand") || r.contains("AccountLimit"))
        {
            ThrottleReason::OnDemand
        } else {
            ThrottleReason::Table
        }
    }
}

/// A process-local hash of a partition-key value: the pacer's key. Type
/// and bytes both count, so `S "1"` and `N "1"` are different keys, as
/// they are to DynamoDB.
pub fn key_hash(v: &AttributeValue) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match v {
        AttributeValue::S(s) => (0u8, s.as_bytes()).hash(&mut h),
        AttributeValue::N(n) => (1u8, n.as_bytes()).hash(&mut h),
        AttributeValue::B(b) => (2u8, b.as_ref()).hash(&mut h),
        // Not a valid key type: DynamoDB refuses the item; one bucket.
        _ => 3u8.hash(&mut h),
    }
    h.finish()
}

/// A partition-key value as an operator reads it in a metric or `status`.
pub fn key_label(attribute: &str, v: &AttributeValue) -> String {
    const MAX: usize = 64;
    let text = match v {
        AttributeValue::S(s) => s.clone(),
        AttributeValue::N(n) => n.clone(),
        AttributeValue::B(b) => format!("<{} bytes>", b.as_ref().len()),
        _ => "<not a key type>".to_string(),
    };
    let text: String = if text.chars().count() > MAX {
        text.chars().take(MAX).chain("…".chars()).collect()
    } else {
        text
    };
    format!("{attribute}={text}")
}

/// A sink's pacing by partition-key value: the worker's pacer for the
/// target and the name of the target's partition-key attribute.
#[derive(Debug, Clone)]
pub struct KeyPacing {
    pub pacer: Arc<KeyPacer>,
    pub attribute: Arc<str>,
}

/// The most partition-key values one answer's unprocessed items may hold
/// and still be read as hot key ranges: a hot partition holds a few of a
/// batch's keys, while a table-wide limit leaves the batch's tail, whatever
/// its keys.
pub const MAX_HOT_KEYS_PER_ANSWER: usize = 4;

impl KeyPacing {
    pub fn of_item<'a>(&self, item: &'a Item) -> Option<&'a AttributeValue> {
        item.get(&*self.attribute)
    }

    /// The `(key, wcu)` of each item that has the attribute.
    pub fn costs_of_items<'a>(
        &self,
        items: impl Iterator<Item = (&'a Item, u64)>,
    ) -> Vec<(u64, u64)> {
        items
            .filter_map(|(i, wcu)| self.of_item(i).map(|v| (key_hash(v), wcu)))
            .collect()
    }

    /// [`KeyPacing::costs_of_items`] for items of `shape`.
    pub fn costs_of_shaped<'a>(
        &self,
        shape: &Shape,
        items: impl Iterator<Item = (&'a ShapedItem, u64)>,
    ) -> Vec<(u64, u64)> {
        let Some(slot) = shape.slot(&self.attribute) else {
            return Vec::new();
        };
        items
            .filter_map(|(i, wcu)| shape.value_at(i, slot).map(|v| (key_hash(v), wcu)))
            .collect()
    }

    /// Items DynamoDB left unprocessed, which carry no reason, of a call
    /// that sent `sent` (`(key, wcu)` of each item): few keys are hot key
    /// ranges, and each is slowed to the share of it that was taken
    /// ([`KeyPacer::on_partial`]) (true); more than
    /// [`MAX_HOT_KEYS_PER_ANSWER`] is the table's (or an on-demand
    /// table's) limit cutting the batch short, which the caller answers by
    /// slowing the fleet (false). Slowing each of those keys instead left
    /// the fleet writing at full rate into an on-demand table that absorbed
    /// a fifth of it: the fleet benchmark's on-demand case dead-lettered jobs.
    pub fn unprocessed<'a>(
        &self,
        items: impl Iterator<Item = (&'a Item, u64)>,
        sent: &[(u64, u64)],
    ) -> bool {
        let mut left: HashMap<u64, (u64, &AttributeValue)> = HashMap::new();
        for (item, wcu) in items {
            if let Some(v) = self.of_item(item) {
                left.entry(key_hash(v)).or_insert((0, v)).0 += wcu;
            }
        }
        if left.is_empty() || left.len() > MAX_HOT_KEYS_PER_ANSWER {
            return false;
        }
        let now = Instant::now();
        for (k, (unsent, v)) in left {
            let of_key: u64 = sent.iter().filter(|(s, _)| *s == k).map(|(_, w)| w).sum();
            let accepted = if of_key == 0 {
                0.0
            } else {
                1.0 - unsent as f64 / of_key as f64
            };
            self.pacer.on_partial(k, accepted, now);
            self.pacer.name(k, || key_label(&self.attribute, v));
        }
        true
    }

    /// DynamoDB throttled a call of these keys (hashes only: their names
    /// are not at hand; items left unprocessed name them).
    pub fn throttled_keys(&self, costs: &[(u64, u64)]) {
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for &(k, _) in costs {
            if seen.insert(k) {
                self.pacer.on_throttle(k, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_unprocessed_keys_are_hot_key_ranges_and_many_are_the_table() {
        let pacing = KeyPacing {
            pacer: Arc::new(KeyPacer::new(900.0)),
            attribute: "tenant".into(),
        };
        let item = |t: &str| Item::from([("tenant".to_string(), AttributeValue::S(t.into()))]);
        let hot: Vec<Item> = ["a,\"", "a,\"", "b"].into_iter().map(item).collect();
        let costs = |items: &[Item]| -> Vec<(u64, u64)> {
            pacing.costs_of_items(items.iter().map(|i| (i, 1)))
        };
        let sent = costs(&hot);
        assert!(pacing.unprocessed(hot.iter().map(|i| (i, 1)), &sent));
        let now = Instant::now() + std::time::Duration::from_secs(1);
        assert_eq!(pacing.pacer.hot_keys(5, now).len(), 2, "both keys slowed");
        let tail: Vec<Item> = (0..=MAX_HOT_KEYS_PER_ANSWER)
            .map(|i| item(&format!("t{i}")))
            .collect();
        assert!(
            !pacing.unprocessed(tail.iter().map(|i| (i, 1)), &costs(&tail)),
            "the table's limit"
        );
        assert_eq!(
            pacing.pacer.hot_keys(10, now).len(),
            2,
            "no key slowed for it"
        );
        // Three of four WCU of one key taken: that key goes on at 0.75.
        let c = [item("c"), item("c"), item("c"), item("c")];
        assert!(pacing.unprocessed(c[..1].iter().map(|i| (i, 1)), &costs(&c)));
        let c_key = key_hash(&AttributeValue::S("c".into()));
        let r = pacing.pacer.rate(c_key, Instant::now());
        assert!((r - 675.0).abs() < 1.0, "{r}");
        let keyless = [Item::new()];
        assert!(!pacing.unprocessed(keyless.iter().map(|i| (i, 1)), &[]));
    }

    fn reason(r: &str) -> ThrottlingReason {
        ThrottlingReason::builder().reason(r).build()
    }

    #[test]
    fn a_throttle_is_a_key_range_only_when_every_reason_says_so() {
        let kr = reason("TableWriteKeyRangeThroughputExceeded");
        let table = reason("TableWriteProvisionedThroughputExceeded");
        let od = reason("TableWriteMaxOnDemandThroughputExceeded");
        assert_eq!(
            ThrottleReason::of(std::slice::from_ref(&kr)),
            ThrottleReason::KeyRange
        );
        assert_eq!(
            ThrottleReason::of(&[kr.clone(), table.clone()]),
            ThrottleReason::Table
        );
        assert_eq!(
            ThrottleReason::of(&[]),
            ThrottleReason::Table,
            "no reason given"
        );
        assert_eq!(ThrottleReason::of(&[od]), ThrottleReason::OnDemand);
        let account = reason("TableWriteAccountLimitExceeded");
        assert_eq!(ThrottleReason::of(&[account]), ThrottleReason::OnDemand);
        assert_eq!(ThrottleReason::of(&[table]), ThrottleReason::Table);
    }

    #[test]
    fn keys_differ_by_type_and_bytes() {
        let s1 = AttributeValue::S("1".into());
        let n1 = AttributeValue::N("1".into());
        let b1 = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"1".to_vec()));
        assert_ne!(key_hash(&s1), key_hash(&n1));
        assert_ne!(key_hash(&s1), key_hash(&b1));
        assert_eq!(key_hash(&s1), key_hash(&AttributeValue::S("1".into())));
        // "1e3" and "1000" are one number to DynamoDB but two keys here:
        // at worst one key's writes are paced as two keys'.
        assert_ne!(
            key_hash(&AttributeValue::N("1e3".into())),
            key_hash(&AttributeValue::N("1000".into()))
        );
    }

    #[test]
    fn labels_are_short_and_name_the_attribute() {
        let long = AttributeValue::S("é".repeat(100));
        let l = key_label("tenant", &long);
        assert!(l.starts_with("tenant=é"));
        assert_eq!(l.chars().count(), "tenant=".len() + 64 + 1);
        let b = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 1, 2]));
        assert_eq!(key_label("k", &b), "k=<3 bytes>");
        assert_eq!(key_label("k", &AttributeValue::S(String::new())), "k=");
    }
}
