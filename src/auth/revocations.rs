//! Token revocations, checked in memory on every authenticated request.
//!
//! An admin revokes a subject ("refuse `alice`'s tokens issued before T") or one token (by
//! `jti`). The entry is written to SQL (`store::revocations`); every instance keeps all live
//! entries in memory and reloads them when the database says they changed (PostgreSQL
//! `NOTIFY`, see `crate::sync`) and periodically. The verify path never leaves memory.
//!
//! An entry is kept until no token it covers can still be valid. That needs a bound on token
//! lifetime: `auth.max_token_lifetime_seconds` (L). Tokens living longer (`exp − iat > L`, or
//! `exp − now > L` without `iat`) are refused outright, so a token issued before T expires
//! before `T + L` and a subject entry can go at `T + L + leeway`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Principal;
use crate::auth::AuthError;
use crate::policy::FieldError;
use crate::store::{RevocationKind, Store, StoreError, StoredRevocation};

/// Longest `sub` / `jti` accepted in a revocation.
pub const MAX_VALUE_BYTES: usize = 1024;

pub struct Revocations {
    set: ArcSwap<RevocationSet>,
    max_lifetime: i64,
    leeway: i64,
    /// Reloads run one at a time, so a slow one never replaces a newer set.
    reload: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct RevocationSet {
    /// By `sub`.
    subjects: HashMap<String, Vec<Entry>>,
    /// By `jti`.
    tokens: HashMap<String, Vec<Entry>>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Empty: any issuer.
    issuer: String,
    not_before: i64,
    expires_at: i64,
}

impl Entry {
    fn covers(&self, iss: &str, now: i64) -> bool {
        self.expires_at > now && (self.issuer.is_empty() || self.issuer == iss)
    }
}

impl Revocations {
    /// `max_lifetime_secs`: `auth.max_token_lifetime_seconds`; `leeway_secs`: the largest
    /// `leeway_seconds` of any issuer (a token is accepted that long after its `exp`).
    pub fn new(max_lifetime_secs: u64, leeway_secs: u64) -> Revocations {
        Revocations {
            set: ArcSwap::from_pointee(RevocationSet::default()),
            max_lifetime: i64::try_from(max_lifetime_secs).unwrap_or(i64::MAX / 4),
            leeway: i64::try_from(leeway_secs).unwrap_or(0),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// Entries in memory (expired ones linger until the next reload).
    pub fn len(&self) -> usize {
        self.set.load().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses a revoked token, and a token whose lifetime exceeds the bound revocations rely
    /// on. `now`: Unix seconds.
    pub fn check(&self, p: &Principal, now: i64) -> Result<(), AuthError> {
        // Checked: `exp` near i64::MAX with a negative `iat` must not wrap into a short life.
        let lifetime = p.expires_at.checked_sub(p.issued_at.unwrap_or(now));
        if lifetime.is_none_or(|l| l > self.max_lifetime) {
            return Err(AuthError::LifetimeTooLong);
        }
        let set = self.set.load();
        if set.len == 0 {
            return Ok(());
        }
        let by_subject = set.subjects.get(&p.sub).is_some_and(|entries| {
            entries.iter().any(|e| {
                // Without `iat` the token cannot show it was issued after the cut-off.
                e.covers(&p.iss, now) && p.issued_at.is_none_or(|iat| iat < e.not_before)
            })
        });
        let by_token = p.jti.as_ref().is_some_and(|jti| {
            set.tokens
                .get(jti)
                .is_some_and(|entries| entries.iter().any(|e| e.covers(&p.iss, now)))
        });
        if by_subject || by_token {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Replaces the in-memory set with `rows`.
    pub fn replace(&self, rows: &[StoredRevocation]) {
        let mut set = RevocationSet::default();
        for r in rows {
            let entry = Entry {
                issuer: r.issuer.clone(),
                not_before: r.not_before,
                expires_at: r.expires_at,
            };
            let map = match r.kind {
                RevocationKind::Subject => &mut set.subjects,
                RevocationKind::Token => &mut set.tokens,
            };
            map.entry(r.value.clone()).or_default().push(entry);
            set.len += 1;
        }
        self.set.store(Arc::new(set));
    }

    /// Reloads the live entries from SQL (one reload at a time).
    pub async fn reload(&self, store: &Store) -> Result<usize, StoreError> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.active_revocations(unix_now()).await?;
        self.replace(&rows);
        Ok(rows.len())
    }

    /// When an entry can be forgotten: a subject entry once every token issued before
    /// `not_before` has expired; a token entry once that token has (`token_exp`, if the
    /// admin knows it, never later than the lifetime bound allows).
    pub fn expiry(&self, kind: RevocationKind, not_before: i64, token_exp: Option<i64>) -> i64 {
        let bound = not_before.saturating_add(self.max_lifetime);
        let last_valid = match kind {
            RevocationKind::Subject => bound,
            RevocationKind::Token => token_exp.map_or(bound, |exp| exp.min(bound)),
        };
        last_valid.saturating_add(self.leeway).max(not_before)
    }

    pub fn max_lifetime(&self) -> i64 {
        self.max_lifetime
    }
}

pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `POST /v1/admin/revocations`: exactly one of `sub` and `jti`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// Refuse this subject's tokens issued before `not_before`.
    pub sub: Option<String>,
    /// Refuse the token with this `jti`.
    pub jti: Option<String>,
    /// Only tokens of this issuer; absent: any configured issuer.
    pub iss: Option<String>,
    /// With `sub`: the cut-off (RFC 3339); absent: now (every token issued so far).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// With `jti`: the token's own expiry, so the entry can be forgotten after it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl RevocationRequest {
    /// Checks the request and turns it into a row; `issuers` are the configured issuers.
    pub fn into_row(
        self,
        revocations: &Revocations,
        issuers: &[&str],
        created_by: &str,
        now: i64,
    ) -> Result<StoredRevocation, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.into(),
                message: message.into(),
            })
        };
        let (kind, value) = match (self.sub, self.jti) {
            (Some(sub), None) => {
                check_value(&sub).unwrap_or_else(|m| err("sub", m));
                (RevocationKind::Subject, sub)
            }
            (None, Some(jti)) => {
                check_value(&jti).unwrap_or_else(|m| err("jti", m));
                (RevocationKind::Token, jti)
            }
            (Some(_), Some(_)) => {
                err("jti", "give either sub or jti, not both");
                (RevocationKind::Token, String::new())
            }
            (None, None) => {
                err("sub", "either sub or jti is required");
                (RevocationKind::Subject, String::new())
            }
        };
        if let Some(iss) = &self.iss
            && !issuers.contains(&iss.as_str())
        {
            err("iss", "is not a configured issuer");
        }
        // A cut-off at second granularity: tokens issued in the current second are included.
        let not_before = match (kind, self.not_before) {
            (RevocationKind::Subject, Some(t)) => {
                let t = t.unix_timestamp() + i64::from(t.nanosecond() > 0);
                if t > now + revocations.max_lifetime() {
                    err(
                        "not_before",
                        "must not be further in the future than auth.max_token_lifetime_seconds",
                    );
                }
                t
            }
            (RevocationKind::Token, Some(_)) => {
                err("not_before", "applies to sub revocations only");
                now
            }
            (_, None) => now + 1,
        };
        let token_exp = match (kind, self.expires_at) {
            (RevocationKind::Token, Some(t)) => Some(t.unix_timestamp()),
            (RevocationKind::Subject, Some(_)) => {
                err("expires_at", "applies to jti revocations only");
                None
            }
            (_, None) => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let not_before = match kind {
            RevocationKind::Subject => not_before,
            RevocationKind::Token => now,
        };
        Ok(StoredRevocation {
            kind,
            issuer: self.iss.unwrap_or_default(),
            value,
            not_before,
            expires_at: revocations.expiry(kind, not_before, token_exp),
            created_by: created_by.to_string(),
        })
    }
}

fn check_value(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        Err("must not be empty")
    } else if v.len() > MAX_VALUE_BYTES {
        Err("must be at most 1024 bytes")
    } else if v.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}

