//! A presign request and the checks it must pass after the rules allow it: the fields that
//! belong to its operation, the URL lifetime, metadata, response overrides, what a POST
//! policy can carry, the upload constraints and SSE-C's HTTPS rule. Pure: the presign
//! endpoint and `explain` run the same [`check_request`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compiled::CompiledAccessPoint;
use super::evaluate::Keys;
use super::request::{
    ConstraintError, UploadRequest, check_metadata, check_response_overrides, check_upload,
    resolve_expires,
};
use super::{Encryption, Operation, Target};

/// What a presign request asks for: one of the rules' operations, or `post`, a browser form
/// upload (a signed POST policy), which the rules authorize as `put` — AWS, too, authorizes
/// POST Object as `s3:PutObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresignOperation {
    Get,
    Put,
    Delete,
    Post,
}

impl PresignOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            PresignOperation::Post => "post",
            op => op.authorized_as().as_str(),
        }
    }

    /// The rule operation that must allow it.
    pub fn authorized_as(self) -> Operation {
        match self {
            PresignOperation::Get => Operation::Get,
            PresignOperation::Put | PresignOperation::Post => Operation::Put,
            PresignOperation::Delete => Operation::Delete,
        }
    }

    pub fn uploads(self) -> bool {
        matches!(self, PresignOperation::Put | PresignOperation::Post)
    }
}

impl PresignRequest {
    /// Whether the URL is a CloudFront signed URL: a `get` on an access point that delivers
    /// through CloudFront. Everything else is an S3 presigned URL.
    pub fn via_cloudfront(&self, ap: &CompiledAccessPoint) -> bool {
        self.operation == PresignOperation::Get && ap.spec.delivery.cloudfront.is_some()
    }
}

/// The body of `POST /v1/access-points/{name}/presign`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresignRequest {
    pub operation: PresignOperation,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<String>,
    /// `post` only: `key` is a prefix that the browser completes (the policy pins
    /// `starts-with`); every completion must be allowed by the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_starts_with: Option<bool>,
    /// `get` through CloudFront only: the URL is refused before this time (a custom policy's
    /// `DateGreaterThan`).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<time::OffsetDateTime>,
    /// `get` through CloudFront only: only the caller's address (as presignd sees it) may use
    /// the URL (a custom policy's `IpAddress`, `/32` or `/128`). Fragile for mobile clients,
    /// whose address changes between networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_client_ip: Option<bool>,
}

impl PresignRequest {
    /// A request for `operation` on `key` with no other fields.
    pub fn new(operation: PresignOperation, key: impl Into<String>) -> PresignRequest {
        PresignRequest {
            operation,
            key: key.into(),
            expires_in: None,
            content_type: None,
            content_length: None,
            checksum_sha256: None,
            metadata: BTreeMap::new(),
            response_content_disposition: None,
            response_content_type: None,
            key_starts_with: None,
            not_before: None,
            bind_client_ip: None,
        }
    }

    /// What the rules are asked about: the key, or, for a `starts-with` POST, every key the
    /// browser may complete from it.
    pub fn keys(&self) -> Keys<'_> {
        if self.operation == PresignOperation::Post && self.key_starts_with == Some(true) {
            Keys::Prefix(&self.key)
        } else {
            Keys::Exact(&self.key)
        }
    }
}

/// Why a request the rules allow is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// A field that does not belong to the operation, or a malformed one.
    #[error("{0}")]
    Invalid(String),
    /// A presigned POST cannot carry what the access point needs.
    #[error("{0}")]
    PostUnsupported(String),
    /// The access point's constraints (lifetime, size, types, checksum, metadata).
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// SSE-C sends the customer's key in headers: only ever over TLS.
    #[error("this access point uses SSE-C: the request must arrive over HTTPS")]
    HttpsRequired,
}

