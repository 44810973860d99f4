//! A job's place among the worker's `worker.concurrency`, which a striped
//! job gives up once most of its stripes are done.
//!
//! A striped job runs one lane per stripe and ends with its slowest one,
//! usually a stripe whose tenant shares a crowded partition. Until then
//! the job held its place with a few lanes writing, and the worker wrote
//! fewer partition-key values at once than it was sized for: the fleet
//! benchmark's clustered runs wrote near the budget for their first
//! seconds, while every lane of every job was running, and about 0.8 of
//! it after. A job that gives up its place lets the worker take the next
//! one while its last lanes finish.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::OwnedSemaphorePermit;

tokio::task_local! {
    /// The place the job this task runs holds, until it ends or gives it up.
    static SLOT: Mutex<Option<OwnedSemaphorePermit>>;
}

/// Runs `job` holding `permit` (released when `job` ends, if not before).
pub(crate) async fn holding<F: Future>(permit: OwnedSemaphorePermit, job: F) -> F::Output {
    SLOT.scope(Mutex::new(Some(permit)), job).await
}

/// Gives up the running job's place, if it holds one: the worker may take
/// another job. Nothing outside [`holding`] (a test calling a job directly).
pub(crate) fn give_up() -> bool {
    SLOT.try_with(|s| s.lock().ok().and_then(|mut p| p.take()).is_some())
        .unwrap_or(false)
}

/// Whether a job of `lanes` lanes, `left` of them still running, has few
/// enough left to give up its place: half or fewer of them.
pub(crate) fn mostly_done(lanes: usize, left: usize) -> bool {
    lanes > 1 && left * 2 <= lanes
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test]
    async fn a_job_gives_its_place_up_once_and_the_next_may_start() {
        let places = Arc::new(Semaphore::new(1));
        let permit = places.clone().acquire_owned().await.expect("open");
        let p = places.clone();
        holding(permit, async move {
            assert_eq!(p.available_permits(), 0, "the job holds the place");
            assert!(give_up());
            assert_eq!(p.available_permits(), 1, "the next job may start");
            assert!(!give_up(), "given up once");
        })
        .await;
        assert_eq!(places.available_permits(), 1);
        assert!(!give_up(), "outside a job there is nothing to give up");
    }

    #[tokio::test]
    async fn a_place_held_to_the_end_is_released_then() {
        let places = Arc::new(Semaphore::new(1));
        let permit = places.clone().acquire_owned().await.expect("open");
        holding(permit, async {}).await;
        assert_eq!(places.available_permits(), 1);
    }

    #[test]
    fn half_the_lanes_done_is_mostly_done() {
        assert!(!mostly_done(8, 5));
        assert!(mostly_done(8, 4));
        assert!(mostly_done(3, 1));
        assert!(!mostly_done(3, 2));
        assert!(!mostly_done(1, 0), "an unstriped job keeps its place");
        assert!(mostly_done(2, 1));
    }
}
