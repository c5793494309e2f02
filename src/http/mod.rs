//! HTTP: routes, extractors, errors and middleware.

mod client;
mod context;
mod discovery;
pub mod error;
mod extract;
mod health;
mod presign;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub use client::ClientInfo;
pub use error::{ApiError, Problem};
pub use presign::{MAX_BATCH_ITEMS, PresignRequest, PresignResponse};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let server = &state.config().server;
    let api = Router::new()
        .route(
            "/v1/access-points/{name}/presign",
            post(presign::presign_one),
        )
        .route("/v1/presign/batch", post(presign::presign_batch))
        .route("/v1/access-points", get(discovery::list_access_points))
        .route("/v1/whoami", get(discovery::whoami))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    api.layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(server.request_timeout_ms),
        ))
        .layer(cors(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::context,
        ))
        .with_state(state)
}

/// CORS: `server.cors_allowed_origins` on every route, plus an access point's own
/// `cors_origins` on that access point's presign route. Bearer tokens travel in a header, so
/// credentials mode is never enabled (and `*` is never sent). A refused origin gets no CORS
/// headers — the browser blocks the call — and the refusal is logged.
fn cors(state: &AppState) -> CorsLayer {
    let state = state.clone();
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, parts: &Parts| {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let global = &state.config().server.cors_allowed_origins;
        if global.iter().any(|o| o == origin) {
            return true;
        }
        let per_access_point = parts
            .uri
            .path()
            .strip_prefix("/v1/access-points/")
            .and_then(|rest| rest.strip_suffix("/presign"))
            .and_then(|name| {
                state
                    .catalog()
                    .get(name)
                    .map(|ap| ap.spec.cors_origins.iter().any(|o| o == origin))
            })
            .unwrap_or(false);
        if !per_access_point {
            tracing::info!(origin, path = parts.uri.path(), "CORS origin not allowed");
        }
        per_access_point
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}
