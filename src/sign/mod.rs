//! Presigning: SigV4 query-string URLs for GET, PUT and DELETE through aws-sdk-s3's presigner,
//! which resolves bucket names, access point ARNs and Object Lambda ARNs to the right hostnames
//! and handles path-style and custom endpoints.

mod credentials;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use time::OffsetDateTime;

use crate::config::S3Config;
use crate::policy::{Encryption, Operation, Target};

pub use credentials::CachedCredentials;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing credentials unavailable: {0}")]
    Credentials(String),
    #[error("signing credentials expire too soon to issue a URL")]
    CredentialsExpiring,
    #[error("presigning failed: {0}")]
    Presign(String),
    #[error("the S3 endpoint produced a plain-http URL")]
    InsecureUrl,
}

/// What to sign, already authorized and validated.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    pub operation: Operation,
    pub target: &'a Target,
    /// The full object key (prefix + key).
    pub key: &'a str,
    pub expires_in: Duration,
    pub now: SystemTime,
    pub encryption: &'a Encryption,
    pub content_type: Option<&'a str>,
    pub content_length: Option<u64>,
    pub checksum_sha256: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
    pub response_content_disposition: Option<&'a str>,
    pub response_content_type: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Presigned {
    pub url: String,
    pub method: &'static str,
    /// Exactly the signed headers the client must send.
    pub headers: BTreeMap<String, String>,
    pub expires_at: OffsetDateTime,
    /// The `X-Amz-Signature` value (for the audit digest; never logged or stored).
    pub signature: String,
    /// True when the URL was shortened to the signing credentials' lifetime.
    pub clamped: bool,
}

#[derive(Clone)]
pub struct Signer {
    client: aws_sdk_s3::Client,
    credentials: CachedCredentials,
    allow_insecure: bool,
}

impl Signer {
    pub async fn new(cfg: &S3Config) -> Signer {
        let credentials = CachedCredentials::from_config(cfg).await;
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(cfg.force_path_style)
            .credentials_provider(credentials.clone())
            // A presigned PUT must not carry a checksum of an empty body; checksums are only
            // signed when the caller declares one.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        Signer {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            credentials,
            allow_insecure: cfg.allow_insecure_endpoint,
        }
    }

    /// The client the signer uses (shares its credentials and endpoint settings).
    pub fn s3_client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub async fn presign(&self, req: &SignRequest<'_>) -> Result<Presigned, SignError> {
        let creds = self.credentials.current().await?;
        let mut expires_in = req.expires_in;
        let mut clamped = false;
        if let Some(expiry) = creds.expiry() {
            let left = expiry.duration_since(req.now).unwrap_or(Duration::ZERO);
            if left < Duration::from_secs(1) {
                return Err(SignError::CredentialsExpiring);
            }
            if left < expires_in {
                expires_in = Duration::from_secs(left.as_secs());
                clamped = true;
            }
        }
        let pc = PresigningConfig::builder()
            .start_time(req.now)
            .expires_in(expires_in)
            .build()
            .map_err(|e| SignError::Presign(e.to_string()))?;
        let presigned = self.presigned(req, pc).await?;
        let url = presigned.uri().to_string();
        if !url.starts_with("https://") && !self.allow_insecure {
            return Err(SignError::InsecureUrl);
        }
        let signature = query_param(&url, "X-Amz-Signature")
            .ok_or_else(|| SignError::Presign("no X-Amz-Signature in URL".into()))?
            .to_string();
        let headers = presigned
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let expires_at = OffsetDateTime::from(req.now) + expires_in;
        Ok(Presigned {
            url,
            method: req.operation.http_method(),
            headers,
            expires_at: expires_at.replace_nanosecond(0).unwrap_or(expires_at),
            signature,
            clamped,
        })
    }

    async fn presigned(
        &self,
        req: &SignRequest<'_>,
        pc: PresigningConfig,
    ) -> Result<PresignedRequest, SignError> {
        let bucket = req.target.sdk_bucket();
        let sse_c = matches!(req.encryption, Encryption::SseC);
        match req.operation {
            Operation::Get => {
                let mut op = self
                    .client
                    .get_object()
                    .bucket(bucket)
                    .key(req.key)
                    .set_response_content_disposition(
                        req.response_content_disposition.map(str::to_string),
                    )
                    .set_response_content_type(req.response_content_type.map(str::to_string));
                if sse_c {
                    op = op.sse_customer_algorithm("AES256");
                }
                op.presigned(pc).await.map_err(presign_error)
            }
            Operation::Put => {
                let mut op = self
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(req.key)
                    .set_content_type(req.content_type.map(str::to_string))
                    .set_checksum_sha256(req.checksum_sha256.map(str::to_string));
                if let Some(len) = req.content_length {
                    op = op.content_length(i64::try_from(len).unwrap_or(i64::MAX));
                }
                for (k, v) in req.metadata {
                    op = op.metadata(k, v);
                }
                op = match req.encryption {
                    Encryption::None => op,
                    Encryption::SseS3 => {
                        op.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
                    }
                    Encryption::SseKms { kms_key_id } => op
                        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                        .ssekms_key_id(kms_key_id),
                    Encryption::SseC => op.sse_customer_algorithm("AES256"),
                };
                op.presigned(pc).await.map_err(presign_error)
            }
            Operation::Delete => self
                .client
                .delete_object()
                .bucket(bucket)
                .key(req.key)
                .presigned(pc)
                .await
                .map_err(presign_error),
        }
    }
}

fn presign_error<E: std::error::Error + 'static>(e: E) -> SignError {
    SignError::Presign(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

/// The raw (still percent-encoded) value of a query parameter.
fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
