//! `POST /v1/access-points/{name}/presign` and `POST /v1/presign/batch`.
//!
//! The request path reads top to bottom: principal → access point → network → key → rules →
//! request constraints → sign → audit → respond. Nothing is returned before its audit record
//! is durable.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::audited::{self, Audited, bounded};
use super::client::ClientInfo;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, Authenticated};
use crate::audit::{AuditRecord, Verdict, signature_sha256};
use crate::policy::{
    self, CompiledAccessPoint, Encryption, MAX_SINGLE_PUT_BYTES, PresignOperation, PresignRequest,
    UploadQuota,
};
use crate::sign::{PostKey, PostRequest, Presigned, SignRequest, SignedHeaders};
use crate::state::AppState;
use crate::store::{IssuanceKind, IssuanceState, StoredIssuance};

pub const MAX_BATCH_ITEMS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct PresignResponse {
    pub url: String,
    pub method: &'static str,
    pub headers: SignedHeaders,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub access_point: String,
    pub bucket: String,
    pub key: String,
    pub request_id: String,
    /// Present (true) when the URL was shortened to the signing credentials' lifetime.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expires_clamped: bool,
    /// `post` only: the form fields to send, before the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `cloudfront` when the URL is a CloudFront signed URL; absent for S3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
    /// `put` and `post`: the id to verify the upload with (`POST …/uploads/verify`); also the
    /// URL's `x-presignd-id` and the audit record's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuance_id: Option<String>,
    /// `put` and `post`: what the upload may be, stored before the URL is answered.
    #[serde(skip)]
    pub issuance: Option<StoredIssuance>,
    /// The access point's quota the issuance must fit in, if it has one.
    #[serde(skip)]
    pub quota: Option<UploadQuota>,
}

pub async fn presign_one(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    Path(name): Path<String>,
    body: Result<ApiJson<PresignRequest>, ApiError>,
) -> Result<Json<PresignResponse>, ApiError> {
    let op = body.as_ref().map_or("unknown", |b| b.0.operation.as_str());
    let principal = audited::authenticate(&state, &client, auth, op, Some(&name)).await?;
    let ApiJson(req) = body?;
    let now = SystemTime::now();
    let mut call = Audited::new(&state, &client, &principal, op, Some(&name), now);
    let outcome = decide(&mut call, &name, &req).await;
    let mut decided = vec![call.decided(outcome)];
    let issuances = issuances_to_commit(&state, &mut decided).await;
    let (outcome, record) = decided
        .pop()
        .ok_or_else(|| ApiError::Internal("a decided presign went missing".into()))?;
    audited::commit_one_with(&state, outcome, record, issuances)
        .await
        .map(Json)
}

/// The upload issuances among `decided`, which verification needs, stored before their URLs
/// are answered. Those under a quota are reserved here one by one, each only if it fits (else
/// the decision becomes a `quota_exceeded` refusal, or `unavailable`). The others are
/// returned: they are committed with the decisions' records, in the same group-commit
/// transaction (no upload URL without its issuance, and no write of their own for the commit
/// path to wait behind).
async fn issuances_to_commit(
    state: &AppState,
    decided: &mut [(Result<PresignResponse, ApiError>, AuditRecord)],
) -> Vec<StoredIssuance> {
    // Moved out, not copied: a response's issuance is not needed after this.
    let free: Vec<StoredIssuance> = decided
        .iter_mut()
        .filter_map(|(outcome, _)| match outcome {
            Ok(PresignResponse {
                issuance: issuance @ Some(_),
                quota: None,
                ..
            }) => issuance.take(),
            _ => None,
        })
        .collect();
    let now = crate::uploads::unix(SystemTime::now());
    for item in decided.iter_mut() {
        let (row, quota) = match &item.0 {
            Ok(PresignResponse {
                issuance: Some(row),
                quota: Some(quota),
                ..
            }) => (row.clone(), *quota),
            _ => continue,
        };
        match state.store().reserve_issuance(&row, &quota, now).await {
            Ok(Ok(())) => {}
            Ok(Err(usage)) => {
                let asked = crate::store::reservation(&row);
                refuse(item, ApiError::quota_exceeded(&quota, usage, asked));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reserve an upload under its quota");
                refuse(item, ApiError::Unavailable(Box::new(e)));
            }
        }
    }
    free
}

