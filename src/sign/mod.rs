//! Presigning: SigV4 query-string URLs for GET, PUT and DELETE. Plain buckets are signed by
//! the fast path in `fast` (byte-identical to the SDK, ~20× cheaper); everything else (access
//! point and Object Lambda ARNs, unusual endpoints) through aws-sdk-s3's presigner, which
//! resolves bucket names and ARNs to the right hostnames and handles path-style and custom
//! endpoints.

mod credentials;
mod fast;
pub mod multipart;
pub mod objects;
mod post_policy;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use time::OffsetDateTime;

use crate::config::S3Config;
use crate::policy::{Encryption, Operation, Target};

pub use credentials::CachedCredentials;
pub use post_policy::{PostKey, PostRequest, PresignedPost};

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
    /// The audit record's id, signed into the URL as `x-presignd-id` (S3 ignores `x-` query
    /// parameters but writes them to its server access logs, which thus join to the record).
    pub record_id: &'a str,
    /// PUT only: sign `If-None-Match: *`, so S3 refuses to replace an existing object.
    pub create_only: bool,
}

/// The query parameter that carries the audit record id.
pub const RECORD_ID_PARAM: &str = "x-presignd-id";

/// The headers a presigned request must be sent with, by lowercase name. Most names are
/// fixed (`content-type`, `x-amz-server-side-encryption`, …) and borrowed, not allocated.
pub type SignedHeaders = BTreeMap<Cow<'static, str>, String>;

#[derive(Clone)]
pub struct Presigned {
    pub url: String,
    pub method: &'static str,
    /// Exactly the signed headers the client must send.
    pub headers: SignedHeaders,
    pub expires_at: OffsetDateTime,
    /// The `X-Amz-Signature` value (for the audit digest; never logged or stored).
    pub signature: String,
    /// True when the URL was shortened to the signing credentials' lifetime.
    pub clamped: bool,
}

/// The URL and signature are bearer credentials: never in a debug print.
impl std::fmt::Debug for Presigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigned")
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("expires_at", &self.expires_at)
            .field("clamped", &self.clamped)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Signer {
    client: aws_sdk_s3::Client,
    credentials: CachedCredentials,
    allow_insecure: bool,
    /// `None` when the configuration is outside the fast path (every URL then goes through
    /// the SDK). Shared by clones so they share its signing-key cache.
    fast: Option<Arc<fast::FastSigner>>,
}

/// Which signer `presign_via` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The fast path where it applies, else the SDK.
    Auto,
    /// Only the fast path; `None` where it does not apply.
    Fast,
    /// Only the SDK.
    Sdk,
}

/// The lifetime a signature (URL, part URL or POST policy) may have: `wanted`, shortened to
/// the credentials' expiry (and whether it was); an error when they are about to lapse.
pub(crate) fn clamp(
    expiry: Option<SystemTime>,
    now: SystemTime,
    wanted: Duration,
) -> Result<(Duration, bool), SignError> {
    let Some(expiry) = expiry else {
        return Ok((wanted, false));
    };
    let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    if left < Duration::from_secs(1) {
        return Err(SignError::CredentialsExpiring);
    }
    if left < wanted {
        return Ok((Duration::from_secs(left.as_secs()), true));
    }
    Ok((wanted, false))
}

impl Signer {
    pub async fn new(cfg: &S3Config) -> Signer {
        Signer::with_credentials(cfg, CachedCredentials::from_config(cfg).await)
    }

