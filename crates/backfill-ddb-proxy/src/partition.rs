//! Which partition an item lives in.
//!
//! DynamoDB spreads a table over partitions by a hash of the partition key
//! value; each partition serves at most 1,000 WCU/s however much the table
//! is provisioned for, so writes that pile onto one key value are throttled
//! while the table as a whole still has capacity. The proxy models that
//! with `N` partitions chosen by a hash of the key value modulo `N`.
//!
//! The hash must be the same in every process (a benchmark compares runs,
//! a test predicts which keys collide), so it is FNV-1a 64 written out here
//! rather than std's randomly seeded hasher. It hashes the value as
//! DynamoDB compares it: its type tag and its canonical payload, so numbers
//! that DynamoDB holds equal (`1e3`, `1000`, `1000.00`) land together, and a
//! binary key is hashed by its bytes, not by how its base64 was written.

use base64::Engine as _;
use serde_json::Value;

/// DynamoDB's ceiling on one partition's writes, in WCU per second.
pub const PARTITION_MAX_WCU: f64 = 1000.0;

/// Most partitions the proxy keeps buckets for: a table provisioned for a
/// billion WCU (benchmarks that want no limit) must not allocate a million
/// buckets when it is asked to account partitions.
pub const MAX_PARTITIONS: u32 = 1 << 16;

/// DynamoDB's partition count for a provisioned write rate: one per
/// started 1,000 WCU/s, at least one, at most [`MAX_PARTITIONS`].
pub fn default_partitions(write_capacity_per_sec: f64) -> u32 {
    let n = (write_capacity_per_sec / PARTITION_MAX_WCU).ceil();
    if n.is_nan() || n < 1.0 {
        1
    } else if n >= MAX_PARTITIONS as f64 {
        MAX_PARTITIONS
    } else {
        n as u32
    }
}

/// The partition of a key attribute value (`{"S": "tenant-7"}`), in
/// `0..partitions`. Total: any JSON maps somewhere, and `partitions == 0`
/// is treated as one partition.
pub fn partition_of(value: &Value, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (mix(key_hash(value)) % u64::from(partitions)) as u32
}

/// FNV-1a 64 of the value's type tag and canonical payload.
pub fn key_hash(value: &Value) -> u64 {
    let mut h = Fnv::new();
    match value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    {
        Some((tag, Value::String(s))) if tag == "S" => {
            h.write(b"S\0");
            h.write(s.as_bytes());
        }
        Some((tag, Value::String(s))) if tag == "N" => {
            h.write(b"N\0");
            match canonical_number(s) {
                Some(c) => h.write(c.as_bytes()),
                None => h.write(s.as_bytes()),
            }
        }
        Some((tag, Value::String(s))) if tag == "B" => {
            h.write(b"B\0");
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(bytes) => h.write(&bytes),
                Err(_) => h.write(s.as_bytes()),
            }
        }
        // Not a valid key value: DynamoDB would refuse the write, and the
        // upstream will; it still needs a partition to be charged to.
        _ => {
            h.write(b"?\0");
            h.write(value.to_string().as_bytes());
        }
    }
    h.finish()
}

/// A DynamoDB number in one spelling per value: `[-]0.DIGITSeEXP` with no
/// leading or trailing zeros in DIGITS, or `0`. `None` if it is not a
/// number DynamoDB would take.
pub fn canonical_number(text: &str) -> Option<String> {
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], parse_exponent(&t[i + 1..])?),
        None => (t, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = int.chars().chain(frac.chars()).collect();
    let lead = digits.bytes().take_while(|&b| b == b'0').count();
    let significant = digits[lead..].trim_end_matches('0');
    if significant.is_empty() {
        return Some("0".into());
    }
    // value = 0.<significant> * 10^point
    let point = exp
        .checked_add(int.len() as i64)?
        .checked_sub(lead as i64)?;
    Some(format!(
        "{}0.{significant}e{point}",
        if negative { "-" } else { "" }
    ))
}

fn parse_exponent(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The key attribute's value in an item or key map, if it has one.
pub fn key_value<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object()?.get(key)
}

