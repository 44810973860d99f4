//! Items too large for DynamoDB, stored whole in S3 with a small pointer
//! item written to DynamoDB in their place.
//!
//! DynamoDB refuses any item over 400 KB (counted as
//! [`backfill_item::size::item_size`] counts), and a source row with a large
//! text or `jsonb` column can map to one. Dropping such a row would make the
//! copy silently incomplete; truncating it would make it silently wrong. So
//! the whole item goes to S3 as DynamoDB JSON at
//! `s3://{bucket}/{prefix}{table}/{sha256(key JSON)}.json`, and the table
//! gets the key attributes plus [`POINTER_ATTRIBUTE`], from which
//! [`S3Offloader::fetch`] (or any reader, see `docs/OFFLOAD.md`) gets it back.
//!
//! The object name depends only on the table and the key, so writing the
//! same item again (a retried job) overwrites the object with the same bytes,
//! and an item that shrinks back under the limit later leaves at most one
//! stale object per key.

mod dynamo_json;
mod error;
mod offloader;
mod pointer;

pub use dynamo_json::{canonical_json, parse_canonical_json};
pub use error::OffloadError;
pub use offloader::S3Offloader;
pub use pointer::{is_pointer, POINTER_ATTRIBUTE};
