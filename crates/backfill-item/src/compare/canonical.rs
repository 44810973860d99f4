//! Canonical texts of values and keys: equal as DynamoDB compares, equal text.
//!
//! Every copied item's digest goes through these writers, so they are
//! written for speed (no intermediate strings) and their output is fixed:
//! digests stored by earlier workers must still compare.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::Item;

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
pub(super) fn is_plain(s: &str) -> bool {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(canonical_number("3.750"), canonical_number("3.75"));
        assert_eq!(canonical_number("0375e-2"), canonical_number("3.75"));
        assert_eq!(canonical_number("-0"), "0");
        assert_eq!(canonical_number("100"), "1E2");
        assert_ne!(canonical_number("100"), canonical_number("10"));
        assert_ne!(canonical_number("-1"), canonical_number("1"));
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
}
