//! Which job messages a worker may act on: only a job the control table
//! planned, for a run it holds and a table that run names, exactly as it
//! was planned.
//!
//! A well-formed message proves nothing: anyone allowed to send to the
//! queue can write one, and the job id is a public hash of run, table and
//! range. The control table is the authority, because only `produce`
//! writes plans there; a message must match its stored job field for field
//! before a worker reads a row for it.

use backfill_job::JobMessage;

use crate::RunRecord;

/// Why a message is not a job the control table planned. Never retryable:
/// the message is forged or corrupt, and goes to the DLQ as it is.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("forged job message: run {run_id} does not exist in control table {control_table}")]
    NoSuchRun {
        control_table: String,
        run_id: String,
    },
    #[error("forged job message: run {run_id} does not name table {table} (it names {named})")]
    TableNotInRun {
        run_id: String,
        table: String,
        named: String,
    },
    #[error("forged job message: run {run_id} planned no job {job_id} (for table {table})")]
    NoSuchJob {
        run_id: String,
        job_id: String,
        table: String,
    },
    #[error("forged job message: job {job_id} of run {run_id}: {field} is {got}, but the planned job's is {planned}")]
    Mismatch {
        run_id: String,
        job_id: String,
        field: &'static str,
        planned: String,
        got: String,
    },
}

/// Checks `job` against what the control table holds: its run (`None`: no
/// such run) and the planned job under its id (`None`: none).
pub fn check_planned(
    control_table: &str,
    job: &JobMessage,
    run: Option<&RunRecord>,
    planned: Option<&JobMessage>,
) -> Result<(), Rejection> {
    let run = run.ok_or_else(|| Rejection::NoSuchRun {
        control_table: control_table.to_string(),
        run_id: job.run_id.clone(),
    })?;
    if !run.tables.iter().any(|t| t.source == job.table) {
        let named: Vec<&str> = run.tables.iter().map(|t| t.source.as_str()).collect();
        return Err(Rejection::TableNotInRun {
            run_id: job.run_id.clone(),
            table: job.table.clone(),
            named: if named.is_empty() {
                "no table".to_string()
            } else {
                named.join(", ")
            },
        });
    }
    let planned = planned.ok_or_else(|| Rejection::NoSuchJob {
        run_id: job.run_id.clone(),
        job_id: job.job_id.clone(),
        table: job.table.clone(),
    })?;
    let mismatch = |field, planned: String, got: String| {
        Err(Rejection::Mismatch {
            run_id: job.run_id.clone(),
            job_id: job.job_id.clone(),
            field,
            planned,
            got,
        })
    };
    if planned.table != job.table {
        return mismatch("table", planned.table.clone(), job.table.clone());
    }
    if planned.key_columns != job.key_columns {
        return mismatch(
            "key_columns",
            format!("({})", planned.key_columns.join(", ")),
            format!("({})", job.key_columns.join(", ")),
        );
    }
    if planned.range != job.range {
        return mismatch("range", planned.range.to_string(), job.range.to_string());
    }
    // Every field is compared, so a field added later cannot slip through.
    if planned != job {
        return mismatch("the body", planned.to_body(), job.to_body());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use backfill_job::{KeyRange, KeyValue};

    use super::*;
    use crate::RunTable;

    fn run(tables: &[&str]) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            state: crate::RunState::Produced,
            jobs_planned: 1,
            jobs_done: 0,
            rows_copied: 0,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            cancelled: None,
            tables: tables
                .iter()
                .map(|t| RunTable {
                    source: t.to_string(),
                    target: "tgt".into(),
                    jobs: 1,
                    estimated_rows: 0,
                    wcu_per_item: 1.0,
                    key_ceiling_wcu: None,
                })
                .collect(),
            config: None,
        }
    }

    fn job(table: &str) -> JobMessage {
        JobMessage::new(
            "r",
            table,
            vec!["id".into()],
            KeyRange {
                lo: Some(vec![KeyValue::Int(10)]),
                hi: Some(vec![KeyValue::Int(20)]),
            },
        )
    }

    #[test]
    fn a_planned_job_is_accepted() {
        let j = job("public.a");
        assert_eq!(
            check_planned("ctl", &j, Some(&run(&["public.a"])), Some(&j)),
            Ok(())
        );
    }

    #[test]
    fn each_forgery_is_named() {
        let j = job("public.a");
        let e = check_planned("ctl", &j, None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "forged job message: run r does not exist in control table ctl"
        );

        let e = check_planned("ctl", &j, Some(&run(&["public.b", "public.c"])), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not name table public.a (it names public.b, public.c)"),
            "{e}"
        );

        let e = check_planned("ctl", &j, Some(&run(&["public.a"])), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("planned no job {}", j.job_id)), "{e}");

        // The job id is a public hash: the same id with a wider range or
        // another key is caught against the stored job.
        let mut wider = j.clone();
        wider.range.hi = None;
        let e = check_planned("ctl", &wider, Some(&run(&["public.a"])), Some(&j))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("range is [(10), +inf), but the planned job's is [(10), (20))"),
            "{e}"
        );
        let mut other_key = j.clone();
        other_key.key_columns = vec!["name".into()];
        let e = check_planned("ctl", &other_key, Some(&run(&["public.a"])), Some(&j))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_columns is (name)"), "{e}");
    }

    #[test]
    fn a_run_without_tables_names_none() {
        let j = job("public.a");
        let e = check_planned("ctl", &j, Some(&run(&[])), Some(&j))
            .unwrap_err()
            .to_string();
        assert!(e.contains("(it names no table)"), "{e}");
    }
}
