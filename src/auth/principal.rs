//! The verified caller, as every layer after authentication sees it.

use serde::Serialize;

/// A verified JWT reduced to what presignd decides on. Built only by `auth::Verifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub sub: String,
    pub iss: String,
    pub groups: Vec<String>,
    /// True when the token's MFA claim (`amr` by default, RFC 8176) contains `"mfa"`.
    pub mfa: bool,
    /// `iat`, when the token has one (revocations compare against it).
    #[serde(skip)]
    pub issued_at: Option<i64>,
    /// `exp` as a Unix timestamp; the token is invalid after it.
    #[serde(skip)]
    pub expires_at: i64,
    #[serde(skip)]
    pub jti: Option<String>,
}

impl Principal {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// A principal for unit tests: no MFA, no `iat`, `exp` 0, no `jti`.
    #[cfg(test)]
    pub(crate) fn for_tests(iss: &str, sub: &str, groups: &[&str]) -> Principal {
        Principal {
            sub: sub.into(),
            iss: iss.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            mfa: false,
            issued_at: None,
            expires_at: 0,
            jti: None,
        }
    }
}
