//! Which dead messages an operation takes.
//!
//! A pure predicate over a [`DeadJob`], kept apart from the walk so that
//! its matching rules (a table with or without its schema, errors in any
//! case) are tested without a queue.

use crate::DeadJob;

/// Which dead messages an operation takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only jobs of this run.
    pub run: Option<String>,
    /// Only jobs of this table: its configured source name (`schema.table`),
    /// or the name without the schema.
    pub table: Option<String>,
    /// Only messages whose error contains this text (any case).
    pub error: Option<String>,
    /// At most this many messages (the first the walk finds).
    pub max: Option<usize>,
}

impl Filter {
    /// Whether a message passes the run, table and error conditions.
    pub fn matches(&self, d: &DeadJob) -> bool {
        let run_ok = self
            .run
            .as_deref()
            .is_none_or(|r| d.run_id.as_deref() == Some(r));
        let table_ok = self.table.as_deref().is_none_or(|want| {
            d.table.as_deref().is_some_and(|t| {
                t == want || t.rsplit_once('.').is_some_and(|(_, name)| name == want)
            })
        });
        let error_ok = self
            .error
            .as_deref()
            .is_none_or(|want| d.error_text().to_lowercase().contains(&want.to_lowercase()));
        run_ok && table_ok && error_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorSource;

    fn dead(run: Option<&str>, table: Option<&str>, error: Option<&str>) -> DeadJob {
        DeadJob {
            message_id: "m".into(),
            run_id: run.map(Into::into),
            table: table.map(Into::into),
            job_id: None,
            range: None,
            attempts: None,
            receive_count: None,
            error: error.map(Into::into),
            error_kind: None,
            error_source: ErrorSource::Unknown,
            error_at: None,
            job_state: None,
            replays: None,
            sent_at: None,
            not_a_job: None,
        }
    }

    #[test]
    fn filters_match_run_table_with_or_without_schema_and_error_in_any_case() {
        let d = dead(
            Some("r1"),
            Some("public.orders"),
            Some("Value NaN in column d"),
        );
        let f = |run: Option<&str>, table: Option<&str>, error: Option<&str>| Filter {
            run: run.map(Into::into),
            table: table.map(Into::into),
            error: error.map(Into::into),
            max: None,
        };
        assert!(f(None, None, None).matches(&d));
        assert!(f(Some("r1"), Some("orders"), Some("nan")).matches(&d));
        assert!(f(None, Some("public.orders"), None).matches(&d));
        assert!(!f(Some("r2"), None, None).matches(&d));
        assert!(!f(None, Some("order"), None).matches(&d));
        assert!(!f(None, None, Some("timeout")).matches(&d));
        let not_a_job = DeadJob {
            not_a_job: Some("malformed job message: EOF".into()),
            ..dead(None, None, None)
        };
        assert!(!f(Some("r1"), None, None).matches(&not_a_job));
        assert!(f(None, None, Some("MALFORMED")).matches(&not_a_job));
    }
}
