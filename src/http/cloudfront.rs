//! CloudFront delivery: the signed URL a `get` answers on an access point with
//! `delivery.cloudfront`, and `POST /v1/access-points/{name}/cookies`, signed cookies for
//! every key under a prefix (a video's playlist and segments).
//!
//! The cookies route reads top to bottom like presign: principal → access point → key prefix
//! (every key under it allowed, no deny rule able to apply) → lifetime → limits → sign →
//! audit → respond.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audited::{self, Audited};
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use crate::audit::{AuditRecord, policy_sha256, signature_sha256};
use crate::cloudfront::Conditions;
use crate::policy::{self, CloudFrontDelivery, Keys, Operation};
use crate::sign::RECORD_ID_PARAM;
use crate::state::AppState;

/// The policy conditions of a URL or cookies issued at `now` for `expires_in` seconds: a
/// start (`not_before`) and the caller's address (`bind_client_ip`) make it a custom policy.
/// Checked before the rate limits are charged, like every other refusal.
pub(super) fn conditions(
    call: &Audited<'_>,
    expires_in: u32,
    not_before: Option<OffsetDateTime>,
    bind_client_ip: Option<bool>,
) -> Result<Conditions, ApiError> {
    let now = OffsetDateTime::from(call.now).unix_timestamp();
    let expires = now + i64::from(expires_in);
    let not_before = not_before.map(OffsetDateTime::unix_timestamp);
    if not_before.is_some_and(|start| start >= expires) {
        return Err(ApiError::InvalidRequest(
            "not_before must be before the signature expires (now + expires_in)".into(),
        ));
    }
    let source_ip = match bind_client_ip {
        Some(true) => Some(call.client.ip.ok_or_else(|| {
            ApiError::InvalidRequest("bind_client_ip: the caller's address is unknown".into())
        })?),
        _ => None,
    };
    Ok(Conditions {
        expires,
        not_before,
        source_ip,
    })
}

fn expiry(conditions: &Conditions) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::from_unix_timestamp(conditions.expires)
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

/// A CloudFront signed URL for a GET of `key` (relative to the access point's prefix
/// `ap_prefix`) the rules allowed, and when it expires. It does not depend on the S3
/// credentials, so it is never clamped to them. The record learns what was signed.
pub(super) fn sign_get(
    state: &AppState,
    record: &mut AuditRecord,
    ap_prefix: &str,
    cf: &CloudFrontDelivery,
    key: &str,
    conditions: &Conditions,
) -> Result<(String, OffsetDateTime), ApiError> {
    // The record id rides along as on S3 URLs: CloudFront's access logs keep the query.
    let url = format!(
        "{}?{RECORD_ID_PARAM}={}",
        cf.url_of(ap_prefix, key),
        record.id
    );
    let signed = state
        .cloudfront()
        .sign_url(&cf.key_pair_id, &url, conditions)?;
    let expires_at = expiry(conditions)?;
    record.expires_at = Some(expires_at);
    record.signature_sha256 = Some(signature_sha256(&signed.signature));
    record.policy_sha256 = Some(policy_sha256(&signed.policy));
    record.resource = Some(url);
    Ok((signed.url, expires_at))
}

/// The body of `POST /v1/access-points/{name}/cookies`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookiesRequest {
    /// Relative to the access point's prefix, ending with `/`: the cookies grant every key
    /// under it.
    pub prefix: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    #[serde(default)]
    pub bind_client_ip: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CookiesResponse {
    /// Cookie name → value: `CloudFront-Policy`, `CloudFront-Signature`,
    /// `CloudFront-Key-Pair-Id`, `CloudFront-Hash-Algorithm`.
    pub cookies: BTreeMap<&'static str, String>,
    /// What the policy grants: `https://{domain}{path}*`.
    pub resource: String,
    /// Where to send the cookies: the distribution's domain, and the path they cover.
    pub domain: String,
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub access_point: String,
    pub bucket: String,
    /// The full key prefix, `prefix` of the access point + the requested one.
    pub prefix: String,
    pub request_id: String,
}

