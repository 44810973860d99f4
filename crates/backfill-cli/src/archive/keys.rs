//! Which keys of a part differ from the source's range now: asked only
//! when the range's rows and digest disagree, so an operator reads the
//! keys to look at, not just "this part differs". Holds one key and one
//! 128-bit hash per row of the part (one job's range), never the table.

use std::collections::HashMap;
use std::io::Seek;

use anyhow::Result;
use backfill_archive::digest::row_hash;
use backfill_archive::file::PartReader;
use backfill_archive::types::ArchiveSchema;
use backfill_archive::Cell;
use backfill_job::{display_key, KeyRange};
use backfill_source::{PgSource, TableSchema};

use super::check::for_each_row;

/// Differences listed per part at most; the counts go on.
const MAX_LISTED: usize = 20;

/// A key's cells as one string: the same cells give the same string.
fn key_of(schema: &TableSchema, cells: &[Cell]) -> String {
    let shown: Vec<String> = schema
        .key
        .iter()
        .map(|&i| match cells.get(i) {
            Some(Cell::Str(s)) => s.clone(),
            Some(Cell::I16(n)) => n.to_string(),
            Some(Cell::I32(n)) => n.to_string(),
            Some(Cell::I64(n)) => n.to_string(),
            Some(other) => format!("{other:?}"),
            None => "?".into(),
        })
        .collect();
    format!("({})", shown.join(", "))
}

/// Lines naming the keys that are missing from the part, changed since it
/// was written, or gone from the source, at most [`MAX_LISTED`], then
/// the counts.
pub(super) async fn key_differences(
    mut part: std::fs::File,
    source: &PgSource,
    schema: &TableSchema,
    archived: &ArchiveSchema,
    range: &KeyRange,
) -> Result<Vec<String>> {
    part.rewind()?;
    let mut archived_rows: HashMap<String, u128> = HashMap::new();
    for rows in PartReader::open(part, None)? {
        for cells in rows? {
            archived_rows.insert(key_of(schema, &cells), row_hash(&cells));
        }
    }
    let (mut missing, mut changed) = (0usize, 0usize);
    let mut lines = Vec::new();
    for_each_row(source, schema, archived, range, |row, cells| {
        let what = match archived_rows.remove(&key_of(schema, &cells)) {
            None => {
                missing += 1;
                "not in the archive"
            }
            Some(h) if h != row_hash(&cells) => {
                changed += 1;
                "changed since it was archived"
            }
            Some(_) => return,
        };
        if lines.len() < MAX_LISTED {
            lines.push(format!("key {} {what}", display_key(&row.key)));
        }
    })
    .await?;
    let mut gone: Vec<&String> = archived_rows.keys().collect();
    gone.sort();
    for k in gone.iter().take(MAX_LISTED.saturating_sub(lines.len())) {
        lines.push(format!("key {k} archived, no longer in the source"));
    }
    lines.push(format!(
        "{missing} rows not in the archive, {changed} changed, {} no longer in the source",
        gone.len()
    ));
    Ok(lines)
}
