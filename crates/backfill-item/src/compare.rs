//! Comparing items the way DynamoDB means them, and an order-independent
//! digest of a set of items.
//!
//! DynamoDB normalises numbers (`3.750` comes back as `3.75`), so numbers are
//! compared by value; sets are compared without order; maps key by key. A
//! difference names the attribute path and both sides.

use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

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

/// A canonical text of a value: equal values (as DynamoDB compares them)
/// give equal texts. Type tags keep `"1"` (S) apart from `1` (N).
pub fn canonical(v: &AttributeValue) -> String {
    let mut out = String::new();
    canonical_into(&mut out, v);
    out
}

/// [`canonical`], appended to `out`: the digest of every copied item goes
/// through here, so the common shapes (strings, numbers, flat maps) are
/// written without building intermediate strings.
pub fn canonical_into(out: &mut String, v: &AttributeValue) {
    use std::fmt::Write as _;
    use AttributeValue as A;
    match v {
        A::S(s) => {
            out.push_str("S:");
            push_debug_str(out, s);
        }
        A::N(n) => {
            out.push_str("N:");
            canonical_number_into(out, n);
        }
        A::B(b) => {
            out.push_str("B:");
            push_hex(out, b.as_ref());
        }
        A::Bool(b) => out.push_str(if *b { "BOOL:true" } else { "BOOL:false" }),
        A::Null(_) => out.push_str("NULL"),
        A::L(l) => {
            out.push_str("L[");
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_into(out, x);
            }
            out.push(']');
        }
        A::M(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push_str("M{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_debug_str(out, k);
                out.push(':');
                canonical_into(out, &m[k]);
            }
            out.push('}');
        }
        A::Ss(s) => {
            let mut s: Vec<String> = s.iter().map(|x| format!("{x:?}")).collect();
            s.sort();
            let _ = write!(out, "SS[{}]", s.join(","));
        }
        A::Ns(s) => {
            let mut s: Vec<String> = s.iter().map(|x| canonical_number(x)).collect();
            s.sort();
            let _ = write!(out, "NS[{}]", s.join(","));
        }
        A::Bs(s) => {
            let mut s: Vec<String> = s.iter().map(|x| hex(x.as_ref())).collect();
            s.sort();
            let _ = write!(out, "BS[{}]", s.join(","));
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

/// `format!("{s:?}")` appended to `out`. Printable ASCII other than the
/// quote and the backslash is its own Debug form, so such strings (most) are copied as they
/// are; anything else takes the formatter, so the bytes are always the same.
fn push_debug_str(out: &mut String, s: &str) {
    if is_plain(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{s:?}");
    }
}

/// Whether `s` is its own Debug form between quotes: printable ASCII
/// without quotes or backslashes.
fn is_plain(s: &str) -> bool {
    // Whole chunks without an early exit, so the compiler checks many bytes
    // at once: every copied string is checked for the digest.
    s.as_bytes().chunks(32).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
        })
    })
}

fn push_hex(out: &mut String, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() * 2);
    for x in b {
        out.push(DIGITS[usize::from(x >> 4)] as char);
        out.push(DIGITS[usize::from(x & 15)] as char);
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    push_hex(&mut s, b);
    s
}

/// A number's value as `[-]d.dddE<exp>` with no superfluous zeros (`0` for
/// zero, whatever its sign); a text that is not a number is kept as it is.
pub fn canonical_number(text: &str) -> String {
    let mut out = String::new();
    canonical_number_into(&mut out, text);
    out
}

