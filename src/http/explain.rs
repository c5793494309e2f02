//! `POST /v1/admin/explain`: why a principal would get (or not get) a URL — for a real token
//! or simulated claims, a stored access point or an inline one (a change before it is
//! applied). Admin only (401 without a token, 404 for anyone else); it never signs, never
//! charges a rate limit, and its audit record (operation `explain`) names who explained what.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audited;
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, authenticate};
use crate::Principal;
use crate::audit::Verdict;
use crate::auth::AuthError;
use crate::catalog;
use crate::explain::{self, LimitView, Question, Step, url_https};
use crate::policy::{AccessPointSpec, CompiledAccessPoint, PresignRequest, RuleTrace};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    #[serde(deserialize_with = "object")]
    pub principal: PrincipalInput,
    pub access_point: AccessPointInput,
    /// The presign request to explain, as `POST /v1/access-points/{name}/presign` takes it.
    #[serde(deserialize_with = "object")]
    pub request: PresignRequest,
    #[serde(default, deserialize_with = "object")]
    pub client: ClientInput,
}

/// A JSON object only: serde would also fill a struct from an array of its fields.
fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    if !value.is_object() {
        return Err(D::Error::custom("expected a JSON object"));
    }
    serde_json::from_value(value).map_err(D::Error::custom)
}

/// A real token (verified as a request's would be), or claims to simulate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalInput {
    pub token: Option<String>,
    pub issuer: Option<String>,
    pub sub: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub mfa: bool,
}

/// A stored access point's name, or a whole document to try before applying it.
#[derive(Debug)]
pub enum AccessPointInput {
    Name(String),
    Inline(Box<AccessPointSpec>),
}

impl<'de> Deserialize<'de> for AccessPointInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(name) => Ok(AccessPointInput::Name(name)),
            spec @ Value::Object(_) => serde_json::from_value(spec)
                .map(AccessPointInput::Inline)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "access_point must be a name or an access point document",
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// The caller's address (default: unknown, which `network.allowed_cidrs` refuses).
    pub ip: Option<IpAddr>,
    /// Whether the request arrives over TLS (default: true).
    pub tls: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ExplainResponse {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// What the real request would be answered: 200, or the problem's status.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub simulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    pub access_point: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
    /// The rule that decided (index in the access point's `rules`), if one did.
    pub decided_by: Option<usize>,
    pub steps: Vec<Step>,
    pub rules: Vec<RuleTrace>,
    /// The rate limits an allowed request is charged to (explain charges none).
    pub limits: Vec<LimitView>,
    pub request_id: String,
}

pub async fn explain(
    State(state): State<AppState>,
    Admin(admin): Admin,
    client: ClientInfo,
    body: Result<ApiJson<ExplainRequest>, ApiError>,
) -> Result<Json<ExplainResponse>, ApiError> {
    let ApiJson(req) = body?;
    let (principal, simulated) = principal(&state, &req.principal).await?;
    let (ap, ap_name) = access_point(&state, &req.access_point)?;
    let question = Question {
        principal: principal.as_ref(),
        access_point: ap.as_deref(),
        request: &req.request,
        client_ip: req.client.ip,
        tls: req.client.tls.unwrap_or(true),
        require_https: state.config().server.require_https,
        limits: &state.config().limits,
        url_https: url_https(state.config()),
        insecure_allowed: state.config().s3.allow_insecure_endpoint,
    };
    let explained = explain::explain(&question);
    let refusal = explained.outcome.clone().err().map(ApiError::from);
    let problem = refusal.as_ref().map(ApiError::problem);

    // Who explained what, durable before the answer.
    let mut record = audited::record(&state, &client, Some(&admin), "explain", SystemTime::now());
    record.access_point = Some(audited::bounded(&ap_name));
    record.key = explained.key.clone();
    record.bucket = ap.as_ref().map(|ap| ap.target.sdk_bucket().to_string());
    record.decision = Verdict::Allow;
    let subject = principal.as_ref().ok().map_or_else(
        || "an unverified token".to_string(),
        |p| format!("{:?} of {}", audited::bounded(&p.sub), p.iss),
    );
    record.reason = format!(
        "explained: {subject}{} {} {:?} -> {}{}",
        if simulated { " (simulated)" } else { "" },
        req.request.operation.as_str(),
        audited::bounded(&req.request.key),
        refusal.as_ref().map_or("allow", ApiError::code),
        explained
            .decided_by
            .map_or(String::new(), |i| format!(" (rule {i})")),
    );
    record.rule = explained.decided_by;
    audited::commit_one(&state, Ok(()), record).await?;

    Ok(Json(ExplainResponse {
        decision: if refusal.is_none() { "allow" } else { "deny" },
        status: problem.as_ref().map_or(200, |p| p.status),
        code: refusal.as_ref().map(ApiError::code),
        detail: problem.map(|p| p.detail),
        simulated,
        principal: principal.ok(),
        access_point: ap_name,
        key: explained.key,
        expires_in: explained.expires_in,
        decided_by: explained.decided_by,
        steps: explained.steps,
        rules: explained.rules,
        limits: explained.limits,
        request_id: client.request_id.clone(),
    }))
}

/// The principal to explain for: a token verified as a request's would be (its refusal is
/// part of the explanation), or simulated claims from a configured issuer (the first one
/// when none is named).
async fn principal(
    state: &AppState,
    input: &PrincipalInput,
) -> Result<(Result<Principal, AuthError>, bool), ApiError> {
    match (&input.token, &input.sub) {
        (Some(token), None) if input.issuer.is_none() && input.groups.is_empty() && !input.mfa => {
            Ok((authenticate(state, token).await, false))
        }
        (None, Some(sub)) => {
            let principal = explain::simulate(
                &state.config().auth.issuers,
                sub,
                &input.groups,
                input.issuer.as_deref(),
                input.mfa,
            );
            Ok((principal, true))
        }
        _ => Err(ApiError::InvalidRequest(
            "principal must be either {\"token\"} or {\"sub\", \"groups\", \"issuer\", \"mfa\"}"
                .into(),
        )),
    }
}

/// The stored access point by name (`None` when there is none: the explanation says 404), or
/// an inline document validated as `PUT /v1/admin/access-points/{name}` would (400 if not).
fn access_point(
    state: &AppState,
    input: &AccessPointInput,
) -> Result<(Option<Arc<CompiledAccessPoint>>, String), ApiError> {
    match input {
        AccessPointInput::Name(name) => Ok((state.catalog().get(name).cloned(), name.clone())),
        AccessPointInput::Inline(spec) => {
            let ap = catalog::check_spec(spec, state.config())
                .map_err(|e| ApiError::InvalidAccessPoint(e.0))?;
            Ok((Some(Arc::new(ap)), spec.name.clone()))
        }
    }
}
