//! Authentication errors. Every `AuthError` is a 401; `code()` and `detail()` are what the
//! client sees, `Display` is for the log. Neither ever contains the token.

use crate::config::ConfigProblem;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer is not configured")]
    UnknownIssuer,
    #[error("token algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    #[error("no key matches the token's kid")]
    UnknownKey,
    #[error("signature verification failed")]
    BadSignature,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("issuer keys not available yet")]
    KeysUnavailable,
    /// An admin revoked the token (its subject before a time, or its `jti`).
    #[error("token revoked")]
    Revoked,
    /// `exp` is further from `iat` than `auth.max_token_lifetime_seconds`.
    #[error("token lifetime exceeds auth.max_token_lifetime_seconds")]
    LifetimeTooLong,
    /// `iat` is later than now plus the issuer's leeway: a token cannot claim to be issued in
    /// the future (it would pass as issued after a revocation and shrink `exp - iat`).
    #[error("token issued in the future")]
    IssuedInFuture,
}

impl AuthError {
    /// Stable problem+json `code`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Expired => "token_expired",
            _ => "unauthenticated",
        }
    }

    /// The failure as a bounded metrics label (`presignd_jwt_verifications_total{result}`).
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::TooLarge => "too_large",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Invalid(_) => "invalid",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::Revoked => "revoked",
            AuthError::LifetimeTooLong => "lifetime_too_long",
            AuthError::IssuedInFuture => "issued_in_future",
        }
    }

    /// Short message safe to return to the client.
    pub fn detail(&self) -> &'static str {
        match self {
            AuthError::Missing => "a bearer token is required",
            AuthError::Malformed => "the bearer token is malformed",
            AuthError::TooLarge => "the bearer token is too large",
            AuthError::Expired => "the token has expired",
            AuthError::NotYetValid => "the token is not valid yet",
            AuthError::UnknownIssuer => "the token issuer is not trusted",
            AuthError::AlgorithmNotAllowed => "the token algorithm is not allowed",
            AuthError::UnknownKey => "the token signing key is unknown",
            AuthError::BadSignature => "the token signature is invalid",
            AuthError::Invalid(reason) => reason,
            AuthError::KeysUnavailable => "the issuer's signing keys are not available",
            AuthError::Revoked => "the token has been revoked; sign in again",
            AuthError::LifetimeTooLong => {
                "the token lives longer than this service accepts (exp - iat is too large)"
            }
            AuthError::IssuedInFuture => "the token's iat is in the future",
        }
    }
}

/// Failures building a [`crate::auth::Verifier`].
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("invalid auth configuration: {}", join(.0))]
    Config(Vec<ConfigProblem>),
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    #[error("{key}: {message}")]
    Key { key: String, message: String },
}

fn join(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
