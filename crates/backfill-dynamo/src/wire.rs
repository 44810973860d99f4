//! The JSON body of a `BatchWriteItem` of puts, written straight from the
//! items.
//!
//! The SDK's serializer was a seventh of a worker's CPU on 1 KB rows: it
//! checks strings for escapes a byte at a time and grows its output buffer by
//! doubling. Here the buffer is sized from the items up front and plain
//! strings are checked many bytes at a time and copied whole. The body is
//! sent through the SDK all the same (signed, retried, answered by its
//! deserializer); see `resend.rs` for how it takes the place of the SDK's.
//! The layout is DynamoDB's JSON protocol (`AttributeValue` as a one-key
//! object, `B` in standard base64), which an integration test holds to the
//! emulator's strict parser and a unit test to serde_json.

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_item::{Shape, ShapedItem};
use base64::Engine as _;

use crate::Item;

/// The body of a `BatchWriteItem` putting `items` into `table` and asking
/// for the consumed capacity in total, or `None` when an item holds an
/// attribute type this SDK version knows and this writer does not (the
/// caller then lets the SDK serialize).
pub(crate) fn batch_put_body(table: &str, items: &[Item]) -> Option<Vec<u8>> {
    body(table, items.iter().map(pairs))
}

/// [`batch_put_body`] for items of `shape`.
pub(crate) fn batch_put_body_shaped(
    table: &str,
    shape: &Shape,
    items: &[ShapedItem],
) -> Option<Vec<u8>> {
    body(table, items.iter().map(|item| shape.attributes(item)))
}

fn pairs(m: &Item) -> impl Iterator<Item = (&str, &AttributeValue)> + Clone {
    m.iter().map(|(k, v)| (k.as_str(), v))
}

fn body<'a, A>(table: &str, items: impl Iterator<Item = A> + Clone) -> Option<Vec<u8>>
where
    A: Iterator<Item = (&'a str, &'a AttributeValue)> + Clone,
{
    let guess: usize = items.clone().map(approx_json_len).sum::<usize>() + table.len() + 96;
    let mut out = Vec::with_capacity(guess);
    out.extend_from_slice(b"{\"RequestItems\":{");
    string(&mut out, table);
    out.extend_from_slice(b":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"PutRequest\":{\"Item\":");
        map(&mut out, item)?;
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]},\"ReturnConsumedCapacity\":\"TOTAL\"}");
    Some(out)
}

fn map<'a>(
    out: &mut Vec<u8>,
    m: impl Iterator<Item = (&'a str, &'a AttributeValue)>,
) -> Option<()> {
    out.push(b'{');
    for (i, (k, v)) in m.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        value(out, v)?;
    }
    out.push(b'}');
    Some(())
}

fn value(out: &mut Vec<u8>, v: &AttributeValue) -> Option<()> {
    use AttributeValue as A;
    let list =
        |out: &mut Vec<u8>, tag: &[u8], n: usize, each: &mut dyn FnMut(&mut Vec<u8>, usize)| {
            out.extend_from_slice(tag);
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                each(out, i);
            }
            out.extend_from_slice(b"]}");
        };
    match v {
        A::S(s) => {
            out.extend_from_slice(b"{\"S\":");
            string(out, s);
            out.push(b'}');
        }
        A::N(n) => {
            out.extend_from_slice(b"{\"N\":");
            string(out, n);
            out.push(b'}');
        }
        A::B(b) => {
            out.extend_from_slice(b"{\"B\":");
            blob(out, b.as_ref());
            out.push(b'}');
        }
        A::Bool(b) => out.extend_from_slice(if *b {
            b"{\"BOOL\":true}"
        } else {
            b"{\"BOOL\":false}"
        }),
        A::Null(b) => out.extend_from_slice(if *b {
            b"{\"NULL\":true}"
        } else {
            b"{\"NULL\":false}"
        }),
        A::Ss(ss) => list(out, b"{\"SS\":", ss.len(), &mut |o, i| string(o, &ss[i])),
        A::Ns(ns) => list(out, b"{\"NS\":", ns.len(), &mut |o, i| string(o, &ns[i])),
        A::Bs(bs) => list(out, b"{\"BS\":", bs.len(), &mut |o, i| {
            blob(o, bs[i].as_ref())
        }),
        A::L(l) => {
            out.extend_from_slice(b"{\"L\":[");
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, x)?;
            }
            out.extend_from_slice(b"]}");
        }
        A::M(m) => {
            out.extend_from_slice(b"{\"M\":");
            map(out, pairs(m))?;
            out.push(b'}');
        }
        _ => return None,
    }
    Some(())
}

