//! The one path every audited request takes: authenticate (a refusal is recorded too), decide
//! against one [`Audited`] context whose record the checks fill in, then [`Audited::finish`]:
//! the record made durable, then the answer. Several decisions of one request (a batch) are
//! committed together with [`commit`]. Refused callers past their refusal limit
//! (`crate::limits::RefusalLimiter`) are answered 429 and counted instead of recorded each.

use std::sync::Arc;
use std::time::SystemTime;

use time::OffsetDateTime;

use super::client::ClientInfo;
use super::error::ApiError;
use super::extract::Authenticated;
use crate::Principal;
use crate::audit::{AuditError, AuditRecord, Verdict};
use crate::limits::{Admission, Caller};
use crate::policy::{self, Authorized, CompiledAccessPoint, Keys, Operation, Refusal};
use crate::state::AppState;
use crate::store::StoredIssuance;

/// The `scope` of a refusal-limit 429.
pub const REFUSALS_SCOPE: &str = "refusals";

/// One decision of an authenticated request: who asks, from where, when, and the audit record
/// the checks fill in (a deny until [`Audited::finish`] is given an allowed outcome).
pub struct Audited<'a> {
    pub state: &'a AppState,
    pub client: &'a ClientInfo,
    pub principal: &'a Principal,
    pub now: SystemTime,
    pub record: AuditRecord,
}

impl<'a> Audited<'a> {
    /// A decision about `operation` on the access point named `access_point` (as the caller
    /// typed it; bounded for the record).
    pub fn new(
        state: &'a AppState,
        client: &'a ClientInfo,
        principal: &'a Principal,
        operation: &str,
        access_point: Option<&str>,
        now: SystemTime,
    ) -> Audited<'a> {
        let mut record = record(state, client, Some(principal), operation, now);
        record.access_point = access_point.map(bounded);
        Audited {
            state,
            client,
            principal,
            now,
            record,
        }
    }

    /// The access point named in the request, if it exists and the caller may see it (else
    /// 404, the same for both); its bucket and encryption go into the record.
    pub fn access_point(&mut self, name: &str) -> Result<Arc<CompiledAccessPoint>, ApiError> {
        let ap = self
            .state
            .catalog()
            .get(name)
            .filter(|ap| policy::can_see(ap, self.principal))
            .cloned()
            .ok_or(ApiError::NotFound)?;
        self.record.bucket = Some(ap.target.sdk_bucket().to_string());
        self.record.sse = Some(ap.spec.encryption.mode().to_string());
        Ok(ap)
    }

    /// [`policy::authorize`] for this caller: the full key, which the record names from the
    /// moment it is known, with the rule that decided (a rule's deny names its outcome there
    /// too).
    pub fn authorize(
        &mut self,
        ap: &CompiledAccessPoint,
        op: Operation,
        keys: Keys<'_>,
    ) -> Result<String, ApiError> {
        match policy::authorize(ap, self.principal, self.client.ip, op, keys) {
            Ok(Authorized { key, rule }) => {
                self.record.key = Some(key.clone());
                self.record.rule = rule;
                Ok(key)
            }
            Err(Refusal::Rules { key, reason, rule }) => {
                self.record.key = Some(key.clone());
                self.record.rule = rule;
                if reason != policy::DenyReason::MfaRequired {
                    self.record.reason = reason.as_str().to_string();
                }
                Err(Refusal::Rules { key, reason, rule }.into())
            }
            Err(refusal) => Err(refusal.into()),
        }
    }

    /// The record named after `outcome`, to commit with others (a batch item).
    pub fn decided<T>(
        mut self,
        outcome: Result<T, ApiError>,
    ) -> (Result<T, ApiError>, AuditRecord) {
        name_decision(&mut self.record, &outcome);
        (outcome, self.record)
    }

    /// Names the decision, makes its record durable, then hands back the outcome to answer.
    pub async fn finish<T>(self, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
        let state = self.state;
        let (outcome, record) = self.decided(outcome);
        commit_one(state, outcome, record).await
    }
}

/// The verified caller, or — when the request has no valid token — its refusal, recorded
/// (`operation` and `access_point` as far as they are known), as the error to answer with.
/// Authentication comes first: an anonymous caller learns nothing about its body's validity.
pub async fn authenticate(
    state: &AppState,
    client: &ClientInfo,
    auth: Result<Authenticated, ApiError>,
    operation: &str,
    access_point: Option<&str>,
) -> Result<Principal, ApiError> {
    match auth {
        Ok(Authenticated(principal)) => Ok(principal),
        Err(e) => Err(refuse(state, client, access_point, operation, e).await),
    }
}

