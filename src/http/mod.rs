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
        .layer(cors(&server.cors_allowed_origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::context,
        ))
        .with_state(state)
}

/// CORS for the configured origins only; bearer tokens travel in a header, so credentials
/// mode is never enabled (and `*` is never sent).
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}
