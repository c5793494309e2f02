//! Liveness, readiness and the served OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{PROBLEM_JSON, Problem};
use crate::state::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize)]
pub struct Checks {
    pub database: &'static str,
    pub audit: &'static str,
    pub jwks: &'static str,
    /// Audit records committed but not yet in the log bucket (absent: could not be counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_outbox_pending: Option<u64>,
    /// When a batch last reached the log bucket (null: not since this process started).
    #[serde(with = "time::serde::rfc3339::option")]
    pub audit_last_shipped_at: Option<time::OffsetDateTime>,
    /// Absent without `redis.url`. Redis down makes the instance unready only with
    /// `limits.on_redis_error = "deny"` (otherwise it limits locally and stays in rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<&'static str>,
}

/// Ready when the database answers, the audit sink accepts records and every JWKS issuer has
/// keys: without any of them no URL can be issued. Redis (when configured) is reported, and
/// blocks readiness only when `limits.on_redis_error = "deny"`. `warnings` lists what breaks
/// clients but not presignd (a bucket CORS that does not cover an access point's origins), or
/// that would break the next start (a CloudFront key file that can no longer be read).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store().ping().await;
    let audit = state.audit().check().await;
    let shipping = state.audit().status().await;
    let redis = state.limiter().redis_reachable().await;
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness: database unavailable");
    }
    if let Err(e) = &audit {
        tracing::warn!(error = %e, "readiness: audit sink unavailable");
    }
    let checks = Checks {
        database: if database.is_ok() {
            "ok"
        } else {
            "unavailable"
        },
        audit: if audit.is_ok() { "ok" } else { "unavailable" },
        jwks: if state.verifier().ready() {
            "ok"
        } else {
            "unavailable"
        },
        audit_outbox_pending: shipping.pending,
        audit_last_shipped_at: shipping.last_shipped_at,
        redis: redis.map(|up| if up { "ok" } else { "unavailable" }),
    };
    let redis_blocks = redis == Some(false) && state.limiter().fails_closed();
    let ready = database.is_ok() && audit.is_ok() && state.verifier().ready() && !redis_blocks;
    let metrics = state.metrics();
    metrics.set_dependency_up("database", database.is_ok());
    metrics.set_dependency_up("audit", audit.is_ok());
    metrics.set_dependency_up("jwks", state.verifier().ready());
    let mut warnings = state.bucket_warnings().to_vec();
    if !state.config().cloudfront.keys.is_empty() {
        let keys = state.config().cloudfront.clone();
        let key_warnings = tokio::task::spawn_blocking(move || keys.key_file_warnings());
        warnings.extend(key_warnings.await.unwrap_or_default());
    }
    if ready {
        let mut body = serde_json::json!({ "status": "ready", "checks": checks });
        if !warnings.is_empty() {
            body["warnings"] = serde_json::json!(warnings);
        }
        Json(body).into_response()
    } else {
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "a dependency is unavailable",
        );
        let mut body = serde_json::to_value(&problem).unwrap_or_default();
        body["checks"] = serde_json::to_value(&checks).unwrap_or_default();
        if !warnings.is_empty() {
            body["warnings"] = serde_json::json!(warnings);
        }
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    let mut resp = state.openapi_json().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