/// FNV-1a's low bits follow the last bytes closely (keys that differ in
/// their last character would fill partitions in turn), so the hash is
/// mixed (MurmurHash3's finaliser) before it is reduced.
fn mix(mut z: u64) -> u64 {
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        let fnv = |b: &[u8]| {
            let mut h = Fnv::new();
            h.write(b);
            h.finish()
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_stable_across_processes() {
        // Pinned values: a change here moves every key of every benchmark.
        let got: Vec<u32> = ["tenant-0", "tenant-1", "tenant-7", "", "é"]
            .iter()
            .map(|k| partition_of(&json!({ "S": k }), 8))
            .collect();
        assert_eq!(got, PINNED);
        assert_eq!(
            key_hash(&json!({"S": "tenant-7"})),
            key_hash(&json!({"S": "tenant-7"}))
        );
    }

    const PINNED: [u32; 5] = [7, 5, 2, 7, 1];

    #[test]
    fn ten_thousand_keys_spread_evenly_over_eight_partitions() {
        for make in [
            (|i: usize| json!({ "S": format!("tenant-{i}") })) as fn(usize) -> Value,
            |i| json!({ "N": i.to_string() }),
            |i| json!({ "S": format!("{i:08}") }),
            |i| json!({ "B": base64::engine::general_purpose::STANDARD.encode(i.to_le_bytes()) }),
        ] {
            let mut counts = [0u32; 8];
            for i in 0..10_000 {
                counts[partition_of(&make(i), 8) as usize] += 1;
            }
            let mean = 10_000.0 / 8.0;
            for c in counts {
                assert!(
                    (c as f64 - mean).abs() <= 0.2 * mean,
                    "{counts:?} for {}",
                    make(0)
                );
            }
        }
    }

    #[test]
    fn equal_numbers_share_a_partition() {
        let p = |n: &str| partition_of(&json!({ "N": n }), 1024);
        for same in [
            "1e3", "1000", "1000.000", "01000", "+1000", "1E+3", "0.1e4", "10000e-1",
        ] {
            assert_eq!(p(same), p("1000"), "{same}");
        }
        for same in ["0", "-0", "0.000", "0e10", "00"] {
            assert_eq!(canonical_number(same).as_deref(), Some("0"), "{same}");
        }
        assert_eq!(canonical_number("-12.50").as_deref(), Some("-0.125e2"));
        assert_eq!(canonical_number("0.0012").as_deref(), Some("0.12e-2"));
        assert_ne!(p("1000"), p("1001"));
        assert_ne!(canonical_number("-1"), canonical_number("1"));
        for bad in [
            "",
            "-",
            ".",
            "1e",
            "e3",
            "1.2.3",
            "0x10",
            "1e+",
            "abc",
            "1e99999999999999999999",
        ] {
            assert_eq!(canonical_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_type_tag_is_part_of_the_key() {
        let k = |v: Value| key_hash(&v);
        assert_ne!(k(json!({"S": "1000"})), k(json!({"N": "1000"})));
        // "AQI=" is the bytes [1, 2]; the same bytes spelled without padding
        // do not decode with the standard engine and hash as text.
        assert_ne!(k(json!({"B": "AQI="})), k(json!({"S": "AQI="})));
        assert_eq!(k(json!({"B": "AQI="})), {
            let mut h = Fnv::new();
            h.write(b"B\0");
            h.write(&[1, 2]);
            h.finish()
        });
    }

    #[test]
    fn any_json_has_a_partition() {
        for v in [
            json!(null),
            json!(7),
            json!([]),
            json!({}),
            json!({"S": 7}),
            json!({"S": "a", "N": "1"}),
            json!({"B": "%%%"}),
            json!({"S": "\u{0}\u{10ffff}🦀 naïve"}),
            json!({"N": "1e999999999999999999999"}),
        ] {
            assert!(partition_of(&v, 3) < 3, "{v}");
            assert_eq!(partition_of(&v, 0), 0);
            assert_eq!(partition_of(&v, 1), 0);
        }
    }

    #[test]
    fn default_partition_counts() {
        assert_eq!(default_partitions(0.0), 1);
        assert_eq!(default_partitions(f64::NAN), 1);
        assert_eq!(default_partitions(1000.0), 1);
        assert_eq!(default_partitions(1000.5), 2);
        assert_eq!(default_partitions(40_000.0), 40);
        assert_eq!(default_partitions(1e9), MAX_PARTITIONS);
        assert_eq!(default_partitions(f64::INFINITY), MAX_PARTITIONS);
    }
}
