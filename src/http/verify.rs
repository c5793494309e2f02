//! Verified completion: `POST /v1/access-points/{name}/uploads/verify`, and the same check
//! run by every multipart completion.
//!
//! principal → access point → network → issuance (the uploader's own, or any for an admin) →
//! key → claim → HeadObject (and a streamed SHA-256 when S3 keeps none) → compare → audit
//! (`upload_verified` / `upload_rejected`) → `on_mismatch` → answer. The claim makes one
//! verification do the work however many arrive at once; its answer is kept, so verifying
//! again answers the same without a new record.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audited::{self, Audited};
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use crate::Principal;
use crate::policy::{
    self, CompiledAccessPoint, Encryption, Keys, MAX_KEY_BYTES, OnMismatch, Operation, Target,
    validate_key,
};
use crate::state::AppState;
use crate::store::{IssuanceKind, IssuanceState, NewDelivery, StoredIssuance};
use crate::uploads::unix;
use crate::uploads::verify::{Issued, Mismatch, Observed, compare};
use crate::webhooks::EventType;
use crate::webhooks::deliver::deliveries_for;

const OP_VERIFY: &str = "upload_verify";
pub const OP_VERIFIED: &str = "upload_verified";
pub const OP_REJECTED: &str = "upload_rejected";
/// Unverified uploads one round verifies at most (the next round takes the rest), and how
/// many at once.
const EXPIRED_BATCH: u32 = 100;
const EXPIRED_CONCURRENCY: usize = 8;
/// How long one verification may hold an issuance (hashing a 5 GiB object takes a while);
/// after that another may take it over.
const CLAIM_SECONDS: i64 = 900;
/// Objects hashed at once by this instance (each reads a whole object from S3).
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub issuance_id: String,
    /// A starts-with POST only: the key the browser uploaded to (without the access point's
    /// prefix, like a presign request's `key`).
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Verified,
    Rejected,
}

/// What happened to a rejected object (`upload.on_mismatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Kept,
    Deleted,
    Quarantined,
}

/// A verification's answer; kept with the issuance and given again to a repeated request
/// (with that request's `request_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub issuance_id: String,
    pub access_point: String,
    pub bucket: String,
    pub key: String,
    pub status: Status,
    /// Empty when verified.
    pub mismatches: Vec<Mismatch>,
    /// The object as S3 reported it (absent when it is missing or SSE-C encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Rejected objects only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    pub request_id: String,
}

pub async fn verify_upload(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(name): Path<String>,
    body: Result<ApiJson<VerifyRequest>, ApiError>,
) -> Result<Json<Verification>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_VERIFY, Some(&name)).await?;
    let ApiJson(req) = body?;
    let mut call = Audited::new(
        &state,
        &client,
        &principal,
        OP_VERIFY,
        Some(&name),
        SystemTime::now(),
    );
    let (ap, issuance, key) = match find(&mut call, &name, &req).await {
        Ok(found) => found,
        // Refused: recorded as an `upload_verify` deny.
        Err(e) => return call.finish(Err::<Json<Verification>, _>(e)).await,
    };
    if let Some(answer) = answered(&issuance, &client)? {
        return Ok(Json(answer));
    }
    // An open multipart upload's object does not exist yet: verifying now would spend its
    // issuance on "missing". (Completion closes it, setting its expiry.)
    if issuance.kind == IssuanceKind::Multipart && issuance.expires_at == i64::MAX {
        return call
            .finish(Err::<Json<Verification>, _>(ApiError::UploadOpen))
            .await;
    }
    run(
        &state,
        &client,
        &principal,
        &ap,
        &issuance.issuance_id,
        &key,
    )
    .await
    .map(Json)
}

