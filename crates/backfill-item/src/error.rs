//! Why a row cannot become an item, or a table cannot be mapped at all.
//!
//! The error type is shared by the mapper's construction, the row mapping
//! and the key rules, and read by the worker to record rejects, so it
//! sits below all of them.

/// Why a row cannot become an item, or a table cannot be mapped at all.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// Every column of the row that cannot be mapped, not just the first,
    /// so one fix of the config or the data settles the row.
    #[error("table {table}, key {key}, {}", show_problems(problems))]
    Row {
        table: String,
        key: String,
        problems: Vec<RowProblem>,
    },
    #[error("table {table}: {reason}")]
    Table { table: String, reason: String },
}

/// One column of a row that cannot be mapped, and why (the reason quotes
/// the offending value where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub column: String,
    pub reason: String,
}

fn show_problems(problems: &[RowProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("column {}: {}", p.column, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl MapError {
    /// What is wrong with the row, without the table and key.
    pub fn row_reason(&self) -> String {
        match self {
            MapError::Row { problems, .. } => show_problems(problems),
            MapError::Table { reason, .. } => reason.clone(),
        }
    }
}
