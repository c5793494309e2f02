//! Download grants: revocable links good for `max_uses` downloads of one object.
//!
//! - `POST /v1/access-points/{name}/grants`: authorized exactly like a `get` of the key;
//!   answers the link `{server.public_base_url}/g/{token}` (the token is the capability and is
//!   stored only as its SHA-256).
//! - `GET /g/{token}`: no JWT. Checks the grant, the access point and its rules as they are
//!   now (for the grant's creator, from the redeemer's network), counts one use atomically,
//!   signs a fresh S3 or CloudFront URL living `grants.redirect_expires_in` and answers `302`
//!   to it once its record is durable. Used up, expired or revoked: `410 gone`.
//! - `HEAD /g/{token}`: the same checks, no use counted, no URL.
//! - `DELETE /v1/grants/{grant_id}`: its creator or an admin revokes it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audited::{self, Audited, bounded};
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use crate::audit::{AuditRecord, signature_sha256};
use crate::auth::Principal;
use crate::cloudfront::Conditions;
use crate::grants;
use crate::limits::Quota;
use crate::policy::{self, CompiledAccessPoint, ConstraintError, Keys, Operation};
use crate::sign::SignRequest;
use crate::state::AppState;
use crate::store::{Redemption, StoredGrant};
use crate::uploads::unix;

/// The body of `POST /v1/access-points/{name}/grants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub key: String,
    #[serde(default)]
    pub max_uses: Option<u32>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub response_content_disposition: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrantResponse {
    pub grant_id: String,
    /// `{public_base_url}/g/{token}`: a bearer credential until used up, expired or revoked.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub max_uses: u32,
    pub access_point: String,
    /// The full object key.
    pub key: String,
    pub request_id: String,
}

/// A grant's lifetime when the request names none: a day.
const DEFAULT_GRANT_SECONDS: u64 = 86_400;

pub async fn create(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(name): Path<String>,
    body: Result<ApiJson<GrantRequest>, ApiError>,
) -> Result<(StatusCode, Json<GrantResponse>), ApiError> {
    let principal =
        audited::authenticate(&state, &client, auth, "grant_create", Some(&name)).await?;
    let ApiJson(req) = body?;
    let now = SystemTime::now();
    let mut call = Audited::new(
        &state,
        &client,
        &principal,
        "grant_create",
        Some(&name),
        now,
    );
    let outcome = decide_create(&mut call, &name, &req).await;
    call.finish(outcome)
        .await
        .map(|created| (StatusCode::CREATED, Json(created)))
}

async fn decide_create(
    call: &mut Audited<'_>,
    name: &str,
    req: &GrantRequest,
) -> Result<GrantResponse, ApiError> {
    let config = call.state.config();
    let base = config.server.public_base_url.clone().ok_or_else(|| {
        ApiError::InvalidRequest(
            "download grants are not enabled here: server.public_base_url is not configured".into(),
        )
    })?;
    let ap = call.access_point(name)?;
    let full_key = call.authorize(&ap, Operation::Get, Keys::Exact(&req.key))?;
    let Some(own) = ap.spec.grants else {
        return Err(ApiError::InvalidRequest(
            "this access point allows no download grants (its document has no grants)".into(),
        ));
    };
    // The access point's bounds, within the server's.
    let global = &config.grants;
    let most_uses = own.max_uses.min(global.max_uses);
    let max_uses = req.max_uses.unwrap_or(1);
    if !(1..=most_uses).contains(&max_uses) {
        return Err(ApiError::InvalidRequest(format!(
            "max_uses must be between 1 and {most_uses} (the access point's grants.max_uses)"
        )));
    }
    let longest = own.max_expires_in.min(global.max_expires_in);
    let expires_in = req.expires_in.unwrap_or(DEFAULT_GRANT_SECONDS.min(longest));
    if !(1..=longest).contains(&expires_in) {
        return Err(ConstraintError::ExpiresOutOfRange {
            max: u32::try_from(longest).unwrap_or(u32::MAX),
        }
        .into());
    }
    policy::check_response_overrides(&ap.spec, None, req.response_content_disposition.as_deref())?;
    if req.response_content_disposition.is_some() && ap.spec.delivery.cloudfront.is_some() {
        return Err(ApiError::InvalidRequest(
            "response_content_disposition is an S3 parameter; this access point delivers GETs through CloudFront".into(),
        ));
    }
    call.state
        .limiter()
        .admit(call.principal, &ap, Operation::Get)
        .await?;
    let (token, digest) = grants::new_token().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let created_at = unix(call.now);
    // `expires_in` is at most a year: no overflow.
    let expires_at = created_at + i64::try_from(expires_in).unwrap_or(i64::MAX / 2);
    let grant = StoredGrant {
        grant_id: uuid::Uuid::now_v7().to_string(),
        access_point: ap.spec.name.clone(),
        bucket: ap.target.sdk_bucket().to_string(),
        request_key: req.key.clone(),
        object_key: full_key.clone(),
        issuer: call.principal.iss.clone(),
        subject: call.principal.sub.clone(),
        groups: call.principal.groups.clone(),
        mfa: call.principal.mfa,
        response_content_disposition: req.response_content_disposition.clone(),
        max_uses,
        uses: 0,
        created_at,
        expires_at,
        revoked_at: None,
    };
    // Stored before its record is durable; should the record fail, the token is never
    // handed out and the grant cannot be redeemed.
    call.state.store().insert_grant(&grant, &digest).await?;
    let expires_at = OffsetDateTime::from_unix_timestamp(expires_at)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    call.record.grant_id = Some(grant.grant_id.clone());
    call.record.expires_at = Some(expires_at);
    Ok(GrantResponse {
        grant_id: grant.grant_id,
        url: format!("{base}/g/{token}"),
        expires_at,
        max_uses,
        access_point: ap.spec.name.clone(),
        key: full_key,
        request_id: call.client.request_id.clone(),
    })
}

