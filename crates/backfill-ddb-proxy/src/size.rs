//! Item size by DynamoDB's rules, counted on the wire format (DynamoDB JSON,
//! `{"S": "..."}`, `{"N": "..."}`, ...) rather than on SDK types.
//!
//! This mirrors `backfill-item`'s `size` module rule for rule (that one works
//! on `aws_sdk_dynamodb::types::AttributeValue`): an item is the sum over its
//! attributes of the UTF-8 length of the name plus the size of the value; S
//! is its UTF-8 length, B its raw (base64-decoded) length, N one byte per two
//! significant digits plus one, BOOL and NULL one byte, L and M three bytes
//! plus one byte and the size of each element (and for M the UTF-8 length of
//! each key), and a set the sum of its elements.
//!
//! The N rule is the documented approximation; the service (and dynalite)
//! can count one byte more for digit-pair alignment and one for a negative
//! sign. dynalite also counts S and attribute names in UTF-16 code units,
//! where the service counts UTF-8 bytes; this module follows the service.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Bytes one write capacity unit covers.
pub const WRITE_UNIT_BYTES: usize = 1024;

/// Bytes L and M take before their first element.
const CONTAINER_OVERHEAD: usize = 3;

/// Why a value is not a DynamoDB attribute value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The JSON has the wrong shape for the declared type (the service
    /// answers these with a `SerializationException`).
    #[error("{0}")]
    Serialization(String),
    /// The attribute value is not exactly one known type (the service
    /// answers these with a `ValidationException`).
    #[error("{0}")]
    Validation(String),
}

/// The size of an item (a JSON object of attribute name to attribute value).
pub fn item_size(item: &Map<String, Value>) -> Result<usize, SizeError> {
    item.iter().try_fold(0usize, |sum, (name, v)| {
        Ok(sum + name.len() + attribute_size(v)?)
    })
}

/// The size of one attribute value in DynamoDB JSON, without its name.
pub fn attribute_size(v: &Value) -> Result<usize, SizeError> {
    let obj = v.as_object().ok_or_else(|| {
        SizeError::Serialization(format!(
            "attribute value must be a JSON object, got {}",
            kind(v)
        ))
    })?;
    let mut entries = obj.iter();
    let (ty, payload) = match (entries.next(), entries.next()) {
        (Some(e), None) => e,
        _ => return Err(SizeError::Validation(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
                .into(),
        )),
    };
    match ty.as_str() {
        "S" => Ok(string(ty, payload)?.len()),
        "N" => Ok(number_size(string(ty, payload)?)),
        "B" => binary_len(string(ty, payload)?),
        "BOOL" | "NULL" => {
            boolean(ty, payload)?;
            Ok(1)
        }
        "SS" => array(ty, payload)?
            .iter()
            .try_fold(0, |sum, e| Ok(sum + string(ty, e)?.len())),
        "NS" => array(ty, payload)?
            .iter()
            .try_fold(0, |sum, e| Ok(sum + number_size(string(ty, e)?))),
        "BS" => array(ty, payload)?
            .iter()
            .try_fold(0, |sum, e| Ok(sum + binary_len(string(ty, e)?)?)),
        "L" => array(ty, payload)?
            .iter()
            .try_fold(CONTAINER_OVERHEAD, |sum, e| {
                Ok(sum + 1 + attribute_size(e)?)
            }),
        "M" => payload
            .as_object()
            .ok_or_else(|| wrong(ty, "an object", payload))?
            .iter()
            .try_fold(CONTAINER_OVERHEAD, |sum, (k, e)| {
                Ok(sum + 1 + k.len() + attribute_size(e)?)
            }),
        other => Err(SizeError::Validation(format!(
            "Supplied AttributeValue has an unknown datatype {other:?}"
        ))),
    }
}

/// Write capacity units one standard write of an item of `size` bytes
/// consumes: one per started kilobyte, and never less than one.
pub fn write_capacity_units(size: usize) -> u64 {
    size.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

fn string<'a>(ty: &str, v: &'a Value) -> Result<&'a str, SizeError> {
    v.as_str().ok_or_else(|| wrong(ty, "a string", v))
}

fn boolean(ty: &str, v: &Value) -> Result<bool, SizeError> {
    v.as_bool().ok_or_else(|| wrong(ty, "a boolean", v))
}

fn array<'a>(ty: &str, v: &'a Value) -> Result<&'a Vec<Value>, SizeError> {
    v.as_array().ok_or_else(|| wrong(ty, "an array", v))
}

fn wrong(ty: &str, expected: &str, got: &Value) -> SizeError {
    SizeError::Serialization(format!(
        "attribute value of type {ty} must be {expected}, got {}",
        kind(got)
    ))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn binary_len(b64: &str) -> Result<usize, SizeError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|b| b.len())
        .map_err(|e| SizeError::Serialization(format!("binary attribute is not valid base64: {e}")))
}

