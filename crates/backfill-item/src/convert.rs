//! Values to DynamoDB attribute values: text forms, numbers and JSON.
//!
//! Conversions that know nothing of a table or a key, used by the row
//! mapping, the key rules and callers outside the crate alike.

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_config::Unrepresentable;
use backfill_model::Value;

use crate::number;

/// An integer's decimal text (itoa: every integer column of every row
/// comes through here, and the formatter is several times slower).
pub(crate) fn int_text(i: i64) -> String {
    itoa::Buffer::new().format(i).to_owned()
}

/// The text form of a value: what it contributes to a string key or a
/// `string` override (Postgres' own text form; bytea as `\x` hex).
pub fn text_form(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(i) => int_text(*i),
        Value::Number(s) | Value::Text(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for x in b {
                s.push_str(&format!("{x:02x}"));
            }
            s
        }
        Value::Json(j) => j.to_string(),
    }
}

pub(crate) fn number_attribute(
    text: &str,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    match number::to_dynamo_number(text) {
        Ok(n) => Ok(AttributeValue::N(n)),
        Err(_) if fallback == Unrepresentable::String => Ok(AttributeValue::S(text.to_string())),
        Err(e) => Err(format!(
            "{e} (set `unrepresentable = \"string\"` or a `types` override to store it as text)"
        )),
    }
}

/// [`number_attribute`] for a text that is not needed afterwards: a valid
/// number is moved into the attribute instead of copied.
pub(crate) fn number_attribute_owned(
    text: String,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    if number::is_sent_as_is(&text) {
        Ok(AttributeValue::N(text))
    } else {
        number_attribute(&text, fallback)
    }
}

/// [`json_to_attribute`] for a value that is not needed afterwards: strings
/// and keys move into the attribute.
pub fn json_into_attribute(
    j: serde_json::Value,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    Ok(match j {
        J::String(s) => AttributeValue::S(s),
        J::Number(n) => number_attribute_owned(n.to_string(), fallback)?,
        J::Array(a) => AttributeValue::L(
            a.into_iter()
                .map(|x| json_into_attribute(x, fallback))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => AttributeValue::M(
            o.into_iter()
                .map(|(k, v)| Ok((k, json_into_attribute(v, fallback)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => json_to_attribute(&other, fallback)?,
    })
}

/// JSON to DynamoDB: objects to M, arrays to L, numbers to N with their
/// exact digits, strings to S, null to NULL.
pub fn json_to_attribute(
    j: &serde_json::Value,
    fallback: Unrepresentable,
) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => AttributeValue::Null(true),
        J::Bool(b) => AttributeValue::Bool(*b),
        J::Number(n) => number_attribute(&n.to_string(), fallback)?,
        J::String(s) => AttributeValue::S(s.clone()),
        J::Array(a) => AttributeValue::L(
            a.iter()
                .map(|x| json_to_attribute(x, fallback))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_attribute(v, fallback)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
