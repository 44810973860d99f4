//! Why a value, a batch or a part file could not be archived or read back.
//!
//! Errors about a value name its column and quote the offending text (cut
//! to a readable length); the caller adds the table and the row's key,
//! which this crate does not know.

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;

/// How much of an offending value an error quotes.
const QUOTE_CHARS: usize = 120;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A value that has no exact form in its column's archive type.
    #[error("column {column}: {reason} (value {value:?})")]
    Value {
        column: String,
        value: String,
        reason: String,
    },
    /// A column whose type or options cannot be archived as asked.
    #[error("column {column} ({pg_type}): {reason}")]
    Schema {
        column: String,
        pg_type: String,
        reason: String,
    },
    /// A row with a different number of values than the schema has columns.
    #[error("a row has {got} values but the archive schema has {want} columns")]
    Arity { got: usize, want: usize },
    /// A cell of the wrong variant for its column (a caller's bug, not data).
    #[error("column {column}: a {cell} cell cannot be stored as {column_type}")]
    CellType {
        column: String,
        column_type: String,
        cell: String,
    },
    /// A batch that cannot take another row without overflowing Arrow's
    /// 32-bit offsets; the caller finishes the batch and starts another.
    #[error("the batch is full: {0}")]
    BatchFull(String),
    /// A part file that is not what this crate writes (or was damaged).
    #[error("part file: {0}")]
    File(String),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    /// A value error; the value is quoted up to a readable length.
    pub fn value(column: &str, value: &str, reason: impl Into<String>) -> Self {
        ArchiveError::Value {
            column: column.to_string(),
            value: quote(value),
            reason: reason.into(),
        }
    }
}

/// The first [`QUOTE_CHARS`] characters of `s`, with a marker when cut.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => s.to_string(),
        Some((at, _)) => format!("{}... ({} bytes)", &s[..at], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(500);
        let e = ArchiveError::value("c", &long, "why");
        let text = e.to_string();
        assert!(text.starts_with("column c: why (value \"éé"));
        assert!(text.contains("... (1000 bytes)"));
        assert_eq!(quote("short"), "short");
    }
}
