//! HTTP: routes, extractors, errors and middleware.

mod admin;
mod audited;
mod client;
mod cloudfront;
mod context;
mod discovery;
pub mod error;
mod explain;
mod extract;
mod grants;
mod health;
mod metrics_endpoint;
mod presign;
mod uploads;
mod verify;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub use audited::write_refusal_summaries;
pub use client::ClientInfo;
pub use error::{ApiError, Problem};
pub use metrics_endpoint::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use presign::{MAX_BATCH_ITEMS, PresignResponse};
pub use verify::verify_expired;

use crate::state::AppState;

/// The API. Every route here is in `openapi/openapi.yaml` and the other way round
/// (`tests/openapi_contract.rs` fails on any difference).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/v1/access-points/{name}/presign",
            post(presign::presign_one),
        )
        .route("/v1/presign/batch", post(presign::presign_batch))
        .route(
            "/v1/access-points/{name}/cookies",
            post(cloudfront::cookies),
        )
        .route("/v1/access-points/{name}/grants", post(grants::create))
        .route("/v1/grants/{grant_id}", delete(grants::revoke))
        // No JWT: the token is the capability. HEAD checks without spending a use.
        .route("/g/{token}", get(grants::redeem).head(grants::peek))
        .route(
            "/v1/access-points/{name}/uploads",
            post(uploads::create_upload),
        )
        .route("/v1/access-points/{name}/quota", get(discovery::quota))
        .route(
            "/v1/access-points/{name}/uploads/verify",
            post(verify::verify_upload),
        )
        .route(
            "/v1/access-points/{name}/uploads/{upload_id}",
            delete(uploads::abort_upload),
        )
        .route(
            "/v1/access-points/{name}/uploads/{upload_id}/parts",
            post(uploads::upload_parts).get(uploads::list_parts),
        )
        .route(
            "/v1/access-points/{name}/uploads/{upload_id}/complete",
            post(uploads::complete_upload),
        )
        .route("/v1/access-points", get(discovery::list_access_points))
        .route("/v1/whoami", get(discovery::whoami))
        .route("/v1/admin/access-points", get(admin::list_access_points))
        .route(
            "/v1/admin/access-points/{name}",
            get(admin::get_access_point)
                .put(admin::put_access_point)
                .delete(admin::delete_access_point),
        )
        .route("/v1/admin/explain", post(explain::explain))
        .route(
            "/v1/admin/webhooks/dead-letters",
            get(webhooks::dead_letters),
        )
        .route(
            "/v1/admin/webhooks/dead-letters/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route(
            "/v1/admin/revocations",
            get(admin::list_revocations).post(admin::create_revocation),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi));
    // `/metrics` is here unless `metrics.listen` gives it a listener of its own.
    let api = match state.config().metrics.listen {
        None => api.route("/metrics", get(metrics_endpoint::metrics)),
        Some(_) => api,
    };
    with_layers(api, state)
}

/// What the `metrics.listen` listener serves: `GET /metrics` only, with the same request
/// ids, HTTPS rule, problem documents and request metrics as the API.
pub fn metrics_router(state: AppState) -> Router {
    let routes = Router::new().route("/metrics", get(metrics_endpoint::metrics));
    with_layers(routes, state)
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let server = &state.config().server;
    routes
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
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

/// The access point named by a presign, cookies, grants or multipart upload path
/// (`/v1/access-points/{name}/presign`, `…/{name}/cookies`, `…/{name}/grants`,
/// `…/{name}/uploads[/…]`).
fn issuing_access_point(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/access-points/")?;
    let single = |name: &&str| !name.is_empty() && !name.contains('/');
    rest.strip_suffix("/presign")
        .or_else(|| cookies_route(path))
        .or_else(|| rest.strip_suffix("/grants").filter(single))
        .or_else(|| rest.strip_suffix("/quota").filter(single))
        .or_else(|| {
            rest.split_once("/uploads")
                .filter(|(name, tail)| {
                    !name.contains('/') && (tail.is_empty() || tail.starts_with('/'))
                })
                .map(|(name, _)| name)
        })
}

/// The access point of `/v1/access-points/{name}/cookies`, exactly (one path segment).
fn cookies_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/access-points/")?
        .strip_suffix("/cookies")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// CORS: `server.cors_allowed_origins` on every route, plus an access point's own
/// `cors_origins` on that access point's issuing routes. Bearer tokens travel in a header, so
/// credentials mode is enabled on one route only, `…/{name}/cookies`, whose `Set-Cookie` a
/// browser keeps only from a credentialed response; presignd reads no cookie, so this grants
/// a page nothing it could not do with its token. `*` is never sent. A refused origin gets no
/// CORS headers — the browser blocks the call — and the refusal is logged.
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
        let per_access_point = issuing_access_point(parts.uri.path())
            .and_then(|name| {
                state
                    .catalog()
                    .get(name)
                    .map(|ap| ap.spec.cors_origins.iter().any(|o| o == origin))
            })
            .unwrap_or(false);
        if !per_access_point {
            // The request span names the matched route; the raw path is never logged.
            tracing::info!(origin, "CORS origin not allowed");
        }
        per_access_point
    });
    let credentials = AllowCredentials::predicate(|_origin: &HeaderValue, parts: &Parts| {
        cookies_route(parts.uri.path()).is_some()
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(credentials)
        // PUT, DELETE and the conditional headers serve the admin API (an admin console).
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-request-id"),
        ])
        // ETag for optimistic concurrency, Retry-After on 429: neither is CORS-safelisted.
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::ETAG,
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::{cookies_route, issuing_access_point};

    #[test]
    fn presign_and_upload_paths_name_their_access_point() {
        for (path, name) in [
            ("/v1/access-points/avatars/presign", Some("avatars")),
            ("/v1/access-points/videos/uploads", Some("videos")),
            ("/v1/access-points/videos/uploads/abc/parts", Some("videos")),
            ("/v1/access-points/videos/uploadsx", None),
            ("/v1/access-points/a/b/uploads", None),
            ("/v1/access-points", None),
            ("/v1/admin/access-points/videos", None),
            ("/v1/access-points/videos/cookies", Some("videos")),
            ("/v1/access-points/videos/grants", Some("videos")),
            ("/v1/access-points/a/b/grants", None),
            ("/v1/access-points/videos/quota", Some("videos")),
            ("/v1/access-points/videos/uploads/verify", Some("videos")),
            ("/v1/access-points/a/b/quota", None),
        ] {
            assert_eq!(issuing_access_point(path), name, "{path}");
        }
        // Credentialed CORS on the cookies route only, exactly.
        assert_eq!(
            cookies_route("/v1/access-points/videos/cookies"),
            Some("videos")
        );
        for other in [
            "/v1/access-points/x/uploads/cookies",
            "/v1/access-points/a/b/cookies",
            "/v1/access-points//cookies",
            "/v1/access-points/videos/presign",
            "/v1/admin/access-points/videos/cookies",
        ] {
            assert_eq!(cookies_route(other), None, "{other}");
        }
    }
}
