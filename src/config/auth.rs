//! `[auth]`: the issuers (`[[auth.issuers]]`, in `issuers`), who administers presignd, and
//! the bounds on tokens.

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use super::issuers::IssuerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    pub admin_group: String,
    /// Issuers whose tokens may carry admin rights (`admin_group` is only looked for in
    /// their tokens). Empty with one issuer: that issuer. Required with several: a partner
    /// IdP's group of the same name must not administer presignd.
    pub admin_issuers: Vec<String>,
    /// Longest token lifetime accepted (`exp − iat`). Revocations are kept this long after
    /// their cut-off, so a longer-lived token could outlive its revocation: it is refused.
    pub max_token_lifetime_seconds: u64,
    /// Verified tokens remembered (by SHA-256), so a signature is checked once per token;
    /// 0 checks it on every request. Revocations apply on every request either way.
    pub token_cache_entries: usize,
}

impl AuthConfig {
    /// Is this verified caller an administrator: in `admin_group`, in a token from one of the
    /// admin issuers?
    pub fn is_admin(&self, p: &crate::Principal) -> bool {
        self.is_admin_issuer(&p.iss) && p.in_group(&self.admin_group)
    }

    /// `admin_issuers`, or with none listed, the only issuer (never any of several).
    pub fn is_admin_issuer(&self, iss: &str) -> bool {
        if self.admin_issuers.is_empty() {
            return matches!(self.issuers.as_slice(), [only] if only.issuer == iss);
        }
        self.admin_issuers.iter().any(|a| a == iss)
    }
}

/// Largest `auth.token_cache_entries` (an entry is a few hundred bytes).
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1_000_000;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            admin_group: "presignd-admins".into(),
            admin_issuers: Vec::new(),
            max_token_lifetime_seconds: 86_400,
            token_cache_entries: 10_000,
        }
    }
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.issuers.is_empty() {
            p.push(ConfigProblem::new(
                "auth.issuers",
                "at least one issuer is required",
            ));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            p.extend(issuer.validate(&format!("auth.issuers[{i}]")));
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                p.push(ConfigProblem::new(
                    format!("auth.issuers[{i}].issuer"),
                    "duplicate issuer",
                ));
            }
        }
        if self.admin_group.trim().is_empty() {
            p.push(ConfigProblem::new("auth.admin_group", "must not be empty"));
        }
        if self.admin_issuers.is_empty() && self.issuers.len() > 1 {
            p.push(ConfigProblem::new(
                "auth.admin_issuers",
                format!(
                    "is required when more than one issuer is configured: list the issuer(s) whose tokens in group {:?} administer presignd (otherwise a user of any issuer in a group of that name would)",
                    self.admin_group
                ),
            ));
        }
        for (i, a) in self.admin_issuers.iter().enumerate() {
            if !self.issuers.iter().any(|iss| &iss.issuer == a) {
                p.push(ConfigProblem::new(
                    format!("auth.admin_issuers[{i}]"),
                    format!("{a:?} is not one of auth.issuers"),
                ));
            }
        }
        if !(60..=31_536_000).contains(&self.max_token_lifetime_seconds) {
            p.push(ConfigProblem::new(
                "auth.max_token_lifetime_seconds",
                "must be between 60 and 31536000 (one year)",
            ));
        }
        if self.token_cache_entries > MAX_TOKEN_CACHE_ENTRIES {
            p.push(ConfigProblem::new(
                "auth.token_cache_entries",
                format!("must be at most {MAX_TOKEN_CACHE_ENTRIES} (0 disables the cache)"),
            ));
        }
        p
    }
}
