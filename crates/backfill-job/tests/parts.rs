//! A job's cuts: planned from one sample with its range, carried in the
//! message, refused when malformed.

use backfill_job::{JobMessage, KeyRange, KeyTuple, KeyValue, MAX_CUTS};

fn k(i: i64) -> KeyTuple {
    vec![KeyValue::Int(i)]
}

#[test]
fn tile_parts_groups_fine_boundaries_into_jobs_and_their_cuts() {
    let fine: Vec<KeyTuple> = (1..=10).map(k).collect();
    let jobs = KeyRange::tile_parts(fine.clone(), 4);
    let ranges: Vec<KeyRange> = jobs.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(ranges, KeyRange::tile(vec![k(4), k(8)]));
    let cuts: Vec<Vec<KeyTuple>> = jobs.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        cuts,
        vec![
            vec![k(1), k(2), k(3)],
            vec![k(5), k(6), k(7)],
            vec![k(9), k(10)]
        ]
    );
    // One part per job is the plain tiling, with no cuts.
    let plain = KeyRange::tile_parts(fine.clone(), 1);
    assert_eq!(
        plain.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        KeyRange::tile(fine)
    );
    assert!(plain.iter().all(|(_, c)| c.is_empty()));
    // No boundary at all: one job over everything, whatever the parts.
    assert_eq!(
        KeyRange::tile_parts(vec![], 8),
        vec![(KeyRange::all(), vec![])]
    );
    // Fewer boundaries than parts: one job, every boundary a cut.
    let few = KeyRange::tile_parts(vec![k(i64::MIN), k(0)], 8);
    assert_eq!(few, vec![(KeyRange::all(), vec![k(i64::MIN), k(0)])]);
}

#[test]
fn cuts_travel_in_the_message_and_leave_the_job_id_alone() {
    let plain = JobMessage::new("r", "public.t", vec!["id".into()], KeyRange::all());
    let cut = plain.clone().with_cuts(vec![k(-1), k(0), k(i64::MAX)]);
    assert_eq!(cut.job_id, plain.job_id);
    assert_eq!(JobMessage::from_body(&cut.to_body()).unwrap(), cut);
    // A message without cuts (every earlier producer's) still parses, and
    // is written without the field.
    assert!(!plain.to_body().contains("cuts"));
    assert_eq!(JobMessage::from_body(&plain.to_body()).unwrap(), plain);
}

#[test]
fn malformed_cuts_are_refused_by_name() {
    let job = JobMessage::new(
        "r",
        "public.t",
        vec!["a".into(), "b".into()],
        KeyRange::all(),
    );
    let short = job.clone().with_cuts(vec![vec![KeyValue::Int(1)]]);
    let e = JobMessage::from_body(&short.to_body())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut 0 has 1 values for 2 key columns"), "{e}");

    let nul = job
        .clone()
        .with_cuts(vec![vec![KeyValue::Text("a\0b".into()), KeyValue::Int(1)]]);
    let e = JobMessage::from_body(&nul.to_body())
        .unwrap_err()
        .to_string();
    assert!(e.contains("NUL"), "{e}");

    let many = job.clone().with_cuts(
        (0..=MAX_CUTS as i64)
            .map(|i| vec![KeyValue::Int(i), KeyValue::Int(i)])
            .collect(),
    );
    let e = JobMessage::from_body(&many.to_body())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("over the {MAX_CUTS}")), "{e}");

    let body = job.to_body();
    let not_a_list = format!(r#"{},"cuts":"1"}}"#, &body[..body.len() - 1]);
    let e = JobMessage::from_body(&not_a_list).unwrap_err().to_string();
    assert!(e.contains("cuts") || e.contains("sequence"), "{e}");
}
