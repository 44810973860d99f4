//! Which attributes of an item differ from what its row should give.
//!
//! The verifier's report: a difference names the attribute path and both
//! sides, as canonical texts so that `3.750` and `3.75` are not one.

use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;

use super::canonical;
use crate::Item;

/// One attribute that differs between what the row should produce and what DynamoDB holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDiff {
    /// `doc.items[2]`: the attribute and the path inside it.
    pub path: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for AttributeDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.path, self.expected, self.actual
        )
    }
}

const ABSENT: &str = "(absent)";

/// Every attribute that differs, in attribute order.
pub fn diff_items(expected: &Item, actual: &Item) -> Vec<AttributeDiff> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for name in names {
        diff_value(name.clone(), expected.get(name), actual.get(name), &mut out);
    }
    out
}

fn diff_value(
    path: String,
    e: Option<&AttributeValue>,
    a: Option<&AttributeValue>,
    out: &mut Vec<AttributeDiff>,
) {
    use AttributeValue as A;
    match (e, a) {
        (Some(A::M(em)), Some(A::M(am))) => {
            let keys: std::collections::BTreeSet<&String> = em.keys().chain(am.keys()).collect();
            for k in keys {
                diff_value(format!("{path}.{k}"), em.get(k), am.get(k), out);
            }
        }
        (Some(A::L(el)), Some(A::L(al))) if el.len() == al.len() => {
            for (i, (x, y)) in el.iter().zip(al).enumerate() {
                diff_value(format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (e, a) => {
            let ce = e.map(canonical);
            let ca = a.map(canonical);
            if ce != ca {
                out.push(AttributeDiff {
                    path,
                    expected: ce.unwrap_or_else(|| ABSENT.into()),
                    actual: ca.unwrap_or_else(|| ABSENT.into()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttributeValue as A;

    #[test]
    fn diffs_name_the_path() {
        let e: Item = [
            ("a".to_string(), A::N("1.50".into())),
            (
                "m".to_string(),
                A::M([("x".to_string(), A::L(vec![A::S("p".into()), A::Null(true)]))].into()),
            ),
            ("gone".to_string(), A::Bool(true)),
        ]
        .into();
        let mut a = e.clone();
        a.insert("a".into(), A::N("1.5".into()));
        assert!(diff_items(&e, &a).is_empty());
        a.insert(
            "m".into(),
            A::M([("x".to_string(), A::L(vec![A::S("q".into()), A::Null(true)]))].into()),
        );
        a.remove("gone");
        a.insert("extra".into(), A::S("".into()));
        let d = diff_items(&e, &a);
        let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, vec!["extra", "gone", "m.x[0]"]);
        assert_eq!(d[1].actual, "(absent)");
    }
}
