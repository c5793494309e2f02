//! The sweeper: aborts multipart uploads nobody touched for `uploads.abandon_after_seconds`
//! (and takes over claims whose instance died), audits each abort, forgets the upload; and
//! forgets upload issuances kept past `uploads.verification_retention_seconds`.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use crate::audit::{AuditRecord, Verdict};
use crate::sign::multipart::MultipartError;
use crate::state::AppState;
use crate::store::StoredUpload;

/// How long a complete or abort may hold an upload before the sweeper takes it over (the
/// instance holding it is then presumed dead). CompleteMultipartUpload of a large object can
/// take minutes.
pub const COMPLETE_CLAIM_SECONDS: i64 = 3_600;
pub const ABORT_CLAIM_SECONDS: i64 = 600;
/// Uploads one sweep claims at most (the next sweep takes the rest).
const SWEEP_BATCH: u32 = 100;

pub fn unix(t: SystemTime) -> i64 {
    OffsetDateTime::from(t).unix_timestamp()
}

/// Runs the sweeper until the task is aborted (at shutdown).
pub async fn run_sweeper(state: AppState) {
    let cfg = state.config().uploads.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.sweep_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(aborted = n, "aborted abandoned multipart uploads"),
            Err(e) => tracing::warn!(error = %e, "multipart upload sweep failed"),
        }
        // Issuances past their retention (see `uploads.verification_retention_seconds`).
        match state
            .store()
            .forget_issuances(unix(SystemTime::now()))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(forgotten = n, "forgot old upload issuances"),
            Err(e) => tracing::warn!(error = %e, "cannot forget old upload issuances"),
        }
    }
}

/// One sweep: claims abandoned uploads (and claims whose holder died), aborts each at S3,
/// audits it and forgets it. Returns how many were aborted.
pub async fn sweep_once(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let now = SystemTime::now();
    let t = unix(now);
    let abandon = i64::try_from(state.config().uploads.abandon_after_seconds).unwrap_or(i64::MAX);
    let claimed = state
        .store()
        .claim_abandoned(
            t.saturating_sub(abandon),
            t,
            t + ABORT_CLAIM_SECONDS,
            SWEEP_BATCH,
        )
        .await?;
    let mut aborted = 0;
    for upload in claimed {
        let result = state
            .signer()
            .abort_multipart_upload(&upload.bucket, &upload.object_key, &upload.upload_id)
            .await;
        let mut record = sweep_record(state, &upload, now);
        match result {
            // Already gone at S3 (a lifecycle rule, or completed by a request that died
            // before forgetting it): nothing left to abort.
            Ok(()) | Err(MultipartError::NoSuchUpload) => {
                record.decision = Verdict::Allow;
                record.reason = "abandoned".into();
            }
            Err(e) => {
                // The claim lapses and a later sweep retries.
                tracing::warn!(error = %e, "cannot abort an abandoned multipart upload");
                record.reason = "upstream_error".into();
            }
        }
        if let Err(e) = state.audit().append(std::slice::from_ref(&record)).await {
            // Unaudited, the row stays claimed: a later sweep aborts (idempotently) again.
            tracing::warn!(error = %e, "cannot audit a sweeper abort; retrying later");
            continue;
        }
        if record.decision == Verdict::Allow {
            state
                .store()
                .delete_aborted_upload(&upload.upload_id)
                .await?;
            aborted += 1;
        }
    }
    Ok(aborted)
}

fn sweep_record(state: &AppState, upload: &StoredUpload, now: SystemTime) -> AuditRecord {
    let ap = state.catalog().get(&upload.access_point).cloned();
    AuditRecord {
        id: AuditRecord::new_id(),
        time: OffsetDateTime::from(now),
        request_id: format!("sweeper-{}", uuid::Uuid::now_v7()),
        decision: Verdict::Deny,
        reason: String::new(),
        operation: "multipart_abort".into(),
        access_point: Some(upload.access_point.clone()),
        bucket: Some(upload.bucket.clone()),
        key: Some(upload.object_key.clone()),
        expires_at: None,
        // The upload's owner: the sweeper acts on their upload.
        subject: Some(upload.subject.clone()),
        issuer: Some(upload.issuer.clone()),
        groups: Vec::new(),
        source_ip: None,
        user_agent: None,
        origin: None,
        tls: false,
        sse: ap.map(|ap| ap.spec.encryption.mode().to_string()),
        signature_sha256: None,
        instance: state.instance().to_string(),
        count: None,
        resource: None,
        policy_sha256: None,
        grant_id: None,
        issuance_id: None,
        content_length: None,
        rule: None,
    }
}