/// `POST /v1/access-points/{name}/cookies`: the cookies in the body (for native players) and
/// as `Set-Cookie` (for browsers).
pub async fn cookies(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(name): Path<String>,
    body: Result<ApiJson<CookiesRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, "cookies", Some(&name)).await?;
    let ApiJson(req) = body?;
    let mut call = Audited::new(
        &state,
        &client,
        &principal,
        "cookies",
        Some(&name),
        SystemTime::now(),
    );
    let outcome = decide(&mut call, &name, &req).await;
    let (issued, delivery) = call.finish(outcome).await?;
    let mut headers = HeaderMap::new();
    for cookie in set_cookies(&issued, &delivery) {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok((headers, Json(issued)).into_response())
}

async fn decide(
    call: &mut Audited<'_>,
    name: &str,
    req: &CookiesRequest,
) -> Result<(CookiesResponse, CloudFrontDelivery), ApiError> {
    let ap = call.access_point(name)?;
    let Some(cf) = ap.spec.delivery.cloudfront.clone() else {
        return Err(ApiError::InvalidRequest(
            "this access point delivers through S3; signed cookies need delivery.cloudfront".into(),
        ));
    };
    if !req.prefix.ends_with('/') {
        return Err(ApiError::InvalidRequest(
            "prefix must end with / (the cookies grant every key under a folder)".into(),
        ));
    }
    // Every key under the prefix must be allowed, and no deny rule may be able to apply:
    // the rule for a POST `starts-with` policy.
    let full_prefix = call.authorize(&ap, Operation::Get, Keys::Prefix(&req.prefix))?;
    let expires_in = policy::resolve_expires(&ap.spec, req.expires_in)?;
    let conditions = conditions(call, expires_in, req.not_before, req.bind_client_ip)?;
    call.state
        .limiter()
        .admit(call.principal, &ap, Operation::Get)
        .await?;
    let path = cf.path_of(&ap.spec.prefix, &req.prefix);
    let resource = format!("https://{}{path}*", cf.domain);
    let signed = call
        .state
        .cloudfront()
        .sign_cookies(&cf.key_pair_id, &resource, &conditions)?;
    let expires_at = expiry(&conditions)?;
    call.record.expires_at = Some(expires_at);
    call.record.signature_sha256 = Some(signature_sha256(&signed.signature));
    call.record.policy_sha256 = Some(policy_sha256(&signed.policy));
    call.record.resource = Some(resource.clone());
    let cookies = BTreeMap::from([
        ("CloudFront-Policy", signed.encoded_policy),
        ("CloudFront-Signature", signed.signature),
        ("CloudFront-Key-Pair-Id", signed.key_pair_id),
        ("CloudFront-Hash-Algorithm", "SHA256".to_string()),
    ]);
    let response = CookiesResponse {
        cookies,
        resource,
        domain: cf.domain.clone(),
        path,
        expires_at,
        access_point: ap.spec.name.clone(),
        bucket: ap.target.sdk_bucket().to_string(),
        prefix: full_prefix,
        request_id: call.client.request_id.clone(),
    };
    Ok((response, cf))
}

/// `Set-Cookie` for each cookie: `Secure; HttpOnly; SameSite=None` (the player's requests to
/// the distribution are cross-site to the page), scoped to the path, and to `cookie_domain`
/// when the access point sets one (else host-only: useful when presignd is served from the
/// distribution's own domain).
fn set_cookies(issued: &CookiesResponse, cf: &CloudFrontDelivery) -> Vec<String> {
    let domain = cf
        .cookie_domain
        .as_deref()
        .map(|d| format!("; Domain={d}"))
        .unwrap_or_default();
    let max_age = (issued.expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    issued
        .cookies
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={value}; Path={}{domain}; Max-Age={max_age}; Secure; HttpOnly; SameSite=None",
                issued.path
            )
        })
        .collect()
}