/// The access point, the issuance and the object's full key, if the caller may verify it:
/// its uploader (same issuer and subject) or an admin. Anything else is `404`, like an
/// unknown id.
async fn find(
    call: &mut Audited<'_>,
    name: &str,
    req: &VerifyRequest,
) -> Result<(Arc<CompiledAccessPoint>, StoredIssuance, String), ApiError> {
    let admin = call.state.config().auth.is_admin(call.principal);
    let ap = if admin {
        let ap = call
            .state
            .catalog()
            .get(name)
            .cloned()
            .ok_or(ApiError::NotFound)?;
        call.record.bucket = Some(ap.target.sdk_bucket().to_string());
        ap
    } else {
        call.access_point(name)?
    };
    if !policy::in_network(&ap, call.client.ip) {
        return Err(ApiError::NetworkDenied);
    }
    call.record.issuance_id = Some(audited::bounded(&req.issuance_id));
    let issuance = call
        .state
        .store()
        .issuance(&req.issuance_id)
        .await?
        .filter(|i| i.access_point == ap.spec.name)
        .filter(|i| admin || (i.issuer == call.principal.iss && i.subject == call.principal.sub))
        .ok_or(ApiError::IssuanceNotFound)?;
    let key = object_key(&ap, &issuance, req.key.as_deref())?;
    call.record.key = Some(key.clone());
    Ok((ap, issuance, key))
}

/// The object's full key: the issued key, or for a starts-with POST the caller's `key` under
/// the access point's prefix, which must complete the issued prefix.
fn object_key(
    ap: &CompiledAccessPoint,
    issuance: &StoredIssuance,
    key: Option<&str>,
) -> Result<String, ApiError> {
    match (issuance.key_is_prefix, key) {
        (false, None) => Ok(issuance.object_key.clone()),
        (false, Some(k)) if format!("{}{k}", ap.spec.prefix) == issuance.object_key => {
            Ok(issuance.object_key.clone())
        }
        (false, Some(_)) => Err(ApiError::InvalidRequest(
            "key: this issuance names one key; leave key out or give that key".into(),
        )),
        (true, None) => Err(ApiError::InvalidRequest(
            "key: this upload was a starts-with POST; give the key the browser uploaded to".into(),
        )),
        (true, Some(k)) => {
            let full = validate_key(&ap.spec.prefix, k)
                .map_err(|e| ApiError::InvalidRequest(format!("key: {e}")))?;
            if full.starts_with(&issuance.object_key) {
                Ok(full)
            } else {
                Err(ApiError::InvalidRequest(
                    "key: not under the prefix this POST was issued for".into(),
                ))
            }
        }
    }
}

/// The kept answer of a verified or rejected issuance, with this request's id.
fn answered(
    issuance: &StoredIssuance,
    client: &ClientInfo,
) -> Result<Option<Verification>, ApiError> {
    match (&issuance.outcome, issuance.state.is_final()) {
        (Some(outcome), true) => {
            let mut answer: Verification = serde_json::from_str(outcome)
                .map_err(|e| ApiError::Internal(format!("stored verification: {e}").into()))?;
            answer.request_id = client.request_id.clone();
            Ok(Some(answer))
        }
        _ => Ok(None),
    }
}

/// Verifies the issuance `issuance_id` under `key` (the caller is entitled to it): claims it,
/// looks at the object, records the outcome, handles a rejected object, keeps the answer.
///
/// The work runs in its own task: hashing a large object can outlast the request's timeout,
/// and a verification cut off there would leave its claim held (409) until it lapses. Left
/// to finish, its kept answer is what the caller's next request gets.
pub async fn run(
    state: &AppState,
    client: &ClientInfo,
    principal: &Principal,
    ap: &Arc<CompiledAccessPoint>,
    issuance_id: &str,
    key: &str,
) -> Result<Verification, ApiError> {
    let (state, client, principal, ap) = (
        state.clone(),
        client.clone(),
        principal.clone(),
        Arc::clone(ap),
    );
    let (issuance_id, key) = (issuance_id.to_string(), key.to_string());
    tokio::spawn(
        async move { run_here(&state, &client, &principal, &ap, &issuance_id, &key).await },
    )
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
}