/// Turns an allowed decision into a refusal after the fact.
fn refuse(item: &mut (Result<PresignResponse, ApiError>, AuditRecord), error: ApiError) {
    item.1.decision = Verdict::Deny;
    item.1.reason = error.code().to_string();
    item.0 = Err(error);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub items: Vec<serde_json::Value>,
}

/// One item of a batch: the presign request plus the access point it names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    access_point: String,
    #[serde(flatten)]
    request: PresignRequest,
}

#[derive(Debug, Serialize)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
    pub request_id: String,
}

#[derive(Debug, Serialize)]
pub struct BatchResult {
    pub index: usize,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presigned: Option<PresignResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

pub async fn presign_batch(
    State(state): State<AppState>,
    auth: Result<Authenticated, ApiError>,
    client: ClientInfo,
    body: Result<ApiJson<BatchRequest>, ApiError>,
) -> Result<Json<BatchResponse>, ApiError> {
    let principal = audited::authenticate(&state, &client, auth, "batch", None).await?;
    let ApiJson(batch) = body?;
    if batch.items.is_empty() || batch.items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::InvalidRequest(format!(
            "items must hold 1 to {MAX_BATCH_ITEMS} entries"
        )));
    }
    let now = SystemTime::now();
    // The items are decided concurrently (results stay in item order), so their rate-limit
    // calls go to Redis pipelined on one connection rather than one round trip after another.
    let (state, principal, client) = (&state, &principal, &client);
    let decisions = batch.items.into_iter().map(|item| async move {
        let named = |field: &str| item.get(field).and_then(|v| v.as_str()).map(bounded);
        let (ap_name, op_name) = (named("access_point"), named("operation"));
        match serde_json::from_value::<BatchItem>(item) {
            Ok(item) => {
                let op = item.request.operation.as_str();
                let ap = Some(item.access_point.as_str());
                let mut call = Audited::new(state, client, principal, op, ap, now);
                let outcome = decide(&mut call, &item.access_point, &item.request).await;
                call.decided(outcome)
            }
            Err(e) => {
                let op = op_name.as_deref().unwrap_or("unknown");
                let call = Audited::new(state, client, principal, op, ap_name.as_deref(), now);
                call.decided(Err(ApiError::InvalidRequest(format!("invalid item: {e}"))))
            }
        }
    });
    let mut decided = futures_util::future::join_all(decisions).await;
    let issuances = issuances_to_commit(state, &mut decided).await;
    // One durable append for the whole batch; if it fails, nothing is issued.
    let outcomes = audited::commit(state, decided, issuances).await?;
    let results = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(presigned) => BatchResult {
                index,
                status: 200,
                presigned: Some(presigned),
                error: None,
            },
            Err(e) => {
                if let Some(cause) = e.cause() {
                    tracing::error!(index, code = e.code(), %cause, "batch item failed");
                }
                let mut problem = e.problem();
                problem.request_id = Some(client.request_id.clone());
                BatchResult {
                    index,
                    status: problem.status,
                    presigned: None,
                    error: Some(problem),
                }
            }
        })
        .collect();
    Ok(Json(BatchResponse {
        results,
        request_id: client.request_id.clone(),
    }))
}

