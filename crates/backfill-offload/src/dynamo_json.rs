//! Items as canonical DynamoDB JSON, and back.
//!
//! The object's bytes must be a function of the item alone (its SHA-256
//! names and checks the object), which no general JSON writer promises;
//! the writer and its lenient inverse are a format of their own.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use backfill_item::Item;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// An item as DynamoDB JSON (`{"id":{"N":"1"},"doc":{"S":"..."}}`), the same
/// bytes for the same item: map keys in byte order at every level, no
/// whitespace, B as standard base64 with padding, number text as given.
/// Set elements keep their order, so that [`parse_canonical_json`] gives
/// back exactly the item that was written.
///
/// Fails only on an attribute type this SDK version does not know.
pub fn canonical_json(item: &Item) -> Result<String, String> {
    let mut out = String::new();
    write_map(&mut out, item)?;
    Ok(out)
}

fn write_map(out: &mut String, m: &HashMap<String, AttributeValue>) -> Result<(), String> {
    let mut entries: Vec<(&String, &AttributeValue)> = m.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (name, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_value(out, v).map_err(|e| format!("attribute {name}: {e}"))?;
    }
    out.push('}');
    Ok(())
}

fn write_value(out: &mut String, v: &AttributeValue) -> Result<(), String> {
    let tag = |out: &mut String, t: &str| {
        out.push_str("{\"");
        out.push_str(t);
        out.push_str("\":");
    };
    let list = |out: &mut String, items: &mut dyn Iterator<Item = String>| {
        out.push('[');
        for (i, s) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, &s);
        }
        out.push(']');
    };
    match v {
        AttributeValue::S(s) => {
            tag(out, "S");
            write_str(out, s);
        }
        AttributeValue::N(n) => {
            tag(out, "N");
            write_str(out, n);
        }
        AttributeValue::B(b) => {
            tag(out, "B");
            write_str(out, &BASE64.encode(b.as_ref()));
        }
        AttributeValue::Bool(b) => {
            tag(out, "BOOL");
            out.push_str(if *b { "true" } else { "false" });
        }
        AttributeValue::Null(b) => {
            tag(out, "NULL");
            out.push_str(if *b { "true" } else { "false" });
        }
        AttributeValue::Ss(ss) => {
            tag(out, "SS");
            list(out, &mut ss.iter().cloned());
        }
        AttributeValue::Ns(ns) => {
            tag(out, "NS");
            list(out, &mut ns.iter().cloned());
        }
        AttributeValue::Bs(bs) => {
            tag(out, "BS");
            list(out, &mut bs.iter().map(|b| BASE64.encode(b.as_ref())));
        }
        AttributeValue::L(l) => {
            tag(out, "L");
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, e).map_err(|e| format!("[{i}]: {e}"))?;
            }
            out.push(']');
        }
        AttributeValue::M(m) => {
            tag(out, "M");
            write_map(out, m)?;
        }
        _ => return Err("an attribute type this program does not know".into()),
    }
    out.push('}');
    Ok(())
}

/// A JSON string literal: only `"`, `\` and control characters escaped, so
/// that the output is a function of the text alone.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The item a DynamoDB JSON document describes; the inverse of
/// [`canonical_json`], and lenient about key order and whitespace so that
/// objects written by other tools read too.
pub fn parse_canonical_json(bytes: &[u8]) -> Result<Item, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match doc {
        serde_json::Value::Object(o) => parse_map(o),
        _ => Err("not a JSON object".into()),
    }
}

fn parse_map(o: serde_json::Map<String, serde_json::Value>) -> Result<Item, String> {
    o.into_iter()
        .map(|(name, v)| {
            let av = parse_value(v).map_err(|e| format!("attribute {name}: {e}"))?;
            Ok((name, av))
        })
        .collect()
}

