//! Admin routes for webhook dead letters: `GET /v1/admin/webhooks/dead-letters` lists the
//! deliveries retried in vain; `POST …/{delivery_id}/retry` queues one again (audited, like
//! every admin change).

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::audited;
use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::Admin;
use crate::audit::Verdict;
use crate::state::AppState;
use crate::store::StoredDelivery;
use crate::webhooks::deliver::now_ms;

const MAX_PAGE: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersQuery {
    /// The previous page's `next_after`.
    #[serde(default)]
    pub after: Option<String>,
    /// 1 to 100 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
    /// Present when there may be more: pass it as `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// A dead letter: what was to be sent where, and why it failed last. (The payload stays in
/// the database: it carries who uploaded what.)
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub delivery_id: String,
    pub endpoint: String,
    pub event_type: String,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_attempt_at: time::OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
}

fn time_of(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl From<StoredDelivery> for DeadLetter {
    fn from(d: StoredDelivery) -> Self {
        DeadLetter {
            created_at: time_of(d.created_at_ms),
            // A dead letter keeps when its last attempt failed there.
            last_attempt_at: time_of(d.next_attempt_at_ms),
            delivery_id: d.delivery_id,
            endpoint: d.endpoint,
            event_type: d.event_type,
            attempts: d.attempts,
            last_error: d.last_error,
            last_status: d.last_status,
        }
    }
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Admin(_): Admin,
    query: Result<Query<DeadLettersQuery>, QueryRejection>,
) -> Result<Json<DeadLetters>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let rows = state
        .store()
        .dead_letters(q.after.as_deref(), limit)
        .await?;
    let full = rows.len() == limit as usize;
    let dead_letters: Vec<DeadLetter> = rows.into_iter().map(DeadLetter::from).collect();
    let next_after = full
        .then(|| dead_letters.last().map(|d| d.delivery_id.clone()))
        .flatten();
    Ok(Json(DeadLetters {
        dead_letters,
        next_after,
    }))
}

/// Queues a dead letter again, due now, with a fresh retry period; `404` if there is no such
/// dead letter (unknown, or not dead).
pub async fn retry(
    State(state): State<AppState>,
    Admin(admin): Admin,
    client: ClientInfo,
    Path(delivery_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut record = audited::record(
        &state,
        &client,
        Some(&admin),
        "admin.webhook_retry",
        SystemTime::now(),
    );
    record.resource = Some(format!("webhook:{}", audited::bounded(&delivery_id)));
    // Queued before its record is durable: a retry is harmless if the record then fails
    // (the caller is told `audit_unavailable` and may look again).
    let outcome = match state
        .store()
        .retry_dead_letter(&delivery_id, now_ms())
        .await
    {
        Ok(true) => Ok(StatusCode::ACCEPTED),
        Ok(false) => Err(ApiError::DeadLetterNotFound),
        Err(e) => Err(e.into()),
    };
    if outcome.is_ok() {
        record.decision = Verdict::Allow;
        record.reason = "allowed".into();
    } else {
        audited::name_decision(&mut record, &outcome);
    }
    audited::commit_one(&state, outcome, record).await
}
