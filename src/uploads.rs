//! Multipart uploads: the `[uploads]` configuration and the sweeper that aborts abandoned
//! uploads. The API is in `http::uploads`, the part planning in `policy::multipart`, the S3
//! calls in `sign::multipart`, the rows in `store::uploads`.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{AuditRecord, Decision};
use crate::config::ConfigProblem;
use crate::policy::multipart::MAX_PART_URLS_PER_REQUEST;
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Part URLs returned when an upload is created (the first parts); the others come from
    /// `POST …/uploads/{upload_id}/parts`.
    pub initial_part_urls: usize,
    /// An upload with no activity (creation or part URLs) for this long is aborted.
    pub abandon_after_seconds: u64,
    /// How often each instance looks for abandoned uploads.
    pub sweep_interval_ms: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            initial_part_urls: 100,
            abandon_after_seconds: 86_400,
            sweep_interval_ms: 300_000,
        }
    }
}

impl UploadsConfig {
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.initial_part_urls > MAX_PART_URLS_PER_REQUEST {
            p.push(ConfigProblem::new(
                "uploads.initial_part_urls",
                format!("must be at most {MAX_PART_URLS_PER_REQUEST}"),
            ));
        }
        if !(1..=31_536_000).contains(&self.abandon_after_seconds) {
            p.push(ConfigProblem::new(
                "uploads.abandon_after_seconds",
                "must be between 1 and 31536000 (one year)",
            ));
        }
        if self.sweep_interval_ms < 100 {
            p.push(ConfigProblem::new(
                "uploads.sweep_interval_ms",
                "must be at least 100",
            ));
        }
        p
    }
}

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
                record.decision = Decision::Allow;
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
        if record.decision == Decision::Allow {
            state.store().delete_upload(&upload.upload_id).await?;
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
        decision: Decision::Deny,
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
    }
}

#[cfg(test)]
mod tests {
    use super::UploadsConfig;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(UploadsConfig::default().validate().is_empty());
        let bad = UploadsConfig {
            initial_part_urls: 1001,
            abandon_after_seconds: 0,
            sweep_interval_ms: 10,
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "uploads.initial_part_urls",
                "uploads.abandon_after_seconds",
                "uploads.sweep_interval_ms"
            ]
        );
    }
}
