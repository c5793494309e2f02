//! Multipart uploads on S3: CreateMultipartUpload, presigned UploadPart URLs,
//! CompleteMultipartUpload and AbortMultipartUpload, with the signer's client and credentials.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use time::OffsetDateTime;

use super::{Presigned, SignError, Signer, add_record_id, presign_error};
use crate::policy::Encryption;

/// A failed S3 multipart call, classified for the API.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// S3 does not know the upload (completed, aborted or expired by a lifecycle rule).
    #[error("S3 has no such upload")]
    NoSuchUpload,
    /// A create-only completion found the key taken (`If-None-Match: *` failed).
    #[error("an object already exists under this key")]
    ObjectExists,
    /// S3 refused the listed parts (a wrong ETag, a part not uploaded, a part too small).
    #[error("S3 refused the parts ({code}): {message}")]
    InvalidParts { code: String, message: String },
    #[error("S3 request failed: {0}")]
    Upstream(String),
}

fn classify<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> MultipartError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_string);
    match code.as_deref() {
        Some("NoSuchUpload") => MultipartError::NoSuchUpload,
        Some("PreconditionFailed") => MultipartError::ObjectExists,
        Some(c @ ("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall")) => {
            MultipartError::InvalidParts {
                code: c.to_string(),
                message: e.message().unwrap_or_default().to_string(),
            }
        }
        _ => MultipartError::Upstream(aws_sdk_s3::error::DisplayErrorContext(e).to_string()),
    }
}

/// A part S3 holds (ListParts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedPart {
    pub part_number: u32,
    /// What CompleteMultipartUpload needs for this part.
    pub etag: String,
    pub size: u64,
}

/// What CreateMultipartUpload is given, already authorized and validated.
#[derive(Debug, Clone)]
pub struct CreateUpload<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub encryption: &'a Encryption,
    pub content_type: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
}

/// One UploadPart URL to sign: its exact length is signed, so S3 takes no other.
#[derive(Debug, Clone)]
pub struct PartSignRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub part_number: u32,
    pub content_length: u64,
    pub expires_in: Duration,
    pub now: SystemTime,
    /// The audit record's id, signed into the URL as `x-presignd-id`.
    pub record_id: &'a str,
}

