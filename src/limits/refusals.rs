//! Limits on refused callers. Every refusal is a durable audit record, so a caller that is
//! refused again and again (no token, a forged one, a batch of denied items) would make the
//! outbox grow at its pace. Past `limits.refusals_per_minute` per caller, a refusal is answered
//! `429 rate_limited` and **counted** instead of recorded one by one: the first such refusal
//! in a window is still written (with reason `rate_limited`: evidence that survives a crash),
//! the rest go into one summary record per caller per `refusal_summary_interval_seconds`
//! (reason `refusals_summarized`, `count` = how many), written by a background task and at
//! shutdown. Nothing issued is affected: only deny records are ever counted.
//!
//! A caller is an authenticated subject (issuer + `sub`) or, without a valid token, a source
//! address (an IPv6 client by its /64, which one host can fill at will). Buckets live in this
//! process: with several instances, each holds the limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use super::gcra::Quota;
use super::local::LocalLimiter;
use crate::Principal;
use crate::audit::{AuditRecord, Verdict};

/// Callers with a summary pending at once, at most; further ones share one `overflow`
/// summary (still counted, not told apart).
const MAX_CALLERS: usize = 10_000;
/// Access point names kept per summary.
const MAX_ACCESS_POINTS: usize = 16;

/// Who a refusal is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    key: String,
    subject: Option<(String, String)>,
    source: Option<String>,
}

/// An address as a limit counts it: IPv4 as is, IPv6 by its /64 (what one subscriber holds).
pub fn source_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            ipnet::Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |n| n.trunc().to_string())
        }
    }
}

impl Caller {
    /// The caller a decision's audit record names: its subject (issuer and `sub`) when it
    /// has one, else its source address.
    pub fn of_record(record: &AuditRecord) -> Caller {
        match (&record.issuer, &record.subject) {
            (Some(iss), Some(sub)) => Caller {
                key: format!("s\0{iss}\0{sub}"),
                subject: Some((iss.clone(), sub.clone())),
                source: None,
            },
            _ => Caller::address(record.source_ip.as_deref().and_then(|ip| ip.parse().ok())),
        }
    }

    /// The subject when the request carried a valid token, else the source address.
    pub fn of(principal: Option<&Principal>, ip: Option<IpAddr>) -> Caller {
        match principal {
            Some(p) => Caller {
                key: format!("s\0{}\0{}", p.iss, p.sub),
                subject: Some((p.iss.clone(), p.sub.clone())),
                source: None,
            },
            None => Caller::address(ip),
        }
    }

    fn address(ip: Option<IpAddr>) -> Caller {
        let source = ip.map(source_of);
        Caller {
            key: format!("a\0{}", source.as_deref().unwrap_or("unknown")),
            subject: None,
            source,
        }
    }
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the limit: record it as usual.
    Record,
    /// Past the limit: answer 429. `opening`: the first in this window, whose record is
    /// still written (reason `rate_limited`); otherwise it was counted into the summary.
    Suppress {
        retry_after: Duration,
        opening: bool,
    },
}

pub struct RefusalLimiter {
    quota: Option<Quota>,
    buckets: LocalLimiter,
    pending: Mutex<HashMap<String, Summary>>,
    /// Summary records taken but not written (the outbox was unavailable): next time first.
    unwritten: Mutex<Vec<AuditRecord>>,
}

#[derive(Debug, Clone)]
struct Summary {
    caller: Caller,
    first: OffsetDateTime,
    last: OffsetDateTime,
    /// Refusals counted (the opening one excluded: it has its own record).
    count: u64,
    reasons: BTreeMap<String, u64>,
    access_points: BTreeSet<String>,
    last_request_id: String,
}

