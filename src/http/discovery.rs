//! `GET /v1/access-points` and `GET /v1/whoami`: what the caller is, and what it may use.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

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
            upload: ap.spec.upload.clone(),
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