    pub fn with_credentials(cfg: &S3Config, credentials: CachedCredentials) -> Signer {
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(cfg.force_path_style)
            .credentials_provider(credentials.clone())
            // `CachedCredentials` caches: a second cache in the SDK could sign with older
            // credentials than the ones whose expiry bounds the URL.
            .identity_cache(aws_sdk_s3::config::IdentityCache::no_cache())
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
            fast: fast::FastSigner::new(cfg).map(Arc::new),
        }
    }

    /// The client the signer uses (shares its credentials and endpoint settings).
    pub fn s3_client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub async fn presign(&self, req: &SignRequest<'_>) -> Result<Presigned, SignError> {
        match self.presign_via(req, Via::Auto).await? {
            Some(p) => Ok(p),
            None => Err(SignError::Presign("no signer applies".into())),
        }
    }

    /// Always through aws-sdk-s3's presigner: the reference the fast path is tested and
    /// benchmarked against.
    pub async fn presign_sdk(&self, req: &SignRequest<'_>) -> Result<Presigned, SignError> {
        match self.presign_via(req, Via::Sdk).await? {
            Some(p) => Ok(p),
            None => Err(SignError::Presign("no signer applies".into())),
        }
    }

    /// Only the fast path: `Ok(None)` where it does not apply (what `presign` then hands to
    /// the SDK). For tests and benchmarks.
    pub async fn presign_fast(
        &self,
        req: &SignRequest<'_>,
    ) -> Result<Option<Presigned>, SignError> {
        self.presign_via(req, Via::Fast).await
    }

    async fn presign_via(
        &self,
        req: &SignRequest<'_>,
        via: Via,
    ) -> Result<Option<Presigned>, SignError> {
        let creds = self.credentials.current().await?;
        let (expires_in, clamped) = clamp(creds.expiry(), req.now, req.expires_in)?;
        let pc = PresigningConfig::builder()
            .start_time(req.now)
            .expires_in(expires_in)
            .build()
            .map_err(|e| SignError::Presign(e.to_string()))?;
        let expires_at = OffsetDateTime::from(req.now) + expires_in;
        let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
        if via != Via::Sdk {
            let fast = self.fast.as_deref().and_then(|f| Some((f, f.route(req)?)));
            if let Some((fast, route)) = fast {
                if !fast.is_https() && !self.allow_insecure {
                    return Err(SignError::InsecureUrl);
                }
                let signed = fast.sign(&creds, req, route, expires_in);
                return Ok(Some(Presigned {
                    url: signed.url,
                    method: req.operation.http_method(),
                    headers: signed.headers,
                    expires_at,
                    signature: signed.signature,
                    clamped,
                }));
            }
            if via == Via::Fast {
                return Ok(None);
            }
        }
        let presigned = self.presigned(req, pc).await?;
        let (url, headers, signature) = self.checked_sdk_output(&presigned, req.record_id)?;
        Ok(Some(Presigned {
            url,
            method: req.operation.http_method(),
            headers,
            expires_at,
            signature,
            clamped,
        }))
    }

    /// An SDK-presigned request as presignd hands it out: its URL (refused when plain HTTP is
    /// not allowed; it must carry the record id), the headers to send and the signature.
    fn checked_sdk_output(
        &self,
        presigned: &PresignedRequest,
        record_id: &str,
    ) -> Result<(String, SignedHeaders, String), SignError> {
        let url = presigned.uri().to_string();
        if !url.starts_with("https://") && !self.allow_insecure {
            return Err(SignError::InsecureUrl);
        }
        let signature = query_param(&url, "X-Amz-Signature")
            .ok_or_else(|| SignError::Presign("no X-Amz-Signature in URL".into()))?
            .to_string();
        if query_param(&url, RECORD_ID_PARAM) != Some(percent_encode(record_id).as_str()) {
            return Err(SignError::Presign(format!("no {RECORD_ID_PARAM} in URL")));
        }
        let headers = presigned
            .headers()
            .map(|(k, v)| (Cow::Owned(k.to_ascii_lowercase()), v.to_string()))
            .collect();
        Ok((url, headers, signature))
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
                op.customize()
                    .mutate_request(add_record_id(req.record_id))
                    .presigned(pc)
                    .await
                    .map_err(presign_error)
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
                if req.create_only {
                    op = op.if_none_match("*");
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
                op.customize()
                    .mutate_request(add_record_id(req.record_id))
                    .presigned(pc)
                    .await
                    .map_err(presign_error)
            }
            Operation::Delete => self
                .client
                .delete_object()
                .bucket(bucket)
                .key(req.key)
                .customize()
                .mutate_request(add_record_id(req.record_id))
                .presigned(pc)
                .await
                .map_err(presign_error),
        }
    }
}

