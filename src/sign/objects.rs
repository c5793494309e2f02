//! What verification asks S3 with presignd's own credentials: describe an object
//! (HeadObject), hash it when S3 keeps no SHA-256 of it (a streamed GetObject), and handle a
//! rejected one (DeleteObject; CopyObject then DeleteObject to quarantine it).

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, MetadataDirective};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::Signer;
use crate::uploads::verify::{Found, Observed};

/// A failed object call.
#[derive(Debug, thiserror::Error)]
#[error("S3 request failed: {0}")]
pub struct ObjectError(String);

fn upstream<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ObjectError(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl Signer {
    /// The object under `key` as S3 describes it, with a whole-object SHA-256 when S3 keeps
    /// one. `customer_key`: the access point uses SSE-C, so S3 answers 400 to a HeadObject
    /// without the key — that answer means the object is there, encrypted with a customer key.
    pub async fn observe_object(
        &self,
        bucket: &str,
        key: &str,
        customer_key: bool,
    ) -> Result<Observed, ObjectError> {
        let head = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let out = match head {
            Ok(out) => out,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                return match status {
                    Some(404) => Ok(Observed::Missing),
                    Some(400) if customer_key => Ok(Observed::CustomerEncrypted),
                    _ => Err(upstream(e)),
                };
            }
        };
        // A composite checksum (multipart, `…-N`) is not the object's SHA-256.
        let whole = !matches!(out.checksum_type(), Some(ChecksumType::Composite));
        let checksum = out
            .checksum_sha256()
            .filter(|c| whole && !c.contains('-'))
            .map(str::to_string);
        Ok(Observed::Found(Found {
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            content_type: out.content_type().map(str::to_string),
            checksum_sha256: checksum,
            sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
            sse_kms_key_id: out.ssekms_key_id().map(str::to_string),
            metadata: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_else(BTreeMap::new),
            etag: out.e_tag().map(str::to_string),
        }))
    }

    /// The base64 SHA-256 of the object's bytes, read as a stream (for stores that keep no
    /// checksum, such as radosgw before Squid); with `if_match`, only of that version (S3
    /// answers 412 if it changed). `None`: the object is gone.
    pub async fn object_sha256(
        &self,
        bucket: &str,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<Option<String>, ObjectError> {
        let got = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await;
        let mut body = match got {
            Ok(out) => out.body,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(upstream(e)),
        };
        let mut hash = Sha256::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| ObjectError(format!("reading the object: {e}")))?
        {
            hash.update(&chunk);
        }
        Ok(Some(
            base64::engine::general_purpose::STANDARD.encode(hash.finalize()),
        ))
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(upstream)?;
        Ok(())
    }

    /// Moves the object to `to` in the same bucket: CopyObject (metadata kept), then
    /// DeleteObject. (CopyObject takes objects up to 5 GiB.)
    pub async fn quarantine_object(
        &self,
        bucket: &str,
        key: &str,
        to: &str,
    ) -> Result<(), ObjectError> {
        self.client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(format!("{bucket}/{}", super::percent_encode_path(key)))
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
            .map_err(upstream)?;
        self.delete_object(bucket, key).await
    }
}