/// The documented size of a number: one byte per two significant digits,
/// plus one.
fn number_size(text: &str) -> usize {
    significant_digits(text).div_ceil(2) + 1
}

/// Digits of the mantissa without its leading and trailing zeros.
fn significant_digits(text: &str) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn size(v: Value) -> usize {
        attribute_size(&v).unwrap()
    }
    fn isize_(v: Value) -> usize {
        item_size(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn string_counts_utf8_bytes() {
        assert_eq!(size(json!({"S": ""})), 0);
        assert_eq!(size(json!({"S": "abc"})), 3);
        assert_eq!(size(json!({"S": "é€😀"})), 9);
    }

    #[test]
    fn attribute_names_count_in_utf8_bytes() {
        assert_eq!(isize_(json!({"naïve": {"S": "x"}})), 7);
        assert_eq!(isize_(json!({"a": {"S": "xy"}, "bb": {"S": "z"}})), 6);
        assert_eq!(isize_(json!({})), 0);
    }

    #[test]
    fn binary_counts_decoded_bytes() {
        // 300 zero bytes are 400 base64 characters.
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 300]);
        assert_eq!(size(json!({"B": b64})), 300);
        assert_eq!(size(json!({"B": ""})), 0);
        assert_eq!(size(json!({"B": "AQ=="})), 1);
        assert_eq!(size(json!({"BS": ["AQI=", "Aw=="]})), 3);
    }

    #[test]
    fn numbers_follow_the_documented_rule() {
        for (n, want) in [
            ("0", 1),
            ("7", 2),
            ("12", 2),
            ("123", 3),
            ("1234", 3),
            ("1000000", 2),
            ("0.000123", 3),
            ("00120.0500", 4),
            ("-12", 2),
            ("1.5E+100", 2),
            ("-0.0", 1),
        ] {
            assert_eq!(size(json!({ "N": n })), want, "{n}");
        }
        assert_eq!(size(json!({"N": "9".repeat(38)})), 20);
        assert_eq!(size(json!({"NS": ["1", "12345"]})), 2 + 4);
    }

    #[test]
    fn bool_null_and_sets() {
        assert_eq!(size(json!({"BOOL": true})), 1);
        assert_eq!(size(json!({"BOOL": false})), 1);
        assert_eq!(size(json!({"NULL": true})), 1);
        assert_eq!(size(json!({"SS": ["ab", "cde"]})), 5);
    }

    #[test]
    fn lists_and_maps_nest() {
        assert_eq!(size(json!({"L": []})), 3);
        assert_eq!(
            size(json!({"L": [{"S": "abc"}, {"N": "12"}, {"BOOL": true}]})),
            3 + 4 + 3 + 2
        );
        assert_eq!(size(json!({"M": {}})), 3);
        assert_eq!(
            size(json!({"M": {"k": {"S": "abc"}, "key2": {"N": "5"}}})),
            3 + (1 + 1 + 3) + (1 + 4 + 2)
        );
        let doc = json!({"doc": {"M": {
            "tags": {"L": [{"S": "a"}, {"S": "bc"}]},
            "meta": {"M": {"ok": {"BOOL": true}, "n": {"N": "10"}}}
        }}});
        let tags = 3 + 2 + 3;
        let inner = 3 + (1 + 2 + 1) + (1 + 1 + 2);
        let doc_size = 3 + (1 + 4 + tags) + (1 + 4 + inner);
        assert_eq!(isize_(doc), 3 + doc_size);
    }

    #[test]
    fn write_units_are_started_kilobytes_at_least_one() {
        assert_eq!(write_capacity_units(0), 1);
        assert_eq!(write_capacity_units(1024), 1);
        assert_eq!(write_capacity_units(1025), 2);
        assert_eq!(write_capacity_units(400 * 1024), 400);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        for bad in [
            json!("S"),
            json!({}),
            json!({"S": "a", "N": "1"}),
            json!({"X": "a"}),
            json!({"S": 1}),
            json!({"N": 1}),
            json!({"B": "not base64!"}),
            json!({"BOOL": "yes"}),
            json!({"L": {}}),
            json!({"M": []}),
            json!({"SS": [1]}),
            json!({"L": [{"S": 1}]}),
        ] {
            assert!(attribute_size(&bad).is_err(), "{bad}");
        }
        assert!(matches!(
            attribute_size(&json!({"X": "a"})),
            Err(SizeError::Validation(_))
        ));
        assert!(matches!(
            attribute_size(&json!({"S": 1})),
            Err(SizeError::Serialization(_))
        ));
    }
}
