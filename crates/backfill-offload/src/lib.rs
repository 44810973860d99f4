//! Items too large for DynamoDB, stored whole in S3 with a small pointer
//! item written to DynamoDB in their place.
//!
//! DynamoDB refuses any item over 400 KB (counted as
//! [`backfill_item::size::item_size`] counts), and a source row with a large
//! text or `jsonb` column can map to one. Dropping such a row would make the
//! copy silently incomplete; truncating it would make it silently wrong. So
//! the whole item goes to S3 as DynamoDB JSON at
//! `s3://{bucket}/{prefix}{table}/{sha256(key JSON)}.json`, and the table
//! gets the key attributes plus [`POINTER_ATTRIBUTE`], from which
//! [`S3Offloader::fetch`] (or any reader, see `docs/OFFLOAD.md`) gets it back.
//!
//! The object name depends only on the table and the key, so writing the
//! same item again (a retried job) overwrites the object with the same bytes,
//! and an item that shrinks back under the limit later leaves at most one
//! stale object per key.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use backfill_item::Item;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The attribute of a pointer item that says where the whole item is.
///
/// An M with `bucket` (S), `key` (S, the object key), `size` (N, bytes of
/// the object) and `sha256` (S, lowercase hex of the object's bytes).
pub const POINTER_ATTRIBUTE: &str = "_backfill_s3";

/// Why an item could not be offloaded or a pointer could not be resolved.
///
/// Every variant about an item names its target table and its key (the key
/// as DynamoDB JSON), so a failure can be traced to the source row.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// An S3 call failed; [`OffloadError::is_retryable`] says whether trying
    /// again may help.
    #[error("table {table}, key {key}: S3 {operation} of {object} failed: {message}")]
    Storage {
        table: String,
        key: String,
        operation: &'static str,
        /// `s3://bucket/key`.
        object: String,
        message: String,
        retryable: bool,
    },
    /// The item, key or pointer given cannot be used as it is.
    #[error("table {table}, key {key}: {reason}")]
    Invalid {
        table: String,
        key: String,
        reason: String,
    },
    /// The object a pointer names is not the one the pointer describes.
    #[error("table {table}, key {key}: {object} does not match its pointer: {reason}")]
    Corrupt {
        table: String,
        key: String,
        /// `s3://bucket/key`.
        object: String,
        reason: String,
    },
    /// The bucket could not be created.
    #[error("S3 bucket {bucket}: {message}")]
    Bucket {
        bucket: String,
        message: String,
        retryable: bool,
    },
}

impl OffloadError {
    /// Whether the same call may succeed if made again: S3 throttling,
    /// timeouts, transport failures and 5xx. A bad item or pointer will be
    /// just as bad next time, and an object that does not match its pointer
    /// needs the pointer read again, not the object.
    pub fn is_retryable(&self) -> bool {
        match self {
            OffloadError::Storage { retryable, .. } | OffloadError::Bucket { retryable, .. } => {
                *retryable
            }
            OffloadError::Invalid { .. } | OffloadError::Corrupt { .. } => false,
        }
    }
}