impl RefusalLimiter {
    /// `quota`: `limits.refusals_per_minute` / `refusals_burst`; `None`: unlimited.
    pub fn new(quota: Option<Quota>) -> RefusalLimiter {
        RefusalLimiter {
            quota,
            buckets: LocalLimiter::default(),
            pending: Mutex::new(HashMap::new()),
            unwritten: Mutex::new(Vec::new()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Summary>> {
        lock(&self.pending)
    }

    /// Charges one refusal (`record`, a deny record not yet written) to `caller`.
    pub fn admit(&self, caller: &Caller, record: &AuditRecord) -> Admission {
        let Some(quota) = self.quota else {
            return Admission::Record;
        };
        let retry_after = match self.buckets.admit(&[(caller.key.as_str(), quota)]) {
            Ok(()) => return Admission::Record,
            Err((_, wait_us)) => Duration::from_micros(wait_us),
        };
        let mut pending = self.pending();
        let key = if pending.len() >= MAX_CALLERS && !pending.contains_key(&caller.key) {
            "overflow".to_string()
        } else {
            caller.key.clone()
        };
        let opening = !pending.contains_key(&key);
        if opening {
            let caller = if key == "overflow" {
                Caller {
                    key: key.clone(),
                    subject: None,
                    source: None,
                }
            } else {
                caller.clone()
            };
            pending.insert(
                key,
                Summary {
                    caller,
                    first: record.time,
                    last: record.time,
                    count: 0,
                    reasons: BTreeMap::new(),
                    access_points: BTreeSet::new(),
                    last_request_id: record.request_id.clone(),
                },
            );
        } else if let Some(s) = pending.get_mut(&key) {
            s.first = s.first.min(record.time);
            s.last = s.last.max(record.time);
            s.count += 1;
            *s.reasons.entry(record.reason.clone()).or_default() += 1;
            if let Some(ap) = &record.access_point
                && s.access_points.len() < MAX_ACCESS_POINTS
            {
                s.access_points.insert(ap.clone());
            }
            s.last_request_id.clone_from(&record.request_id);
        }
        Admission::Suppress {
            retry_after,
            opening,
        }
    }

    /// Takes the pending summaries as audit records (one per caller with refusals counted
    /// since the opening one) and starts a new window. Callers whose only suppressed
    /// refusal was the opening one need no summary.
    pub fn take_summaries(&self, instance: &str, now: OffsetDateTime) -> Vec<AuditRecord> {
        let taken = std::mem::take(&mut *self.pending());
        let mut records = std::mem::take(&mut *lock(&self.unwritten));
        records.extend(
            taken
                .into_values()
                .filter(|s| s.count > 0)
                .map(|s| s.into_record(instance, now)),
        );
        records
    }

    /// Gives back summary records that could not be written; the next
    /// [`RefusalLimiter::take_summaries`] returns them again.
    pub fn restore(&self, records: Vec<AuditRecord>) {
        lock(&self.unwritten).extend(records);
    }

    /// Counts of refusals pending in summaries (for tests and metrics).
    pub fn pending_count(&self) -> u64 {
        self.pending().values().map(|s| s.count).sum()
    }
}

impl Summary {
    fn into_record(self, instance: &str, now: OffsetDateTime) -> AuditRecord {
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect();
        let (issuer, subject) = match self.caller.subject {
            Some((iss, sub)) => (Some(iss), Some(sub)),
            None => (None, None),
        };
        let access_point = match self.access_points.len() {
            1 => self.access_points.into_iter().next(),
            _ => None,
        };
        AuditRecord {
            id: AuditRecord::new_id(),
            time: now,
            request_id: self.last_request_id,
            decision: Verdict::Deny,
            reason: format!(
                "refusals_summarized ({}) between {} and {}",
                reasons.join(", "),
                rfc3339(self.first),
                rfc3339(self.last)
            ),
            operation: "refusals".into(),
            access_point,
            bucket: None,
            key: None,
            expires_at: None,
            subject,
            issuer,
            groups: Vec::new(),
            source_ip: self.caller.source,
            user_agent: None,
            origin: None,
            tls: false,
            sse: None,
            signature_sha256: None,
            instance: instance.to_string(),
            count: Some(self.count),
            rule: None,
            resource: None,
            policy_sha256: None,
            grant_id: None,
            issuance_id: None,
            content_length: None,
        }
    }
}

/// Plain counters and records: a panic elsewhere cannot leave them inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(reason: &str) -> AuditRecord {
        AuditRecord {
            time: OffsetDateTime::now_utc(),
            decision: Verdict::Deny,
            reason: reason.into(),
            bucket: None,
            key: None,
            subject: None,
            groups: Vec::new(),
            ..AuditRecord::for_tests(&AuditRecord::new_id())
        }
    }

    #[test]
    fn past_the_burst_refusals_are_counted_not_recorded() {
        let limiter = RefusalLimiter::new(Quota::per_minute(60, 3));
        let caller = Caller::of(None, Some("203.0.113.9".parse().expect("ip")));
        let outcomes: Vec<Admission> = (0..10)
            .map(|i| {
                limiter.admit(
                    &caller,
                    &denied(if i % 2 == 0 {
                        "unauthenticated"
                    } else {
                        "forbidden"
                    }),
                )
            })
            .collect();
        assert_eq!(&outcomes[..3], [Admission::Record; 3]);
        assert!(matches!(
            outcomes[3],
            Admission::Suppress { opening: true, retry_after } if retry_after > Duration::ZERO
        ));
        assert!(
            outcomes[4..]
                .iter()
                .all(|o| matches!(o, Admission::Suppress { opening: false, .. }))
        );
        // Another caller has its own bucket.
        let other = Caller::of(None, Some("198.51.100.1".parse().expect("ip")));
        assert_eq!(
            limiter.admit(&other, &denied("forbidden")),
            Admission::Record
        );

        let summaries = limiter.take_summaries("web-1", OffsetDateTime::now_utc());
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(
            s.count,
            Some(6),
            "10 refusals: 3 recorded, 1 opening, 6 counted"
        );
        assert_eq!(s.source_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(s.access_point.as_deref(), Some("avatars"));
        assert!(
            s.reason
                .starts_with("refusals_summarized (forbidden: 3, unauthenticated: 3)"),
            "{}",
            s.reason
        );
        assert!(
            limiter
                .take_summaries("web-1", OffsetDateTime::now_utc())
                .is_empty()
        );
        assert_eq!(limiter.pending_count(), 0);
        // Not written (outbox down): given back, taken again next time.
        limiter.restore(summaries.clone());
        assert_eq!(
            limiter.take_summaries("web-1", OffsetDateTime::now_utc()),
            summaries
        );
    }

    #[test]
    fn callers_are_subjects_or_addresses_ipv6_by_64() {
        let p = |iss: &str, sub: &str| Principal::for_tests(iss, sub, &[]);
        let ip = |s: &str| Some(s.parse().expect("ip"));
        assert_eq!(
            Caller::of(Some(&p("https://a/", "x")), ip("10.0.0.1")),
            Caller::of(Some(&p("https://a/", "x")), ip("10.0.0.2")),
            "a subject is one caller wherever it calls from"
        );
        assert_ne!(
            Caller::of(Some(&p("https://a/", "x")), None),
            Caller::of(Some(&p("https://b/", "x")), None)
        );
        assert_eq!(
            Caller::of(None, ip("2001:db8:1:2::1")),
            Caller::of(None, ip("2001:db8:1:2:ffff::9")),
            "one /64"
        );
        assert_ne!(
            Caller::of(None, ip("2001:db8:1:2::1")),
            Caller::of(None, ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Caller::of(None, ip("2001:db8:1:2::1")).source.as_deref(),
            Some("2001:db8:1:2::/64")
        );
    }

    #[test]
    fn unlimited_records_everything() {
        let limiter = RefusalLimiter::new(None);
        let caller = Caller::of(None, None);
        for _ in 0..1000 {
            assert_eq!(
                limiter.admit(&caller, &denied("forbidden")),
                Admission::Record
            );
        }
    }
}
