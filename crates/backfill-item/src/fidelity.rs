//! What `plan` says about columns whose type has no faithful DynamoDB form,
//! before any job runs (docs/TYPES.md is the full table).

use backfill_config::{TableConfig, TypeOverride, Unrepresentable};
use backfill_model::{ColumnKind, TableSchema};

/// One note per copied column whose values may not all have a faithful
/// form, saying what will happen to them under this table's config.
pub fn fidelity_notes(cfg: &TableConfig, schema: &TableSchema) -> Vec<String> {
    let table = &schema.table;
    let on_bad = match cfg.unrepresentable {
        Unrepresentable::Fail => "make their row a reject (not written; `backfill rejects list`)",
        Unrepresentable::String => "are stored as S of their text",
    };
    let mut notes = Vec::new();
    for c in &schema.columns {
        let copied = cfg.include.as_ref().is_none_or(|i| i.contains(&c.name))
            && !cfg.exclude.contains(&c.name);
        if !copied || cfg.types.get(&c.name) == Some(&TypeOverride::String) {
            continue;
        }
        let note =
            |what: String| format!("table {table}, column {} ({}): {what}", c.name, c.pg_type);
        let kind = match &c.kind {
            ColumnKind::Array(elem) => elem.as_ref(),
            k => k,
        };
        match kind {
            ColumnKind::Numeric if c.precision.is_none_or(|p| p > 38) => notes.push(note(format!(
                "values of more than 38 significant digits, beyond DynamoDB's range, NaN or Infinity {on_bad}"
            ))),
            ColumnKind::Float4 => notes.push(note(format!(
                "NaN and Infinity {on_bad}; -0 is stored as 0"
            ))),
            ColumnKind::Float8 => notes.push(note(format!(
                "NaN, Infinity and magnitudes beyond 9.99E+125 (DynamoDB's largest number; double precision reaches 1.8E+308) {on_bad}; -0 is stored as 0"
            ))),
            ColumnKind::Json | ColumnKind::Jsonb => notes.push(note(format!(
                "numbers inside the JSON of more than 38 significant digits or beyond DynamoDB's range (1E-130 to 9.99E+125) {on_bad}"
            ))),
            ColumnKind::Money => notes.push(note("stored as N of its amount; the currency symbol is not kept".into())),
            ColumnKind::Other => notes.push(note("no native DynamoDB form: stored as S of its Postgres text form".into())),
            ColumnKind::Bytea if matches!(c.kind, ColumnKind::Array(_)) => {
                notes.push(note("elements are stored as S in `\\x` hex (JSON has no binary)".into()))
            }
            ColumnKind::TimeTz if matches!(c.kind, ColumnKind::Array(_)) => {
                notes.push(note("elements keep their own offsets (only scalars are normalised to UTC)".into()))
            }
            _ => {}
        }
    }
    notes
}
