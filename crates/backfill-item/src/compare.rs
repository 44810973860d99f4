//! Comparing items the way DynamoDB means them, and an order-independent
//! digest of a set of items.
//!
//! DynamoDB normalises numbers (`3.750` comes back as `3.75`), so numbers are
//! compared by value; sets are compared without order; maps key by key. A
//! difference names the attribute path and both sides.

mod canonical;
mod diff;
mod digest;
mod version;

pub use canonical::{
    canonical, canonical_into, canonical_number, canonical_number_into, display_item_key, key_id,
};
pub use diff::{diff_items, AttributeDiff};
pub use digest::{item_hash, ItemDigest};
pub use version::{compare_numbers, is_newer, newer_in_target};

#[cfg(test)]
pub(crate) use canonical::tests::number_texts;
