//! Pointer items: what DynamoDB holds in place of an offloaded item.
//!
//! The pointer's layout is a contract with every reader of the target
//! table (docs/OFFLOAD.md), so its attribute and its parsing are kept
//! apart from the S3 calls that use them.

use aws_sdk_dynamodb::types::AttributeValue;
use backfill_item::Item;

/// The attribute of a pointer item that says where the whole item is.
///
/// An M with `bucket` (S), `key` (S, the object key), `size` (N, bytes of
/// the object) and `sha256` (S, lowercase hex of the object's bytes).
pub const POINTER_ATTRIBUTE: &str = "_backfill_s3";

/// Whether an item read from a target table is a pointer to an offloaded
/// item rather than the item itself.
pub fn is_pointer(item: &Item) -> bool {
    item.contains_key(POINTER_ATTRIBUTE)
}

/// Where a pointer says its item is.
pub(crate) struct Pointer {
    pub(crate) bucket: String,
    pub(crate) object: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

impl Pointer {
    pub(crate) fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.object)
    }

    pub(crate) fn parse(item: &Item) -> Result<Pointer, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
