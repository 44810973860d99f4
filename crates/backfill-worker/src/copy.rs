//! Copying one job's range: keyset pages from Postgres, mapped to items,
//! written to DynamoDB. The next page is read while the current one is
//! written (a channel of one page bounds the memory to two pages).

use backfill_item::ItemMapper;
use backfill_job::{JobMessage, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::{SourceRow, TableRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{JobError, Worker};

/// How far a job got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Rows written to DynamoDB.
    pub rows: u64,
    /// The last key written, when any.
    pub last_key: Option<KeyTuple>,
    /// Whether the whole range was copied (false: stopped by shutdown).
    pub complete: bool,
}

pub(crate) async fn copy_range(
    w: &Worker,
    job: &JobMessage,
    cancel: &CancellationToken,
) -> Result<CopyProgress, JobError> {
    let tcfg = w
        .cfg
        .table(&job.table)
        .ok_or_else(|| JobError::UnknownTable(job.table.clone()))?;
    let schema = w.source.describe(&TableRef::parse(&job.table)).await?;
    schema.check_job_key(&job.key_columns)?;
    schema.check_key_types()?;
    let mapper = ItemMapper::new(tcfg, &schema)?;
    let query = PageQuery::new(&schema, &job.range);
    let page_rows = w.cfg.worker.page_rows;

    // Reader task: pages in key order into a channel of one, so reading the
    // next page overlaps with writing this one.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<SourceRow>, JobError>>(1);
    let reader = {
        let source = w.source.clone();
        let schema = schema.clone();
        let query = query.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut after: Option<KeyTuple> = None;
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                let page = source
                    .read_page(&schema, &query, after.as_ref(), page_rows)
                    .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let last = page.len() < page_rows as usize;
                after = page.last().map(|r| r.key.clone());
                if page.is_empty() || tx.send(Ok(page)).await.is_err() || last {
                    return;
                }
            }
        })
    };

    let mut progress = CopyProgress::default();
    let result = loop {
        if cancel.is_cancelled() {
            break Ok(());
        }
        let page = match rx.recv().await {
            None => {
                progress.complete = !cancel.is_cancelled();
                break Ok(());
            }
            Some(Err(e)) => break Err(e),
            Some(Ok(p)) => p,
        };
        let items = match page
            .iter()
            .map(|r| mapper.map_row(r))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(items) => items,
            Err(e) => break Err(e.into()),
        };
        if let Err(e) = w
            .sink
            .put_items(&tcfg.target, items, w.cfg.worker.write_concurrency)
            .await
        {
            break Err(e.into());
        }
        progress.rows += page.len() as u64;
        progress.last_key = page.last().map(|r| r.key.clone());
        tracing::debug!(rows = progress.rows, "page written");
    };
    reader.abort();
    result.map(|()| progress)
}