/// Decides one presign request against the access point `name` and signs it if allowed;
/// `call.record` holds what the decision found, for the caller to make durable.
async fn decide(
    call: &mut Audited<'_>,
    name: &str,
    req: &PresignRequest,
) -> Result<PresignResponse, ApiError> {
    let ap = call.access_point(name)?;
    let spec = &ap.spec;
    let keys = req.keys();
    let full_key = call.authorize(&ap, req.operation.authorized_as(), keys)?;

    let expires_in = policy::check_request(&ap, req, call.client.tls)?;
    let cloudfront = match spec.delivery.cloudfront.as_ref() {
        Some(cf) if req.via_cloudfront(&ap) => Some((
            cf,
            super::cloudfront::conditions(call, expires_in, req.not_before, req.bind_client_ip)?,
        )),
        _ => None,
    };
    // Over the quota already: refused before the rate limits are charged (the reservation
    // itself is atomic, in `issuances_to_commit`).
    if req.operation.uploads() {
        // A PUT declares its length on a quota access point (POST is refused there).
        let asked = req.content_length.unwrap_or(MAX_SINGLE_PUT_BYTES);
        let now = crate::uploads::unix(call.now);
        super::discovery::check_quota(call.state, &ap, call.principal, now, asked).await?;
    }
    // Only a request that would be issued is charged to the rate limits.
    call.state
        .limiter()
        .admit(call.principal, &ap, req.operation.authorized_as())
        .await?;
    if req.operation == PresignOperation::Post {
        return sign_post(call, &ap, req, &full_key, expires_in).await;
    }
    if let Some((cf, conditions)) = cloudfront {
        let (url, expires_at) = super::cloudfront::sign_get(
            call.state,
            &mut call.record,
            &spec.prefix,
            cf,
            &req.key,
            &conditions,
        )?;
        return Ok(PresignResponse {
            url,
            method: "GET",
            headers: BTreeMap::new(),
            expires_at,
            access_point: spec.name.clone(),
            bucket: ap.target.sdk_bucket().to_string(),
            key: full_key,
            request_id: call.client.request_id.clone(),
            expires_clamped: false,
            fields: None,
            delivery: Some("cloudfront"),
            issuance_id: None,
            issuance: None,
            quota: None,
        });
    }

    let signed: Presigned = call
        .state
        .signer()
        .presign(&SignRequest {
            operation: req.operation.authorized_as(),
            target: &ap.target,
            key: &full_key,
            expires_in: Duration::from_secs(u64::from(expires_in)),
            now: call.now,
            encryption: &spec.encryption,
            content_type: req.content_type.as_deref(),
            content_length: req.content_length,
            checksum_sha256: req.checksum_sha256.as_deref(),
            metadata: &req.metadata,
            response_content_disposition: req.response_content_disposition.as_deref(),
            response_content_type: req.response_content_type.as_deref(),
            // The record exists before the URL: its id is signed into it.
            record_id: &call.record.id,
            create_only: req.operation == PresignOperation::Put && !spec.upload.overwrite,
        })
        .await?;
    if matches!(spec.encryption, Encryption::SseC) && !signed.url.starts_with("https://") {
        return Err(ApiError::HttpsRequired);
    }
    call.record.expires_at = Some(signed.expires_at);
    call.record.signature_sha256 = Some(signature_sha256(&signed.signature));
    let issuance = (req.operation == PresignOperation::Put).then(|| {
        // A declared length is signed; otherwise the access point's maximum (if any) holds.
        let lengths = match req.content_length {
            Some(n) => (n, Some(n)),
            None => (0, spec.upload.max_content_length),
        };
        issuance(
            call,
            ap.as_ref(),
            IssuanceKind::Put,
            &full_key,
            false,
            lengths,
            req,
            signed.expires_at,
        )
    });
    Ok(PresignResponse {
        issuance_id: issuance.as_ref().map(|i| i.issuance_id.clone()),
        quota: issuance.as_ref().and(spec.upload.quota),
        issuance,
        url: signed.url,
        method: signed.method,
        headers: signed.headers,
        expires_at: signed.expires_at,
        access_point: spec.name.clone(),
        bucket: ap.target.sdk_bucket().to_string(),
        key: full_key,
        request_id: call.client.request_id.clone(),
        expires_clamped: signed.clamped,
        fields: None,
        delivery: None,
    })
}

