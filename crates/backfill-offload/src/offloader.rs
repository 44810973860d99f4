//! The [`S3Offloader`]: writing oversize items to S3 and reading them back.
//!
//! The only part of the crate that does I/O; naming objects, the JSON
//! format and the pointer layout are pure and live beside it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use backfill_item::Item;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::display_key;
use crate::pointer::Pointer;
use crate::{canonical_json, parse_canonical_json, OffloadError, POINTER_ATTRIBUTE};

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