async fn run_here(
    state: &AppState,
    client: &ClientInfo,
    principal: &Principal,
    ap: &CompiledAccessPoint,
    issuance_id: &str,
    key: &str,
) -> Result<Verification, ApiError> {
    let now = SystemTime::now();
    let t = unix(now);
    let Some(issuance) = state
        .store()
        .claim_issuance(issuance_id, t, t + CLAIM_SECONDS)
        .await?
    else {
        // Another verification holds it, or has just finished it.
        let current = state.store().issuance(issuance_id).await?;
        return match current.as_ref().map(|i| answered(i, client)) {
            Some(Ok(Some(answer))) => Ok(answer),
            Some(Err(e)) => Err(e),
            _ => Err(ApiError::VerificationInProgress),
        };
    };
    let outcome = verify_claimed(state, client, principal, ap, &issuance, key, now).await;
    match &outcome {
        Ok(answer) => {
            let state_now = match answer.status {
                Status::Verified => IssuanceState::Verified,
                Status::Rejected => IssuanceState::Rejected,
            };
            let json =
                serde_json::to_string(answer).map_err(|e| ApiError::Internal(Box::new(e)))?;
            // What the object now takes (a removed or missing one nothing).
            let size = match answer.action {
                None | Some(Action::Kept) => answer.content_length.unwrap_or(0),
                Some(Action::Deleted | Action::Quarantined) => 0,
            };
            // Nothing stored counts toward no quota: such an answer is kept the retention.
            let keep = if size == 0 {
                t.saturating_add(retention(state))
            } else {
                keep_until(state, ap, issuance.created_at, t)
            };
            if let Err(e) = state
                .store()
                .finish_issuance(
                    issuance_id,
                    state_now,
                    &json,
                    size,
                    keep,
                    &events(state, &issuance, answer),
                )
                .await
            {
                // Recorded (and acted on), but neither kept nor its events queued: not
                // answered. Released, so a later verification runs again (a second record).
                tracing::error!(issuance_id, error = %e, "cannot keep a verification's answer");
                if let Err(e) = state.store().release_issuance(issuance_id).await {
                    tracing::warn!(issuance_id, error = %e, "cannot release it either; its claim lapses");
                }
                return Err(e.into());
            }
        }
        Err(_) => {
            if let Err(e) = state.store().release_issuance(issuance_id).await {
                tracing::warn!(issuance_id, error = %e, "cannot release a failed verification; its claim lapses");
            }
        }
    }
    outcome
}

