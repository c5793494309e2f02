//! Multipart uploads under an access point's `put` rules:
//!
//! - `POST /v1/access-points/{name}/uploads`: create (CreateMultipartUpload) + first part URLs;
//! - `POST …/uploads/{upload_id}/parts`: more part URLs (resuming);
//! - `POST …/uploads/{upload_id}/complete`: CompleteMultipartUpload;
//! - `DELETE …/uploads/{upload_id}`: AbortMultipartUpload.
//!
//! Creation is authorized exactly like a presigned `put`: principal → access point → network
//! → key → rules → upload constraints → rate limits. Each later step finds the upload with one
//! SQL query that names the caller (issuer, subject) and the access point, so another
//! principal's upload is indistinguishable from none. Every step is audited before the answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audited::{self, Audited};
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated};
use super::verify::Verification;
use crate::Principal;
use crate::audit::signature_sha256;
use crate::policy::{self, CompiledAccessPoint, Encryption, Keys, Operation, UploadRequest};
use crate::sign::multipart::{CreateUpload, ListedPart, MultipartError, PartSignRequest};
use crate::sign::{Presigned, SignedHeaders};
use crate::state::AppState;
use crate::store::{
    IssuanceKind, IssuanceState, StoredIssuance, StoredUpload, UploadClaim, UploadOwner,
};
use crate::uploads::plan::{self, MAX_PARTS, Plan};
use crate::uploads::verify::Observed;
use crate::uploads::{ABORT_CLAIM_SECONDS, COMPLETE_CLAIM_SECONDS, unix};

const OP_CREATE: &str = "multipart_create";
const OP_PARTS: &str = "multipart_parts";
const OP_COMPLETE: &str = "multipart_complete";
const OP_ABORT: &str = "multipart_abort";
const OP_LIST: &str = "multipart_list_parts";

/// Query of `GET …/uploads/{upload_id}/parts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPartsQuery {
    /// Parts after this number (the previous page's `next_part_number_marker`).
    #[serde(default)]
    pub part_number_marker: Option<u32>,
    /// At most this many parts (1 to 1000, default 1000).
    #[serde(default)]
    pub max_parts: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ListPartsResponse {
    pub upload_id: String,
    pub access_point: String,
    pub key: String,
    /// The parts S3 holds, ascending, with the ETags a completion needs.
    pub parts: Vec<ListedPart>,
    /// Present when there are more: pass it as `part_number_marker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_part_number_marker: Option<u32>,
    pub request_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    pub key: String,
    pub content_type: Option<String>,
    pub content_length: u64,
    pub part_size: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsRequest {
    pub part_numbers: Vec<u64>,
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub parts: Vec<CompletedPart>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletedPart {
    pub part_number: u64,
    pub etag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartUrl {
    pub part_number: u32,
    pub url: String,
    pub method: &'static str,
    /// Exactly the signed headers to send (`content-length` among them).
    pub headers: SignedHeaders,
    pub content_length: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateUploadResponse {
    pub upload_id: String,
    /// The completion verifies the object against this issuance (and answers with it).
    pub issuance_id: String,
    pub access_point: String,
    pub bucket: String,
    pub key: String,
    pub content_length: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub parts: Vec<PartUrl>,
    /// When the part URLs in `parts` expire.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// presignd aborts the upload if nothing happens to it (creation, part URLs) until then.
    #[serde(with = "time::serde::rfc3339")]
    pub abandon_at: OffsetDateTime,
    pub request_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires_clamped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartsResponse {
    pub upload_id: String,
    pub parts: Vec<PartUrl>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub abandon_at: OffsetDateTime,
    pub request_id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires_clamped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompleteResponse {
    pub upload_id: String,
    pub access_point: String,
    pub bucket: String,
    pub key: String,
    pub content_length: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The completed object, verified against the upload (`POST …/uploads/verify` with this
    /// id answers the same, or verifies again if `verification` is absent).
    pub issuance_id: String,
    /// Absent only if S3 could not be asked about the object just now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    pub request_id: String,
}

pub async fn create_upload(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(name): Path<String>,
    body: Result<ApiJson<CreateUploadRequest>, ApiError>,
) -> Result<Json<CreateUploadResponse>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_CREATE, Some(&name)).await?;
    let ApiJson(req) = body?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, OP_CREATE, Some(&name), now);
    let outcome = create(&mut call, &name, &req).await;
    call.finish(outcome).await.map(Json)
}

pub async fn upload_parts(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path((name, upload_id)): Path<(String, String)>,
    body: Result<ApiJson<PartsRequest>, ApiError>,
) -> Result<Json<PartsResponse>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_PARTS, Some(&name)).await?;
    let ApiJson(req) = body?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, OP_PARTS, Some(&name), now);
    let outcome = parts(&mut call, &name, &upload_id, &req).await;
    call.finish(outcome).await.map(Json)
}

pub async fn complete_upload(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path((name, upload_id)): Path<(String, String)>,
    body: Result<ApiJson<CompleteRequest>, ApiError>,
) -> Result<Json<CompleteResponse>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_COMPLETE, Some(&name)).await?;
    let ApiJson(req) = body?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, OP_COMPLETE, Some(&name), now);
    let outcome = complete(&mut call, &name, &upload_id, &req).await;
    call.finish(outcome).await.map(Json)
}

