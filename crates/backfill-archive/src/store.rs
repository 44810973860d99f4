//! The archive bucket: where parts and manifests live, and the S3 calls
//! that put them there and read them back.
//!
//! A part becomes visible in one step, or not at all: a small part is one
//! `PutObject`, a large one a multipart upload that only `Complete` makes
//! visible. A worker killed mid-part leaves at most an incomplete upload
//! (never an object), which [`ArchiveStore::abort_stale_uploads`] removes
//! when the table's manifest is written; a retried job writes the same
//! key again, so a range never has two parts.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use backfill_aws::{describe, is_retryable, retry, RetryPolicy};
use sha2::{Digest, Sha256};

/// An S3 call of the archive that failed: the operation and object named.
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} of s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
    /// Whether the same call may succeed later (throttling, network).
    pub retryable: bool,
}

/// The archive's bucket and prefix.
#[derive(Debug, Clone)]
pub struct ArchiveStore {
    client: Client,
    bucket: String,
    prefix: String,
}

impl ArchiveStore {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        ArchiveStore {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `<prefix><schema.table>/run=<run>/`: one directory per table and
    /// run, laid out as a Hive partition so query engines read the table's
    /// runs as one table with a `run` column.
    pub fn run_dir(&self, table: &str, run_id: &str) -> String {
        format!("{}{table}/run={run_id}/", self.prefix)
    }

    /// The part of job `job_id`: its key is the job's, so a retry
    /// replaces it.
    pub fn part_key(&self, table: &str, run_id: &str, job_id: &str) -> String {
        format!("{}part-{job_id}.parquet", self.run_dir(table, run_id))
    }

    /// The run's manifest. Its name starts with `_`, which Hive, Spark,
    /// Trino, Athena and pyarrow's dataset reader skip as metadata.
    pub fn manifest_key(&self, table: &str, run_id: &str) -> String {
        format!("{}_manifest.json", self.run_dir(table, run_id))
    }

    fn err<E>(
        &self,
        operation: &'static str,
        key: &str,
        e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        StoreError {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: describe(e),
            retryable: is_retryable(e),
        }
    }

    /// Creates the bucket if it is missing (local stacks; in an account
    /// it is provisioned with its lifecycle rules and policies).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let req = self.client.create_bucket().bucket(&self.bucket);
        match retry(RetryPolicy::CALL, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("CreateBucket", "", &e)),
        }
    }

    /// Stores `body` at `key` in one request.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let body = bytes::Bytes::from(body);
        retry(RetryPolicy::CALL, || {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()))
                .send()
        })
        .await
        .map_err(|e| self.err("PutObject", key, &e))?;
        Ok(())
    }

    /// The object at `key`, or `None` where there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let resp = retry(RetryPolicy::CALL, || {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        })
        .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None)
            }
            Err(e) => return Err(self.err("GetObject", key, &e)),
        };
        let body = resp.body.collect().await.map_err(|e| StoreError {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: format!("reading the body: {e}"),
            retryable: true,
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// Streams the object at `key` into `out` and returns its length and
    /// SHA-256 (hex), so a part is checked without holding it in memory.
    pub async fn download(
        &self,
        key: &str,
        out: &mut impl Write,
    ) -> Result<(u64, String), StoreError> {
        let resp = retry(RetryPolicy::CALL, || {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        })
        .await
        .map_err(|e| self.err("GetObject", key, &e))?;
        let fail = |message: String| StoreError {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message,
            retryable: true,
        };
        let mut body = resp.body;
        let mut sha = Sha256::new();
        let mut len = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| fail(format!("reading the body: {e}")))?
        {
            sha.update(&chunk);
            len += chunk.len() as u64;
            out.write_all(&chunk)
                .map_err(|e| fail(format!("writing the local copy: {e}")))?;
        }
        Ok((len, hex::encode(sha.finalize())))
    }

    /// Starts a multipart upload of `key`.
    pub async fn start_upload(&self, key: &str) -> Result<Upload, StoreError> {
        let resp = retry(RetryPolicy::CALL, || {
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/vnd.apache.parquet")
                .send()
        })
        .await
        .map_err(|e| self.err("CreateMultipartUpload", key, &e))?;
        let upload_id = resp.upload_id.ok_or_else(|| StoreError {
            operation: "CreateMultipartUpload",
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: "the answer carries no upload id".into(),
            retryable: false,
        })?;
        Ok(Upload {
            store: self.clone(),
            key: key.to_string(),
            upload_id,
            parts: Vec::new(),
        })
    }

    /// Aborts every incomplete multipart upload under `dir`: what workers
    /// killed mid-part left behind (they are never visible as objects, but
    /// S3 bills their stored parts until they are aborted).
    pub async fn abort_stale_uploads(&self, dir: &str) -> Result<usize, StoreError> {
        let mut aborted = 0;
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let resp = retry(RetryPolicy::CALL, || {
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(dir)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone())
                    .send()
            })
            .await
            .map_err(|e| self.err("ListMultipartUploads", dir, &e))?;
            for u in resp.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                retry(RetryPolicy::CALL, || {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                })
                .await
                .map_err(|e| self.err("AbortMultipartUpload", key, &e))?;
                aborted += 1;
            }
            if resp.is_truncated() == Some(true) {
                key_marker = resp.next_key_marker().map(str::to_string);
                id_marker = resp.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(aborted)
    }
}

/// A multipart upload in progress: parts go up in order, and the object
/// appears only when [`Upload::complete`] succeeds.
#[derive(Debug)]
pub struct Upload {
    store: ArchiveStore,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl Upload {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Uploads the next part (every part but the last at least 5 MiB).
    pub async fn part(&mut self, body: Vec<u8>) -> Result<(), StoreError> {
        let number = self.parts.len() as i32 + 1;
        let body = bytes::Bytes::from(body);
        let s = &self.store;
        let resp = retry(RetryPolicy::CALL, || {
            s.client
                .upload_part()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .part_number(number)
                .body(ByteStream::from(body.clone()))
                .send()
        })
        .await
        .map_err(|e| s.err("UploadPart", &self.key, &e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(resp.e_tag)
                .build(),
        );
        Ok(())
    }

    /// Makes the object visible, whole.
    pub async fn complete(self) -> Result<(), StoreError> {
        let s = &self.store;
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts.clone()))
            .build();
        retry(RetryPolicy::CALL, || {
            s.client
                .complete_multipart_upload()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .multipart_upload(done.clone())
                .send()
        })
        .await
        .map_err(|e| s.err("CompleteMultipartUpload", &self.key, &e))?;
        Ok(())
    }

    /// Gives the upload up, best effort: a failed abort leaves what
    /// `abort_stale_uploads` removes later.
    pub async fn abort(self) {
        let s = &self.store;
        let _ = s
            .client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
    }
}
