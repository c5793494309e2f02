//! `[uploads]`: multipart part URLs handed out at creation, and the abandoned-upload sweeper.

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::uploads::plan::MAX_PART_URLS_PER_REQUEST;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Part URLs returned when an upload is created (the first parts); the others come from
    /// `POST …/uploads/{upload_id}/parts`.
    pub initial_part_urls: usize,
    /// An upload with no activity (creation or part URLs) for this long is aborted.
    pub abandon_after_seconds: u64,
    /// How often each instance looks for abandoned uploads (and forgets old issuances).
    pub sweep_interval_ms: u64,
    /// How long an upload issuance is kept for verification after its URL expires, and a
    /// verification's answer after it was given (verifying again answers the same).
    pub verification_retention_seconds: u64,
    /// On quota access points, presignd verifies an upload nobody verified this long after
    /// its URL expired (so it counts), leaving uploads in flight at the expiry time to finish.
    pub expired_verification_grace_seconds: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            initial_part_urls: 100,
            abandon_after_seconds: 86_400,
            sweep_interval_ms: 300_000,
            verification_retention_seconds: 604_800,
            expired_verification_grace_seconds: 60,
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
        if !(60..=31_536_000).contains(&self.verification_retention_seconds) {
            p.push(ConfigProblem::new(
                "uploads.verification_retention_seconds",
                "must be between 60 and 31536000 (one year)",
            ));
        }
        if self.expired_verification_grace_seconds > 86_400 {
            p.push(ConfigProblem::new(
                "uploads.expired_verification_grace_seconds",
                "must be at most 86400 (a day)",
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
            verification_retention_seconds: 0,
            expired_verification_grace_seconds: 86_401,
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "uploads.initial_part_urls",
                "uploads.abandon_after_seconds",
                "uploads.verification_retention_seconds",
                "uploads.expired_verification_grace_seconds",
                "uploads.sweep_interval_ms"
            ]
        );
    }
}
