//! Extractors: the verified principal, the caller's context, and a JSON body whose rejections
//! are problem+json.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::client::ClientInfo;
use super::error::ApiError;
use crate::Principal;
use crate::auth::bearer_token;
use crate::state::AppState;

/// A caller with a verified bearer JWT.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers);
        let outcome = match &token {
            Ok(token) => authenticate(state, token).await,
            Err(e) => Err(e.clone()),
        };
        // `presignd_jwt_verifications_total`: the issuer label only for a configured issuer.
        match &outcome {
            Ok(p) => state.metrics().observe_jwt(&p.iss, "ok"),
            Err(e) => {
                let issuer = token
                    .as_ref()
                    .ok()
                    .and_then(|t| state.verifier().configured_issuer(t));
                let issuer = issuer.as_deref().unwrap_or("unknown");
                state.metrics().observe_jwt(issuer, e.kind());
            }
        }
        Ok(Authenticated(outcome?))
    }
}

/// Verifies a bearer token as every request's is: signature and claims, then revocations.
pub(super) async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<Principal, crate::auth::AuthError> {
    let principal = state.verifier().verify(token).await?;
    // In memory: revoked tokens, and tokens living longer than revocations can cover.
    state
        .revocations()
        .check(&principal, crate::auth::revocations::unix_now())?;
    Ok(principal)
}

/// A verified caller in `auth.admin_group`, with a token from one of the admin issuers
/// (`auth.admin_issuers`). Anyone else gets 404: the admin API is not visible to them.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        if state.config().auth.is_admin(&principal) {
            Ok(Admin(principal))
        } else {
            Err(ApiError::NoRoute)
        }
    }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("client context middleware not installed".into()))
    }
}

/// `axum::Json`, but every rejection is an `ApiError`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::BodyTooLarge
            }
            other => ApiError::InvalidRequest(other.body_text()),
        })?;
        // Every body of this API is an object; serde would also fill a struct from an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::InvalidRequest(
                "the body must be a JSON object".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}
