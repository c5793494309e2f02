//! `[database]`: where access points, revocations, uploads and the audit outbox live.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigProblem, redacted};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created if missing) or `postgres://…`. May hold a password.
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    pub migrate_on_start: bool,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://var/presignd.db"),
            migrate_on_start: true,
            max_connections: 10,
        }
    }
}

impl DatabaseConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let db = self.url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            p.push(ConfigProblem::new(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.max_connections == 0 {
            p.push(ConfigProblem::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        p
    }
}