/// Signs the POST policy: S3 enforces the key (or its prefix), the size range, the content
/// type, encryption, metadata and the record id on the upload itself.
async fn sign_post(
    call: &mut Audited<'_>,
    ap: &CompiledAccessPoint,
    req: &PresignRequest,
    full_key: &str,
    expires_in: u32,
) -> Result<PresignResponse, ApiError> {
    let spec = &ap.spec;
    // [0, the access point's maximum, or the declared length when smaller; else S3's 5 GiB].
    let max = [
        spec.upload.max_content_length,
        req.content_length,
        Some(MAX_SINGLE_PUT_BYTES),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_SINGLE_PUT_BYTES);
    let key = if req.key_starts_with == Some(true) {
        PostKey::StartsWith(full_key)
    } else {
        PostKey::Exact(full_key)
    };
    let signed = call
        .state
        .signer()
        .presign_post(&PostRequest {
            target: &ap.target,
            key,
            expires_in: Duration::from_secs(u64::from(expires_in)),
            now: call.now,
            encryption: &spec.encryption,
            content_type: req.content_type.as_deref(),
            content_length_range: 0..=max,
            metadata: &req.metadata,
            record_id: &call.record.id,
        })
        .await?;
    call.record.expires_at = Some(signed.expires_at);
    call.record.signature_sha256 = Some(signature_sha256(&signed.signature));
    let prefix = req.key_starts_with == Some(true);
    let issuance = issuance(
        call,
        ap,
        IssuanceKind::Post,
        full_key,
        prefix,
        (0, Some(max)),
        req,
        signed.expires_at,
    );
    Ok(PresignResponse {
        issuance_id: Some(issuance.issuance_id.clone()),
        issuance: Some(issuance),
        quota: spec.upload.quota,
        url: signed.url,
        method: "POST",
        headers: BTreeMap::new(),
        expires_at: signed.expires_at,
        access_point: spec.name.clone(),
        bucket: ap.target.sdk_bucket().to_string(),
        key: full_key.to_string(),
        request_id: call.client.request_id.clone(),
        expires_clamped: signed.clamped,
        fields: Some(signed.fields),
        delivery: None,
    })
}

/// What an upload URL allows, for verification: the issuing record's id, who, where, and
/// the size range, type, checksum, encryption and metadata signed into it.
#[allow(clippy::too_many_arguments)]
fn issuance(
    call: &Audited<'_>,
    ap: &CompiledAccessPoint,
    kind: IssuanceKind,
    key: &str,
    key_is_prefix: bool,
    (min_length, max_length): (u64, Option<u64>),
    req: &PresignRequest,
    expires_at: OffsetDateTime,
) -> StoredIssuance {
    let created_at = crate::uploads::unix(call.now);
    StoredIssuance {
        issuance_id: call.record.id.clone(),
        kind,
        access_point: ap.spec.name.clone(),
        bucket: ap.target.sdk_bucket().to_string(),
        object_key: key.to_string(),
        key_is_prefix,
        issuer: call.principal.iss.clone(),
        subject: call.principal.sub.clone(),
        groups: call.principal.groups.clone(),
        min_length,
        max_length,
        content_type: req.content_type.clone(),
        checksum_sha256: req.checksum_sha256.clone(),
        encryption: ap.spec.encryption.clone(),
        metadata: req.metadata.clone(),
        created_at,
        expires_at: expires_at.unix_timestamp(),
        keep_until: super::verify::keep_until(
            call.state,
            ap,
            created_at,
            expires_at.unix_timestamp(),
        ),
        state: IssuanceState::Issued,
        outcome: None,
        upload_id: None,
    }
}
