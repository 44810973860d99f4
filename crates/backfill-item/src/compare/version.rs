//! Version order: whether the target holds a later version than the row.
//!
//! DynamoDB's own `<` on numbers (by value), strings and binaries (by
//! bytes), so the verifier agrees with the conditional writes about what
//! "newer" means.

use aws_sdk_dynamodb::types::AttributeValue;

use super::canonical_number;
use crate::Item;

/// Whether the item `found` holds a later `version` attribute than the one
/// its row gives (`expected`): the application wrote it after the row was
/// read, which is not a difference.
pub fn newer_in_target(version: Option<&str>, expected: &Item, found: &Item) -> bool {
    match (
        version.and_then(|v| found.get(v)),
        version.and_then(|v| expected.get(v)),
    ) {
        (Some(f), Some(e)) => is_newer(f, e),
        _ => false,
    }
}

/// Whether `a` is a later version than `b`, as DynamoDB's `<` in a
/// condition orders them: numbers by value, strings and binaries by bytes.
/// Values of different types are not ordered (false).
pub fn is_newer(a: &AttributeValue, b: &AttributeValue) -> bool {
    use AttributeValue as A;
    match (a, b) {
        (A::N(x), A::N(y)) => compare_numbers(x, y) == Some(std::cmp::Ordering::Greater),
        (A::S(x), A::S(y)) => x.as_bytes() > y.as_bytes(),
        (A::B(x), A::B(y)) => x.as_ref() > y.as_ref(),
        _ => false,
    }
}

/// Orders two decimal texts by value; `None` if either is not a number.
pub fn compare_numbers(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    fn parts(t: &str) -> Option<(bool, i64, String)> {
        let c = canonical_number(t);
        if c == "0" {
            return Some((false, 0, String::new()));
        }
        let (neg, rest) = match c.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, c.as_str()),
        };
        let (m, e) = rest.split_once('E')?;
        let digits: String = m.chars().filter(|c| *c != '.').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((neg, e.parse().ok()?, digits))
    }
    let (an, ae, ad) = parts(a)?;
    let (bn, be, bd) = parts(b)?;
    let sign = |neg: bool, d: &str| {
        if d.is_empty() {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (sign(an, &ad), sign(bn, &bd));
    if sa != sb {
        return Some(sa.cmp(&sb));
    }
    if sa == 0 {
        return Some(Ordering::Equal);
    }
    // Same sign: compare magnitude by exponent, then digits (no trailing zeros).
    let mag = ae.cmp(&be).then_with(|| ad.cmp(&bd));
    Some(if sa > 0 { mag } else { mag.reverse() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttributeValue as A;

    #[test]
    fn versions_order_like_dynamodb() {
        assert!(is_newer(&A::N("10".into()), &A::N("9".into())));
        assert!(is_newer(&A::N("-1".into()), &A::N("-2.5".into())));
        assert!(!is_newer(&A::N("2.0".into()), &A::N("2".into())));
        assert!(is_newer(&A::N("0.001".into()), &A::N("0".into())));
        assert!(is_newer(&A::N("1E3".into()), &A::N("999".into())));
        assert!(is_newer(
            &A::S("2024-01-01T00:00:00.5+00:00".into()),
            &A::S("2024-01-01T00:00:00+00:00".into())
        ));
        assert!(!is_newer(&A::S("1".into()), &A::N("0".into())));
    }
}