fn blob(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(b, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

/// A JSON string: copied whole when nothing in it needs escaping (checked
/// in chunks without an early exit, which the compiler vectorizes), else
/// escaped as JSON requires (UTF-8 beyond ASCII stays as it is, as the
/// SDK sends it).
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let plain = bytes.chunks(32).all(|chunk| {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
    });
    out.push(b'"');
    if plain {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
                _ => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// About how many bytes an item takes in JSON, for sizing the buffer once.
fn approx_json_len<'a>(item: impl Iterator<Item = (&'a str, &'a AttributeValue)>) -> usize {
    fn v(a: &AttributeValue) -> usize {
        use AttributeValue as A;
        12 + match a {
            A::S(s) | A::N(s) => s.len(),
            A::B(b) => b.as_ref().len() * 4 / 3 + 4,
            A::L(l) => l.iter().map(v).sum(),
            A::M(m) => m.iter().map(|(k, x)| k.len() + 4 + v(x)).sum(),
            A::Ss(s) | A::Ns(s) => s.iter().map(|x| x.len() + 3).sum(),
            A::Bs(b) => b.iter().map(|x| x.as_ref().len() * 4 / 3 + 7).sum(),
            _ => 8,
        }
    }
    32 + item.map(|(k, a)| k.len() + 4 + v(a)).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    /// DynamoDB's JSON form of an attribute, built with serde_json.
    fn reference(a: &AttributeValue) -> Value {
        use AttributeValue as A;
        let b64 = |b: &Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
        match a {
            A::S(s) => json!({ "S": s }),
            A::N(n) => json!({ "N": n }),
            A::B(b) => json!({ "B": b64(b) }),
            A::Bool(b) => json!({ "BOOL": b }),
            A::Null(b) => json!({ "NULL": b }),
            A::Ss(s) => json!({ "SS": s }),
            A::Ns(s) => json!({ "NS": s }),
            A::Bs(s) => json!({ "BS": s.iter().map(b64).collect::<Vec<_>>() }),
            A::L(l) => json!({ "L": l.iter().map(reference).collect::<Vec<_>>() }),
            A::M(m) => {
                json!({ "M": m.iter().map(|(k, v)| (k.clone(), reference(v))).collect::<serde_json::Map<_, _>>() })
            }
            _ => unreachable!("not used in these tests"),
        }
    }

    fn tricky_item(i: usize) -> Item {
        let controls: String = (0u8..0x20).map(char::from).collect();
        HashMap::from([
            ("id".to_string(), AttributeValue::N(i.to_string())),
            ("plain".to_string(), AttributeValue::S("x".repeat(100 + i))),
            (
                "quotes \"and\" \\".to_string(),
                AttributeValue::S("a\"b\\c/d".into()),
            ),
            ("controls".to_string(), AttributeValue::S(controls)),
            (
                "unicode".to_string(),
                AttributeValue::S("é ü 漢字 🦀 \u{7f}".into()),
            ),
            ("empty".to_string(), AttributeValue::S(String::new())),
            (
                "bytes".to_string(),
                AttributeValue::B(Blob::new((0..=255u8).collect::<Vec<_>>())),
            ),
            (
                "few".to_string(),
                AttributeValue::B(Blob::new(vec![1u8; i % 4])),
            ),
            ("yes".to_string(), AttributeValue::Bool(true)),
            ("no".to_string(), AttributeValue::Bool(false)),
            ("null".to_string(), AttributeValue::Null(true)),
            (
                "ss".to_string(),
                AttributeValue::Ss(vec!["a".into(), "b\n".into()]),
            ),
            (
                "ns".to_string(),
                AttributeValue::Ns(vec!["1".into(), "-2.5E3".into()]),
            ),
            (
                "bs".to_string(),
                AttributeValue::Bs(vec![Blob::new(vec![0u8, 255])]),
            ),
            (
                "nested".to_string(),
                AttributeValue::M(HashMap::from([(
                    "l".to_string(),
                    AttributeValue::L(vec![
                        AttributeValue::S("in\tlist".into()),
                        AttributeValue::M(HashMap::new()),
                        AttributeValue::L(vec![]),
                    ]),
                )])),
            ),
        ])
    }

    #[test]
    fn the_body_is_dynamodbs_json_for_every_type() {
        let items: Vec<Item> = (0..25).map(tricky_item).collect();
        let body = batch_put_body("tab\"le", &items).expect("every type is written");
        let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
        let expected = json!({
            "RequestItems": {
                "tab\"le": items.iter().map(|it| json!({
                    "PutRequest": { "Item": it.iter().map(|(k, v)| (k.clone(), reference(v))).collect::<serde_json::Map<_, _>>() }
                })).collect::<Vec<_>>()
            },
            "ReturnConsumedCapacity": "TOTAL"
        });
        assert_eq!(parsed, expected);
    }

    #[test]
    fn shaped_items_make_the_same_body() {
        let items: Vec<Item> = (0..25).map(tricky_item).collect();
        let mut names: Vec<&str> = items[0].keys().map(String::as_str).collect();
        // A column every item lacks (an omitted NULL) is left out of the body.
        names.push("absent");
        let shape = Shape::new(&names, ["pk"]);
        let shaped: Vec<ShapedItem> = items
            .iter()
            .map(|i| {
                shape
                    .shape_item(i.clone())
                    .expect("every name is in the shape")
            })
            .collect();
        let parse = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).expect("valid JSON");
        let from_shaped = parse(batch_put_body_shaped("t", &shape, &shaped).unwrap());
        assert_eq!(from_shaped, parse(batch_put_body("t", &items).unwrap()));
        assert!(
            !String::from_utf8_lossy(&serde_json::to_vec(&from_shaped).unwrap()).contains("absent")
        );
        // A name outside the shape is refused, not dropped.
        let mut extra = items[0].clone();
        extra.insert("other".into(), AttributeValue::Bool(true));
        assert!(shape.shape_item(extra).is_none());
    }

    #[test]
    fn the_size_guess_is_close() {
        let items: Vec<Item> = (0..25).map(tricky_item).collect();
        let body = batch_put_body("t", &items).unwrap();
        let guess: usize = items.iter().map(|i| approx_json_len(pairs(i))).sum();
        assert!(
            guess * 2 > body.len() && guess < body.len() * 2,
            "{guess} vs {}",
            body.len()
        );
    }
}