/// Checks a request the rules allow, in the order the presign endpoint answers them; `tls`
/// is whether the API request arrived over TLS. The URL lifetime in seconds when it passes.
pub fn check_request(
    ap: &CompiledAccessPoint,
    req: &PresignRequest,
    tls: bool,
) -> Result<u32, RequestRefusal> {
    let spec = &ap.spec;
    check_fields_for_operation(req)?;
    check_delivery(ap, req)?;
    let expires_in = resolve_expires(spec, req.expires_in)?;
    check_metadata(&req.metadata)?;
    check_response_overrides(
        spec,
        req.response_content_type.as_deref(),
        req.response_content_disposition.as_deref(),
    )?;
    if req.operation == PresignOperation::Post {
        check_post(ap, req)?;
    }
    if req.operation == PresignOperation::Put
        && spec.upload.quota.is_some()
        && req.content_length.is_none()
    {
        return Err(RequestRefusal::Invalid(
            "content_length is required here: this access point has an upload quota, and the declared length is what the upload reserves".into(),
        ));
    }
    if req.operation.uploads() {
        check_upload(
            spec,
            &UploadRequest {
                content_type: req.content_type.as_deref(),
                // A POST need not declare its length: the policy's range is the limit.
                content_length: match req.operation {
                    PresignOperation::Post => req.content_length.or(spec.upload.max_content_length),
                    _ => req.content_length,
                },
                checksum_sha256: req.checksum_sha256.as_deref(),
                metadata: &req.metadata,
            },
        )?;
    }
    if matches!(spec.encryption, Encryption::SseC) && !tls {
        return Err(RequestRefusal::HttpsRequired);
    }
    Ok(expires_in)
}

/// What a presigned POST cannot carry, refused before anything is signed.
fn check_post(ap: &CompiledAccessPoint, req: &PresignRequest) -> Result<(), RequestRefusal> {
    let unsupported = |why: &str| Err(RequestRefusal::PostUnsupported(why.into()));
    match ap.target {
        Target::Bucket(_) => {}
        // S3 access points and Object Lambda take no browser POST uploads (neither is in
        // AWS's list of operations they support), so no policy is signed for them.
        Target::AccessPointArn(_) | Target::ObjectLambdaArn(_) => {
            return unsupported(
                "this access point targets an S3 access point ARN; presigned POST uploads go to buckets only",
            );
        }
    }
    if matches!(ap.spec.encryption, Encryption::SseC) {
        return unsupported(
            "this access point uses SSE-C: a form upload would have to post the customer key as a form field; use put",
        );
    }
    if ap.spec.upload.require_checksum {
        return unsupported(
            "this access point requires a signed checksum, which a POST policy cannot pin; use put",
        );
    }
    if !ap.spec.upload.overwrite {
        return unsupported(
            "this access point is create-only (upload.overwrite: false), which a POST policy cannot enforce; use put",
        );
    }
    if ap.spec.upload.quota.is_some() {
        return unsupported(
            "this access point has an upload quota: a POST policy serves any number of uploads until it expires, which a quota cannot count; use put",
        );
    }
    if req.checksum_sha256.is_some() {
        return Err(RequestRefusal::Invalid(
            "checksum_sha256 applies to put only: a POST policy cannot pin it".into(),
        ));
    }
    Ok(())
}

/// Upload fields belong to `put`, response overrides to `get`: anything else is a mistake the
/// caller should hear about rather than a silently unsigned header.
fn check_fields_for_operation(req: &PresignRequest) -> Result<(), RequestRefusal> {
    let upload_fields = req.content_type.is_some()
        || req.content_length.is_some()
        || req.checksum_sha256.is_some()
        || !req.metadata.is_empty();
    if !req.operation.uploads() && upload_fields {
        return Err(RequestRefusal::Invalid(
            "content_type, content_length, checksum_sha256 and metadata apply to put and post only"
                .into(),
        ));
    }
    if req.operation != PresignOperation::Post && req.key_starts_with == Some(true) {
        return Err(RequestRefusal::Invalid(
            "key_starts_with applies to post only".into(),
        ));
    }
    let overrides =
        req.response_content_disposition.is_some() || req.response_content_type.is_some();
    if req.operation != PresignOperation::Get && overrides {
        return Err(RequestRefusal::Invalid(
            "response_content_disposition and response_content_type apply to get only".into(),
        ));
    }
    Ok(())
}

