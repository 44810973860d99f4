//! `archive verify --run R`: trust, but read back. Every part is
//! downloaded (to a temporary file, so memory stays one batch) and checked
//! three ways: its bytes against the manifest's SHA-256, its rows and
//! digest (computed from the Parquet values) against what the job
//! recorded, and, while the source table exists, the same range read from
//! Postgres against both. Only then is the archive known to equal the
//! table it is about to replace.

use std::io::Seek;
use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_archive::digest::add_row;
use backfill_archive::file::PartReader;
use backfill_archive::manifest::{Manifest, ManifestPart};
use backfill_archive::store::ArchiveStore;
use backfill_archive::types::ArchiveSchema;
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_item::compare::ItemDigest;
use backfill_job::KeyRange;
use backfill_source::reader::PageQuery;
use backfill_source::{PgSource, TableRef, TableSchema};
use backfill_worker::archive::{manifest_columns, table_archive_schema};

use super::keys::key_differences;
use super::{manifest, store, tables};
use crate::connect_source;

/// Rows a source page reads while checking a part.
const PAGE_ROWS: u32 = 2_000;

pub(super) async fn verify(
    cfg: &BackfillConfig,
    run: &str,
    only: Option<&str>,
    with_source: bool,
) -> Result<ExitCode> {
    let aws = AwsClients::from_config(&cfg.aws).await;
    let store = store(cfg, &aws)?;
    let source = if with_source {
        Some(connect_source(cfg).await?)
    } else {
        None
    };
    let mut problems = 0usize;
    for table in tables(cfg, only)? {
        let m = match manifest(&store, &table, run).await {
            Ok(m) => m,
            Err(e) => {
                println!("{table}: FAILED: {e:#}");
                problems += 1;
                continue;
            }
        };
        problems += verify_table(cfg, &store, source.as_ref(), &m).await?;
    }
    if problems == 0 {
        println!(
            "archive run {run}: every part matches its manifest{}",
            if with_source { " and the source" } else { "" }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("archive run {run}: {problems} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

/// The source table as the archive reads it, if it still exists.
async fn source_side(
    cfg: &BackfillConfig,
    source: Option<&PgSource>,
    m: &Manifest,
) -> Result<Option<(TableSchema, ArchiveSchema)>> {
    let Some(source) = source else {
        return Ok(None);
    };
    match table_archive_schema(source, &TableRef::parse(&m.table), cfg.archive.as_ref()).await {
        Ok(s) => Ok(Some(s)),
        Err(backfill_worker::JobError::Source(backfill_source::SourceError::TableNotFound {
            ..
        })) => {
            println!(
                "{}: the source table is gone; parts checked against the manifest only",
                m.table
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn verify_table(
    cfg: &BackfillConfig,
    store: &ArchiveStore,
    source: Option<&PgSource>,
    m: &Manifest,
) -> Result<usize> {
    let mut problems = 0;
    let side = source_side(cfg, source, m).await?;
    if let Some((_, archived)) = &side {
        if manifest_columns(archived) != m.columns {
            println!(
                "{}: FAILED: the source table's columns are not the archive's (altered since run {})",
                m.table, m.run_id
            );
            problems += 1;
        }
    }
    let mut total = 0u64;
    for p in &m.parts {
        let found = check_part(store, p)
            .await
            .with_context(|| format!("table {}, part {}", m.table, p.key))?;
        total += found.rows;
        let mut bad: Vec<String> = found.problems;
        if let (Some((schema, archived)), Some(source)) = (&side, source) {
            let range: KeyRange = serde_json::from_value(p.range.clone())
                .with_context(|| format!("part {}: its range does not read", p.key))?;
            let now = range_digest(source, schema, archived, &range).await?;
            if now.count != p.rows || now.sum_hex() != p.digest {
                bad.push(format!(
                    "the source's range {range} now has {} rows (digest {}), the part {} (digest {})",
                    now.count,
                    now.sum_hex(),
                    p.rows,
                    p.digest
                ));
                if let Some(file) = found.file {
                    for line in key_differences(file, source, schema, archived, &range).await? {
                        bad.push(line);
                    }
                }
            }
        }
        if bad.is_empty() {
            println!(
                "{}: part {} ok: {} rows, sha256 {}",
                m.table,
                p.key,
                p.rows,
                &p.sha256[..12]
            );
        } else {
            problems += bad.len();
            for b in bad {
                println!("{}: part {} FAILED: {b}", m.table, p.key);
            }
        }
    }
    if total != m.rows {
        println!(
            "{}: FAILED: the parts hold {total} rows, the manifest says {}",
            m.table, m.rows
        );
        problems += 1;
    }
    Ok(problems)
}

struct PartCheck {
    rows: u64,
    problems: Vec<String>,
    /// The downloaded part, when its bytes are the manifest's.
    file: Option<std::fs::File>,
}

/// Downloads a part and checks it against what its job recorded.
async fn check_part(store: &ArchiveStore, p: &ManifestPart) -> Result<PartCheck> {
    let mut file = tempfile::tempfile().context("a temporary file for the part")?;
    let (bytes, sha) = store.download(&p.key, &mut file).await?;
    let mut problems = Vec::new();
    if sha != p.sha256 || bytes != p.bytes {
        problems.push(format!(
            "{bytes} bytes with SHA-256 {sha}; the manifest says {} bytes with {}: the object changed after it was written",
            p.bytes, p.sha256
        ));
        return Ok(PartCheck {
            rows: 0,
            problems,
            file: None,
        });
    }
    file.rewind()?;
    let reader = PartReader::open(file.try_clone()?, None)?;
    let mut d = ItemDigest::default();
    for rows in reader {
        for cells in &rows? {
            add_row(&mut d, cells);
        }
    }
    if d.count != p.rows || d.sum_hex() != p.digest {
        problems.push(format!(
            "the file holds {} rows (digest {}), its job recorded {} (digest {})",
            d.count,
            d.sum_hex(),
            p.rows,
            p.digest
        ));
    }
    Ok(PartCheck {
        rows: d.count,
        problems,
        file: Some(file),
    })
}

/// The rows and digest of `range` in the source now.
async fn range_digest(
    source: &PgSource,
    schema: &TableSchema,
    archived: &ArchiveSchema,
    range: &KeyRange,
) -> Result<ItemDigest> {
    let mut d = ItemDigest::default();
    for_each_row(source, schema, archived, range, |_, cells| {
        add_row(&mut d, &cells)
    })
    .await?;
    Ok(d)
}

/// Calls `f` with each row of `range` in the source now and its cells as
/// the archive stores them, a page at a time.
pub(super) async fn for_each_row(
    source: &PgSource,
    schema: &TableSchema,
    archived: &ArchiveSchema,
    range: &KeyRange,
    mut f: impl FnMut(&backfill_source::SourceRow, Vec<backfill_archive::Cell>),
) -> Result<()> {
    let query = PageQuery::new(schema, range);
    let mut after = None;
    loop {
        let page = source
            .read_page(schema, &query, after.as_ref(), PAGE_ROWS)
            .await?;
        for row in &page {
            let cells = backfill_archive::cell::row_cells(archived, row).with_context(|| {
                format!(
                    "table {}, key {}",
                    schema.table,
                    backfill_job::display_key(&row.key)
                )
            })?;
            f(row, cells);
        }
        if (page.len() as u32) < PAGE_ROWS {
            return Ok(());
        }
        after = page.last().map(|r| r.key.clone());
    }
}
