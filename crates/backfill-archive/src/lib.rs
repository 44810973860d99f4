//! Source tables archived to S3 as Parquet (issue #20, docs/ARCHIVE.md).
//!
//! The pure half turns a source row into typed [`cell::Cell`]s, the cells
//! into Arrow batches and Parquet row groups, and back again, with one
//! order-independent digest over the cells; the I/O half uploads a part as
//! a multipart upload, writes the manifest last, and reads parts back.

pub mod batch;
pub mod cell;
pub mod copy_text;
pub mod digest;
pub mod error;
pub mod file;
pub mod manifest;
pub mod part;
pub mod store;
pub mod types;

pub use cell::Cell;
pub use error::ArchiveError;
