//! Authentication errors. Every `AuthError` is a 401; `code()` and `detail()` are what the
//! client sees, `Display` is for the log. Neither ever contains the token.

use crate::auth::config::ConfigProblem;

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
}

impl AuthError {
    /// Stable problem+json `code`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Expired => "token_expired",
            _ => "unauthenticated",
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
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}