/// `GET …/uploads/{upload_id}/parts`: the parts S3 holds (ListParts), so a client that lost
/// its ETags resumes instead of uploading again. The upload's owner only; audited; counts as
/// activity for the sweeper.
pub async fn list_parts(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path((name, upload_id)): Path<(String, String)>,
    query: Result<Query<ListPartsQuery>, QueryRejection>,
) -> Result<Json<ListPartsResponse>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_LIST, Some(&name)).await?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, OP_LIST, Some(&name), now);
    let outcome = listed(&mut call, &name, &upload_id, &query).await;
    call.finish(outcome).await.map(Json)
}

async fn listed(
    call: &mut Audited<'_>,
    name: &str,
    upload_id: &str,
    query: &ListPartsQuery,
) -> Result<ListPartsResponse, ApiError> {
    let max_parts = query.max_parts.unwrap_or(1000);
    if !(1..=1000).contains(&max_parts) {
        return Err(ApiError::InvalidRequest(
            "max_parts must be between 1 and 1000".into(),
        ));
    }
    let ap = access_point_in_network(call, name)?;
    let (state, principal) = (call.state, call.principal);
    let upload = state
        .store()
        .touch_upload(owner(principal, name, upload_id), unix(call.now))
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    call.record.key = Some(upload.object_key.clone());
    let (parts, next_part_number_marker) = state
        .signer()
        .list_parts(
            &upload.bucket,
            &upload.object_key,
            upload_id,
            query.part_number_marker,
            max_parts,
        )
        .await
        .map_err(|e| match e {
            MultipartError::NoSuchUpload => ApiError::UploadNotFound,
            e => e.into(),
        })?;
    Ok(ListPartsResponse {
        upload_id: upload.upload_id,
        access_point: ap.spec.name.clone(),
        key: upload.object_key,
        parts,
        next_part_number_marker,
        request_id: call.client.request_id.clone(),
    })
}

pub async fn abort_upload(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path((name, upload_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, OP_ABORT, Some(&name)).await?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, OP_ABORT, Some(&name), now);
    let outcome = abort(&mut call, &name, &upload_id).await;
    call.finish(outcome).await.map(|()| StatusCode::NO_CONTENT)
}

/// The access point and the network rule, for the steps on an existing upload (the key's
/// rules are checked again where URLs are signed; abort needs only ownership).
fn access_point_in_network(
    call: &mut Audited<'_>,
    name: &str,
) -> Result<std::sync::Arc<CompiledAccessPoint>, ApiError> {
    let ap = call.access_point(name)?;
    if !policy::in_network(&ap, call.client.ip) {
        return Err(ApiError::NetworkDenied);
    }
    Ok(ap)
}

fn owner<'a>(principal: &'a Principal, name: &'a str, upload_id: &'a str) -> UploadOwner<'a> {
    UploadOwner {
        upload_id,
        issuer: &principal.iss,
        subject: &principal.sub,
        access_point: name,
    }
}

fn plan_of(upload: &StoredUpload) -> Plan {
    Plan {
        content_length: upload.content_length,
        part_size: upload.part_size,
        part_count: upload.part_count,
    }
}