/// `grants.redemptions_per_minute` from one address (IPv6: its /64), on this instance.
fn admit_redemption(state: &AppState, ip: Option<IpAddr>) -> Result<(), ApiError> {
    let per_minute = state.config().grants.redemptions_per_minute;
    let Some(quota) = Quota::per_minute(per_minute, per_minute) else {
        return Ok(());
    };
    let source = ip.map_or_else(|| "unknown".into(), crate::limits::source_of);
    let key = format!("grant-redemptions\0{source}");
    state
        .redemptions()
        .admit(&[(key.as_str(), quota)])
        .map_err(|(_, wait_us)| ApiError::RateLimited {
            scope: "grant_redemptions",
            retry_after: wait_us.div_ceil(1_000_000).max(1),
        })
}

/// What a redemption checks before it counts a use: the token, the grant, its access point
/// and the rules for its creator now. The grant and the access point on success.
async fn check_grant(
    state: &AppState,
    client: &ClientInfo,
    record: &mut AuditRecord,
    token: &str,
    now: i64,
) -> Result<(StoredGrant, std::sync::Arc<CompiledAccessPoint>, Principal), ApiError> {
    admit_redemption(state, client.ip)?;
    if !grants::is_token(token) {
        return Err(ApiError::GrantNotFound);
    }
    let grant = state
        .store()
        .grant_by_token(&grants::token_sha256(token))
        .await?
        .ok_or(ApiError::GrantNotFound)?;
    record.grant_id = Some(grant.grant_id.clone());
    record.access_point = Some(grant.access_point.clone());
    record.key = Some(grant.object_key.clone());
    if let Some(gone) = grants::gone(&grant, now) {
        return Err(ApiError::Gone(gone.as_str().into()));
    }
    let no_longer = |why: &str| ApiError::Gone(format!("no longer allowed: {why}"));
    if !state
        .config()
        .auth
        .issuers
        .iter()
        .any(|i| i.issuer == grant.issuer)
    {
        return Err(no_longer("its creator's issuer is no longer configured"));
    }
    let ap = state
        .catalog()
        .get(&grant.access_point)
        .cloned()
        .ok_or_else(|| ApiError::Gone("no longer served: its access point is gone".into()))?;
    if ap.spec.grants.is_none() || ap.target.sdk_bucket() != grant.bucket {
        return Err(no_longer("its access point changed (grants or bucket)"));
    }
    record.bucket = Some(ap.target.sdk_bucket().to_string());
    record.sse = Some(ap.spec.encryption.mode().to_string());
    // The rules as they are now, for the grant's creator, from the redeemer's network.
    let creator = Principal {
        sub: grant.subject.clone(),
        iss: grant.issuer.clone(),
        groups: grant.groups.clone(),
        mfa: grant.mfa,
        issued_at: None,
        expires_at: grant.expires_at,
        jti: None,
    };
    match policy::authorize(
        &ap,
        &creator,
        client.ip,
        Operation::Get,
        Keys::Exact(&grant.request_key),
    ) {
        Ok(authorized) if authorized.key == grant.object_key => {}
        Err(policy::Refusal::Network) => return Err(ApiError::NetworkDenied),
        _ => return Err(no_longer("the access point's rules changed")),
    }
    Ok((grant, ap, creator))
}

