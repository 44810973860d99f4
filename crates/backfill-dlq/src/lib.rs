//! The dead-letter queue for on-call engineers: what is dead and why,
//! sending dead jobs back once their cause is fixed, and deleting those that
//! must never run, each action recorded in the control table.
//!
//! Every operation walks the whole DLQ once, holding each message invisible
//! while it runs, so a message is seen once; the messages a filter does not
//! select are released as soon as the walk is over, the rest when their
//! action is done. A replay resets the job's attempts (and writes its audit
//! record), sends the body to the job queue, and only then deletes the DLQ
//! message: a crash in between leaves a duplicate, which the control
//! table's claim turns into a no-op, never a lost job.

mod dead_job;
mod error;
mod filter;
mod purge;
mod replay;
mod walk;

pub use dead_job::{DeadJob, ErrorSource};
pub use error::DlqError;
pub use filter::Filter;
pub use purge::{PurgeOptions, PurgeOutcome, PurgeReport};
pub use replay::{ReplayOptions, ReplayOutcome, ReplayReport};
pub use walk::{Dlq, Selection, DEFAULT_HOLD_SECS};
