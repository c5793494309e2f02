//! The API's one error type, mapped to an RFC 9457 problem+json response in exactly one place.
//! The request id is added by the `context` middleware, which also turns any error response
//! produced outside the handlers (404 routes, 405, body limit, timeout, panic) into a problem.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::policy::{ConstraintError, FieldError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What caused a 5xx: kept as an error source, so the log shows the whole chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.detail())]
    Auth(#[from] AuthError),
    #[error("the access point does not exist or is not available to the caller")]
    NotFound,
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("the access point's rules do not allow this operation on this key")]
    Forbidden,
    #[error("this operation requires a token issued with multi-factor authentication")]
    MfaRequired,
    #[error("this request must be made over HTTPS")]
    HttpsRequired,
    #[error("the caller's network address is not allowed for this access point")]
    NetworkDenied,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    PostUnsupported(String),
    #[error("invalid access point")]
    InvalidAccessPoint(Vec<FieldError>),
    #[error("{0}")]
    Constraint(#[from] ConstraintError),
    #[error("request body too large")]
    BodyTooLarge,
    #[error("expected a JSON body (content-type: application/json)")]
    UnsupportedMediaType,
    #[error("the audit record could not be made durable; nothing was issued")]
    AuditUnavailable(#[source] Cause),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Cause),
    #[error("internal error")]
    Internal(#[source] Cause),
    #[error(
        "the access point's ETag is {current}, not one that If-Match or If-None-Match allows; fetch it again and reapply your change"
    )]
    PreconditionFailed { current: String },
    #[error("the access point was changed by another request meanwhile; fetch it again and retry")]
    Conflict,
    #[error("rate limit exceeded ({scope}); retry after {retry_after} s")]
    RateLimited {
        scope: &'static str,
        /// Whole seconds, at least 1 (the `Retry-After` value).
        retry_after: u64,
    },
    #[error("no such multipart upload of the caller on this access point")]
    UploadNotFound,
    #[error("{0}")]
    InvalidPartNumbers(String),
    #[error("{0}")]
    InvalidPartSize(String),
    #[error("content_length exceeds the largest upload allowed here: {max} bytes")]
    UploadTooLarge { max: u64 },
    #[error("S3 refused the listed parts: {0}")]
    InvalidParts(String),
    #[error("S3 failed the request")]
    Upstream(#[source] Cause),
    #[error("no such download grant")]
    GrantNotFound,
    #[error(
        "an object already exists under this key, and this access point is create-only (upload.overwrite: false)"
    )]
    ObjectExists,
    #[error("this download grant is {0}")]
    Gone(String),
    #[error("no such upload issuance of the caller on this access point")]
    IssuanceNotFound,
    #[error("another request is verifying this upload; retry in a moment")]
    VerificationInProgress,
    #[error("this multipart upload is not complete: completing it verifies it")]
    UploadOpen,
    #[error(
        "nothing has been uploaded under this key yet, and the URL is still valid: verify once the upload succeeded"
    )]
    NotUploadedYet,
    #[error("this access point has no upload quota")]
    NoQuota,
    #[error("no such dead letter (unknown, or already queued again)")]
    DeadLetterNotFound,
    #[error("{}", quota_detail(.0))]
    QuotaExceeded(Box<QuotaReport>),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Unavailable(Box::new(e))
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        ApiError::AuditUnavailable(Box::new(e))
    }
}

impl From<crate::policy::Refusal> for ApiError {
    fn from(r: crate::policy::Refusal) -> Self {
        use crate::policy::{DenyReason, Refusal};
        match r {
            Refusal::Network => ApiError::NetworkDenied,
            Refusal::Key(e) => ApiError::InvalidKey(e.to_string()),
            Refusal::Rules {
                reason: DenyReason::MfaRequired,
                ..
            } => ApiError::MfaRequired,
            Refusal::Rules { .. } => ApiError::Forbidden,
        }
    }
}

impl From<crate::policy::RequestRefusal> for ApiError {
    fn from(r: crate::policy::RequestRefusal) -> Self {
        use crate::policy::RequestRefusal;
        match r {
            RequestRefusal::Invalid(why) => ApiError::InvalidRequest(why),
            RequestRefusal::PostUnsupported(why) => ApiError::PostUnsupported(why),
            RequestRefusal::Constraint(e) => ApiError::Constraint(e),
            RequestRefusal::HttpsRequired => ApiError::HttpsRequired,
        }
    }
}

impl From<crate::explain::Stop> for ApiError {
    fn from(stop: crate::explain::Stop) -> Self {
        use crate::explain::Stop;
        match stop {
            Stop::Transport => ApiError::HttpsRequired,
            Stop::Principal(e) => ApiError::Auth(e),
            Stop::AccessPoint => ApiError::NotFound,
            Stop::Refused(r) => r.into(),
            Stop::Request(r) => r.into(),
            Stop::InsecureUrl => ApiError::HttpsRequired,
        }
    }
}