/// Writes items too large for DynamoDB to one S3 bucket and resolves the
/// pointers it returns.
#[derive(Debug, Clone)]
pub struct S3Offloader {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Offloader {
    /// An offloader writing under `s3://{bucket}/{prefix}`. The prefix is
    /// used as given, so it should end in `/` (or be empty).
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        S3Offloader {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// The bucket objects are written to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key an item of `target_table` with this key is stored at:
    /// `{prefix}{target_table}/{sha256 hex of the key's canonical JSON}.json`.
    ///
    /// The key is hashed rather than spelled out because key values can hold
    /// any bytes and be 2 KB long, neither of which an S3 key tolerates well.
    pub fn object_key(&self, target_table: &str, key: &Item) -> Result<String, OffloadError> {
        let json = canonical_json(key).map_err(|reason| OffloadError::Invalid {
            table: target_table.to_string(),
            key: display_key(key),
            reason,
        })?;
        Ok(format!(
            "{}{target_table}/{}.json",
            self.prefix,
            hex::encode(Sha256::digest(json.as_bytes()))
        ))
    }

    /// Creates the bucket if it does not exist (local stacks; in an account
    /// the bucket is provisioned with its lifecycle and access policies).
    pub async fn ensure_bucket(&self) -> Result<(), OffloadError> {
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that refuses an explicit location constraint.
        if let Some(region) = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_string())
        {
            if region != "us-east-1" {
                req = req.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build(),
                );
            }
        }
        match backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(OffloadError::Bucket {
                bucket: self.bucket.clone(),
                message: format!("CreateBucket failed: {}", backfill_aws::describe(&e)),
                retryable: backfill_aws::is_retryable(&e),
            }),
        }
    }

    /// Stores `item` whole and returns the pointer item to write to
    /// `target_table` instead: the attributes of `key`, plus
    /// [`POINTER_ATTRIBUTE`].
    ///
    /// `key` must be the item's own key attributes. Writing the same item
    /// twice writes the same object twice, so a retry after a failure at
    /// any point is safe.
    pub async fn offload(
        &self,
        target_table: &str,
        key: &Item,
        item: &Item,
    ) -> Result<Item, OffloadError> {
        let invalid = |reason: String| OffloadError::Invalid {
            table: target_table.to_string(),
            key: display_key(key),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("no key attributes given".into()));
        }
        if let Some((name, _)) = key.iter().find(|(name, v)| item.get(*name) != Some(*v)) {
            return Err(invalid(format!(
                "key attribute {name} is missing from the item or differs from it"
            )));
        }
        // A reader tells a pointer from an item by this attribute, so an item
        // that already has it would be taken for a pointer to itself.
        if item.contains_key(POINTER_ATTRIBUTE) {
            return Err(invalid(format!(
                "the item has an attribute named {POINTER_ATTRIBUTE}, which is reserved for pointers to offloaded items"
            )));
        }
        let object = self.object_key(target_table, key)?;
        let body = canonical_json(item).map_err(invalid)?.into_bytes();
        let digest = Sha256::digest(&body);
        let size = body.len();
        backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .content_type("application/json")
                // S3 checks the body against this before storing it, so a
                // corrupted upload fails here instead of at some later read.
                .checksum_sha256(BASE64.encode(digest))
                .body(ByteStream::from(body.clone()))
                .send()
        })
        .await
        .map_err(|e| OffloadError::Storage {
            table: target_table.to_string(),
            key: display_key(key),
            operation: "PutObject",
            object: format!("s3://{}/{object}", self.bucket),
            message: backfill_aws::describe(&e),
            retryable: backfill_aws::is_retryable(&e),
        })?;
        let mut pointer = key.clone();
        pointer.insert(
            POINTER_ATTRIBUTE.to_string(),
            AttributeValue::M(HashMap::from([
                ("bucket".to_string(), AttributeValue::S(self.bucket.clone())),
                ("key".to_string(), AttributeValue::S(object)),
                ("size".to_string(), AttributeValue::N(size.to_string())),
                ("sha256".to_string(), AttributeValue::S(hex::encode(digest))),
            ])),
        );
        Ok(pointer)
    }

    /// The whole item a pointer item stands for, read from S3 and checked
    /// against the pointer's size and hash and its key attributes.
    pub async fn fetch(&self, pointer: &Item) -> Result<Item, OffloadError> {
        let key: Item = pointer
            .iter()
            .filter(|(name, _)| name.as_str() != POINTER_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let location = Pointer::parse(pointer).map_err(|reason| OffloadError::Invalid {
            table: "(unknown)".into(),
            key: display_key(&key),
            reason,
        })?;
        let table = self.table_of(&location.object);
        let corrupt = |reason: String| OffloadError::Corrupt {
            table: table.clone(),
            key: display_key(&key),
            object: location.url(),
            reason,
        };
        let storage = |message: String, retryable: bool| OffloadError::Storage {
            table: table.clone(),
            key: display_key(&key),
            operation: "GetObject",
            object: location.url(),
            message,
            retryable,
        };
        let resp = backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
            self.client
                .get_object()
                .bucket(&location.bucket)
                .key(&location.object)
                .send()
        })
        .await
        .map_err(|e| storage(backfill_aws::describe(&e), backfill_aws::is_retryable(&e)))?;
        // A body cut off mid-stream is a transport failure like any other.
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| storage(format!("reading the body: {e}"), true))?
            .into_bytes();
        if body.len() as u64 != location.size {
            return Err(corrupt(format!(
                "{} bytes, the pointer says {}",
                body.len(),
                location.size
            )));
        }
        let sha = hex::encode(Sha256::digest(&body));
        if sha != location.sha256 {
            return Err(corrupt(format!(
                "SHA-256 {sha}, the pointer says {}",
                location.sha256
            )));
        }
        let item = parse_canonical_json(&body).map_err(&corrupt)?;
        if let Some((name, _)) = key.iter().find(|(name, v)| item.get(*name) != Some(*v)) {
            return Err(corrupt(format!(
                "the stored item's {name} differs from the pointer's"
            )));
        }
        Ok(item)
    }

    /// The table an object was written for, for error messages: the path
    /// segment between the prefix and the file name.
    fn table_of(&self, object: &str) -> String {
        object
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(object)
            .rsplit_once('/')
            .map_or_else(|| "(unknown)".to_string(), |(t, _)| t.to_string())
    }
}