/// The fields that belong to one delivery: `not_before` and `bind_client_ip` shape a CloudFront
/// policy; the response overrides are S3 query parameters, which CloudFront does not sign.
fn check_delivery(ap: &CompiledAccessPoint, req: &PresignRequest) -> Result<(), RequestRefusal> {
    let cloudfront_fields = req.not_before.is_some() || req.bind_client_ip == Some(true);
    let via_cloudfront = req.via_cloudfront(ap);
    if cloudfront_fields && !via_cloudfront {
        return Err(RequestRefusal::Invalid(
            "not_before and bind_client_ip apply to get on an access point with CloudFront delivery only".into(),
        ));
    }
    let overrides =
        req.response_content_disposition.is_some() || req.response_content_type.is_some();
    if via_cloudfront && overrides {
        return Err(RequestRefusal::Invalid(
            "response_content_disposition and response_content_type are S3 parameters; this access point delivers GETs through CloudFront (set them on the object, or with a CloudFront response headers policy)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(v: serde_json::Value) -> CompiledAccessPoint {
        CompiledAccessPoint::compile(serde_json::from_value(v).expect("spec")).expect("valid")
    }

    fn post(key: &str) -> PresignRequest {
        PresignRequest::new(PresignOperation::Post, key)
    }

    fn kind(r: Result<(), RequestRefusal>) -> Result<(), &'static str> {
        r.map_err(|e| match e {
            RequestRefusal::Invalid(_) => "invalid",
            RequestRefusal::PostUnsupported(_) => "post_unsupported",
            RequestRefusal::Constraint(_) => "constraint",
            RequestRefusal::HttpsRequired => "https_required",
        })
    }

    #[test]
    fn post_needs_a_bucket_without_sse_c_or_checksums() {
        let rules =
            serde_json::json!([{"effect": "allow", "groups": ["u"], "operations": ["put"]}]);
        let on = |bucket: &str, extra: serde_json::Value| {
            let mut spec = serde_json::json!({"name": "a", "bucket": bucket, "rules": rules});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            kind(check_post(&compiled(spec), &post("k")))
        };
        assert_eq!(on("media", serde_json::json!({})), Ok(()));
        assert_eq!(
            on(
                "media",
                serde_json::json!({"encryption": {"mode": "sse-kms", "kms_key_id": "k"}})
            ),
            Ok(())
        );
        assert_eq!(
            on(
                "arn:aws:s3:us-east-1:123456789012:accesspoint/uploads",
                serde_json::json!({})
            ),
            Err("post_unsupported")
        );
        assert_eq!(
            on(
                "media",
                serde_json::json!({"encryption": {"mode": "sse-c"}})
            ),
            Err("post_unsupported")
        );
        assert_eq!(
            on(
                "media",
                serde_json::json!({"upload": {"require_checksum": true}})
            ),
            Err("post_unsupported")
        );
        let mut with_sum = post("k");
        with_sum.checksum_sha256 = Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into());
        let plain = compiled(serde_json::json!({"name": "a", "bucket": "media", "rules": rules}));
        assert_eq!(kind(check_post(&plain, &with_sum)), Err("invalid"));
    }

    #[test]
    fn post_is_authorized_as_put_and_audited_as_post() {
        assert_eq!(PresignOperation::Post.authorized_as(), Operation::Put);
        assert_eq!(PresignOperation::Post.as_str(), "post");
        for op in Operation::ALL {
            let p: PresignOperation =
                serde_json::from_value(serde_json::json!(op.as_str())).expect("operation");
            assert_eq!((p.authorized_as(), p.as_str()), (op, op.as_str()));
        }
        let mut get = post("k");
        get.operation = PresignOperation::Get;
        get.key_starts_with = Some(true);
        assert!(check_fields_for_operation(&get).is_err());
        get.key_starts_with = Some(false);
        assert!(check_fields_for_operation(&get).is_ok());
    }

    #[test]
    fn sse_c_needs_tls_after_every_other_check() {
        let ap = compiled(serde_json::json!({
            "name": "a", "bucket": "media", "encryption": {"mode": "sse-c"},
            "rules": [{"effect": "allow", "groups": ["u"], "operations": ["get"]}]
        }));
        let get = PresignRequest::new(PresignOperation::Get, "k");
        assert_eq!(
            check_request(&ap, &get, false),
            Err(RequestRefusal::HttpsRequired)
        );
        assert_eq!(check_request(&ap, &get, true), Ok(300));
        let mut long = get.clone();
        long.expires_in = Some(10 * 86_400);
        assert!(matches!(
            check_request(&ap, &long, false),
            Err(RequestRefusal::Constraint(
                ConstraintError::ExpiresOutOfRange { .. }
            ))
        ));
    }
}
