//! The order-independent digest of a set of archived rows.
//!
//! Each row hashes to 128 bits over an unambiguous encoding of its cells
//! (a type tag per cell, lengths before contents), and a part's digest is
//! the count and the wrapping sum of those hashes: the same rows in any
//! order give the same digest, and one changed, missing or extra row
//! changes it. The encoding is stored in manifests and compared across
//! releases, so it is fixed; a test holds it to its first bits.

use backfill_item::compare::ItemDigest;
use sha2::{Digest, Sha256};

use crate::Cell;

/// The 128-bit hash of one row: the first 16 bytes (big endian) of the
/// SHA-256 of its canonical encoding.
pub fn row_hash(cells: &[Cell]) -> u128 {
    let mut h = Sha256::new();
    h.update((cells.len() as u64).to_be_bytes());
    for c in cells {
        encode(&mut h, c);
    }
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out[..16]);
    u128::from_be_bytes(first)
}

/// Adds one row to `d`.
pub fn add_row(d: &mut ItemDigest, cells: &[Cell]) {
    d.count += 1;
    d.sum = d.sum.wrapping_add(row_hash(cells));
}

/// Writes a tag byte, then the cell's fixed-width big-endian payload or a
/// length-prefixed one; floats by their bits (so NaN payloads and -0 count).
fn encode(h: &mut Sha256, c: &Cell) {
    match c {
        Cell::Null => h.update([0]),
        Cell::I16(v) => {
            h.update([1]);
            h.update(v.to_be_bytes());
        }
        Cell::I32(v) => {
            h.update([2]);
            h.update(v.to_be_bytes());
        }
        Cell::I64(v) => {
            h.update([3]);
            h.update(v.to_be_bytes());
        }
        Cell::F32(v) => {
            h.update([4]);
            h.update(v.to_bits().to_be_bytes());
        }
        Cell::F64(v) => {
            h.update([5]);
            h.update(v.to_bits().to_be_bytes());
        }
        Cell::Bool(v) => h.update([6, u8::from(*v)]),
        Cell::Str(s) => {
            h.update([7]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Cell::Bin(b) => {
            h.update([8]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
        Cell::Decimal(v) => {
            h.update([9]);
            h.update(v.to_be_bytes());
        }
        Cell::Date(v) => {
            h.update([10]);
            h.update(v.to_be_bytes());
        }
        Cell::Micros(v) => {
            h.update([11]);
            h.update(v.to_be_bytes());
        }
        Cell::Interval {
            months,
            days,
            micros,
        } => {
            h.update([12]);
            h.update(months.to_be_bytes());
            h.update(days.to_be_bytes());
            h.update(micros.to_be_bytes());
        }
        Cell::List(items) => {
            h.update([13]);
            h.update((items.len() as u64).to_be_bytes());
            for i in items {
                encode(h, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Cell {
        Cell::Str(v.to_string())
    }

    fn row() -> Vec<Cell> {
        vec![
            Cell::I32(7),
            s("x"),
            Cell::F64(1.5),
            Cell::List(vec![s("a"), Cell::Null]),
            Cell::Interval {
                months: 1,
                days: 2,
                micros: 3,
            },
        ]
    }

    #[test]
    fn the_encoding_is_fixed() {
        // The first implementation's bits (the same as an independent
        // Python encoding of the layout gives): a change here breaks
        // every stored manifest's digest. The empty row is SHA-256 of
        // eight zero bytes (its cell count).
        assert_eq!(
            format!("{:032x}", row_hash(&row())),
            "5b4eb50a637d294c69517e05825d6d12"
        );
        assert_eq!(
            format!("{:032x}", row_hash(&[])),
            "af5570f5a1810b7af78caf4bc70a660f"
        );
    }

    #[test]
    fn any_one_change_changes_the_hash() {
        let base = row_hash(&row());
        for i in 0..row().len() {
            let mut r = row();
            r[i] = match &r[i] {
                Cell::Null => s(""),
                _ => Cell::Null,
            };
            assert_ne!(row_hash(&r), base, "cell {i}");
        }
        let pairs = [
            (vec![Cell::Null], vec![s("")]),
            (vec![s("ab")], vec![Cell::Bin(b"ab".to_vec())]),
            (
                vec![Cell::List(vec![s("a"), s("b")])],
                vec![Cell::List(vec![s("ab")])],
            ),
            (
                vec![Cell::List(vec![Cell::List(vec![s("a"), s("b")])])],
                vec![Cell::List(vec![s("ab")])],
            ),
            (vec![s("a"), s("b")], vec![s("ab"), s("")]),
            (vec![Cell::I32(1)], vec![Cell::I64(1)]),
            (vec![Cell::F64(0.0)], vec![Cell::F64(-0.0)]),
            (vec![Cell::Micros(0)], vec![Cell::I64(0)]),
            (vec![Cell::List(vec![])], vec![]),
            (vec![Cell::Bool(true)], vec![Cell::Bool(false)]),
        ];
        for (a, b) in pairs {
            assert_ne!(row_hash(&a), row_hash(&b), "{a:?} vs {b:?}");
        }
        assert_eq!(
            row_hash(&[Cell::F64(f64::NAN)]),
            row_hash(&[Cell::F64(f64::NAN)])
        );
    }

    #[test]
    fn the_digest_does_not_depend_on_order() {
        let rows = [row(), vec![s("other")], vec![Cell::Null, Cell::Null]];
        let mut a = ItemDigest::default();
        let mut b = ItemDigest::default();
        for r in &rows {
            add_row(&mut a, r);
        }
        for r in rows.iter().rev() {
            add_row(&mut b, r);
        }
        assert_eq!(a, b);
        assert_eq!(a.count, 3);
        let mut c = ItemDigest::default();
        add_row(&mut c, &rows[0]);
        add_row(&mut c, &rows[1]);
        assert_ne!(a, c);
    }
}