fn parse_value(v: serde_json::Value) -> Result<AttributeValue, String> {
    use serde_json::Value as J;
    let J::Object(o) = v else {
        return Err("not an object with one type tag".into());
    };
    if o.len() != 1 {
        return Err(format!("{} type tags, not one", o.len()));
    }
    let Some((tag, payload)) = o.into_iter().next() else {
        return Err("no type tag".into());
    };
    let text = |p: J| match p {
        J::String(s) => Ok(s),
        _ => Err(format!("{tag} value is not a string")),
    };
    let blob = |s: String| {
        BASE64
            .decode(s.as_bytes())
            .map(Blob::new)
            .map_err(|e| format!("{tag} value is not base64: {e}"))
    };
    let array = |p: J| match p {
        J::Array(a) => Ok(a),
        _ => Err(format!("{tag} value is not an array")),
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text(payload)?),
        "N" => AttributeValue::N(text(payload)?),
        "B" => AttributeValue::B(blob(text(payload)?)?),
        "BOOL" | "NULL" => {
            let J::Bool(b) = payload else {
                return Err(format!("{tag} value is not true or false"));
            };
            if tag == "BOOL" {
                AttributeValue::Bool(b)
            } else {
                AttributeValue::Null(b)
            }
        }
        "SS" => AttributeValue::Ss(
            array(payload)?
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        ),
        "NS" => AttributeValue::Ns(
            array(payload)?
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        ),
        "BS" => AttributeValue::Bs(
            array(payload)?
                .into_iter()
                .map(|e| text(e).and_then(blob))
                .collect::<Result<_, _>>()?,
        ),
        "L" => AttributeValue::L(
            array(payload)?
                .into_iter()
                .enumerate()
                .map(|(i, e)| parse_value(e).map_err(|err| format!("[{i}]: {err}")))
                .collect::<Result<_, _>>()?,
        ),
        "M" => match payload {
            J::Object(m) => AttributeValue::M(parse_map(m)?),
            _ => return Err("M value is not an object".into()),
        },
        other => return Err(format!("unknown type tag {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Item {
        HashMap::from([
            ("id".to_string(), AttributeValue::N("42".into())),
            (
                "text".to_string(),
                AttributeValue::S("quote \" back \\ nl \n tab \t ctl \u{1} é 😀".into()),
            ),
            (
                "bin".to_string(),
                AttributeValue::B(Blob::new(vec![0, 1, 2, 254, 255])),
            ),
            ("flag".to_string(), AttributeValue::Bool(false)),
            ("nothing".to_string(), AttributeValue::Null(true)),
            (
                "ss".to_string(),
                AttributeValue::Ss(vec!["b".into(), "a".into()]),
            ),
            (
                "ns".to_string(),
                AttributeValue::Ns(vec!["-1.5".into(), "1E+10".into()]),
            ),
            (
                "bs".to_string(),
                AttributeValue::Bs(vec![Blob::new(vec![9]), Blob::new(vec![])]),
            ),
            (
                "doc".to_string(),
                AttributeValue::M(HashMap::from([
                    (
                        "z".to_string(),
                        AttributeValue::L(vec![
                            AttributeValue::N("1".into()),
                            AttributeValue::M(HashMap::new()),
                        ]),
                    ),
                    ("a".to_string(), AttributeValue::L(vec![])),
                ])),
            ),
        ])
    }

    #[test]
    fn canonical_json_is_dynamodb_json_with_sorted_keys() {
        let item = HashMap::from([
            ("id".to_string(), AttributeValue::N("1".into())),
            ("doc".to_string(), AttributeValue::S("x".into())),
            (
                "b".to_string(),
                AttributeValue::B(Blob::new(b"hi".to_vec())),
            ),
        ]);
        assert_eq!(
            canonical_json(&item).unwrap(),
            r#"{"b":{"B":"aGk="},"doc":{"S":"x"},"id":{"N":"1"}}"#
        );
    }

    #[test]
    fn canonical_json_does_not_depend_on_insertion_order() {
        let a = sample();
        let mut b = Item::new();
        let mut names: Vec<&String> = a.keys().collect();
        names.reverse();
        for n in names {
            b.insert(n.clone(), a[n].clone());
        }
        assert_eq!(canonical_json(&a).unwrap(), canonical_json(&b).unwrap());
    }

    #[test]
    fn parse_gives_back_exactly_what_was_written() {
        let item = sample();
        let json = canonical_json(&item).unwrap();
        assert_eq!(parse_canonical_json(json.as_bytes()).unwrap(), item);
    }

    #[test]
    fn escaped_text_is_valid_json() {
        let json = canonical_json(&sample()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["text"]["S"],
            "quote \" back \\ nl \n tab \t ctl \u{1} é 😀"
        );
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"a":"x"}"#,
            br#"{"a":{}}"#,
            br#"{"a":{"S":"x","N":"1"}}"#,
            br#"{"a":{"Q":"x"}}"#,
            br#"{"a":{"S":1}}"#,
            br#"{"a":{"B":"***"}}"#,
            br#"{"a":{"BOOL":"yes"}}"#,
            br#"{"a":{"L":{}}}"#,
            br#"{"a":{"M":[]}}"#,
            br#"{"a":{"L":[{"S":"ok"},{"X":1}]}}"#,
        ] {
            assert!(
                parse_canonical_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
