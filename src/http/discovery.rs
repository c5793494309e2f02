//! `GET /v1/access-points`, `GET /v1/access-points/{name}/quota` and `GET /v1/whoami`: what
//! the caller is, what it may use, and how much of its upload quota is left.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::client::ClientInfo;
use super::error::{ApiError, QuotaReport};
use super::extract::Authenticated;
use crate::policy::{self, Operation, UploadConstraints};
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct AccessPointSummary {
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub operations: Vec<Operation>,
    pub default_expires_in: u32,
    pub max_expires_in: u32,
    /// The mode only: key ids are for operators, not callers.
    pub encryption: &'static str,
    pub upload: UploadConstraints,
}

#[derive(Debug, Serialize)]
pub struct AccessPointList {
    pub access_points: Vec<AccessPointSummary>,
}

pub async fn list_access_points(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Json<AccessPointList> {
    let catalog = state.catalog();
    let access_points = catalog
        .iter()
        .filter(|ap| policy::can_see(ap, &principal))
        .map(|ap| AccessPointSummary {
            name: ap.spec.name.clone(),
            bucket: ap.target.sdk_bucket().to_string(),
            prefix: ap.spec.prefix.clone(),
            operations: policy::allowed_operations(ap, &principal),
            default_expires_in: ap.spec.default_expires_in,
            max_expires_in: ap.spec.max_expires_in,
            encryption: ap.spec.encryption.mode(),
            upload: UploadConstraints {
                // Where rejected objects go is the operator's business.
                quarantine_prefix: None,
                ..ap.spec.upload.clone()
            },
        })
        .collect();
    Json(AccessPointList { access_points })
}

#[derive(Debug, Serialize)]
pub struct WhoAmI {
    pub sub: String,
    pub iss: String,
    pub groups: Vec<String>,
    pub mfa: bool,
    pub admin: bool,
}

pub async fn whoami(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Json<WhoAmI> {
    let admin = state.config().auth.is_admin(&p);
    Json(WhoAmI {
        sub: p.sub,
        iss: p.iss,
        groups: p.groups,
        mfa: p.mfa,
        admin,
    })
}

#[derive(Debug, Serialize)]
pub struct QuotaResponse {
    pub access_point: String,
    #[serde(flatten)]
    pub quota: QuotaReport,
    pub request_id: String,
}

/// The caller's use of the access point's upload quota: verified bytes still stored, bytes
/// reserved by live issuances, objects. `404` if the caller cannot see the access point or it
/// has no quota.
pub async fn quota(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    client: ClientInfo,
    Path(name): Path<String>,
) -> Result<Json<QuotaResponse>, ApiError> {
    let ap = state
        .catalog()
        .get(&name)
        .filter(|ap| policy::can_see(ap, &p))
        .cloned()
        .ok_or(ApiError::NotFound)?;
    let quota = ap.spec.upload.quota.ok_or(ApiError::NoQuota)?;
    let now = crate::uploads::unix(SystemTime::now());
    let usage = state
        .store()
        .quota_usage(&ap.spec.name, &p.iss, &p.sub, quota.window.start(now))
        .await?;
    Ok(Json(QuotaResponse {
        access_point: ap.spec.name.clone(),
        quota: QuotaReport::new(&quota, usage),
        request_id: client.request_id,
    }))
}

/// Refuses an upload of `asked` bytes the caller's quota on `ap` has no room for, before
/// anything is charged or asked of S3 (the reservation itself comes later, atomically).
pub async fn check_quota(
    state: &AppState,
    ap: &crate::policy::CompiledAccessPoint,
    p: &crate::Principal,
    now: i64,
    asked: u64,
) -> Result<(), ApiError> {
    let Some(quota) = &ap.spec.upload.quota else {
        return Ok(());
    };
    let usage = state
        .store()
        .quota_usage(&ap.spec.name, &p.iss, &p.sub, quota.window.start(now))
        .await?;
    if quota.admits(usage, asked) {
        Ok(())
    } else {
        Err(ApiError::quota_exceeded(quota, usage, asked))
    }
}