/// Records a request refused before any access point was consulted (no valid token, not
/// over HTTPS) and returns the error to answer with — `rate_limited` past the source's
/// refusal limit, or `audit_unavailable` if even the refusal cannot be recorded.
pub async fn refuse(
    state: &AppState,
    client: &ClientInfo,
    access_point: Option<&str>,
    operation: &str,
    error: ApiError,
) -> ApiError {
    let mut record = record(state, client, None, operation, SystemTime::now());
    record.access_point = access_point.map(bounded);
    record.reason = error.code().to_string();
    match commit_one(state, Err::<(), _>(error), record).await {
        Ok(()) => ApiError::Internal("a refusal was committed as allowed".into()),
        Err(e) => e,
    }
}

/// A deny record with what is known about the caller; the decision fills in the rest. (The
/// admin API builds its records from it too.)
pub fn record(
    state: &AppState,
    client: &ClientInfo,
    principal: Option<&Principal>,
    operation: &str,
    now: SystemTime,
) -> AuditRecord {
    AuditRecord {
        id: AuditRecord::new_id(),
        time: OffsetDateTime::from(now),
        request_id: client.request_id.clone(),
        decision: Verdict::Deny,
        reason: String::new(),
        operation: bounded(operation),
        access_point: None,
        bucket: None,
        key: None,
        expires_at: None,
        subject: principal.map(|p| p.sub.clone()),
        issuer: principal.map(|p| p.iss.clone()),
        groups: principal.map(|p| p.groups.clone()).unwrap_or_default(),
        source_ip: client.ip.map(|ip| ip.to_string()),
        user_agent: client.user_agent.clone(),
        origin: client.origin.clone(),
        tls: client.tls,
        sse: None,
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

/// Names the decision in an audit record from the request's outcome: allowed, the rule
/// outcome the evaluation already wrote (explicit or implicit deny), or the problem code.
pub fn name_decision<T>(record: &mut AuditRecord, outcome: &Result<T, ApiError>) {
    match outcome {
        Ok(_) => {
            record.decision = Verdict::Allow;
            record.reason = "allowed".into();
        }
        Err(ApiError::Forbidden) if !record.reason.is_empty() => {}
        Err(e) => record.reason = e.code().to_string(),
    }
}

/// A name as the caller typed it, bounded for the audit record.
pub fn bounded(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(128).collect()
}

/// Makes every decision's record durable in one append, then hands back the outcomes to
/// answer. A refusal past its caller's refusal limit is answered `429 rate_limited` instead:
/// the first such one in a window is still recorded (reason `rate_limited`), later ones are
/// only counted into the caller's summary record. Allowed decisions are always recorded.
/// If the append fails, nothing is answered but `audit_unavailable`.
///
/// `issuances` are the upload issuances the allowed decisions made, durable in the same
/// transaction as the records.
pub async fn commit<T>(
    state: &AppState,
    decided: Vec<(Result<T, ApiError>, AuditRecord)>,
    issuances: Vec<StoredIssuance>,
) -> Result<Vec<Result<T, ApiError>>, ApiError> {
    let mut records = Vec::with_capacity(decided.len());
    let mut outcomes = Vec::with_capacity(decided.len());
    for (mut outcome, mut record) in decided {
        if record.decision == Verdict::Deny {
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
    if !records.is_empty() || !issuances.is_empty() {
        state.audit().append_with(&records, issuances).await?;
        observe_decisions(state, &records);
    }
    Ok(outcomes)
}

/// [`commit`] for one decision that made no upload issuance.
pub async fn commit_one<T>(
    state: &AppState,
    outcome: Result<T, ApiError>,
    record: AuditRecord,
) -> Result<T, ApiError> {
    commit_one_with(state, outcome, record, Vec::new()).await
}

/// [`commit`] for one decision.
pub async fn commit_one_with<T>(
    state: &AppState,
    outcome: Result<T, ApiError>,
    record: AuditRecord,
    issuances: Vec<StoredIssuance>,
) -> Result<T, ApiError> {
    commit(state, vec![(outcome, record)], issuances)
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
pub async fn write_refusal_summaries(state: &AppState) -> Result<usize, AuditError> {
    let records = state
        .refusals()
        .take_summaries(state.instance(), OffsetDateTime::now_utc());
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

/// Counts decisions whose audit records are durable, and names them on the request span: the
/// access point (or `multiple` for a batch across several), the decision (`allow`, `deny`, or
/// `mixed` for a batch) and, for a single decision, the reason code.
fn observe_decisions(state: &AppState, records: &[AuditRecord]) {
    state.metrics().observe_decisions(&state.catalog(), records);
    let Some(first) = records.first() else {
        return;
    };
    let span = tracing::Span::current();
    let same_access_point = records.iter().all(|r| r.access_point == first.access_point);
    match (&first.access_point, same_access_point) {
        (Some(name), true) => span.record("access_point", name.as_str()),
        (None, true) => span.record("access_point", "none"),
        (_, false) => span.record("access_point", "multiple"),
    };
    let decision = |d: &Verdict| match d {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    if records.iter().all(|r| r.decision == first.decision) {
        span.record("decision", decision(&first.decision));
    } else {
        span.record("decision", "mixed");
    }
    if records.len() == 1 {
        span.record("reason", first.reason.as_str());
    }
}
