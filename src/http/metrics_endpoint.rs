//! `GET /metrics`: the Prometheus text exposition of this instance's registry.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::AuthError;
use crate::state::AppState;

/// The exposition format's content type (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION);
    if !state
        .config()
        .metrics
        .authorized(authorization.map(HeaderValue::as_bytes))
    {
        let error = if authorization.is_some() {
            AuthError::Invalid("the metrics bearer token is not accepted")
        } else {
            AuthError::Missing
        };
        return ApiError::Auth(error).into_response();
    }
    let mut resp = (StatusCode::OK, state.metrics().render()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}