impl Signer {
    /// Starts a multipart upload with the access point's server-side encryption, content
    /// type and metadata; returns S3's upload id. (SSE-C cannot be started here: S3 wants the
    /// customer's key, which presignd never sees.)
    pub async fn create_multipart_upload(
        &self,
        req: &CreateUpload<'_>,
    ) -> Result<String, MultipartError> {
        let mut op = self
            .client
            .create_multipart_upload()
            .bucket(req.bucket)
            .key(req.key)
            .set_content_type(req.content_type.map(str::to_string));
        for (k, v) in req.metadata {
            op = op.metadata(k, v);
        }
        op = match req.encryption {
            Encryption::None => op,
            Encryption::SseS3 => op.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::SseKms { kms_key_id } => op
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key_id),
            Encryption::SseC => {
                return Err(MultipartError::Upstream(
                    "SSE-C multipart uploads need the customer key".into(),
                ));
            }
        };
        let out = op.send().await.map_err(classify)?;
        out.upload_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| MultipartError::Upstream("S3 returned no upload id".into()))
    }

    /// Completes an upload from its parts `(part_number, etag)`, ascending; returns the
    /// object's ETag. `create_only`: with `If-None-Match: *`, so an existing object is kept.
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        create_only: bool,
    ) -> Result<Option<String>, MultipartError> {
        let parts = parts
            .iter()
            .map(|(n, etag)| {
                CompletedPart::builder()
                    .part_number(i32::try_from(*n).unwrap_or(i32::MAX))
                    .e_tag(etag)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .set_if_none_match(create_only.then(|| "*".to_string()))
            .send()
            .await
            .map_err(classify)?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// The parts S3 holds for an upload, from after `part_number_marker`, at most `max_parts`:
    /// `(parts, the marker of the next page when there is one)`.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: u32,
    ) -> Result<(Vec<ListedPart>, Option<u32>), MultipartError> {
        let out = self
            .client
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .set_part_number_marker(part_number_marker.map(|m| m.to_string()))
            .max_parts(i32::try_from(max_parts).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(classify)?;
        // A part without its number or ETag would look missing and be uploaded again.
        let mut parts = out
            .parts()
            .iter()
            .map(|p| {
                Some(ListedPart {
                    part_number: u32::try_from(p.part_number()?).ok()?,
                    etag: p.e_tag()?.to_string(),
                    size: u64::try_from(p.size().unwrap_or(0)).unwrap_or(0),
                })
            })
            .collect::<Option<Vec<ListedPart>>>()
            .ok_or_else(|| {
                MultipartError::Upstream("ListParts returned a part without number or ETag".into())
            })?;
        parts.sort_by_key(|p| p.part_number);
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_part_number_marker()
                .and_then(|m| m.parse().ok())
                .or_else(|| parts.last().map(|p| p.part_number))
        } else {
            None
        };
        Ok((parts, next))
    }

    /// Aborts an upload: S3 deletes its parts.
    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), MultipartError> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// A presigned UploadPart URL with the part's exact `Content-Length` signed. Lives at
    /// most `expires_in`, shortened to the signing credentials' lifetime.
    pub async fn presign_upload_part(
        &self,
        req: &PartSignRequest<'_>,
    ) -> Result<Presigned, SignError> {
        let creds = self.credentials.current().await?;
        let (expires_in, clamped) = super::clamp(creds.expiry(), req.now, req.expires_in)?;
        let pc = PresigningConfig::builder()
            .start_time(req.now)
            .expires_in(expires_in)
            .build()
            .map_err(|e| SignError::Presign(e.to_string()))?;
        let presigned = self
            .client
            .upload_part()
            .bucket(req.bucket)
            .key(req.key)
            .upload_id(req.upload_id)
            .part_number(i32::try_from(req.part_number).unwrap_or(i32::MAX))
            .content_length(i64::try_from(req.content_length).unwrap_or(i64::MAX))
            .customize()
            .mutate_request(add_record_id(req.record_id))
            .presigned(pc)
            .await
            .map_err(presign_error)?;
        let (url, headers, signature) = self.checked_sdk_output(&presigned, req.record_id)?;
        let expires_at = OffsetDateTime::from(req.now) + expires_in;
        Ok(Presigned {
            url,
            method: "PUT",
            headers,
            expires_at: expires_at.replace_nanosecond(0).unwrap_or(expires_at),
            signature,
            clamped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::S3Config;

    #[tokio::test]
    async fn part_urls_sign_upload_id_part_number_and_length() {
        let cfg = S3Config {
            region: "us-east-1".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".to_string().into()),
            ..S3Config::default()
        };
        let signer = Signer::new(&cfg).await;
        let p = signer
            .presign_upload_part(&PartSignRequest {
                bucket: "acme",
                key: "big/file.bin",
                upload_id: "up/1+2",
                part_number: 7,
                content_length: 5 * 1024 * 1024,
                expires_in: Duration::from_secs(60),
                now: SystemTime::now(),
                record_id: "rec-1",
            })
            .await
            .expect("presign");
        assert_eq!(p.method, "PUT");
        assert!(p.url.contains("partNumber=7"), "{}", p.url);
        assert!(p.url.contains("uploadId=up%2F1%2B2"), "{}", p.url);
        assert!(p.url.contains("x-presignd-id=rec-1"), "{}", p.url);
        assert!(p.url.contains("X-Amz-Expires=60"), "{}", p.url);
        assert!(
            p.url.contains("X-Amz-SignedHeaders=content-length%3Bhost"),
            "the length is signed: {}",
            p.url
        );
        assert_eq!(
            p.headers.get("content-length").map(String::as_str),
            Some("5242880")
        );
    }
}
