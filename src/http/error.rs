//! The API's one error type, mapped to an RFC 9457 problem+json response in exactly one place.
//! The request id is added by the `context` middleware, which also turns any error response
//! produced outside the handlers (404 routes, 405, body limit, timeout, panic) into a problem.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::policy::{ConstraintError, FieldError};

pub const PROBLEM_JSON: &str = "application/problem+json";

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
    AuditUnavailable(String),
    #[error("a dependency is unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
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
    Upstream(String),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Unavailable(format!("database: {e}"))
    }
}

impl From<crate::limits::LimitError> for ApiError {
    fn from(e: crate::limits::LimitError) -> Self {
        match e {
            crate::limits::LimitError::Exceeded { scope, retry_after } => ApiError::RateLimited {
                scope: scope.as_str(),
                retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
            crate::limits::LimitError::Unavailable => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            // The token may be fine: presignd cannot check it yet. Not the client's fault.
            ApiError::Auth(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden
            | ApiError::MfaRequired
            | ApiError::HttpsRequired
            | ApiError::NetworkDenied => StatusCode::FORBIDDEN,
            ApiError::InvalidKey(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidAccessPoint(_)
            | ApiError::PostUnsupported(_) => StatusCode::BAD_REQUEST,
            ApiError::Constraint(c) => match c.code() {
                "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            },
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AuditUnavailable(_) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UploadNotFound => StatusCode::NOT_FOUND,
            ApiError::InvalidPartNumbers(_)
            | ApiError::InvalidPartSize(_)
            | ApiError::InvalidParts(_) => StatusCode::BAD_REQUEST,
            ApiError::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable machine-readable code (documented in openapi/ and docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Auth(AuthError::KeysUnavailable) => "unavailable",
            ApiError::Auth(e) => e.code(),
            ApiError::NotFound | ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Forbidden => "forbidden",
            ApiError::MfaRequired => "mfa_required",
            ApiError::HttpsRequired => "https_required",
            ApiError::NetworkDenied => "network_denied",
            ApiError::InvalidKey(_) => "invalid_key",
            ApiError::InvalidRequest(_) | ApiError::InvalidAccessPoint(_) => "invalid_request",
            ApiError::Constraint(c) => c.code(),
            ApiError::PostUnsupported(_) => "post_unsupported",
            ApiError::BodyTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::AuditUnavailable(_) => "audit_unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::Conflict => "conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::UploadNotFound => "upload_not_found",
            ApiError::InvalidPartNumbers(_) => "invalid_part_numbers",
            ApiError::InvalidPartSize(_) => "invalid_part_size",
            ApiError::UploadTooLarge { .. } => "upload_too_large",
            ApiError::InvalidParts(_) => "invalid_parts",
            ApiError::Upstream(_) => "upstream_error",
        }
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
        problem
    }

    /// The underlying cause worth logging for server errors.
    pub fn cause(&self) -> Option<&str> {
        match self {
            ApiError::AuditUnavailable(c)
            | ApiError::Unavailable(c)
            | ApiError::Internal(c)
            | ApiError::Upstream(c) => Some(c),
            _ => None,
        }
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
            cause: self.cause().map(str::to_string),
        });
        resp
    }
}
