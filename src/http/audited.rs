//! Making decisions durable before they are answered, with the limit on refused callers
//! (`crate::limits::RefusalLimiter`): the one path every presign, batch and upload decision
//! takes to the audit outbox.

use super::error::ApiError;
use crate::audit::{AuditRecord, Decision};
use crate::limits::{Admission, Caller};
use crate::state::AppState;

/// The `scope` of a refusal-limit 429.
pub const REFUSALS_SCOPE: &str = "refusals";

/// Makes every decision's record durable in one append, then hands back the outcomes to
/// answer. A refusal past its caller's refusal limit is answered `429 rate_limited` instead:
/// the first such one in a window is still recorded (reason `rate_limited`), later ones are
/// only counted into the caller's summary record. Allowed decisions are always recorded.
/// If the append fails, nothing is answered but `audit_unavailable`.
pub async fn commit<T>(
    state: &AppState,
    decided: Vec<(Result<T, ApiError>, AuditRecord)>,
) -> Result<Vec<Result<T, ApiError>>, ApiError> {
    let mut records = Vec::with_capacity(decided.len());
    let mut outcomes = Vec::with_capacity(decided.len());
    for (mut outcome, mut record) in decided {
        if record.decision == Decision::Deny {
            match state.refusals().admit(&Caller::of_record(&record), &record) {
                Admission::Record => records.push(record),
                Admission::Suppress {
                    retry_after,
                    opening,
                } => {
                    let limited = ApiError::RateLimited {
                        scope: REFUSALS_SCOPE,
                        retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
                    };
                    state
                        .metrics()
                        .ratelimit_rejections_total
                        .with_label_values(&[REFUSALS_SCOPE])
                        .inc();
                    if opening {
                        record.reason = limited.code().to_string();
                        records.push(record);
                    } else {
                        state.metrics().audit_refusals_summarized_total.inc();
                    }
                    outcome = Err(limited);
                }
            }
        } else {
            records.push(record);
        }
        outcomes.push(outcome);
    }
    if !records.is_empty() {
        state
            .audit()
            .append(&records)
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))?;
        super::context::observe_decisions(state, &records);
    }
    Ok(outcomes)
}

/// [`commit`] for one decision.
pub async fn commit_one<T>(
    state: &AppState,
    outcome: Result<T, ApiError>,
    record: AuditRecord,
) -> Result<T, ApiError> {
    commit(state, vec![(outcome, record)])
        .await?
        .pop()
        .unwrap_or_else(|| {
            Err(ApiError::Internal(
                "a committed decision went missing".into(),
            ))
        })
}

/// Writes the summaries of refusals counted past their callers' limits (every
/// `limits.refusal_summary_interval_seconds`, and once more at shutdown). A failed append
/// is retried at the next round: the summaries are kept until written.
pub async fn write_refusal_summaries(state: &AppState) -> Result<usize, crate::audit::AuditError> {
    let records = state
        .refusals()
        .take_summaries(state.instance(), time::OffsetDateTime::now_utc());
    if records.is_empty() {
        return Ok(0);
    }
    match state.audit().append(&records).await {
        Ok(()) => Ok(records.len()),
        Err(e) => {
            state.refusals().restore(records);
            Err(e)
        }
    }
}