impl From<crate::sign::SignError> for ApiError {
    fn from(e: crate::sign::SignError) -> Self {
        match e {
            crate::sign::SignError::InsecureUrl => ApiError::HttpsRequired,
            other => ApiError::Unavailable(Box::new(other)),
        }
    }
}

/// The catalog serves only access points whose key is configured, so either is a bug.
impl From<crate::cloudfront::CloudFrontError> for ApiError {
    fn from(e: crate::cloudfront::CloudFrontError) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<crate::sign::multipart::MultipartError> for ApiError {
    fn from(e: crate::sign::multipart::MultipartError) -> Self {
        use crate::sign::multipart::MultipartError;
        match e {
            MultipartError::NoSuchUpload => ApiError::UploadNotFound,
            MultipartError::ObjectExists => ApiError::ObjectExists,
            MultipartError::InvalidParts { code, message } => {
                ApiError::InvalidParts(format!("{code}: {message}"))
            }
            MultipartError::Upstream(cause) => ApiError::Upstream(cause.into()),
        }
    }
}

impl From<crate::uploads::plan::PlanError> for ApiError {
    fn from(e: crate::uploads::plan::PlanError) -> Self {
        use crate::uploads::plan::PlanError;
        match e {
            PlanError::TooLarge { max } => ApiError::UploadTooLarge { max },
            PlanError::PartSizeOutOfRange | PlanError::TooManyParts { .. } => {
                ApiError::InvalidPartSize(e.to_string())
            }
            PlanError::Empty => ApiError::InvalidRequest(e.to_string()),
            PlanError::PartNumberCount
            | PlanError::PartNumberOutOfRange(..)
            | PlanError::DuplicatePart(_)
            | PlanError::IncompleteParts(_) => ApiError::InvalidPartNumbers(e.to_string()),
        }
    }
}

impl From<crate::limits::LimitError> for ApiError {
    fn from(e: crate::limits::LimitError) -> Self {
        match e {
            crate::limits::LimitError::Exceeded { scope, retry_after } => ApiError::RateLimited {
                scope: scope.as_str(),
                retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
            crate::limits::LimitError::Unavailable => ApiError::Unavailable(Box::new(e)),
        }
    }
}

impl ApiError {
    /// The HTTP status and the stable machine-readable `code` (documented in openapi/ and
    /// docs/errors.md): the one table from errors to answers.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            // The token may be fine: presignd cannot check it yet. Not the client's fault.
            ApiError::Auth(AuthError::KeysUnavailable) => (S::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Auth(e) => (S::UNAUTHORIZED, e.code()),
            ApiError::NotFound | ApiError::NoRoute => (S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Forbidden => (S::FORBIDDEN, "forbidden"),
            ApiError::MfaRequired => (S::FORBIDDEN, "mfa_required"),
            ApiError::HttpsRequired => (S::FORBIDDEN, "https_required"),
            ApiError::NetworkDenied => (S::FORBIDDEN, "network_denied"),
            ApiError::InvalidKey(_) => (S::BAD_REQUEST, "invalid_key"),
            ApiError::InvalidRequest(_) | ApiError::InvalidAccessPoint(_) => {
                (S::BAD_REQUEST, "invalid_request")
            }
            ApiError::PostUnsupported(_) => (S::BAD_REQUEST, "post_unsupported"),
            ApiError::Constraint(c) => match c.code() {
                code @ "payload_too_large" => (S::PAYLOAD_TOO_LARGE, code),
                code => (S::BAD_REQUEST, code),
            },
            ApiError::BodyTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::AuditUnavailable(_) => (S::SERVICE_UNAVAILABLE, "audit_unavailable"),
            ApiError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::PreconditionFailed { .. } => (S::PRECONDITION_FAILED, "precondition_failed"),
            ApiError::Conflict => (S::CONFLICT, "conflict"),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::UploadNotFound => (S::NOT_FOUND, "upload_not_found"),
            ApiError::InvalidPartNumbers(_) => (S::BAD_REQUEST, "invalid_part_numbers"),
            ApiError::InvalidPartSize(_) => (S::BAD_REQUEST, "invalid_part_size"),
            ApiError::UploadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "upload_too_large"),
            ApiError::InvalidParts(_) => (S::BAD_REQUEST, "invalid_parts"),
            ApiError::GrantNotFound => (S::NOT_FOUND, "not_found"),
            ApiError::Gone(_) => (S::GONE, "gone"),
            ApiError::IssuanceNotFound => (S::NOT_FOUND, "not_found"),
            ApiError::VerificationInProgress | ApiError::UploadOpen | ApiError::NotUploadedYet => {
                (S::CONFLICT, "conflict")
            }
            ApiError::QuotaExceeded(_) => (S::FORBIDDEN, "quota_exceeded"),
            ApiError::NoQuota | ApiError::DeadLetterNotFound => (S::NOT_FOUND, "not_found"),
            ApiError::ObjectExists => (S::CONFLICT, "object_exists"),
            ApiError::Upstream(_) => (S::BAD_GATEWAY, "upstream_error"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        // 5xx details stay in the log; the client sees only the code and the request id.
        let detail = if status.is_server_error() {
            match self {
                ApiError::AuditUnavailable(_) | ApiError::Auth(_) => self.to_string(),
                _ => "the service could not complete the request".into(),
            }
        } else {
            self.to_string()
        };
        let errors = match self {
            ApiError::InvalidAccessPoint(fields) => Some(fields.clone()),
            _ => None,
        };
        let mut problem = Problem::new(status, self.code(), detail).with_errors(errors);
        if let ApiError::RateLimited { retry_after, .. } = self {
            problem.retry_after = Some(*retry_after);
        }
        if let ApiError::QuotaExceeded(report) = self {
            problem.quota = Some((**report).clone());
        }
        problem
    }

    /// For a server error, the underlying cause worth logging: its whole source chain
    /// (`a: b: c`). Client errors have none (their answer says it all).
    pub fn cause(&self) -> Option<String> {
        if !self.status().is_server_error() {
            return None;
        }
        let first = std::error::Error::source(self)?;
        let chain: Vec<String> = std::iter::successors(Some(first), |e| e.source())
            .map(ToString::to_string)
            .collect();
        Some(chain.join(": "))
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For `rate_limited`: seconds to wait, as in the `Retry-After` header (which a batch
    /// item's problem cannot carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For `quota_exceeded`: the limits, the caller's usage and what was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaReport>,
}

/// A subject's quota on an access point and its use (`quota_exceeded`, `GET …/quota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_subject: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_per_subject: Option<u64>,
    pub window: String,
    pub used_bytes: u64,
    pub reserved_bytes: u64,
    pub objects: u64,
    /// The bytes the refused issuance would have reserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_bytes: Option<u64>,
}

impl QuotaReport {
    pub fn new(quota: &crate::policy::UploadQuota, usage: crate::policy::Usage) -> QuotaReport {
        QuotaReport {
            bytes_per_subject: quota.bytes_per_subject,
            objects_per_subject: quota.objects_per_subject,
            window: quota.window.to_string(),
            used_bytes: usage.used_bytes,
            reserved_bytes: usage.reserved_bytes,
            objects: usage.objects,
            requested_bytes: None,
        }
    }
}

impl ApiError {
    /// `403 quota_exceeded`: reserving `requested` bytes more would pass `quota`.
    pub fn quota_exceeded(
        quota: &crate::policy::UploadQuota,
        usage: crate::policy::Usage,
        requested: u64,
    ) -> ApiError {
        let mut report = QuotaReport::new(quota, usage);
        report.requested_bytes = Some(requested);
        ApiError::QuotaExceeded(Box::new(report))
    }
}

fn quota_detail(r: &QuotaReport) -> String {
    let mut limits = Vec::new();
    if let Some(b) = r.bytes_per_subject {
        limits.push(format!(
            "{b} bytes ({} used, {} reserved, {} asked)",
            r.used_bytes,
            r.reserved_bytes,
            r.requested_bytes.unwrap_or(0)
        ));
    }
    if let Some(o) = r.objects_per_subject {
        limits.push(format!("{o} objects ({} counted)", r.objects));
    }
    format!(
        "this upload would exceed your quota on this access point ({}): {}",
        r.window,
        limits.join(", ")
    )
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            type_: format!("urn:presignd:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            request_id: None,
            errors: None,
            retry_after: None,
            quota: None,
        }
    }

    fn with_errors(mut self, errors: Option<Vec<FieldError>>) -> Problem {
        self.errors = errors;
        self
    }

    /// A problem for an error response produced outside the handlers.
    pub fn for_status(status: StatusCode) -> Problem {
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no route for this path"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed on this path")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                ("timeout", "the request took too long")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected a JSON body (content-type: application/json)",
            ),
            s if s.is_client_error() => ("invalid_request", "the request is invalid"),
            StatusCode::SERVICE_UNAVAILABLE => {
                ("unavailable", "the service is temporarily unavailable")
            }
            _ => ("internal", "the service could not complete the request"),
        };
        Problem::new(status, code, detail)
    }

    pub fn into_response_with(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

/// Attached to error responses so the `context` middleware can add the request id and log the
/// cause without parsing the body.
#[derive(Debug, Clone)]
pub struct ProblemExt {
    pub problem: Problem,
    pub cause: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut resp = problem.clone().into_response_with();
        if resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        if let ApiError::Auth(crate::auth::AuthError::Missing) = self {
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp.extensions_mut().insert(ProblemExt {
            problem,
            cause: self.cause(),
        });
        resp
    }
}