/// A revocation as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationView {
    pub kind: RevocationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `null`: any issuer.
    pub iss: Option<String>,
    /// Subject revocations: tokens issued before this are refused.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// After this no token the entry covers can be valid; the entry is then dropped.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub created_by: String,
}

impl From<&StoredRevocation> for RevocationView {
    fn from(r: &StoredRevocation) -> Self {
        let at =
            |t: i64| OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let subject = r.kind == RevocationKind::Subject;
        RevocationView {
            kind: r.kind,
            sub: subject.then(|| r.value.clone()),
            jti: (!subject).then(|| r.value.clone()),
            iss: (!r.issuer.is_empty()).then(|| r.issuer.clone()),
            not_before: subject.then(|| at(r.not_before)),
            expires_at: at(r.expires_at),
            created_by: r.created_by.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example/";
    const HOUR: i64 = 3600;

    fn principal(sub: &str, iat: Option<i64>, exp: i64, jti: Option<&str>) -> Principal {
        Principal {
            issued_at: iat,
            expires_at: exp,
            jti: jti.map(str::to_string),
            ..Principal::for_tests(ISS, sub, &[])
        }
    }

    fn row(kind: RevocationKind, issuer: &str, value: &str, nb: i64, exp: i64) -> StoredRevocation {
        StoredRevocation {
            kind,
            issuer: issuer.into(),
            value: value.into(),
            not_before: nb,
            expires_at: exp,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn subject_revocation_refuses_tokens_issued_before_the_cut_off() {
        let r = Revocations::new(24 * HOUR as u64, 30);
        let now = 1_000_000;
        r.replace(&[row(RevocationKind::Subject, "", "alice", now, now + HOUR)]);
        let old = principal("alice", Some(now - 10), now + 600, None);
        let fresh = principal("alice", Some(now), now + 600, None);
        let no_iat = principal("alice", None, now + 600, None);
        let bob = principal("bob", Some(now - 10), now + 600, None);
        assert_eq!(r.check(&old, now + 5), Err(AuthError::Revoked));
        assert_eq!(r.check(&fresh, now + 5), Ok(()));
        assert_eq!(r.check(&no_iat, now + 5), Err(AuthError::Revoked));
        assert_eq!(r.check(&bob, now + 5), Ok(()));
        // Once the entry has expired it no longer applies.
        assert_eq!(r.check(&old, now + HOUR + 1), Ok(()));
    }

    #[test]
    fn issuer_scoped_and_token_revocations() {
        let r = Revocations::new(24 * HOUR as u64, 0);
        let now = 1_000_000;
        r.replace(&[
            row(
                RevocationKind::Subject,
                "https://other/",
                "alice",
                now,
                now + HOUR,
            ),
            row(RevocationKind::Token, "", "j-1", now, now + HOUR),
        ]);
        let alice = principal("alice", Some(now - 10), now + 600, Some("j-2"));
        assert_eq!(r.check(&alice, now), Ok(()), "another issuer's alice");
        let stolen = principal("carol", Some(now - 10), now + 600, Some("j-1"));
        assert_eq!(r.check(&stolen, now), Err(AuthError::Revoked));
        assert_eq!(r.len(), 2);
    }

    /// `exp = 2^64 - 1` (saturated to i64::MAX) with `iat = -1` used to wrap `exp - iat`
    /// into a negative lifetime, which passed the bound (release builds do not check).
    #[test]
    fn lifetime_arithmetic_cannot_wrap() {
        let r = Revocations::new(HOUR as u64, 0);
        let now = 1_000_000;
        for (iat, exp) in [(Some(-1), i64::MAX), (Some(i64::MIN), 0), (None, i64::MAX)] {
            assert_eq!(
                r.check(&principal("a", iat, exp, None), now),
                Err(AuthError::LifetimeTooLong),
                "iat {iat:?} exp {exp}"
            );
        }
    }

    #[test]
    fn tokens_living_longer_than_the_bound_are_refused() {
        let r = Revocations::new(HOUR as u64, 0);
        let now = 1_000_000;
        assert_eq!(
            r.check(&principal("a", Some(now), now + HOUR + 1, None), now),
            Err(AuthError::LifetimeTooLong)
        );
        assert_eq!(
            r.check(&principal("a", Some(now), now + HOUR, None), now),
            Ok(())
        );
        assert_eq!(
            r.check(&principal("a", None, now + HOUR + 1, None), now),
            Err(AuthError::LifetimeTooLong)
        );
    }

    #[test]
    fn entries_expire_when_no_covered_token_can_be_valid() {
        let r = Revocations::new(HOUR as u64, 30);
        assert_eq!(
            r.expiry(RevocationKind::Subject, 1000, None),
            1000 + HOUR + 30
        );
        assert_eq!(r.expiry(RevocationKind::Token, 1000, Some(1600)), 1630);
        assert_eq!(
            r.expiry(RevocationKind::Token, 1000, Some(1000 + 10 * HOUR)),
            1000 + HOUR + 30,
            "a token cannot outlive the lifetime bound"
        );
    }

    #[test]
    fn requests_are_validated_field_by_field() {
        let r = Revocations::new(HOUR as u64, 0);
        let req = |v: serde_json::Value| -> RevocationRequest {
            serde_json::from_value(v).expect("request shape")
        };
        let fields = |v: serde_json::Value| -> Vec<String> {
            match req(v).into_row(&r, &[ISS], "admin", 1000) {
                Ok(_) => vec![],
                Err(e) => e.into_iter().map(|e| e.field).collect(),
            }
        };
        assert_eq!(fields(serde_json::json!({})), ["sub"]);
        assert_eq!(fields(serde_json::json!({"sub": "a", "jti": "b"})), ["jti"]);
        assert_eq!(fields(serde_json::json!({"sub": ""})), ["sub"]);
        assert_eq!(
            fields(serde_json::json!({"sub": "a", "iss": "https://x/"})),
            ["iss"]
        );
        assert_eq!(
            fields(serde_json::json!({"jti": "j", "not_before": "2030-01-01T00:00:00Z"})),
            ["not_before"]
        );
        assert_eq!(
            fields(serde_json::json!({"sub": "a", "not_before": "2999-01-01T00:00:00Z"})),
            ["not_before"]
        );
        let ok = req(serde_json::json!({"sub": "a", "iss": ISS}))
            .into_row(&r, &[ISS], "admin", 1000)
            .expect("valid");
        assert_eq!(
            (ok.kind, ok.issuer.as_str(), ok.not_before, ok.expires_at),
            (RevocationKind::Subject, ISS, 1001, 1001 + HOUR)
        );
        let view = RevocationView::from(&ok);
        assert_eq!(view.sub.as_deref(), Some("a"));
        assert!(view.jti.is_none());
    }
}
