//! `verify`: the single-process check of copied tables (every row, a
//! sample, or the rows since a version), and its count cross-check.

use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_source::TableRef;

use crate::{connect_source, offloader, sink};

pub(crate) async fn verify(
    cfg: &BackfillConfig,
    table: Option<String>,
    sample: Option<f64>,
    since: Option<String>,
    limit: u32,
    max_reads_per_sec: u32,
) -> Result<ExitCode> {
    let tables: Vec<&backfill_config::TableConfig> = match &table {
        Some(name) => vec![cfg
            .table(name)
            .with_context(|| format!("table {name} is not in the config"))?],
        None => cfg.tables.iter().collect(),
    };
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let opts = backfill_verify::VerifyOptions {
        max_reads_per_sec: std::num::NonZeroU32::new(max_reads_per_sec)
            .context("--max-reads-per-sec must be at least 1")?,
        ..Default::default()
    };
    let mut verifier = backfill_verify::Verifier::new(source, sink(cfg, &aws), opts);
    if let Some(o) = offloader(cfg, &aws) {
        verifier = verifier.with_offloader(o);
    }
    let mut clean = true;
    for t in tables {
        let report = if sample.is_some() || since.is_some() {
            verifier
                .audit(
                    t,
                    sample,
                    since.as_deref(),
                    limit,
                    std::time::Duration::from_secs(2),
                )
                .await?
        } else {
            verifier.verify_table(t).await?
        };
        clean &= report.is_clean();
        println!(
            "{} -> {}: {} rows checked, {} items scanned ({} newer in DynamoDB): {} missing, {} extra, {} different, {} unmappable, {} collisions{}{}",
            report.source,
            report.target,
            report.rows_checked,
            report.items_scanned,
            report.newer_in_target,
            report.missing_count,
            report.extra_count,
            report.different_count,
            report.unmappable_count,
            report.collision_count,
            if report.count_mismatch_count > 0 {
                format!(", {} spans whose row count disagrees with the source", report.count_mismatch_count)
            } else {
                String::new()
            },
            if report.is_clean() {
                ""
            } else {
                "  DIFFERENCES"
            }
        );
        for (k, why) in &report.unmappable {
            println!("  unmappable {k}: {why}");
        }
        for c in &report.collisions {
            println!("  collision {c}");
        }
        for m in &report.count_mismatches {
            println!("  count    {m}");
        }
        for k in &report.missing {
            println!("  missing  {k}");
        }
        for k in &report.extra {
            println!("  extra    {k}");
        }
        for (k, diffs) in &report.different {
            for d in diffs {
                println!("  differs  {k}: {d}");
            }
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn verify_counts(
    cfg: &BackfillConfig,
    elapsed_secs: Option<f64>,
) -> Result<ExitCode> {
    let source = connect_source(cfg).await?;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let sink = sink(cfg, &aws);
    let mut all_match = true;
    let mut total = 0;
    for t in &cfg.tables {
        let rows = source.count_rows(&TableRef::parse(&t.source)).await?;
        let items = sink.count_items(&t.target).await?;
        let verdict = if rows == items { "match" } else { "MISMATCH" };
        all_match &= rows == items;
        total += items;
        println!(
            "{} -> {}: source rows {rows}, target items {items}: {verdict}",
            t.source, t.target
        );
    }
    if let Some(secs) = elapsed_secs {
        println!(
            "copied {total} items in {secs:.1} s: {:.0} rows/s",
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(if all_match {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
