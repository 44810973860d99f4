//! `restore`: an archive loaded back into a new Postgres table, in one
//! transaction (a failed restore leaves no table behind). Each part is
//! checked against the manifest's SHA-256 before a row of it is loaded,
//! and the rows loaded must add up to the manifest's.

use std::io::Seek;

use anyhow::{bail, Context, Result};
use backfill_archive::copy_text::copy_line;
use backfill_archive::file::PartReader;
use backfill_archive::manifest::Manifest;
use backfill_archive::store::ArchiveStore;
use backfill_source::restore::RestoreWriter;
use backfill_source::TableRef;

pub(super) async fn restore(
    store: &ArchiveStore,
    m: &Manifest,
    url: &str,
    into: &TableRef,
) -> Result<u64> {
    let columns: Vec<(String, String)> = m
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.pg_type.clone()))
        .collect();
    let mut writer = RestoreWriter::create(url, into, &columns, &m.key_columns)
        .await
        .with_context(|| format!("creating {into}"))?;
    let mut line = String::new();
    for p in &m.parts {
        let mut file = tempfile::tempfile().context("a temporary file for the part")?;
        let (bytes, sha) = store.download(&p.key, &mut file).await?;
        if sha != p.sha256 || bytes != p.bytes {
            bail!(
                "part {}: {bytes} bytes with SHA-256 {sha}, the manifest says {} bytes with {}; nothing was restored (`backfill archive verify --run {}`)",
                p.key, p.bytes, p.sha256, m.run_id
            );
        }
        file.rewind()?;
        let reader = PartReader::open(file, None).with_context(|| format!("part {}", p.key))?;
        let schema = reader.schema().clone();
        for rows in reader {
            let rows = rows.with_context(|| format!("part {}", p.key))?;
            let mut chunk = String::new();
            for cells in &rows {
                line.clear();
                copy_line(&schema, cells, &mut line)
                    .with_context(|| format!("part {}: a row that COPY cannot take", p.key))?;
                chunk.push_str(&line);
            }
            writer
                .copy(chunk.as_bytes())
                .await
                .with_context(|| format!("loading part {} into {into}", p.key))?;
        }
    }
    let rows = writer.commit().await?;
    if rows != m.rows {
        bail!("{into}: {rows} rows restored, the manifest says {}", m.rows);
    }
    Ok(rows)
}
