//! The outermost middleware: assigns the request id, works out who is calling from where,
//! enforces `require_https`, runs the request inside a span, makes every error response a
//! problem+json document carrying the request id, and counts the request in the metrics.
//!
//! The span (`request`) carries the request id, the method and the matched route (never the
//! raw path or query); the presign handlers add the access point, decision and reason, and the
//! closing `request` event adds the status and latency. Tokens, URLs and secrets are never
//! span fields.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use tracing::field::Empty;

use super::client::{ClientInfo, Proxies, acceptable_request_id};
use super::error::{ApiError, PROBLEM_JSON, Problem, ProblemExt};
use crate::state::AppState;

/// Paths that answer over plain HTTP even when `require_https` is on (probes from the
/// orchestrator usually speak plain HTTP on a private port).
const HTTPS_EXEMPT: &[&str] = &["/healthz", "/readyz"];

/// `/metrics` answers plain HTTP only when `metrics.allow_plain_http` says so.
const METRICS_PATH: &str = "/metrics";

pub async fn context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted_proxies = &state.config().server.trusted_proxies;
    // A request id from outside is kept only from a trusted proxy (it lands in audit records,
    // so a client must not choose it).
    let from_proxy = peer.is_some_and(|ip| {
        let ip = ip.to_canonical();
        trusted_proxies.iter().any(|n| n.contains(&ip))
    });
    let request_id = req
        .headers()
        .get("x-request-id")
        .filter(|_| from_proxy)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let native_tls = req
        .extensions()
        .get::<crate::serve::NativeTls>()
        .is_some_and(|t| t.0);
    let proxies = Proxies {
        trusted: trusted_proxies,
        header: state.config().server.forwarded_header,
    };
    let client = ClientInfo::from_request(
        request_id.clone(),
        peer,
        native_tls,
        req.headers(),
        &proxies,
    );
    let hsts = client.tls && state.config().server.hsts_max_age_seconds > 0;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = crate::metrics::method_label(&method),
        route = %route,
        access_point = Empty,
        decision = Empty,
        reason = Empty,
    );

    let path = req.uri().path();
    let exempt = HTTPS_EXEMPT.contains(&path)
        || (path == METRICS_PATH && state.config().metrics.allow_plain_http);
    let response = if state.config().server.require_https && !client.tls && !exempt {
        refuse_plain_http(&state, &client, req.uri().path())
            .instrument(span.clone())
            .await
            .into_response()
    } else {
        req.extensions_mut().insert(client);
        next.run(req).instrument(span.clone()).await
    };

    let mut response = finish_problem(response, &request_id, &span).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if hsts
        && let Ok(v) = HeaderValue::from_str(&format!(
            "max-age={}; includeSubDomains",
            state.config().server.hsts_max_age_seconds
        ))
    {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics()
        .observe_http(&route, &method, status, elapsed);
    span.in_scope(|| {
        tracing::info!(status, latency_us = elapsed.as_micros() as u64, "request");
    });
    response
}

/// A presign or multipart upload request over plain HTTP is a refused decision, and so it is
/// audited.
async fn refuse_plain_http(state: &AppState, client: &ClientInfo, path: &str) -> ApiError {
    let access_point = super::issuing_access_point(path);
    if access_point.is_some() || path == "/v1/presign/batch" {
        super::audited::refuse(
            state,
            client,
            access_point,
            "unknown",
            ApiError::HttpsRequired,
        )
        .await
    } else {
        ApiError::HttpsRequired
    }
}

/// Adds the request id to a handler's problem, or replaces a framework error body (404 route,
/// 405, body limit, timeout, panic) with a problem of its own.
async fn finish_problem(response: Response, request_id: &str, span: &tracing::Span) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let problem = match parts.extensions.remove::<ProblemExt>() {
        Some(ProblemExt { problem, cause }) => {
            if let Some(cause) = cause {
                span.in_scope(|| tracing::error!(code = problem.code, %cause, "request failed"));
            }
            problem
        }
        None => {
            let is_problem = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
            if is_problem {
                // A problem built elsewhere (readiness): add the request id to it.
                let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
                    return Response::from_parts(parts, Body::empty());
                };
                let mut doc: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}));
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("request_id".into(), request_id.into());
                }
                parts.headers.remove(header::CONTENT_LENGTH);
                let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                return Response::from_parts(parts, Body::from(bytes));
            }
            if status.is_server_error() {
                span.in_scope(|| {
                    tracing::error!(status = status.as_u16(), "request failed outside a handler")
                });
            }
            Problem::for_status(status)
        }
    };
    let problem = Problem {
        request_id: Some(request_id.to_string()),
        ..problem
    };
    let bytes = serde_json::to_vec(&problem).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}
