//! `summarize` on hand-made records: the arithmetic of every figure.

use super::*;
use backfill_control::{HotKey, RunTable, TargetLoad};
use backfill_job::{JobMessage, KeyRange};
use std::time::Duration;

fn job(table: &str, id: &str) -> JobMessage {
    JobMessage {
        job_id: id.into(),
        ..JobMessage::new("r", table, vec!["id".into()], KeyRange::all())
    }
}

fn rec(table: &str, id: &str, state: JobState, rows: u64, ck: u64) -> JobRecord {
    JobRecord {
        job: job(table, id),
        state,
        attempts: 1,
        rows,
        digest: None,
        last_error: None,
        last_error_at: None,
        worker: None,
        checkpoint_rows: ck,
        started_at: Some("2026-11-25T10:00:00.000Z".into()),
        finished_at: (state == JobState::Done).then(|| "2026-11-25T10:01:40.000Z".into()),
        updated_at: None,
        replays: 0,
        last_replay_at: None,
        rejects: 0,
        ends_at: None,
    }
}

fn run(tables: Vec<RunTable>) -> RunRecord {
    RunRecord {
        run_id: "r".into(),
        state: RunState::Produced,
        jobs_planned: 4,
        jobs_done: 0,
        rows_copied: 0,
        created_at: "2026-11-25T09:59:00.000Z".into(),
        started_at: None,
        finished_at: None,
        cancelled: None,
        tables,
        config: None,
    }
}

fn at(secs_after_ten: u64) -> SystemTime {
    humantime::parse_rfc3339("2026-11-25T10:00:00Z").unwrap() + Duration::from_secs(secs_after_ten)
}

#[test]
fn counts_rows_rate_capacity_and_eta_per_table() {
    let run = run(vec![RunTable {
        source: "public.t".into(),
        target: "T".into(),
        jobs: 4,
        estimated_rows: 1000,
        wcu_per_item: 1.0,
        key_ceiling_wcu: Some(10_800.0),
    }]);
    let mut running = rec("public.t", "2", JobState::Running, 0, 150);
    running.worker = Some("a".into());
    let jobs = vec![
        rec("public.t", "1", JobState::Done, 250, 0),
        running,
        rec("public.t", "3", JobState::Queued, 0, 0),
        rec("public.t", "4", JobState::Failed, 0, 0),
    ];
    let fleet = vec![
        WorkerBeat {
            worker: "a".into(),
            busy: true,
            heartbeat_ms: 0,
            wcu_per_sec: HashMap::from([("T".to_string(), 30.0)]),
            load: HashMap::from([(
                "T".to_string(),
                TargetLoad {
                    table_throttles: 2,
                    key_range_throttles: 40,
                    hot_keys: vec![HotKey {
                        label: "id=7".into(),
                        rate: 450.0,
                        throttles: 12,
                    }],
                },
            )]),
        },
        WorkerBeat {
            worker: "b".into(),
            busy: false,
            heartbeat_ms: 0,
            wcu_per_sec: HashMap::from([("other".to_string(), 99.0)]),
            load: HashMap::from([(
                "T".to_string(),
                TargetLoad {
                    table_throttles: 10,
                    key_range_throttles: 300,
                    hot_keys: vec![HotKey {
                        label: "id=7".into(),
                        rate: 0.5,
                        throttles: 1,
                    }],
                },
            )]),
        },
    ];
    let budgets = HashMap::from([("T".to_string(), 100.0)]);
    let s = summarize(&run, &jobs, &fleet, &budgets, at(200));
    let t = &s.tables[0];
    assert_eq!(
        t.jobs,
        JobCounts {
            total: 4,
            done: 1,
            running: 1,
            failed: 1,
            queued: 1,
            cancelled: 0,
            orphaned: 0,
        }
    );
    assert_eq!(t.rows_copied, 400, "done rows plus checkpointed rows");
    assert_eq!(t.rows_per_sec, Some(2.0));
    assert_eq!(t.wcu_per_sec, 30.0, "only heartbeats for this target");
    assert_eq!(t.budget_wcu, Some(100.0));
    assert_eq!(
        t.throttles,
        Throttles {
            table_wide: 12,
            key_range: 340
        },
        "every live worker's throttles, idle ones too"
    );
    assert_eq!(
        t.hot_keys,
        [HotKeyStatus {
            label: "id=7".into(),
            wcu_per_sec: 450.5,
            throttles: 13
        }]
    );
    assert_eq!(t.key_ceiling_wcu, Some(10_800.0));
    assert_eq!(t.key_layout_limit(), None, "the layout reaches the budget");
    // 40% of the estimate in 200 s: 300 s more.
    assert_eq!(t.eta_secs, Some(300.0));
    assert_eq!((s.workers_live, s.workers_busy), (2, 1));
    let failed: Vec<&str> = s.failures.iter().map(|f| f.job_id.as_str()).collect();
    assert_eq!(
        failed,
        ["4"],
        "the failed job, even before its error is recorded"
    );
}

