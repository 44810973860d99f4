//! Property tests of the job-message decoder and the key-range codec: every
//! valid message survives a round trip, and no body whatever makes the
//! decoder panic. Bodies that once broke something, and bodies that show
//! each way a message can be refused, live in `tests/corpus/` and are run
//! on every test run; proptest's own failures are kept in
//! `tests/proptest-regressions/` (commit them).

use std::path::Path;

use backfill_job::{JobError, JobMessage, KeyRange, KeyValue, MAX_BODY_BYTES};
use proptest::prelude::*;

/// A name as a producer makes them: any text without control characters,
/// quotes, spaces and SQL included.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,20}",
        "[^\\p{Cc}]{1,40}",
        Just("we\"ird; drop table x".to_string()),
    ]
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    // Bound texts are Postgres text forms: anything but NUL.
    let text = "[^\u{0}]{0,30}";
    prop_oneof![
        any::<i64>().prop_map(KeyValue::Int),
        "-?[0-9]{1,40}(\\.[0-9]{1,20})?".prop_map(KeyValue::Numeric),
        text.prop_map(KeyValue::Text),
        text.prop_map(KeyValue::Uuid),
        text.prop_map(KeyValue::Date),
        text.prop_map(KeyValue::Timestamp),
        text.prop_map(KeyValue::TimestampTz),
    ]
}

fn job() -> impl Strategy<Value = JobMessage> {
    (1usize..4).prop_flat_map(|arity| {
        let bound = move || proptest::option::of(proptest::collection::vec(key_value(), arity));
        (
            name(),
            name(),
            proptest::collection::vec(name(), arity),
            bound(),
            bound(),
            proptest::collection::vec(proptest::collection::vec(key_value(), arity), 0..4),
        )
            .prop_map(|(run, table, cols, lo, hi, cuts)| {
                JobMessage::new(&run, &table, cols, KeyRange { lo, hi }).with_cuts(cuts)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proptest-regressions/fuzz.txt"),
            ),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_valid_job_round_trips(m in job()) {
        let body = m.to_body();
        prop_assert!(body.len() <= MAX_BODY_BYTES);
        prop_assert_eq!(JobMessage::from_body(&body), Ok(m));
    }

    #[test]
    fn key_values_and_ranges_round_trip_through_serde(
        v in key_value(),
        lo in proptest::option::of(proptest::collection::vec(key_value(), 0..4)),
        hi in proptest::option::of(proptest::collection::vec(key_value(), 0..4)),
    ) {
        let text = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(serde_json::from_str::<KeyValue>(&text).unwrap(), v.clone());
        if let KeyValue::Int(i) = v {
            prop_assert_eq!(v.to_pg_text().parse::<i64>().unwrap(), i);
        }
        let r = KeyRange { lo, hi };
        let text = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(serde_json::from_str::<KeyRange>(&text).unwrap(), r);
    }

    #[test]
    fn any_text_is_refused_or_accepted_without_panicking(body in "\\PC{0,300}") {
        let _ = JobMessage::from_body(&body);
    }

    #[test]
    fn any_bytes_are_refused_or_accepted_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = JobMessage::from_body(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn every_truncation_of_a_valid_body_is_refused(m in job(), cut in any::<prop::sample::Index>()) {
        let body = m.to_body();
        let mut at = cut.index(body.len());
        while !body.is_char_boundary(at) {
            at -= 1;
        }
        let e = JobMessage::from_body(&body[..at]);
        prop_assert!(e.is_err(), "{:?} parsed", &body[..at]);
    }

    #[test]
    fn a_mutated_valid_body_never_panics(
        m in job(),
        at in any::<prop::sample::Index>(),
        insert in "[\\{\\}\\[\\]\",:0-9a-z\\\\ ]{1,4}",
        delete in 0usize..4,
    ) {
        let body = m.to_body();
        let mut at = at.index(body.len());
        while !body.is_char_boundary(at) {
            at -= 1;
        }
        let mut mutated = body[..at].to_string();
        mutated.push_str(&insert);
        let rest = &body[at..];
        let skip = rest.char_indices().nth(delete).map_or(rest.len(), |(i, _)| i);
        mutated.push_str(&rest[skip..]);
        if let Ok(parsed) = JobMessage::from_body(&mutated) {
            // Whatever a mutation left parseable is a checked job.
            prop_assert!(!parsed.key_columns.is_empty());
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack(depth in 100usize..5000) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(JobMessage::from_body(&body).is_err());
        let body = format!("{{\"version\":1,\"range\":{}{}}}", "{\"lo\":".repeat(depth), "}".repeat(depth));
        prop_assert!(JobMessage::from_body(&body).is_err());
    }
}

/// Each file in `tests/corpus/<expected>/` is a body: under `ok/` it must
/// parse and round-trip, under any other folder it must be refused with
/// that folder's error kind (`malformed_message`, `unknown_version`, ...).
#[test]
fn the_corpus_decodes_as_recorded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let expected = dir.file_name().unwrap().to_string_lossy().to_string();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let body = std::fs::read_to_string(&file).unwrap();
            // Files end with a newline for editors; a body does not.
            let body = body.strip_suffix('\n').unwrap_or(&body);
            let got = JobMessage::from_body(body);
            match (expected.as_str(), got) {
                ("ok", Ok(m)) => assert_eq!(
                    JobMessage::from_body(&m.to_body()).as_ref(),
                    Ok(&m),
                    "{file:?}"
                ),
                ("ok", Err(e)) => panic!("{file:?} should parse: {e}"),
                (kind, Ok(m)) => panic!("{file:?} should be refused as {kind}, parsed as {m:?}"),
                (kind, Err(e)) => assert_eq!(e.kind(), kind, "{file:?}: {e}"),
            }
            seen += 1;
        }
    }
    assert!(seen >= 10, "the corpus is missing ({seen} files)");
}

#[test]
fn an_oversized_body_is_refused_by_size() {
    let body = " ".repeat(MAX_BODY_BYTES + 1);
    assert!(matches!(
        JobMessage::from_body(&body),
        Err(JobError::Oversized { .. })
    ));
}
