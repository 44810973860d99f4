//! The order-independent digest of a set of items.
//!
//! Its bits are stored in the control table and compared across workers
//! and releases, so the hash's layout is fixed; the tests hold it to the
//! first implementation.

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use super::canonical::{canonical_into, is_plain};
use crate::Item;

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
mod tests {
    use super::*;
    use crate::compare::{canonical, canonical_number};
    use AttributeValue as A;

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
