//! The size DynamoDB charges for an item, by its documented rules, and the
//! write capacity that size costs.
//!
//! The 400 KB item limit and write capacity are both counted in these bytes,
//! not in the bytes of the JSON request, so a caller that wants to know
//! whether an item fits, or what a table copy will cost, has to count the
//! same way DynamoDB does.
//!
//! The rules (from "Item sizes and formats" in the DynamoDB developer guide):
//! an item is the sum over its attributes of the UTF-8 length of the name
//! plus the size of the value; S is its UTF-8 length, B its raw length, N
//! about one byte per two significant digits plus one, BOOL and NULL one
//! byte, L and M three bytes plus one byte and the size of each element (and
//! for M the UTF-8 length of each key), and a set the sum of its elements.
//!
//! The N rule is documented as approximate. The service stores numbers as
//! base-100 digit pairs aligned on the decimal point, with an extra byte for
//! a negative sign, so a number can take up to [`NUMBER_SLACK_BYTES`] more
//! than [`attribute_size`] says (dynalite, which reproduces the service's
//! arithmetic, counts `-1` as 3 bytes and `1.5` as 3 bytes, where the
//! documented rule says 2). [`item_size_upper_bound`] allows for that and is
//! the one to compare with [`MAX_ITEM_BYTES`] when a refused write is worse
//! than a needlessly offloaded item.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::Item;

/// Largest item DynamoDB stores, in the bytes [`item_size`] counts.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Bytes one write capacity unit covers.
pub const WRITE_UNIT_BYTES: usize = 1024;

/// Most bytes by which the documented N rule can undercount one number
/// (one for digit-pair alignment, one for a negative sign).
pub const NUMBER_SLACK_BYTES: usize = 2;

/// The size of an item: for each attribute, the UTF-8 length of its name
/// plus the size of its value.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + attribute_size(v))
        .sum()
}

/// The size of one attribute value, without its name.
pub fn attribute_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => {
            CONTAINER_OVERHEAD + l.iter().map(|e| 1 + attribute_size(e)).sum::<usize>()
        }
        AttributeValue::M(m) => {
            CONTAINER_OVERHEAD
                + m.iter()
                    .map(|(k, e)| 1 + k.len() + attribute_size(e))
                    .sum::<usize>()
        }
        // A variant this SDK version does not know cannot have come from
        // this program's own mapping; counting it as nothing is the only
        // answer that does not guess.
        _ => 0,
    }
}

/// [`item_size`] plus [`NUMBER_SLACK_BYTES`] for every number in the item,
/// nested ones and set elements included: an item whose upper bound is at
/// most [`MAX_ITEM_BYTES`] is stored whatever its numbers look like.
pub fn item_size_upper_bound(item: &Item) -> usize {
    attributes_size_upper_bound(item.iter().map(|(n, v)| (n.as_str(), v)))
}

/// [`item_size_upper_bound`] of an item given as its attributes.
pub fn attributes_size_upper_bound<'a>(
    attributes: impl Iterator<Item = (&'a str, &'a AttributeValue)>,
) -> usize {
    // One pass (every copied item is sized here): each number counted with
    // its slack where it is met, rather than counted again afterwards.
    attributes
        .map(|(name, v)| name.len() + attribute_size_upper_bound(v))
        .sum()
}

/// [`attribute_size`] plus [`NUMBER_SLACK_BYTES`] for every number in it.
fn attribute_size_upper_bound(v: &AttributeValue) -> usize {
    const SLACK: usize = NUMBER_SLACK_BYTES;
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n) + SLACK,
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n) + SLACK).sum(),
        AttributeValue::L(l) => {
            CONTAINER_OVERHEAD
                + l.iter()
                    .map(|e| 1 + attribute_size_upper_bound(e))
                    .sum::<usize>()
        }
        AttributeValue::M(m) => {
            CONTAINER_OVERHEAD
                + m.iter()
                    .map(|(k, e)| 1 + k.len() + attribute_size_upper_bound(e))
                    .sum::<usize>()
        }
        other => attribute_size(other),
    }
}

/// Write capacity units one standard write of an item of `size` bytes
/// consumes: one per started kilobyte, and never less than one.
pub fn write_capacity_units(size: usize) -> u64 {
    size.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// Bytes L and M take before their first element.
const CONTAINER_OVERHEAD: usize = 3;

/// The documented size of a number: one byte per two significant digits,
/// plus one. Leading and trailing zeros carry no information in the
/// service's encoding, so they are not counted; nor are the sign, the point
/// or an exponent, which the encoding folds into the extra byte.
fn number_size(text: &str) -> usize {
    significant_digits(text).div_ceil(2) + 1
}

/// Digits of the mantissa without its leading and trailing zeros. Text that
/// is not a number is counted by its digits all the same: a size is an
/// estimate, and refusing bad numbers is [`crate::number`]'s job.
fn significant_digits(text: &str) -> usize {
    // Every copied number is sized at least twice (the item limit, the
    // write estimate), so this counts in one pass without allocating:
    // digits are numbered as they come, and the span from the first nonzero
    // one to the last is the answer.
    let t = crate::trim_ascii_fast(text).as_bytes();
    let mantissa = t
        .iter()
        .position(|b| b | 0x20 == b'e')
        .map_or(t, |i| &t[..i]);
    let (mut seen, mut first, mut last) = (0usize, None, 0usize);
    for &d in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        if d != b'0' {
            first.get_or_insert(seen);
            last = seen;
        }
        seen += 1;
    }
    first.map_or(0, |f| last - f + 1)
}

