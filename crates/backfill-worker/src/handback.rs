//! The tail: once the queue is empty and workers stand idle, a job still
//! reading hands the rest of its range back as a new job, so the last
//! minutes of a run are copied by the whole fleet instead of by the few
//! workers holding the last, long jobs.
//!
//! A job splits only at one of its planned cuts (keys of the producer's
//! sample, so the child is about a whole number of parts) that lies past
//! what it has read, compared in Postgres. The control table's order of
//! writes (`backfill_control`'s `handback.rs`) keeps every row owned by
//! exactly one job whatever fails in between.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backfill_control::{ControlError, HandedBack};
use backfill_job::{JobMessage, KeyRange, KeyTuple};
use backfill_source::reader::PageQuery;
use backfill_source::TableSchema;

use crate::Worker;

/// What the fleet heartbeat last said of the tail: since when the queue has
/// been empty while some live worker held no job.
#[derive(Debug, Default)]
pub(crate) struct Tail(Mutex<Option<Instant>>);

impl Tail {
    /// Records one heartbeat's view: jobs waiting, and live and busy workers.
    pub(crate) fn observe(&self, waiting: bool, live: usize, busy: usize, now: Instant) {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if waiting || live <= busy {
            *since = None;
        } else {
            since.get_or_insert(now);
        }
    }

    /// Whether workers have stood idle before an empty queue for `after`.
    pub(crate) fn idle_for(&self, after: Duration, now: Instant) -> bool {
        let since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        since.is_some_and(|s| now.saturating_duration_since(s) >= after)
    }
}

/// One running job's hand-backs: the range it now ends at and the planned
/// cuts still ahead of it.
#[derive(Debug)]
pub(crate) struct HandBacks {
    started: Instant,
    last: Option<Instant>,
    range: KeyRange,
    cuts: Vec<KeyTuple>,
}

impl HandBacks {
    /// For a job reading `range` in key order with `cuts` inside it.
    pub(crate) fn new(range: KeyRange, cuts: Vec<KeyTuple>) -> Self {
        HandBacks {
            started: Instant::now(),
            last: None,
            range,
            cuts,
        }
    }

    /// Whether this job may consider a hand-back now: it has cuts left, and
    /// has run (and not handed back) for `every`.
    fn due(&self, every: Duration, now: Instant) -> bool {
        !self.cuts.is_empty()
            && now.saturating_duration_since(self.started) >= every
            && self
                .last
                .is_none_or(|l| now.saturating_duration_since(l) >= every)
    }
}

/// The cut to split at among `ahead` (the cuts past what was read, in
/// order): the middle one, so the job keeps about half of what is left.
/// Returns the cuts the job keeps, the split and the child's cuts.
pub(crate) fn split_at(
    mut ahead: Vec<KeyTuple>,
) -> Option<(Vec<KeyTuple>, KeyTuple, Vec<KeyTuple>)> {
    if ahead.is_empty() {
        return None;
    }
    let mid = ahead.len() / 2;
    let child_cuts = ahead.split_off(mid + 1);
    let split = ahead.pop()?;
    Some((ahead, split, child_cuts))
}

/// Hands the rest of `job`'s range back when the tail calls for it, and
/// returns the narrowed page query the job's reader goes on with. `after`
/// is the last key read. Any failure leaves the job whole: a hand-back only
/// saves time, so it is logged and not tried again for this job.
pub(crate) async fn maybe_hand_back(
    w: &Worker,
    job: &JobMessage,
    hb: &mut HandBacks,
    schema: &TableSchema,
    after: Option<&KeyTuple>,
) -> Option<PageQuery> {
    let every = Duration::from_secs(w.cfg.worker.hand_back_secs);
    let now = Instant::now();
    if every.is_zero() || !hb.due(every, now) || !w.tail.idle_for(every, now) {
        return None;
    }
    hb.last = Some(now);
    let ahead = match w.source.cuts_after(schema, after, &hb.cuts).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "finding where to hand the job's rest back failed");
            hb.cuts.clear();
            return None;
        }
    };
    let Some((keep, split, child_cuts)) = split_at(ahead) else {
        hb.cuts.clear();
        return None;
    };
    let child = JobMessage::new(
        &job.run_id,
        &job.table,
        job.key_columns.clone(),
        KeyRange {
            lo: Some(split.clone()),
            hi: hb.range.hi.clone(),
        },
    )
    .with_cuts(child_cuts);
    match w.control.hand_back(job, &w.worker_id, &split, &child).await {
        Ok(()) => {}
        Err(e @ ControlError::Superseded { .. }) => {
            // The next checkpoint stops this job; nothing was handed back.
            tracing::info!(error = %e, "not handing back: the job has a new owner");
            hb.cuts.clear();
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "handing the job's rest back failed");
            hb.cuts.clear();
            return None;
        }
    }
    // From here the child's rows are the child's: the job stops at `split`
    // whether or not the child reaches the queue now (if it does not, the
    // job's next owner sends it; see `send_children`).
    hb.range.hi = Some(split);
    hb.cuts = keep;
    send_children(w, job, std::slice::from_ref(&child)).await;
    tracing::info!(
        child = %child.job_id,
        child_range = %child.range,
        range = %hb.range,
        "handed the rest of the range back as a new job"
    );
    w.metrics.job_handed_back(&job.table);
    Some(PageQuery::new(schema, &hb.range))
}

