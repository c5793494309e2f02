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
}

/// Ready when the database answers, the audit sink accepts records and every JWKS issuer has
/// keys: without any of them no URL can be issued.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store().ping().await;
    let audit = state.audit().check().await;
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
    };
    let ready = database.is_ok() && audit.is_ok() && state.verifier().ready();
    if ready {
        Json(serde_json::json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "a dependency is unavailable",
        );
        let mut body = serde_json::to_value(&problem).unwrap_or_default();
        body["checks"] = serde_json::to_value(&checks).unwrap_or_default();
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