/// Numbers in a value, nested ones and set elements included: what the
/// one-pass upper bound must add [`NUMBER_SLACK_BYTES`] for.
#[cfg(test)]
fn number_count(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::N(_) => 1,
        AttributeValue::Ns(ns) => ns.len(),
        AttributeValue::L(l) => l.iter().map(number_count).sum(),
        AttributeValue::M(m) => m.values().map(number_count).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;
    use std::collections::HashMap;

    #[test]
    fn significant_digits_are_the_first_implementations() {
        // The first, allocating version: sizes (and so offload decisions
        // and write estimates) must not change.
        fn reference(text: &str) -> usize {
            let t = text.trim();
            let mantissa = t.find(['e', 'E']).map_or(t, |i| &t[..i]);
            let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
            let first = digits.iter().position(|&d| d != b'0');
            let last = digits.iter().rposition(|&d| d != b'0');
            match (first, last) {
                (Some(f), Some(l)) => l - f + 1,
                _ => 0,
            }
        }
        for t in crate::compare::number_texts() {
            assert_eq!(significant_digits(&t), reference(&t), "{t:?}");
        }
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }
    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn string_counts_utf8_bytes() {
        assert_eq!(attribute_size(&s("")), 0);
        assert_eq!(attribute_size(&s("abc")), 3);
        // é is two bytes, € three, 😀 four: the limit is on bytes, not characters.
        assert_eq!(attribute_size(&s("é€😀")), 9);
    }

    #[test]
    fn attribute_names_count_in_utf8_bytes() {
        assert_eq!(item_size(&item(&[("naïve", s("x"))])), 6 + 1);
        assert_eq!(item_size(&item(&[("a", s("xy")), ("bb", s("z"))])), 3 + 3);
        assert_eq!(item_size(&Item::new()), 0);
    }

    #[test]
    fn binary_counts_raw_bytes() {
        let b = AttributeValue::B(Blob::new(vec![0u8; 300]));
        assert_eq!(attribute_size(&b), 300);
        assert_eq!(attribute_size(&AttributeValue::B(Blob::new(Vec::new()))), 0);
    }

    #[test]
    fn number_is_half_its_significant_digits_plus_one() {
        assert_eq!(attribute_size(&n("0")), 1);
        assert_eq!(attribute_size(&n("7")), 2);
        assert_eq!(attribute_size(&n("12")), 2);
        assert_eq!(attribute_size(&n("123")), 3);
        assert_eq!(attribute_size(&n("1234")), 3);
        // 38 digits, DynamoDB's most.
        assert_eq!(attribute_size(&n(&"9".repeat(38))), 20);
    }

    #[test]
    fn number_ignores_leading_and_trailing_zeros_sign_point_and_exponent() {
        assert_eq!(attribute_size(&n("1000000")), 2);
        assert_eq!(attribute_size(&n("0.000123")), 3);
        assert_eq!(attribute_size(&n("00120.0500")), 4); // 1205
        assert_eq!(attribute_size(&n("-12")), 2);
        assert_eq!(attribute_size(&n("1.5E+100")), 2);
        assert_eq!(attribute_size(&n("-0.0")), 1);
    }

    #[test]
    fn bool_and_null_are_one_byte() {
        assert_eq!(attribute_size(&AttributeValue::Bool(true)), 1);
        assert_eq!(attribute_size(&AttributeValue::Bool(false)), 1);
        assert_eq!(attribute_size(&AttributeValue::Null(true)), 1);
    }

    #[test]
    fn sets_are_the_sum_of_their_elements() {
        let ss = AttributeValue::Ss(vec!["ab".into(), "cde".into()]);
        assert_eq!(attribute_size(&ss), 5);
        let ns = AttributeValue::Ns(vec!["1".into(), "12345".into()]);
        assert_eq!(attribute_size(&ns), 2 + 4);
        let bs = AttributeValue::Bs(vec![Blob::new(vec![1, 2]), Blob::new(vec![3])]);
        assert_eq!(attribute_size(&bs), 3);
    }

    #[test]
    fn list_is_three_bytes_plus_one_per_element() {
        assert_eq!(attribute_size(&AttributeValue::L(vec![])), 3);
        let l = AttributeValue::L(vec![s("abc"), n("12"), AttributeValue::Bool(true)]);
        assert_eq!(attribute_size(&l), 3 + (1 + 3) + (1 + 2) + (1 + 1));
    }

    #[test]
    fn map_is_three_bytes_plus_key_and_one_per_element() {
        assert_eq!(attribute_size(&AttributeValue::M(HashMap::new())), 3);
        let m = AttributeValue::M(item(&[("k", s("abc")), ("key2", n("5"))]));
        assert_eq!(attribute_size(&m), 3 + (1 + 1 + 3) + (1 + 4 + 2));
    }

    #[test]
    fn nested_maps_and_lists_add_up() {
        // {"doc": {"tags": ["a", "bc"], "meta": {"ok": true, "n": 10}}}
        let inner = AttributeValue::M(item(&[("ok", AttributeValue::Bool(true)), ("n", n("10"))]));
        let tags = AttributeValue::L(vec![s("a"), s("bc")]);
        let doc = AttributeValue::M(item(&[("tags", tags), ("meta", inner)]));
        let tags_size = 3 + (1 + 1) + (1 + 2);
        let inner_size = 3 + (1 + 2 + 1) + (1 + 1 + 2);
        let doc_size = 3 + (1 + 4 + tags_size) + (1 + 4 + inner_size);
        assert_eq!(attribute_size(&doc), doc_size);
        assert_eq!(item_size(&item(&[("doc", doc)])), 3 + doc_size);
    }

    #[test]
    fn write_units_are_started_kilobytes_at_least_one() {
        assert_eq!(write_capacity_units(0), 1);
        assert_eq!(write_capacity_units(1), 1);
        assert_eq!(write_capacity_units(1024), 1);
        assert_eq!(write_capacity_units(1025), 2);
        assert_eq!(write_capacity_units(MAX_ITEM_BYTES), 400);
    }

    #[test]
    fn three_items_of_about_three_kilobytes_cost_three_units_each() {
        let items: Vec<Item> = (0..3)
            .map(|i| item(&[("id", n(&i.to_string())), ("body", s(&"x".repeat(3000)))]))
            .collect();
        let units: Vec<u64> = items
            .iter()
            .map(|i| write_capacity_units(item_size(i)))
            .collect();
        assert_eq!(units, vec![3, 3, 3]);
        assert_eq!(units.iter().sum::<u64>(), 9);
    }

    #[test]
    fn the_400_kb_boundary_is_counted_in_item_bytes() {
        // "id" 2 + N "1" 2 + "body" 4 leaves the rest for the body.
        let body = MAX_ITEM_BYTES - 8;
        let at = item(&[("id", n("1")), ("body", s(&"x".repeat(body)))]);
        assert_eq!(item_size(&at), MAX_ITEM_BYTES);
        let over = item(&[("id", n("1")), ("body", s(&"x".repeat(body + 1)))]);
        assert_eq!(item_size(&over), MAX_ITEM_BYTES + 1);
        // A multibyte character tips an item over that the same number of
        // ASCII characters would not.
        let multibyte = item(&[
            ("id", n("1")),
            ("body", s(&format!("{}é", "x".repeat(body - 1)))),
        ]);
        assert_eq!(item_size(&multibyte), MAX_ITEM_BYTES + 1);
    }

    #[test]
    fn upper_bound_allows_for_every_number_however_nested() {
        let i = item(&[
            ("a", n("-1.5")),
            ("b", AttributeValue::Ns(vec!["1".into(), "2".into()])),
            (
                "c",
                AttributeValue::L(vec![n("3"), AttributeValue::M(item(&[("d", n("4"))]))]),
            ),
            ("e", s("no numbers here")),
        ]);
        assert_eq!(
            item_size_upper_bound(&i),
            item_size(&i) + 5 * NUMBER_SLACK_BYTES
        );
        let plain = item(&[("e", s("text"))]);
        assert_eq!(item_size_upper_bound(&plain), item_size(&plain));
        // Every type, nested: the one pass gives the size plus the slack of
        // every number counted separately.
        let every = item(&[
            (
                "b",
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![1, 2])),
            ),
            ("t", AttributeValue::Bool(true)),
            ("z", AttributeValue::Null(true)),
            ("ss", AttributeValue::Ss(vec!["x".into(), "yz".into()])),
            (
                "bs",
                AttributeValue::Bs(vec![aws_sdk_dynamodb::primitives::Blob::new(vec![9])]),
            ),
            (
                "ns",
                AttributeValue::Ns(vec!["1E5".into(), "-0.001".into(), "7".into()]),
            ),
            (
                "m",
                AttributeValue::M(item(&[
                    (
                        "l",
                        AttributeValue::L(vec![n("12345678901234567890"), s("ü")]),
                    ),
                    ("k", n("0")),
                ])),
            ),
        ]);
        let numbers: usize = every.values().map(number_count).sum();
        assert_eq!(numbers, 5);
        assert_eq!(
            item_size_upper_bound(&every),
            item_size(&every) + numbers * NUMBER_SLACK_BYTES
        );
    }
}