/// The job as this claim must copy it: ended where an earlier owner handed
/// the rest back (with no cuts: it hands back no more), after that owner's
/// children are counted in the run and those never sent are sent.
pub(crate) async fn as_handed_back(
    w: &Worker,
    job: &JobMessage,
    handed_back: HandedBack,
) -> Result<JobMessage, ControlError> {
    if !handed_back.children.is_empty() {
        let unsent = w.control.adopt_children(job, &handed_back.children).await?;
        send_children(w, job, &unsent).await;
    }
    let Some(hi) = handed_back.hi else {
        return Ok(job.clone());
    };
    let mut narrowed = job.clone().with_cuts(Vec::new());
    narrowed.range.hi = Some(hi);
    tracing::info!(range = %narrowed.range, children = handed_back.children.len(), "the job ends where an earlier owner handed the rest back");
    Ok(narrowed)
}

/// Sends handed-back jobs to the queue and marks them queued. A failure is
/// logged: they stay `planned`, and whoever claims their parent next (or a
/// `produce` of the run) sends them.
pub(crate) async fn send_children(w: &Worker, parent: &JobMessage, children: &[JobMessage]) {
    if children.is_empty() {
        return;
    }
    if let Err(e) = w.queue.send_jobs(children).await {
        tracing::warn!(parent = %parent.job_id, error = %e, "sending handed-back jobs failed; they stay planned");
        return;
    }
    let ids: Vec<&str> = children.iter().map(|c| c.job_id.as_str()).collect();
    if let Err(e) = w.control.mark_queued(&parent.run_id, &ids).await {
        tracing::warn!(parent = %parent.job_id, error = %e, "marking handed-back jobs queued failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backfill_job::KeyValue;

    fn k(i: i64) -> KeyTuple {
        vec![KeyValue::Int(i)]
    }

    #[test]
    fn the_split_is_the_middle_cut_ahead() {
        assert_eq!(split_at(vec![]), None);
        assert_eq!(split_at(vec![k(1)]), Some((vec![], k(1), vec![])));
        assert_eq!(split_at(vec![k(1), k(2)]), Some((vec![k(1)], k(2), vec![])));
        assert_eq!(
            split_at((1..=7).map(k).collect()),
            Some((vec![k(1), k(2), k(3)], k(4), vec![k(5), k(6), k(7)]))
        );
    }

    #[test]
    fn the_tail_is_ripe_only_after_idle_workers_wait_on_an_empty_queue() {
        let tail = Tail::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(5);
        tail.observe(true, 4, 2, t0);
        assert!(!tail.idle_for(s, t0 + s), "jobs wait on the queue");
        tail.observe(false, 4, 4, t0);
        assert!(!tail.idle_for(s, t0 + s), "no worker idle");
        tail.observe(false, 4, 3, t0);
        tail.observe(false, 4, 3, t0 + Duration::from_secs(3));
        assert!(!tail.idle_for(s, t0 + Duration::from_secs(4)));
        assert!(tail.idle_for(s, t0 + s), "idle since the first such beat");
        tail.observe(true, 4, 3, t0 + s);
        assert!(!tail.idle_for(s, t0 + 3 * s), "a new job resets it");
    }

    #[test]
    fn a_job_considers_handing_back_once_per_period_while_it_has_cuts() {
        let every = Duration::from_secs(5);
        let mut hb = HandBacks::new(KeyRange::all(), vec![k(1)]);
        let t0 = hb.started;
        assert!(!hb.due(every, t0 + Duration::from_secs(4)));
        assert!(hb.due(every, t0 + every));
        hb.last = Some(t0 + every);
        assert!(!hb.due(every, t0 + Duration::from_secs(9)));
        assert!(hb.due(every, t0 + 2 * every));
        hb.cuts.clear();
        assert!(!hb.due(every, t0 + 3 * every), "no cut left to split at");
    }
}
