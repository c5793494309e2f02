//! The audit record (docs/audit.md). It never holds the URL or its signature: the URL is a bearer
//! credential. `signature_sha256` lets a leaked URL be traced back to its record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// What a record says was decided (its `decision` field): not to be confused with
/// `policy::Decision`, the rules' answer, one of the inputs to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub request_id: String,
    pub decision: Verdict,
    /// Why: `allowed`, a problem code (`forbidden`, `invalid_key`, …) or an admin change.
    pub reason: String,
    pub operation: String,
    pub access_point: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub groups: Vec<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub origin: Option<String>,
    pub tls: bool,
    pub sse: Option<String>,
    pub signature_sha256: Option<String>,
    pub instance: String,
    /// Only on `refusals` summary records: how many refusals past the caller's limit this one
    /// record stands for (`crate::limits::RefusalLimiter`). Absent: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The index (from 0) in the access point's `rules` of the rule that decided: the deny
    /// rule that refused, or the allow rule that granted. Absent for an implicit deny and for
    /// decisions the rules did not make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// CloudFront issuances only: the resource the signed policy grants (a URL, or for
    /// cookies a URL pattern ending in `*`) and the SHA-256 of the policy statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// Download grant records only (`grant_create`, `grant_redeem`, `grant_revoke`): the
    /// grant's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Verification records only (`upload_verified`, `upload_rejected`): the verified
    /// issuance's id (the issuing record's id; for a multipart upload, its completion's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuance_id: Option<String>,
    /// Verification records only: the object's size, as S3 reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
}

impl AuditRecord {
    /// A record id that sorts by time (UUIDv7).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// An allowed `get` on `avatars` by alice, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(id: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: time::macros::datetime!(2025-03-07 04:05:06.123456789 UTC),
            request_id: "r".into(),
            decision: Verdict::Allow,
            reason: "allowed".into(),
            operation: "get".into(),
            access_point: Some("avatars".into()),
            bucket: Some("b".into()),
            key: Some("k".into()),
            expires_at: None,
            subject: Some("alice".into()),
            issuer: None,
            groups: vec!["users".into()],
            source_ip: None,
            user_agent: None,
            origin: None,
            tls: false,
            sse: None,
            signature_sha256: None,
            instance: "t".into(),
            count: None,
            rule: None,
            resource: None,
            policy_sha256: None,
            grant_id: None,
            issuance_id: None,
            content_length: None,
        }
    }
}

/// Hex SHA-256 of the `X-Amz-Signature` value (or CloudFront's `Signature`).
pub fn signature_sha256(signature: &str) -> String {
    hex::encode(Sha256::digest(signature.as_bytes()))
}

/// Hex SHA-256 of a CloudFront policy statement.
pub fn policy_sha256(policy: &str) -> String {
    hex::encode(Sha256::digest(policy.as_bytes()))
}