#[test]
fn a_finished_table_has_no_time_left_and_its_rate_ends_at_its_last_job() {
    let run = run(vec![]);
    let jobs = vec![
        rec("public.t", "1", JobState::Done, 500, 0),
        rec("public.t", "2", JobState::Done, 500, 0),
    ];
    let s = summarize(&run, &jobs, &[], &HashMap::new(), at(10_000));
    let t = &s.tables[0];
    assert_eq!(t.eta_secs, Some(0.0));
    assert_eq!(t.rows_per_sec, Some(10.0), "1000 rows over 100 s");
    assert!(
        t.wcu_per_sec == 0.0 && t.wcu_per_sec.is_sign_positive(),
        "no heartbeat is +0 WCU/s, never printed as -0"
    );
    assert_eq!(s.estimated_rows, None, "no plan tables stored");
    assert_eq!(s.eta_secs, Some(0.0));
}

/// A job `running` on a worker that is gone is `orphaned`, not running;
/// a run with only failed jobs left has no ETA; a replayed job's old
/// error is not listed as a failure.
#[test]
fn orphans_stalls_and_replays_are_told_apart() {
    let run = run(vec![]);
    let mut orphan = rec("public.t", "1", JobState::Running, 0, 10);
    orphan.worker = Some("gone".into());
    let mut replayed = rec("public.t", "2", JobState::Queued, 0, 0);
    replayed.last_error = Some("was dead".into());
    replayed.last_error_at = Some("2026-11-25T10:00:01.000Z".into());
    replayed.last_replay_at = Some("2026-11-25T10:00:05.000Z".into());
    let jobs = vec![orphan, replayed, rec("public.t", "3", JobState::Done, 5, 0)];
    let fleet = vec![WorkerBeat {
        worker: "alive".into(),
        busy: false,
        heartbeat_ms: 0,
        wcu_per_sec: HashMap::new(),
        load: HashMap::new(),
    }];
    let s = summarize(&run, &jobs, &fleet, &HashMap::new(), at(100));
    assert_eq!((s.jobs.running, s.jobs.orphaned), (0, 1));
    assert!(s.failures.is_empty(), "{:?}", s.failures);

    let jobs = vec![
        rec("public.t", "1", JobState::Failed, 0, 0),
        rec("public.t", "2", JobState::Done, 500, 0),
    ];
    let s = summarize(&run, &jobs, &fleet, &HashMap::new(), at(100));
    assert!(s.jobs.is_stalled());
    // An ended run's fleet line is current: no worker busy with it,
    // even while the last heartbeats still say busy.
    let mut ended = run.clone();
    ended.state = RunState::Finished;
    let busy = vec![WorkerBeat {
        busy: true,
        ..fleet[0].clone()
    }];
    assert_eq!(
        summarize(&run, &jobs, &busy, &HashMap::new(), at(100)).workers_busy,
        1
    );
    assert_eq!(
        summarize(&ended, &jobs, &busy, &HashMap::new(), at(100)).workers_busy,
        0
    );
    assert_eq!(s.tables[0].eta_secs, None, "no ETA while nothing can move");
    assert_eq!(s.eta_secs, None);
}

#[test]
fn past_the_estimate_the_eta_follows_finished_jobs() {
    let counts = JobCounts {
        total: 4,
        done: 3,
        queued: 1,
        ..Default::default()
    };
    // 1500 rows copied of an estimate of 1000: jobs say 3 of 4 in 300 s.
    assert_eq!(eta(1500, Some(1000), &counts, Some(300.0)), Some(100.0));
    assert_eq!(eta(0, Some(1000), &counts, None), None, "not started");
}

#[test]
fn failures_are_listed_newest_first() {
    let run = run(vec![]);
    let mut a = rec("public.t", "1", JobState::Failed, 0, 0);
    a.last_error = Some("old".into());
    a.last_error_at = Some("2026-11-25T10:00:01.000Z".into());
    let mut b = rec("public.t", "2", JobState::Queued, 0, 0);
    b.last_error = Some("new, will be retried".into());
    b.last_error_at = Some("2026-11-25T10:00:09.000Z".into());
    let s = summarize(&run, &[a, b], &[], &HashMap::new(), at(10));
    let errors: Vec<&str> = s.failures.iter().map(|f| f.error.as_str()).collect();
    assert_eq!(errors, ["new, will be retried", "old"]);
}

#[test]
fn the_key_layout_limits_a_table_only_below_its_budget() {
    let table = |ceiling: Option<f64>, budget: Option<f64>| {
        let run = run(vec![RunTable {
            source: "public.t".into(),
            target: "T".into(),
            jobs: 1,
            estimated_rows: 10,
            wcu_per_item: 1.0,
            key_ceiling_wcu: ceiling,
        }]);
        let budgets: HashMap<String, f64> =
            budget.map(|b| ("T".to_string(), b)).into_iter().collect();
        summarize(&run, &[], &[], &budgets, at(0)).tables.remove(0)
    };
    // 12 partition-key values at 900 WCU/s each against 20,000.
    assert_eq!(
        table(Some(10_800.0), Some(20_000.0)).key_layout_limit(),
        Some(10_800.0)
    );
    assert_eq!(
        table(Some(20_000.0), Some(20_000.0)).key_layout_limit(),
        None
    );
    assert_eq!(
        table(Some(10_800.0), None).key_layout_limit(),
        None,
        "no budget to fall short of"
    );
    let older = table(None, Some(20_000.0));
    assert_eq!(older.key_layout_limit(), None, "a run planned without it");
    assert!(older.throttles.is_zero() && older.hot_keys.is_empty());
}