/// Whether an item read from a target table is a pointer to an offloaded
/// item rather than the item itself.
pub fn is_pointer(item: &Item) -> bool {
    item.contains_key(POINTER_ATTRIBUTE)
}

/// Where a pointer says its item is.
struct Pointer {
    bucket: String,
    object: String,
    size: u64,
    sha256: String,
}

impl Pointer {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.object)
    }

    fn parse(item: &Item) -> Result<Pointer, String> {
        let m = match item.get(POINTER_ATTRIBUTE) {
            Some(AttributeValue::M(m)) => m,
            Some(_) => return Err(format!("{POINTER_ATTRIBUTE} is not a map")),
            None => return Err(format!("not a pointer: no {POINTER_ATTRIBUTE} attribute")),
        };
        let text = |field: &str| match m.get(field) {
            Some(AttributeValue::S(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "{POINTER_ATTRIBUTE}.{field} is not a non-empty string"
            )),
        };
        let size = match m.get("size") {
            Some(AttributeValue::N(n)) => n
                .parse::<u64>()
                .map_err(|_| format!("{POINTER_ATTRIBUTE}.size {n:?} is not a byte count"))?,
            _ => return Err(format!("{POINTER_ATTRIBUTE}.size is not a number")),
        };
        Ok(Pointer {
            bucket: text("bucket")?,
            object: text("key")?,
            size,
            sha256: text("sha256")?.to_ascii_lowercase(),
        })
    }
}

/// A key as DynamoDB JSON, for messages; a key that has none (an unknown
/// attribute type) is shown by its attribute names.
fn display_key(key: &Item) -> String {
    canonical_json(key).unwrap_or_else(|_| {
        let mut names: Vec<&str> = key.keys().map(String::as_str).collect();
        names.sort_unstable();
        format!("<{}>", names.join(", "))
    })
}

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

    #[test]
    fn pointer_fields_are_checked() {
        let good = || {
            HashMap::from([
                ("bucket".to_string(), AttributeValue::S("b".into())),
                ("key".to_string(), AttributeValue::S("t/abc.json".into())),
                ("size".to_string(), AttributeValue::N("10".into())),
                ("sha256".to_string(), AttributeValue::S("ABC".into())),
            ])
        };
        let wrap = |m: HashMap<String, AttributeValue>| {
            HashMap::from([(POINTER_ATTRIBUTE.to_string(), AttributeValue::M(m))])
        };
        let p = Pointer::parse(&wrap(good())).unwrap();
        assert_eq!(
            (
                p.bucket.as_str(),
                p.object.as_str(),
                p.size,
                p.sha256.as_str()
            ),
            ("b", "t/abc.json", 10, "abc")
        );
        assert!(Pointer::parse(&Item::new()).is_err());
        for (field, bad) in [
            ("bucket", AttributeValue::S(String::new())),
            ("key", AttributeValue::N("1".into())),
            ("size", AttributeValue::N("-1".into())),
            ("size", AttributeValue::S("10".into())),
        ] {
            let mut m = good();
            m.insert(field.to_string(), bad);
            assert!(Pointer::parse(&wrap(m)).is_err(), "{field}");
        }
    }

    #[test]
    fn errors_name_table_and_key_and_say_whether_to_retry() {
        let e = OffloadError::Storage {
            table: "orders".into(),
            key: r#"{"id":{"N":"1"}}"#.into(),
            operation: "PutObject",
            object: "s3://b/orders/x.json".into(),
            message: "SlowDown".into(),
            retryable: true,
        };
        assert!(e
            .to_string()
            .contains("table orders, key {\"id\":{\"N\":\"1\"}}"));
        assert!(e.is_retryable());
        let e = OffloadError::Invalid {
            table: "orders".into(),
            key: "k".into(),
            reason: "r".into(),
        };
        assert!(!e.is_retryable());
    }
}