async fn verify_claimed(
    state: &AppState,
    client: &ClientInfo,
    principal: &Principal,
    ap: &CompiledAccessPoint,
    issuance: &StoredIssuance,
    key: &str,
    now: SystemTime,
) -> Result<Verification, ApiError> {
    let bucket = issuance.bucket.as_str();
    let customer_key = matches!(issuance.encryption, Encryption::SseC);
    let signer = state.signer();
    let mut observed = signer
        .observe_object(bucket, key, customer_key)
        .await
        .map_err(|e| ApiError::Upstream(Box::new(e)))?;
    let mut issued = Issued {
        min_length: issuance.min_length,
        max_length: issuance.max_length,
        content_type: issuance.content_type.clone(),
        checksum_sha256: issuance.checksum_sha256.clone(),
        encryption: issuance.encryption.clone(),
        metadata: issuance.metadata.clone(),
    };
    // Stores that keep no SHA-256 (radosgw before Squid): hash the bytes — only an object of
    // an allowed size (so at most the issued maximum), the one HeadObject saw (If-Match), a
    // few at a time. An object of the wrong size is rejected without.
    if let (Some(_), Observed::Found(found)) = (&issuance.checksum_sha256, &mut observed)
        && found.checksum_sha256.is_none()
    {
        let in_range = found.size >= issued.min_length
            && issued.max_length.is_none_or(|max| found.size <= max);
        if in_range {
            let _turn = HASHING
                .acquire()
                .await
                .map_err(|e| ApiError::Internal(Box::new(e)))?;
            match signer
                .object_sha256(bucket, key, found.etag.as_deref())
                .await
                .map_err(|e| ApiError::Upstream(Box::new(e)))?
            {
                Some(sum) => found.checksum_sha256 = Some(sum),
                None => observed = Observed::Missing,
            }
        } else {
            issued.checksum_sha256 = None;
        }
    }
    // Nothing there (or gone while hashing) while the URL still lives: the upload may still
    // come. Answering "missing" for good now would let it arrive unverified (and uncounted).
    if observed == Observed::Missing
        && issuance.kind != IssuanceKind::Multipart
        && issuance.expires_at > unix(now)
    {
        return Err(ApiError::NotUploadedYet);
    }
    let mismatches = compare(&issued, &observed);
    let status = if mismatches.is_empty() {
        Status::Verified
    } else {
        Status::Rejected
    };
    let upload = &ap.spec.upload;
    let (action, quarantine_key) = match (status, &observed) {
        (Status::Verified, _) => (None, None),
        // Nothing to act on, or not the caller's to remove.
        (Status::Rejected, Observed::Missing) => (Some(Action::Kept), None),
        (Status::Rejected, _) if !may_remove(state, client, principal, ap, issuance, key) => {
            (Some(Action::Kept), None)
        }
        (Status::Rejected, _) => match (upload.on_mismatch, &upload.quarantine_prefix) {
            (OnMismatch::Delete, _) => (Some(Action::Deleted), None),
            // S3 keys end at 1024 bytes; a copy source is built for buckets only.
            (OnMismatch::Quarantine, Some(q))
                if q.len() + key.len() <= MAX_KEY_BYTES
                    && matches!(ap.target, Target::Bucket(_)) =>
            {
                (Some(Action::Quarantined), Some(format!("{q}{key}")))
            }
            _ => (Some(Action::Kept), None),
        },
    };
    let found = match &observed {
        Observed::Found(f) => Some(f),
        _ => None,
    };
    let answer = Verification {
        issuance_id: issuance.issuance_id.clone(),
        access_point: ap.spec.name.clone(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        status,
        mismatches,
        content_length: found.map(|f| f.size),
        content_type: found.and_then(|f| f.content_type.clone()),
        etag: found.and_then(|f| f.etag.clone()),
        action,
        quarantine_key: quarantine_key.clone(),
        verified_at: OffsetDateTime::from(now),
        request_id: client.request_id.clone(),
    };
    // Recorded before presignd touches the object: nothing it does to S3 goes unaudited.
    let op = match status {
        Status::Verified => OP_VERIFIED,
        Status::Rejected => OP_REJECTED,
    };
    let mut record = audited::record(state, client, Some(principal), op, now);
    record.access_point = Some(ap.spec.name.clone());
    record.bucket = Some(bucket.to_string());
    record.key = Some(key.to_string());
    record.sse = Some(issuance.encryption.mode().to_string());
    record.issuance_id = Some(issuance.issuance_id.clone());
    record.content_length = answer.content_length;
    audited::name_decision(&mut record, &Ok::<(), ApiError>(()));
    audited::commit_one(state, Ok(()), record).await?;
    match (action, quarantine_key) {
        (Some(Action::Deleted), _) => signer.delete_object(bucket, key).await,
        (Some(Action::Quarantined), Some(to)) => signer.quarantine_object(bucket, key, &to).await,
        _ => Ok(()),
    }
    .map_err(|e| ApiError::Upstream(Box::new(e)))?;
    Ok(answer)
}

/// Whether presignd may remove the object for this caller: an admin, or a caller the access
/// point (same bucket) still lets write the key — one who could replace the object anyway.
/// (`on_mismatch: delete | quarantine` are refused on create-only access points, where a
/// caller cannot replace an object.)
fn may_remove(
    state: &AppState,
    client: &ClientInfo,
    principal: &Principal,
    ap: &CompiledAccessPoint,
    issuance: &StoredIssuance,
    key: &str,
) -> bool {
    if ap.target.sdk_bucket() != issuance.bucket {
        return false;
    }
    state.config().auth.is_admin(principal)
        || key.strip_prefix(ap.spec.prefix.as_str()).is_some_and(|k| {
            policy::authorize(ap, principal, client.ip, Operation::Put, Keys::Exact(k)).is_ok()
        })
}

/// Until when an issuance is kept: the retention after `after` (its URL's expiry, or its
/// answer), and as long as it counts toward the access point's quota window.
pub fn keep_until(state: &AppState, ap: &CompiledAccessPoint, created_at: i64, after: i64) -> i64 {
    let quota = ap
        .spec
        .upload
        .quota
        .map_or(i64::MIN, |q| q.window.counts_until(created_at));
    after.saturating_add(retention(state)).max(quota)
}

fn retention(state: &AppState) -> i64 {
    i64::try_from(state.config().uploads.verification_retention_seconds).unwrap_or(i64::MAX)
}

/// Verifies uploads on quota access points that nobody verified once their URLs have
/// expired, as their uploaders would: an unverified issuance holds its whole reservation, and
/// this turns it into the size of what arrived (nothing, if nothing did). Each is claimed, so many
/// instances share the work. Returns how many were verified.
pub async fn verify_expired(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let catalog = state.catalog();
    let names: Vec<String> = catalog
        .iter()
        .filter(|ap| ap.spec.upload.quota.is_some())
        .map(|ap| ap.spec.name.clone())
        .collect();
    let grace = state.config().uploads.expired_verification_grace_seconds;
    let now = unix(SystemTime::now());
    let before = now.saturating_sub(i64::try_from(grace).unwrap_or(i64::MAX));
    let due = state
        .store()
        .expired_unverified(&names, now, before, EXPIRED_BATCH)
        .await?;
    // A few at a time: each is a HeadObject (and perhaps a hash), and a backlog must drain.
    let verified = futures_util::stream::iter(due)
        .map(|issuance| {
            let ap = catalog.get(&issuance.access_point).cloned();
            async move {
                let ap = ap?;
                // The uploader as they were at issuance (groups then; no MFA).
                let uploader = Principal {
                    sub: issuance.subject.clone(),
                    iss: issuance.issuer.clone(),
                    groups: issuance.groups.clone(),
                    mfa: false,
                    issued_at: None,
                    expires_at: 0,
                    jti: None,
                };
                let sweeper = ClientInfo {
                    request_id: format!("sweeper-{}", uuid::Uuid::now_v7()),
                    ip: None,
                    tls: false,
                    user_agent: None,
                    origin: None,
                };
                let key = &issuance.object_key;
                match run(state, &sweeper, &uploader, &ap, &issuance.issuance_id, key).await {
                    Ok(_) => Some(()),
                    Err(ApiError::VerificationInProgress) => None,
                    Err(e) => {
                        tracing::warn!(issuance_id = %issuance.issuance_id, error = %e, "cannot verify an expired upload; retrying later");
                        None
                    }
                }
            }
        })
        .buffer_unordered(EXPIRED_CONCURRENCY)
        .filter_map(std::future::ready)
        .count()
        .await;
    Ok(verified)
}

/// The webhook deliveries a verification's answer causes: `upload.verified` or
/// `upload.rejected`, with who uploaded (as at issuance) and what the object is.
fn events(state: &AppState, issuance: &StoredIssuance, answer: &Verification) -> Vec<NewDelivery> {
    let hooks = &state.config().webhooks;
    if hooks.is_empty() {
        return Vec::new();
    }
    let type_ = match answer.status {
        Status::Verified => EventType::UploadVerified,
        Status::Rejected => EventType::UploadRejected,
    };
    let issued_at = OffsetDateTime::from_unix_timestamp(issuance.created_at).ok();
    let data = serde_json::json!({
        "issuance_id": answer.issuance_id,
        "upload": issuance.kind.as_str(),
        "access_point": answer.access_point,
        "bucket": answer.bucket,
        "key": answer.key,
        "status": answer.status,
        "mismatches": answer.mismatches,
        "content_length": answer.content_length,
        "content_type": answer.content_type,
        "checksum_sha256": issuance.checksum_sha256,
        "etag": answer.etag,
        "action": answer.action,
        "quarantine_key": answer.quarantine_key,
        "iss": issuance.issuer,
        "sub": issuance.subject,
        "groups": issuance.groups,
        "issued_at": issued_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "verified_at": answer.verified_at.format(&time::format_description::well_known::Rfc3339).ok(),
    });
    deliveries_for(hooks, type_, &answer.access_point, &data)
}
