//! The source's lag/load gate (the gh-ost idea): reading pauses while the
//! configured `pause_query` is above its threshold.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::Worker;

impl Worker {
    /// Waits while the source's `pause_query` is above `pause_above` (the
    /// gh-ost idea: the backfill never adds load to a lagging or busy
    /// primary or replica). Evaluated at most every `pause_check_secs`;
    /// `false` if cancelled while waiting.
    pub(crate) async fn source_open(&self, cancel: &CancellationToken) -> bool {
        let src = &self.cfg.source;
        let (Some(sql), Some(limit)) = (&src.pause_query, src.pause_above) else {
            return true;
        };
        let every = Duration::from_secs(src.pause_check_secs);
        // One evaluation at a time for the whole worker.
        let mut last_open = self.gate.lock().await;
        loop {
            if last_open.is_some_and(|t| t.elapsed() < every) {
                return true;
            }
            match self.source.gauge(sql).await {
                Ok(v) if v <= limit => {
                    *last_open = Some(Instant::now());
                    return true;
                }
                Ok(v) => tracing::warn!(
                    value = v,
                    limit,
                    "source above its pause threshold: reading paused"
                ),
                Err(e) => tracing::warn!(error = %e, "source pause query failed: reading paused"),
            }
            *last_open = None;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cancel.cancelled() => return false,
            }
        }
    }
}