/// [`canonical_number`], appended to `out` without allocating: every number
/// of every copied item goes through here for the digest.
pub fn canonical_number_into(out: &mut String, text: &str) {
    let t = crate::trim_ascii_fast(text);
    let (neg, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match unsigned.bytes().position(|b| b | 0x20 == b'e') {
        Some(i) => match unsigned[i + 1..].parse::<i64>() {
            Ok(e) => (&unsigned[..i], e),
            Err(_) => return out.push_str(t),
        },
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = || int_part.bytes().chain(frac_part.bytes());
    if !digits().all(|b| b.is_ascii_digit()) {
        return out.push_str(t);
    }
    let Some((first, last)) = crate::number::nonzero_span(int_part, frac_part) else {
        return out.push('0');
    };
    if neg {
        out.push('-');
    }
    // The digits first..=last of int_part ++ frac_part (all ASCII digits,
    // so any index is a char boundary), a point after the first.
    let n = int_part.len();
    let slice = |from: usize, to: usize| -> [&str; 2] {
        [
            if from < n {
                &int_part[from..to.min(n)]
            } else {
                ""
            },
            if to > n {
                &frac_part[from.max(n) - n..to - n]
            } else {
                ""
            },
        ]
    };
    let [a, b] = slice(first, first + 1);
    out.push_str(a);
    out.push_str(b);
    if last > first {
        out.push('.');
        let [a, b] = slice(first + 1, last + 1);
        out.push_str(a);
        out.push_str(b);
    }
    // Wrapping: an absurd exponent is still a canonical text, not a panic.
    let e = (int_part.len() as i64)
        .wrapping_sub(1)
        .wrapping_sub(first as i64)
        .wrapping_add(exp);
    // itoa, not `write!`: the formatter cost more than the rest of the number.
    out.push('E');
    out.push_str(itoa::Buffer::new().format(e));
}

/// An item key as a string that equal keys share: for sets and maps of
/// items by key (a read-back, an extra-item scan).
pub fn key_id(key: &Item) -> String {
    canonical(&AttributeValue::M(key.clone()))
}

/// An item key as reports show it, values as the user wrote them:
/// `id=11, sk="a"` (numbers as stored, strings quoted, binary in hex).
pub fn display_item_key(key: &Item) -> String {
    let mut parts: Vec<String> = key
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                AttributeValue::N(n) => n.clone(),
                AttributeValue::S(s) => format!("{s:?}"),
                AttributeValue::B(b) => format!("\\x{}", hex::encode(b.as_ref())),
                other => canonical(other),
            };
            format!("{k}={shown}")
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

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

/// An order-independent digest of a set of items: their count and the sum
/// (mod 2^128) of a 128-bit hash of each item's canonical form. Adding the
/// same items in any order gives the same digest; a missing, extra or
/// changed item changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemDigest {
    pub count: u64,
    pub sum: u128,
}

impl ItemDigest {
    /// Adds one item. `columns` are the attributes copied columns become:
    /// one that is absent is hashed as an explicit null marker, so a NULL
    /// and a missing attribute are told apart from a present value.
    pub fn add(&mut self, item: &Item, columns: &[&str]) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(item_hash(item, columns));
    }

    /// [`ItemDigest::add`] for an item of `shape` (whose copied columns are
    /// the columns): the same bits, with the values already in name order.
    pub fn add_shaped(&mut self, shape: &crate::Shape, item: &crate::ShapedItem) {
        self.count += 1;
        self.sum = self
            .sum
            .wrapping_add(hash_fields(shape.digest_fields(item)));
    }

    pub fn merge(&mut self, other: &ItemDigest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// The sum as 32 hex digits, for storage.
    pub fn sum_hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// A 128-bit hash of an item's canonical form, null markers included.
pub fn item_hash(item: &Item, columns: &[&str]) -> u128 {
    // Attribute names in order, each with its value or the null marker.
    let mut fields: Vec<(&str, Option<&AttributeValue>)> =
        item.iter().map(|(k, v)| (k.as_str(), Some(v))).collect();
    for c in columns {
        if !item.contains_key(*c) {
            fields.push((c, None));
        }
    }
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    fields.dedup_by(|a, b| a.0 == b.0);
    hash_fields(fields)
}

/// The hash of an item's fields, given in name order without repeats.
fn hash_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, Option<&'a AttributeValue>)>,
) -> u128 {
    const NULL_MARKER: &str = "\u{0}NULL-MARKER";
    // The hashed bytes are laid out in one buffer and hashed in one call:
    // four dozen small updates per item cost more than the copy. The buffer
    // and the canonical text's are the thread's own, kept between items.
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<u8>, String)> = const {
            std::cell::RefCell::new((Vec::new(), String::new()))
        };
    }
    let d = SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let (buf, text) = &mut *scratch;
        buf.clear();
        for (k, v) in fields {
            buf.extend_from_slice(&(k.len() as u64).to_be_bytes());
            buf.extend_from_slice(k.as_bytes());
            // A plain string (most of the data) is copied where it lies: its
            // canonical text is `S:"…"`, so its length is known without writing it.
            if let Some(AttributeValue::S(s)) = v {
                if is_plain(s) {
                    buf.extend_from_slice(&((s.len() + 4) as u64).to_be_bytes());
                    buf.extend_from_slice(b"S:\"");
                    buf.extend_from_slice(s.as_bytes());
                    buf.push(b'"');
                    continue;
                }
            }
            text.clear();
            match v {
                Some(v) => canonical_into(text, v),
                None => text.push_str(NULL_MARKER),
            }
            buf.extend_from_slice(&(text.len() as u64).to_be_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
        let d = Sha256::digest(&buf[..]);
        // A huge item's buffer is not kept for the thread's lifetime.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        if text.capacity() > 1 << 20 {
            *text = String::new();
        }
        d
    });
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use AttributeValue as A;

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(canonical_number("3.750"), canonical_number("3.75"));
        assert_eq!(canonical_number("0375e-2"), canonical_number("3.75"));
        assert_eq!(canonical_number("-0"), "0");
        assert_eq!(canonical_number("100"), "1E2");
        assert_ne!(canonical_number("100"), canonical_number("10"));
        assert_ne!(canonical_number("-1"), canonical_number("1"));
    }

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

    /// `canonical_number` as it was first written (allocating), which the
    /// digest's stored bits follow.
    fn reference_canonical_number(text: &str) -> String {
        let t = text.trim();
        let (neg, unsigned) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (mantissa, exp) = match unsigned.find(['e', 'E']) {
            Some(i) => match unsigned[i + 1..].parse::<i64>() {
                Ok(e) => (&unsigned[..i], e),
                Err(_) => return t.to_string(),
            },
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return t.to_string();
        }
        let digits: String = int_part.chars().chain(frac_part.chars()).collect();
        let Some(first) = digits.find(|c| c != '0') else {
            return "0".to_string();
        };
        let last = digits.rfind(|c| c != '0').unwrap_or(first);
        let sig = &digits[first..=last];
        let e = int_part.len() as i64 - 1 - first as i64 + exp;
        let mut out = String::new();
        if neg {
            out.push('-');
        }
        out.push_str(&sig[..1]);
        if sig.len() > 1 {
            out.push('.');
            out.push_str(&sig[1..]);
        }
        out.push_str(&format!("E{e}"));
        out
    }

    /// Every text of up to four characters over an alphabet of digits,
    /// signs, points, exponents and spaces, and some longer ones.
    pub(crate) fn number_texts() -> Vec<String> {
        let alphabet: Vec<char> = "0159.-+eE \u{a0}x".chars().collect();
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all.extend(
            [
                "00120.0340",
                "-0.000",
                "+.5e-3",
                "123456789012345678901234567890.5",
                "1e+3",
                "1.2.3",
                "  -7.50E+02  ",
                "٣",
                "1e99999999999999999999",
                "0.0000000000000000000000000000000000001",
            ]
            .map(String::from),
        );
        all
    }

    #[test]
    fn canonical_numbers_are_the_first_implementations() {
        for t in number_texts() {
            assert_eq!(
                canonical_number(&t),
                reference_canonical_number(&t),
                "{t:?}"
            );
        }
        // An exponent at the edge of i64 is a text, not a panic.
        let _ = canonical_number("1e9223372036854775807");
        let _ = canonical_number("100e9223372036854775807");
    }

    #[test]
    fn plain_strings_are_their_own_debug_form() {
        let long_plain = "a".repeat(100);
        let long_quote = format!("{}\"", "a".repeat(70));
        for s in ["", "abc", "a b", &long_plain] {
            assert!(is_plain(s), "{s:?}");
            assert_eq!(format!("{s:?}"), format!("\"{s}\""));
        }
        // Not plain: these take the formatter (é would not need it, but
        // only printable ASCII is taken as plain).
        for s in ["a\"b", "back\\slash", "tab\t", "é", "\u{7f}", &long_quote] {
            assert!(!is_plain(s), "{s:?}");
        }
    }

    /// The digest as it was first written (BTreeMap of `canonical`
    /// strings): the streaming one must give the same bits, so digests
    /// stored by earlier workers still compare.
    fn reference_hash(item: &Item, columns: &[&str]) -> u128 {
        let mut fields: std::collections::BTreeMap<&str, String> = item
            .iter()
            .map(|(k, v)| (k.as_str(), reference_canonical(v)))
            .collect();
        for c in columns {
            fields
                .entry(c)
                .or_insert_with(|| "\u{0}NULL-MARKER".to_string());
        }
        let mut h = Sha256::new();
        for (k, v) in fields {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_be_bytes(b)
    }

    fn reference_canonical(v: &AttributeValue) -> String {
        match v {
            A::S(s) => format!("S:{s:?}"),
            A::N(n) => format!("N:{}", canonical_number(n)),
            A::B(b) => format!(
                "B:{}",
                b.as_ref()
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
            ),
            A::Bool(b) => format!("BOOL:{b}"),
            A::Null(_) => "NULL".into(),
            A::L(l) => format!(
                "L[{}]",
                l.iter()
                    .map(reference_canonical)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            A::M(m) => {
                let sorted: std::collections::BTreeMap<&String, String> =
                    m.iter().map(|(k, v)| (k, reference_canonical(v))).collect();
                let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("M{{{}}}", parts.join(","))
            }
            other => canonical(other),
        }
    }

    #[test]
    fn the_streaming_digest_gives_the_first_ones_bits() {
        use aws_sdk_dynamodb::primitives::Blob;
        let texts = [
            "plain",
            "",
            "with \"quotes\" and \\ slashes",
            "tab\tnew\nline",
            "ünïcødé ✓",
            "\u{0}nul",
            "zero\u{200b}width",
            "emoji 🦀",
            "\u{7f}del",
        ];
        for t in texts {
            assert_eq!(canonical(&A::S(t.into())), format!("S:{t:?}"), "{t:?}");
        }
        let item: Item = [
            ("id".to_string(), A::N("0042.50".into())),
            ("name".to_string(), A::S("a \"b\" ü".into())),
            ("raw".to_string(), A::B(Blob::new(vec![0, 15, 255]))),
            ("ok".to_string(), A::Bool(true)),
            ("none".to_string(), A::Null(true)),
            (
                "doc".to_string(),
                A::M(
                    [
                        (
                            "z".to_string(),
                            A::L(vec![A::S("x\n".into()), A::N("1e3".into())]),
                        ),
                        ("a\"k".to_string(), A::M(Default::default())),
                    ]
                    .into(),
                ),
            ),
        ]
        .into();
        for columns in [&[][..], &["id", "missing", "name", "missing"][..]] {
            assert_eq!(item_hash(&item, columns), reference_hash(&item, columns));
        }
    }

    #[test]
    fn a_shaped_item_gives_the_general_hash() {
        let item: Item = [
            ("id".to_string(), A::N("7".into())),
            ("b".to_string(), A::S("x".into())),
            ("pk".to_string(), A::S("T#7".into())),
            ("z".to_string(), A::Bool(false)),
        ]
        .into();
        let columns = ["id", "b", "gone", "z"];
        let shapes = [
            // Every name known, one column absent (its null marker hashed).
            crate::Shape::new(&columns, ["pk"]),
            // A key attribute named like a column, and one never present.
            crate::Shape::new(&columns, ["pk", "id", "sk"]),
        ];
        let shaped_hash = |shape: &crate::Shape, item: &Item| {
            let mut d = ItemDigest::default();
            d.add_shaped(
                shape,
                &shape.shape_item(item.clone()).expect("names in the shape"),
            );
            d.sum
        };
        for (i, shape) in shapes.iter().enumerate() {
            assert_eq!(
                shaped_hash(shape, &item),
                reference_hash(&item, &columns),
                "case {i}"
            );
        }
        // A wide table.
        let wide: Vec<String> = (0..70).map(|i| format!("c{i:02}")).collect();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        let wide_item: Item = [("c07".to_string(), A::N("7".into()))].into();
        assert_eq!(
            shaped_hash(&crate::Shape::new(&wide, []), &wide_item),
            reference_hash(&wide_item, &wide)
        );
        // And it is not a hash that ignores its input.
        let mut other = item.clone();
        other.insert("b".into(), A::S("y".into()));
        assert_ne!(
            shaped_hash(&shapes[0], &item),
            shaped_hash(&shapes[0], &other)
        );
        let mut general = ItemDigest::default();
        general.add(&item, &columns);
        assert_eq!(general.sum, shaped_hash(&shapes[0], &item));
    }

    #[test]
    fn digest_is_order_independent_and_sees_nulls() {
        let i1: Item = [("id".to_string(), A::N("1".into()))].into();
        let i2: Item = [
            ("id".to_string(), A::N("2".into())),
            ("v".to_string(), A::S("x".into())),
        ]
        .into();
        let mut d1 = ItemDigest::default();
        d1.add(&i1, &["v"]);
        d1.add(&i2, &["v"]);
        let mut d2 = ItemDigest::default();
        d2.add(&i2, &["v"]);
        d2.add(&i1, &["v"]);
        assert_eq!(d1, d2);
        let with_null: Item = [
            ("id".to_string(), A::N("1".into())),
            ("v".to_string(), A::Null(true)),
        ]
        .into();
        assert_ne!(item_hash(&i1, &["v"]), item_hash(&with_null, &["v"]));
        assert_ne!(item_hash(&i1, &["v"]), item_hash(&i1, &[]));
    }
}
