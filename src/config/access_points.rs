//! `[access_points]`: the file applied at startup and the full-reload interval.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPointsConfig {
    /// A YAML/TOML file applied at startup, like `presignd apply -f` (without `--prune`).
    pub file: Option<PathBuf>,
    /// How often every instance reloads access points and revocations from the database in
    /// full: the safety net. On PostgreSQL every change reaches every instance at once through
    /// `LISTEN/NOTIFY`; an instance applies its own admin changes at once.
    pub reload_interval_ms: u64,
}

impl Default for AccessPointsConfig {
    fn default() -> Self {
        Self {
            file: None,
            reload_interval_ms: 30_000,
        }
    }
}

impl AccessPointsConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.reload_interval_ms < 100 {
            p.push(ConfigProblem::new(
                "access_points.reload_interval_ms",
                "must be at least 100",
            ));
        }
        if let Some(f) = &self.file
            && !f.exists()
        {
            p.push(ConfigProblem::new(
                "access_points.file",
                format!("{} does not exist", f.display()),
            ));
        }
        p
    }
}
