//! Mapping of source rows to DynamoDB items, and DynamoDB's own limits.
//!
//! Pure code: no I/O, no knowledge of SQS or of how items are written. An
//! [`ItemMapper`] is built once per job from the table's config and schema;
//! it checks that the key columns exist before any row is read, then maps
//! each [`SourceRow`](backfill_model::SourceRow) or fails with the table, key and column named.
//!
//! DynamoDB's limits are enforced here, not left to the service or an
//! emulator (which may be laxer): numbers ([`number`]), key attributes
//! (non-empty, 2,048 bytes for a partition key, 1,024 for a sort key).

pub mod compare;
mod convert;
mod error;
pub mod fidelity;
mod key_plan;
mod keys;
mod map;
mod mapper;
pub mod number;
pub mod shaped;
pub mod size;
#[cfg(test)]
mod testing;

pub use convert::{json_into_attribute, json_to_attribute, text_form};
pub use error::{MapError, RowProblem};
pub use key_plan::{KeyPlan, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
pub use keys::{AMBIGUOUS_KEY, JOIN_SEPARATOR};
pub use mapper::ItemMapper;
pub use shaped::{Shape, ShapedItem};

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// `s.trim()`, without the char-by-char scan when neither end is
/// whitespace (numbers from Postgres never have any): an ASCII graphic byte
/// at each end is a non-whitespace char there.
pub(crate) fn trim_ascii_fast(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}
