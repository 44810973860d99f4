//! How `status` reads: plain lines, `--watch` lines and numbers.

use super::*;
use backfill_status::{HotKeyStatus, JobCounts, QueueCounts, Throttles};

#[test]
fn plain_lines_name_every_figure() {
    let s = RunStatus {
        run_id: "demo".into(),
        state: backfill_control::RunState::Produced,
        created_at: "2026-11-25T10:00:00.000Z".into(),
        started_at: None,
        finished_at: None,
        cancelled: None,
        jobs: JobCounts {
            total: 10,
            done: 4,
            running: 2,
            failed: 0,
            queued: 4,
            cancelled: 0,
            orphaned: 0,
        },
        rows_copied: 400_000,
        estimated_rows: Some(1_000_000),
        rows_per_sec: Some(7512.4),
        eta_secs: Some(80.0),
        tables: vec![TableStatus {
            source: "public.orders".into(),
            target: "demo_orders".into(),
            jobs: JobCounts {
                total: 10,
                done: 4,
                running: 2,
                failed: 0,
                queued: 4,
                cancelled: 0,
                orphaned: 0,
            },
            rows_copied: 400_000,
            estimated_rows: Some(1_000_000),
            rows_per_sec: Some(7512.4),
            wcu_per_sec: 950.0,
            budget_wcu: Some(1000.0),
            key_ceiling_wcu: None,
            throttles: Default::default(),
            hot_keys: vec![],
            eta_secs: Some(80.0),
            rejects: 0,
        }],
        workers_live: 2,
        workers_busy: 2,
        queue: Some(QueueCounts {
            visible: 4,
            in_flight: 2,
            delayed: 0,
        }),
        dlq: None,
        failures: vec![],
        verification: None,
    };
    let text = render_plain(&s);
    assert!(text.starts_with("run demo [produced]: 4/10 jobs done, 2 running, 0 failed, 4 queued; 400,000 of ~1,000,000 rows; 7,512 rows/s; ETA 80 s"), "{text}");
    assert!(
        text.contains(
            "fleet: 2 workers live, 2 busy; queue: 4 visible, 2 in flight; DLQ: unreadable"
        ),
        "{text}"
    );
    assert!(text.contains("public.orders -> demo_orders: 4/10 jobs done, 2 running, 0 failed, 4 queued; 400,000/~1,000,000 rows (40%); 7,512 rows/s; 950/1000 WCU/s (95% of budget); ETA 80 s"), "{text}");
    assert!(
        !text.contains("throttled") && !text.contains("hot keys") && !text.contains("key layout"),
        "nothing holds the copy back, nothing is said: {text}"
    );

    // Orphans are named; a stalled run has no ETA; a table that ends far
    // below its estimate says so.
    let mut stalled = s.clone();
    stalled.jobs = JobCounts {
        total: 10,
        done: 8,
        failed: 1,
        orphaned: 1,
        ..Default::default()
    };
    let text = render_plain(&stalled);
    assert!(text.contains("1 orphaned (their worker is gone"), "{text}");
    stalled.jobs.orphaned = 0;
    stalled.eta_secs = None;
    let text = render_plain(&stalled);
    assert!(
        text.contains("ETA none: only failed jobs are left"),
        "{text}"
    );
    let mut short = s.clone();
    short.tables[0].jobs = JobCounts {
        total: 10,
        done: 10,
        ..Default::default()
    };
    short.tables[0].eta_secs = Some(0.0);
    short.tables[0].rows_copied = 100_000;
    let text = render_plain(&short);
    assert!(
        text.contains("ETA done, at 10% of the planning estimate of ~1,000,000 rows"),
        "{text}"
    );
}

#[test]
fn watch_lines_fit_and_their_bar_is_their_percentage() {
    let mut t = TableStatus {
        source: "public.a_table_with_a_rather_long_name_for_a_watch_line".into(),
        target: "target".into(),
        jobs: JobCounts {
            total: 10,
            done: 2,
            running: 3,
            queued: 5,
            ..Default::default()
        },
        rows_copied: 400_000,
        estimated_rows: Some(1_000_000),
        rows_per_sec: Some(1234.0),
        wcu_per_sec: 10.0,
        budget_wcu: Some(20.0),
        key_ceiling_wcu: None,
        throttles: Default::default(),
        hot_keys: vec![],
        eta_secs: Some(30_000.0),
        rejects: 0,
    };
    let line = bar_line(&t, t.source.len(), WATCH_WIDTH);
    assert!(line.chars().count() <= WATCH_WIDTH, "{line}");
    // 40% of the rows: 8 of 20 cells, and "40%".
    assert!(
        line.contains(&format!("[{}{}]  40%", "=".repeat(8), " ".repeat(12))),
        "{line}"
    );
    // Done, far below the estimate: a full bar and 100%.
    t.jobs = JobCounts {
        total: 10,
        done: 10,
        ..Default::default()
    };
    t.rows_copied = 100_000;
    t.eta_secs = Some(0.0);
    let line = bar_line(&t, 10, WATCH_WIDTH);
    assert!(
        line.contains(&format!("[{}] 100%", "=".repeat(20))),
        "{line}"
    );
    assert!(line.chars().count() <= WATCH_WIDTH, "{line}");
    assert_eq!(fit("abcdef", 4), "abc…");
}

#[test]
fn numbers_and_durations_read_well() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(human_duration(59.4), "59 s");
    assert_eq!(human_duration(600.0), "10 min");
    assert_eq!(human_duration(9000.0), "2.5 h");
}

#[test]
fn throttles_hot_keys_and_the_key_layout_are_told_when_they_hold_a_table_back() {
    let mut t = TableStatus {
        source: "public.orders".into(),
        target: "orders".into(),
        jobs: JobCounts {
            total: 10,
            running: 10,
            ..Default::default()
        },
        rows_copied: 0,
        estimated_rows: None,
        rows_per_sec: None,
        wcu_per_sec: 10_500.0,
        budget_wcu: Some(20_000.0),
        key_ceiling_wcu: Some(10_800.0),
        throttles: Throttles {
            table_wide: 12,
            key_range: 1_340,
        },
        hot_keys: vec![
            HotKeyStatus {
                label: "tenant=7".into(),
                wcu_per_sec: 450.4,
                throttles: 12,
            },
            HotKeyStatus {
                label: "tenant=9".into(),
                wcu_per_sec: 1_200.0,
                throttles: 1,
            },
        ],
        eta_secs: None,
        rejects: 0,
    };
    assert_eq!(
        table_notes(&t),
        [
            "throttled: 12 table-wide, 1,340 key-range",
            "hot keys: tenant=7 at 450 WCU/s (12 throttles), tenant=9 at 1,200 WCU/s (1 throttle)",
            "key layout reaches at most 10,800 of 20,000 WCU/s (too few partition-key values, or spread unevenly over its partitions; see `backfill plan`)",
        ]
    );
    // A layout that reaches the budget, and no throttles, say nothing.
    t.key_ceiling_wcu = Some(540_000.0);
    t.throttles = Throttles::default();
    t.hot_keys.clear();
    assert!(table_notes(&t).is_empty(), "{:?}", table_notes(&t));
}
