//! `[grants]`: download grants, revocable links good for a number of downloads
//! (`POST /v1/access-points/{name}/grants`, `GET /g/{token}`). Links are built on
//! `server.public_base_url`.

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// The longest a grant may live: a year.
pub const MAX_GRANT_SECONDS: u64 = 31_536_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// How long the URL a redemption redirects to lives: the download must start within it.
    /// Each redemption signs a fresh one, so a player that seeks follows a fresh redirect.
    pub redirect_expires_in: u32,
    /// The longest lifetime a grant may be created with (`expires_in`).
    pub max_expires_in: u64,
    /// The most uses a grant may be created with (`max_uses`).
    pub max_uses: u32,
    /// Redemptions (`GET /g/{token}`) per minute from one address (IPv6: one /64), on this
    /// instance; `0` switches the limit off. Past it: `429 rate_limited`.
    pub redemptions_per_minute: u32,
}

impl Default for GrantsConfig {
    fn default() -> Self {
        Self {
            redirect_expires_in: 60,
            max_expires_in: 2_592_000,
            max_uses: 1000,
            redemptions_per_minute: 120,
        }
    }
}

impl GrantsConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if !(1..=3600).contains(&self.redirect_expires_in) {
            p.push(ConfigProblem::new(
                "grants.redirect_expires_in",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=MAX_GRANT_SECONDS).contains(&self.max_expires_in) {
            p.push(ConfigProblem::new(
                "grants.max_expires_in",
                format!("must be between 1 and {MAX_GRANT_SECONDS} (a year)"),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_uses) {
            p.push(ConfigProblem::new(
                "grants.max_uses",
                "must be between 1 and 1000000",
            ));
        }
        if self.redemptions_per_minute > 1_000_000 {
            p.push(ConfigProblem::new(
                "grants.redemptions_per_minute",
                "must be at most 1000000",
            ));
        }
        p
    }
}