/// Signs the URL to redirect to (its lifetime `grants.redirect_expires_in`), then counts one
/// use: a signing failure spends nothing, and a URL is never signed for a use not counted
/// (it is dropped unanswered). Each redemption is charged to the creator's rate limits, as
/// a URL they asked for would be.
async fn decide_redeem(
    state: &AppState,
    client: &ClientInfo,
    record: &mut AuditRecord,
    token: &str,
    now: SystemTime,
) -> Result<String, ApiError> {
    let (grant, ap, creator) = check_grant(state, client, record, token, unix(now)).await?;
    state.limiter().admit(&creator, &ap, Operation::Get).await?;
    let lifetime = state.config().grants.redirect_expires_in;
    let url = match &ap.spec.delivery.cloudfront {
        Some(cf) => {
            let conditions = Conditions {
                expires: unix(now) + i64::from(lifetime),
                not_before: None,
                source_ip: None,
            };
            let (url, _) = super::cloudfront::sign_get(
                state,
                record,
                &ap.spec.prefix,
                cf,
                &grant.request_key,
                &conditions,
            )?;
            url
        }
        None => {
            let signed = state
                .signer()
                .presign(&SignRequest {
                    operation: Operation::Get,
                    target: &ap.target,
                    key: &grant.object_key,
                    expires_in: Duration::from_secs(u64::from(lifetime)),
                    now,
                    encryption: &ap.spec.encryption,
                    content_type: None,
                    content_length: None,
                    checksum_sha256: None,
                    metadata: &BTreeMap::new(),
                    response_content_disposition: grant.response_content_disposition.as_deref(),
                    response_content_type: None,
                    record_id: &record.id,
                    create_only: false,
                })
                .await?;
            record.expires_at = Some(signed.expires_at);
            record.signature_sha256 = Some(signature_sha256(&signed.signature));
            signed.url
        }
    };
    match state
        .store()
        .redeem_grant(&grants::token_sha256(token), unix(now))
        .await?
    {
        Redemption::Redeemed(_) => Ok(url),
        Redemption::Gone(g) => {
            let why = grants::gone(&g, unix(now)).map_or("gone", grants::Gone::as_str);
            Err(ApiError::Gone(why.into()))
        }
        Redemption::Unknown => Err(ApiError::GrantNotFound),
    }
}

/// Every `/g` answer, redirect or refusal, is for this request only.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /g/{token}`: one use, then `302` to a fresh URL once the record is durable. A use
/// counted for a redemption whose record then fails is given back.
pub async fn redeem(
    State(state): State<AppState>,
    client: ClientInfo,
    Path(token): Path<String>,
) -> Response {
    let now = SystemTime::now();
    let mut record = audited::record(&state, &client, None, "grant_redeem", now);
    let outcome = decide_redeem(&state, &client, &mut record, &token, now).await;
    audited::name_decision(&mut record, &outcome);
    let counted = outcome.is_ok().then(|| record.grant_id.clone()).flatten();
    let response = match audited::commit_one(&state, outcome, record).await {
        Ok(location) => match HeaderValue::from_str(&location) {
            Ok(location) => {
                let mut response = StatusCode::FOUND.into_response();
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, location);
                headers.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                );
                response
            }
            Err(e) => ApiError::Internal(Box::new(e)).into_response(),
        },
        Err(e) => {
            if let (ApiError::AuditUnavailable(_), Some(grant_id)) = (&e, counted)
                && let Err(refund) = state.store().refund_grant_use(&grant_id).await
            {
                tracing::error!(%grant_id, error = %refund, "could not give back a use of a grant whose redemption was not recorded");
            }
            e.into_response()
        }
    };
    no_store(response)
}

/// `HEAD /g/{token}`: whether a `GET` would redirect now; no use counted, nothing signed, no
/// record (a link preview or a player's probe must not spend a use).
pub async fn peek(
    State(state): State<AppState>,
    client: ClientInfo,
    Path(token): Path<String>,
) -> Response {
    let now = SystemTime::now();
    let mut scratch = audited::record(&state, &client, None, "grant_redeem", now);
    let checked = check_grant(&state, &client, &mut scratch, &token, unix(now)).await;
    no_store(match checked {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    })
}

/// `DELETE /v1/grants/{grant_id}`: its creator (same issuer and subject) or an admin. Anyone
/// else, and an unknown id, get `404`. Revoking twice keeps the first time and answers `204`.
pub async fn revoke(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(grant_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, "grant_revoke", None).await?;
    let now = SystemTime::now();
    let mut record = audited::record(&state, &client, Some(&principal), "grant_revoke", now);
    record.grant_id = Some(bounded(&grant_id));
    let admin = state.config().auth.is_admin(&principal);
    let owner = (!admin).then_some((principal.iss.as_str(), principal.sub.as_str()));
    // Revoked before its record is durable: should the record fail, the grant is revoked
    // anyway (the safe side) and the caller told `audit_unavailable`.
    let outcome = match state
        .store()
        .revoke_grant(&grant_id, owner, unix(now))
        .await
    {
        Ok(Some(g)) => {
            record.access_point = Some(g.access_point);
            record.key = Some(g.object_key);
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(None) => Err(ApiError::GrantNotFound),
        Err(e) => Err(e.into()),
    };
    audited::name_decision(&mut record, &outcome);
    audited::commit_one(&state, outcome, record).await
}