fn abandon_at(state: &AppState, last_activity: SystemTime) -> OffsetDateTime {
    let after = Duration::from_secs(state.config().uploads.abandon_after_seconds);
    let t = OffsetDateTime::from(last_activity) + after;
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Signs part URLs for `numbers` of `upload`; the record gets their expiry and a digest of
/// their signatures (one record covers all the URLs of the request).
async fn sign_parts(
    call: &mut Audited<'_>,
    upload: &StoredUpload,
    numbers: &[u32],
    expires_in: u32,
) -> Result<(Vec<PartUrl>, OffsetDateTime, bool), ApiError> {
    let now = call.now;
    let plan = plan_of(upload);
    let mut urls = Vec::with_capacity(numbers.len());
    let mut signatures = String::new();
    let mut expires_at = OffsetDateTime::from(now);
    let mut clamped = false;
    for &n in numbers {
        let length = plan
            .part_length(n)
            .ok_or_else(|| ApiError::InvalidPartNumbers(format!("no part {n}")))?;
        let signed: Presigned = call
            .state
            .signer()
            .presign_upload_part(&PartSignRequest {
                bucket: &upload.bucket,
                key: &upload.object_key,
                upload_id: &upload.upload_id,
                part_number: n,
                content_length: length,
                expires_in: Duration::from_secs(u64::from(expires_in)),
                now,
                record_id: &call.record.id,
            })
            .await?;
        signatures.push_str(&signed.signature);
        signatures.push('\n');
        expires_at = signed.expires_at;
        clamped |= signed.clamped;
        urls.push(PartUrl {
            part_number: n,
            url: signed.url,
            method: signed.method,
            headers: signed.headers,
            content_length: length,
        });
    }
    call.record.expires_at = Some(expires_at);
    // The digest of all the signatures, one per line, in the order of `parts`.
    call.record.signature_sha256 = Some(signature_sha256(&signatures));
    Ok((urls, expires_at, clamped))
}

async fn create(
    call: &mut Audited<'_>,
    name: &str,
    req: &CreateUploadRequest,
) -> Result<CreateUploadResponse, ApiError> {
    let ap = call.access_point(name)?;
    let spec = &ap.spec;
    let full_key = call.authorize(&ap, Operation::Put, Keys::Exact(&req.key))?;
    let (state, principal, now) = (call.state, call.principal, call.now);

    // Refused clearly rather than half-supported: S3 wants the SSE-C key to start the
    // upload and on every part, and presignd never sees it; a whole-object SHA-256 cannot be
    // signed into part URLs.
    if matches!(spec.encryption, Encryption::SseC) {
        return Err(ApiError::InvalidRequest(
            "multipart uploads are not available on SSE-C access points (S3 needs the customer key to start one, which presignd never sees); use a presigned put".into(),
        ));
    }
    if spec.upload.require_checksum {
        return Err(ApiError::InvalidRequest(
            "this access point requires checksum_sha256, which multipart part URLs cannot carry; use a presigned put".into(),
        ));
    }
    let plan = plan::plan(
        req.content_length,
        req.part_size,
        spec.upload.max_content_length,
    )?;
    let expires_in = policy::resolve_expires(spec, req.expires_in)?;
    policy::check_upload(
        spec,
        &UploadRequest {
            content_type: req.content_type.as_deref(),
            // Each part is a PUT of at most this many bytes (the total was checked above).
            content_length: Some(plan.part_size.min(plan.content_length)),
            checksum_sha256: None,
            metadata: &req.metadata,
        },
    )?;
    // Over its quota, the caller is refused before S3 is asked (the reservation itself comes
    // once the upload exists, atomically).
    super::discovery::check_quota(state, &ap, principal, unix(now), plan.content_length).await?;
    // Only an upload that would be started is charged to the rate limits.
    state
        .limiter()
        .admit(principal, &ap, Operation::Put)
        .await?;

    let bucket = ap.target.sdk_bucket().to_string();
    let upload_id = state
        .signer()
        .create_multipart_upload(&CreateUpload {
            bucket: &bucket,
            key: &full_key,
            encryption: &spec.encryption,
            content_type: req.content_type.as_deref(),
            metadata: &req.metadata,
        })
        .await?;
    let t = unix(now);
    let upload = StoredUpload {
        upload_id,
        access_point: spec.name.clone(),
        bucket,
        request_key: req.key.clone(),
        object_key: full_key,
        issuer: principal.iss.clone(),
        subject: principal.sub.clone(),
        content_length: plan.content_length,
        part_size: plan.part_size,
        part_count: plan.part_count,
        created_at: t,
        last_activity_at: t,
    };
    // Its issuance first: verification at completion holds the object to it.
    let issuance = multipart_issuance(
        call,
        &ap,
        &upload,
        req.content_type.clone(),
        req.metadata.clone(),
    );
    let reserved = match &spec.upload.quota {
        Some(quota) => state.store().reserve_issuance(&issuance, quota, t).await,
        None => state
            .store()
            .insert_issuances(std::slice::from_ref(&issuance))
            .await
            .map(Ok),
    };
    let stored = match (reserved, &spec.upload.quota) {
        (Ok(Ok(())), _) => state
            .store()
            .insert_upload(&upload)
            .await
            .map_err(ApiError::from),
        // Another upload took the room since the check above.
        (Ok(Err(usage)), Some(quota)) => {
            Err(ApiError::quota_exceeded(quota, usage, plan.content_length))
        }
        (Ok(Err(_)), None) => Err(ApiError::Internal("a reservation without a quota".into())),
        (Err(e), _) => Err(e.into()),
    };
    if let Err(e) = stored {
        // Unrecorded, nobody could finish or abort it: abort it now (best effort; the
        // bucket's lifecycle rule is the backstop).
        if let Err(abort) = state
            .signer()
            .abort_multipart_upload(&upload.bucket, &upload.object_key, &upload.upload_id)
            .await
        {
            tracing::warn!(error = %abort, "cannot abort an unrecorded multipart upload");
        }
        if let Err(e) = state
            .store()
            .forget_upload_issuance(&upload.upload_id)
            .await
        {
            tracing::warn!(error = %e, "cannot forget an unrecorded upload's issuance");
        }
        return Err(e);
    }
    let numbers = plan.first_parts(state.config().uploads.initial_part_urls);
    let (parts, expires_at, clamped) = sign_parts(call, &upload, &numbers, expires_in).await?;
    Ok(CreateUploadResponse {
        issuance_id: issuance.issuance_id,
        upload_id: upload.upload_id,
        access_point: spec.name.clone(),
        bucket: upload.bucket,
        key: upload.object_key,
        content_length: plan.content_length,
        part_size: plan.part_size,
        part_count: plan.part_count,
        parts,
        expires_at,
        abandon_at: abandon_at(state, now),
        request_id: call.client.request_id.clone(),
        expires_clamped: clamped,
    })
}

/// The caller's upload, re-authorized against the access point's current rules (network,
/// key, rules) for the key it was started with.
fn reauthorize(
    call: &mut Audited<'_>,
    ap: &CompiledAccessPoint,
    upload: &StoredUpload,
) -> Result<(), ApiError> {
    // A changed prefix would put the upload's key outside what the rules now speak about.
    let same_key = policy::validate_key(&ap.spec.prefix, &upload.request_key)
        .is_ok_and(|k| k == upload.object_key);
    if !same_key {
        call.record.reason = "prefix_changed".into();
        return Err(ApiError::Forbidden);
    }
    call.authorize(ap, Operation::Put, Keys::Exact(&upload.request_key))
        .map(|_| ())
}

async fn parts(
    call: &mut Audited<'_>,
    name: &str,
    upload_id: &str,
    req: &PartsRequest,
) -> Result<PartsResponse, ApiError> {
    let ap = access_point_in_network(call, name)?;
    let upload = call
        .state
        .store()
        .touch_upload(owner(call.principal, name, upload_id), unix(call.now))
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    call.record.key = Some(upload.object_key.clone());
    reauthorize(call, &ap, &upload)?;
    let numbers = plan_of(&upload).check_part_numbers(&req.part_numbers)?;
    let expires_in = policy::resolve_expires(&ap.spec, req.expires_in)?;
    call.state
        .limiter()
        .admit(call.principal, &ap, Operation::Put)
        .await?;
    let (parts, expires_at, clamped) = sign_parts(call, &upload, &numbers, expires_in).await?;
    Ok(PartsResponse {
        upload_id: upload.upload_id,
        parts,
        expires_at,
        abandon_at: abandon_at(call.state, call.now),
        request_id: call.client.request_id.clone(),
        expires_clamped: clamped,
    })
}

async fn complete(
    call: &mut Audited<'_>,
    name: &str,
    upload_id: &str,
    req: &CompleteRequest,
) -> Result<CompleteResponse, ApiError> {
    let ap = access_point_in_network(call, name)?;
    let (state, principal, now) = (call.state, call.principal, call.now);
    if req.parts.len() > MAX_PARTS as usize {
        return Err(ApiError::InvalidPartNumbers(format!(
            "an upload has at most {MAX_PARTS} parts"
        )));
    }
    if let Some(p) = req.parts.iter().find(|p| !valid_etag(&p.etag)) {
        return Err(ApiError::InvalidRequest(format!(
            "part {}: etag must be 1 to 256 printable ASCII characters, as UploadPart returned it",
            p.part_number
        )));
    }
    let t = unix(now);
    let upload = state
        .store()
        .touch_upload(owner(principal, name, upload_id), t)
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    call.record.key = Some(upload.object_key.clone());
    reauthorize(call, &ap, &upload)?;
    let numbers: Vec<u64> = req.parts.iter().map(|p| p.part_number).collect();
    plan_of(&upload).check_completion(&numbers)?;
    // Held while S3 completes: no concurrent complete, abort or sweep.
    let upload = state
        .store()
        .claim_upload(
            owner(principal, name, upload_id),
            UploadClaim::Completing,
            t + COMPLETE_CLAIM_SECONDS,
        )
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    let parts: Vec<(u32, String)> = req
        .parts
        .iter()
        .zip(1u32..)
        .map(|(p, n)| (n, p.etag.clone()))
        .collect();
    // The issuance the object will be verified against, found before S3 is asked, so the
    // answer can always name it.
    let issuance = match issuance_of(call, &ap, &upload).await {
        Ok(issuance) => issuance,
        Err(e) => {
            state.store().release_upload(upload_id, t).await?;
            return Err(e.into());
        }
    };
    let create_only = !ap.spec.upload.overwrite;
    // Not every store honours If-None-Match on completion (radosgw 16.2 ignores it): look
    // first. A PUT racing in between is only stopped by a store that honours the header.
    if create_only {
        match state
            .signer()
            .observe_object(&upload.bucket, &upload.object_key, false)
            .await
        {
            Ok(Observed::Missing) => {}
            Ok(_) => return Err(abort_taken(state, &upload).await),
            Err(e) => {
                state.store().release_upload(upload_id, t).await?;
                return Err(ApiError::Upstream(Box::new(e)));
            }
        }
    }
    let result = state
        .signer()
        .complete_multipart_upload(
            &upload.bucket,
            &upload.object_key,
            upload_id,
            &parts,
            create_only,
        )
        .await;
    match result {
        Ok(etag) => {
            // No longer open: verifiable now, and forgotten after the retention (or the quota
            // window) even if it is never verified; until verified it keeps its reservation.
            let keep = super::verify::keep_until(state, &ap, issuance.created_at, t);
            state
                .store()
                .complete_upload(upload_id, &issuance.issuance_id, t, keep)
                .await?;
            let issuance_id = issuance.issuance_id.clone();
            let verification = verify_completed(call, &ap, &upload, &issuance).await;
            Ok(CompleteResponse {
                upload_id: upload.upload_id,
                access_point: ap.spec.name.clone(),
                bucket: upload.bucket,
                key: upload.object_key,
                content_length: upload.content_length,
                etag,
                issuance_id,
                verification,
                request_id: call.client.request_id.clone(),
            })
        }
        Err(MultipartError::NoSuchUpload) => {
            state.store().delete_aborted_upload(upload_id).await?;
            Err(ApiError::UploadNotFound)
        }
        Err(MultipartError::ObjectExists) if create_only => Err(abort_taken(state, &upload).await),
        Err(e) => {
            // The caller may fix the parts (or S3 recover) and complete again.
            state.store().release_upload(upload_id, t).await?;
            Err(e.into())
        }
    }
}

/// The issuance of a multipart upload: live until completed (then verified) or aborted
/// (then forgotten), so never expiring by itself.
fn multipart_issuance(
    call: &Audited<'_>,
    ap: &CompiledAccessPoint,
    upload: &StoredUpload,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
) -> StoredIssuance {
    StoredIssuance {
        issuance_id: call.record.id.clone(),
        kind: IssuanceKind::Multipart,
        access_point: ap.spec.name.clone(),
        bucket: upload.bucket.clone(),
        object_key: upload.object_key.clone(),
        key_is_prefix: false,
        issuer: upload.issuer.clone(),
        subject: upload.subject.clone(),
        groups: call.principal.groups.clone(),
        min_length: upload.content_length,
        max_length: Some(upload.content_length),
        content_type,
        checksum_sha256: None,
        encryption: ap.spec.encryption.clone(),
        metadata,
        created_at: upload.created_at,
        expires_at: i64::MAX,
        keep_until: i64::MAX,
        state: IssuanceState::Issued,
        outcome: None,
        upload_id: Some(upload.upload_id.clone()),
    }
}

/// The upload's issuance (stored at creation; an upload created before issuances were kept
/// gets one now).
async fn issuance_of(
    call: &Audited<'_>,
    ap: &CompiledAccessPoint,
    upload: &StoredUpload,
) -> Result<StoredIssuance, crate::store::StoreError> {
    let store = call.state.store();
    if let Some(issuance) = store.issuance_of_upload(&upload.upload_id).await? {
        return Ok(issuance);
    }
    let issuance = multipart_issuance(call, ap, upload, None, BTreeMap::new());
    store
        .insert_issuances(std::slice::from_ref(&issuance))
        .await?;
    Ok(issuance)
}

/// Verifies a completed upload against its issuance. `None` if S3 could not be asked just
/// now: the caller can verify later with the issuance id.
async fn verify_completed(
    call: &Audited<'_>,
    ap: &Arc<CompiledAccessPoint>,
    upload: &StoredUpload,
    issuance: &StoredIssuance,
) -> Option<Verification> {
    let state = call.state;
    super::verify::run(
        state,
        call.client,
        call.principal,
        ap,
        &issuance.issuance_id,
        &upload.object_key,
    )
    .await
    .inspect_err(|e| tracing::warn!(upload_id = %upload.upload_id, error = %e, "cannot verify a completed upload now"))
    .ok()
}

/// A create-only upload whose key is taken can never complete: its parts go now. Should the
/// abort fail, the row stays claimed and the sweeper takes it over once the claim lapses.
async fn abort_taken(state: &AppState, upload: &StoredUpload) -> ApiError {
    let id = upload.upload_id.as_str();
    match state
        .signer()
        .abort_multipart_upload(&upload.bucket, &upload.object_key, id)
        .await
    {
        Ok(()) | Err(MultipartError::NoSuchUpload) => {
            if let Err(e) = state.store().delete_aborted_upload(id).await {
                tracing::warn!(upload_id = id, error = %e, "aborted at S3, row left for the sweeper");
            }
        }
        Err(e) => {
            tracing::warn!(upload_id = id, error = %e, "could not abort a create-only upload whose key is taken; the sweeper will");
        }
    }
    ApiError::ObjectExists
}

async fn abort(call: &mut Audited<'_>, name: &str, upload_id: &str) -> Result<(), ApiError> {
    // Only ownership matters to abort: it just discards the caller's own parts.
    access_point_in_network(call, name)?;
    let (state, principal, now) = (call.state, call.principal, call.now);
    let t = unix(now);
    let upload = state
        .store()
        .claim_upload(
            owner(principal, name, upload_id),
            UploadClaim::Aborting,
            t + ABORT_CLAIM_SECONDS,
        )
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    call.record.key = Some(upload.object_key.clone());
    match state
        .signer()
        .abort_multipart_upload(&upload.bucket, &upload.object_key, upload_id)
        .await
    {
        Ok(()) | Err(MultipartError::NoSuchUpload) => {
            state.store().delete_aborted_upload(upload_id).await?;
            Ok(())
        }
        Err(e) => {
            state.store().release_upload(upload_id, t).await?;
            Err(e.into())
        }
    }
}

fn valid_etag(etag: &str) -> bool {
    (1..=256).contains(&etag.len()) && etag.bytes().all(|b| (0x20..0x7f).contains(&b))
}
