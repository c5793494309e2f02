//! `[log]`: format and filter.

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Compact,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,presignd=debug`. `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Compact,
            filter: "info".into(),
        }
    }
}

impl LogConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.filter) {
            p.push(ConfigProblem::new(
                "log.filter",
                format!("is not a valid filter: {e}"),
            ));
        }
        p
    }
}