/// Appends `x-presignd-id=<id>` to the request before it is signed, so the parameter is
/// covered by the signature (changing or removing it breaks the URL).
fn add_record_id(
    id: &str,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    let param = format!("{RECORD_ID_PARAM}={}", percent_encode(id));
    move |req| {
        let sep = if req.uri().contains('?') { '&' } else { '?' };
        let uri = format!("{}{sep}{param}", req.uri());
        if let Err(e) = req.set_uri(uri) {
            // Caught below: a URL without its record id is never issued.
            tracing::error!(error = %e, "cannot add the record id to the URL");
        }
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters (what SigV4 expects).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`percent_encode`] for a key in a path (CopyObject's `x-amz-copy-source`): `/` stays.
fn percent_encode_path(key: &str) -> String {
    key.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn presign_error<E: std::error::Error + 'static>(e: E) -> SignError {
    SignError::Presign(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

/// Whether URLs for `target` can be signed with this S3 configuration; checked when access
/// points are loaded so a misfit fails at startup, not as a 503 per request.
pub fn check_target(cfg: &S3Config, target: &Target) -> Result<(), String> {
    let arn = match target {
        Target::Bucket(_) => return Ok(()),
        Target::AccessPointArn(arn) | Target::ObjectLambdaArn(arn) => arn,
    };
    if cfg.force_path_style {
        return Err("an access point ARN cannot be reached with s3.force_path_style = true".into());
    }
    if cfg.endpoint.is_some() {
        return Err("an access point ARN needs AWS S3 endpoints, but s3.endpoint is set".into());
    }
    let partition = if cfg.region.starts_with("cn-") {
        "aws-cn"
    } else if cfg.region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    if arn.partition != partition {
        return Err(format!(
            "the ARN is in partition {}, but s3.region {} is in {partition}",
            arn.partition, cfg.region
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;

    fn aws_config() -> S3Config {
        S3Config {
            region: "us-east-1".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".to_string().into()),
            ..S3Config::default()
        }
    }

    fn request<'a>(
        target: &'a Target,
        op: Operation,
        metadata: &'a BTreeMap<String, String>,
    ) -> SignRequest<'a> {
        SignRequest {
            operation: op,
            target,
            key: "avatars/alice/a b+c=d\u{e9}.png",
            expires_in: Duration::from_secs(600),
            now: SystemTime::now(),
            encryption: &Encryption::None,
            content_type: None,
            content_length: None,
            checksum_sha256: None,
            metadata,
            response_content_disposition: None,
            response_content_type: None,
            record_id: "0190b4c2-1f2a-7c3d-8e4f-5a6b7c8d9e0f",
            create_only: false,
        }
    }

    fn host(url: &str) -> &str {
        url.trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn buckets_and_arns_get_their_hostnames() {
        let signer = Signer::new(&aws_config()).await;
        let none = BTreeMap::new();
        let cases = [
            (
                "acme-user-content",
                "acme-user-content.s3.us-east-1.amazonaws.com",
            ),
            (
                "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads",
                "uploads-123456789012.s3-accesspoint.us-east-1.amazonaws.com",
            ),
            (
                "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/redact",
                "redact-123456789012.s3-object-lambda.us-east-1.amazonaws.com",
            ),
        ];
        for (bucket, expected) in cases {
            let target: Target = bucket.parse().expect("target");
            let p = signer
                .presign(&request(&target, Operation::Get, &none))
                .await
                .expect("presign");
            assert!(p.url.starts_with("https://"), "{}", p.url);
            assert_eq!(host(&p.url), expected, "{bucket}");
            assert!(
                p.url.contains("/alice/a%20b%2Bc%3Dd%C3%A9.png?"),
                "key is encoded: {}",
                p.url
            );
            assert!(p.url.contains("X-Amz-Expires=600"));
        }
        let olap: Target = "arn:aws:s3-object-lambda:us-east-1:123456789012:accesspoint/redact"
            .parse()
            .expect("target");
        let p = signer
            .presign(&request(&olap, Operation::Get, &none))
            .await
            .expect("presign");
        assert!(
            p.url.contains("%2Fs3-object-lambda%2Faws4_request"),
            "signed for s3-object-lambda: {}",
            p.url
        );
    }

    #[test]
    fn arn_targets_need_aws_endpoints() {
        let arn: Target = "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads"
            .parse()
            .expect("target");
        assert_eq!(check_target(&aws_config(), &arn), Ok(()));
        let mut path_style = aws_config();
        path_style.force_path_style = true;
        assert!(check_target(&path_style, &arn).is_err());
        let mut custom = aws_config();
        custom.endpoint = Some("https://minio.example".into());
        assert!(check_target(&custom, &arn).is_err());
        assert_eq!(
            check_target(&custom, &"plain-bucket".parse().expect("target")),
            Ok(())
        );
        let mut china = aws_config();
        china.region = "cn-north-1".into();
        assert!(check_target(&china, &arn).is_err());
    }

    #[tokio::test]
    async fn path_style_custom_endpoint_and_the_insecure_flag() {
        let mut cfg = aws_config();
        cfg.endpoint = Some("http://127.0.0.1:9000".into());
        cfg.force_path_style = true;
        let target: Target = "media".parse().expect("target");
        let none = BTreeMap::new();
        let refused = Signer::new(&cfg)
            .await
            .presign(&request(&target, Operation::Get, &none))
            .await;
        assert!(
            matches!(refused, Err(SignError::InsecureUrl)),
            "plain http needs the dev flag"
        );
        cfg.allow_insecure_endpoint = true;
        let p = Signer::new(&cfg)
            .await
            .presign(&request(&target, Operation::Get, &none))
            .await
            .expect("presign");
        assert!(
            p.url
                .starts_with("http://127.0.0.1:9000/media/avatars/alice/"),
            "{}",
            p.url
        );
    }

    #[tokio::test]
    async fn every_url_carries_its_record_id() {
        let signer = Signer::new(&aws_config()).await;
        let target: Target = "media".parse().expect("target");
        let none = BTreeMap::new();
        for op in [Operation::Get, Operation::Put, Operation::Delete] {
            let mut req = request(&target, op, &none);
            req.record_id = "id with/odd+chars";
            let p = signer.presign(&req).await.expect("presign");
            assert_eq!(
                super::query_param(&p.url, RECORD_ID_PARAM),
                Some("id%20with%2Fodd%2Bchars"),
                "{op:?}: {}",
                p.url
            );
        }
    }

    #[tokio::test]
    async fn put_signs_exactly_the_declared_headers() {
        let signer = Signer::new(&aws_config()).await;
        let target: Target = "media".parse().expect("target");
        let metadata = BTreeMap::from([("cse-alg".to_string(), "AES-GCM".to_string())]);
        let kms = Encryption::SseKms {
            kms_key_id: "alias/uploads".into(),
        };
        let mut req = request(&target, Operation::Put, &metadata);
        req.encryption = &kms;
        req.content_type = Some("image/png");
        req.content_length = Some(42);
        req.checksum_sha256 = Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let p = signer.presign(&req).await.expect("presign");
        assert_eq!(p.method, "PUT");
        let names: Vec<&str> = p.headers.keys().map(|k| k.as_ref()).collect();
        for h in [
            "content-type",
            "content-length",
            "x-amz-server-side-encryption",
            "x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-checksum-sha256",
            "x-amz-meta-cse-alg",
        ] {
            assert!(names.contains(&h), "{h} is signed and returned: {names:?}");
        }
        assert_eq!(p.headers["x-amz-server-side-encryption"], "aws:kms");
        let signed = super::query_param(&p.url, "X-Amz-SignedHeaders").expect("signed headers");
        for h in &names {
            assert!(signed.contains(h), "{h} is in X-Amz-SignedHeaders {signed}");
        }
        assert!(
            !p.url.contains("x-amz-checksum-crc32"),
            "no checksum of an empty body: {}",
            p.url
        );
    }

    #[tokio::test]
    async fn urls_never_outlive_the_signing_credentials() {
        let now = SystemTime::now();
        let expiring = Credentials::new(
            "AK",
            "SK",
            Some("token".into()),
            Some(now + Duration::from_secs(900)),
            "test",
        );
        let signer = Signer::with_credentials(
            &aws_config(),
            CachedCredentials::new(SharedCredentialsProvider::new(expiring)),
        );
        let target: Target = "media".parse().expect("target");
        let none = BTreeMap::new();
        let mut req = request(&target, Operation::Get, &none);
        req.now = now;
        req.expires_in = Duration::from_secs(3600);
        let p = signer.presign(&req).await.expect("presign");
        assert!(p.clamped);
        let lifetime = p.expires_at - time::OffsetDateTime::from(now);
        assert!(lifetime <= time::Duration::seconds(900), "{lifetime}");
        assert!(
            p.url.contains("X-Amz-Expires=899") || p.url.contains("X-Amz-Expires=900"),
            "{}",
            p.url
        );

        let lapsed = Credentials::new("AK", "SK", None, Some(now - Duration::from_secs(1)), "test");
        let signer = Signer::with_credentials(
            &aws_config(),
            CachedCredentials::new(SharedCredentialsProvider::new(lapsed)),
        );
        assert!(matches!(
            signer.presign(&req).await,
            Err(SignError::CredentialsExpiring)
        ));
    }
}
