//! `[audit]`: where shipped records go and how the outbox commits and ships them.

use crate::audit::SinkLocation;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigProblem};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where shipped batches go: `s3://bucket/prefix/` (the log bucket) or `file:///dir`
    /// (same layout on disk). Records are durable in the database's outbox first.
    pub sink: String,
    /// Names this instance in records and object keys; default: the hostname (stable across
    /// restarts, so a batch retried after a crash gets the same key).
    pub instance: Option<String>,
    /// The log bucket's region; default: `s3.region`.
    pub region: Option<String>,
    /// Permit a log bucket outside the served buckets' region.
    pub allow_cross_region: bool,
    /// Records per shipped object (at most).
    pub batch_max_records: usize,
    /// How often the shipper looks for new records.
    pub flush_interval_ms: u64,
    /// Records per outbox transaction (group commit), at most.
    pub commit_max_records: usize,
    /// How long the writer keeps collecting queued records for one transaction, at most.
    pub commit_max_wait_ms: u64,
    /// How long a graceful shutdown may spend shipping the outbox.
    pub shutdown_flush_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: "file://var/audit".into(),
            instance: None,
            region: None,
            allow_cross_region: false,
            batch_max_records: 512,
            flush_interval_ms: 1_000,
            commit_max_records: 512,
            commit_max_wait_ms: 2,
            shutdown_flush_ms: 10_000,
        }
    }
}

/// The `[audit]` keys on their own and against `[s3]`.
pub(super) fn validate(config: &Config) -> Vec<ConfigProblem> {
    let a = &config.audit;
    let mut p = Vec::new();
    if let Err(m) = SinkLocation::parse(&a.sink) {
        p.push(ConfigProblem::new("audit.sink", m));
    }
    if let Some(region) = &a.region {
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            p.push(ConfigProblem::new(
                "audit.region",
                "must be a region name such as us-east-1",
            ));
        } else if *region != config.s3.region
            && !a.allow_cross_region
            && a.sink.starts_with("s3://")
        {
            p.push(ConfigProblem::new(
                "audit.region",
                format!(
                    "the log bucket's region {region} differs from s3.region {}, where the served buckets are; records would leave that region. Use a log bucket in {}, or set audit.allow_cross_region = true",
                    config.s3.region, config.s3.region
                ),
            ));
        }
    }
    let mut range = |key: &str, v: u64, min: u64, max: u64| {
        if !(min..=max).contains(&v) {
            p.push(ConfigProblem::new(
                format!("audit.{key}"),
                format!("must be between {min} and {max}"),
            ));
        }
    };
    range("batch_max_records", a.batch_max_records as u64, 1, 100_000);
    range("flush_interval_ms", a.flush_interval_ms, 10, 3_600_000);
    range(
        "commit_max_records",
        a.commit_max_records as u64,
        1,
        100_000,
    );
    range("commit_max_wait_ms", a.commit_max_wait_ms, 0, 1_000);
    range("shutdown_flush_ms", a.shutdown_flush_ms, 0, 600_000);
    if let Some(inst) = &config.audit.instance
        && (inst.is_empty()
            || !inst
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        p.push(ConfigProblem::new(
            "audit.instance",
            "must be non-empty [A-Za-z0-9_-]",
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sink: &str) -> Config {
        let mut c = Config::default();
        c.audit.sink = sink.into();
        c
    }

    #[test]
    fn audit_keys_are_validated_and_named() {
        let mut c = config("s3://acme-logs/");
        assert!(validate(&c).is_empty(), "defaults are valid");
        c.audit.region = Some("eu-west-1".into());
        let p = validate(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "audit.region");
        assert!(
            p[0].message.contains("eu-west-1") && p[0].message.contains("us-east-1"),
            "names both regions: {}",
            p[0].message
        );
        c.audit.allow_cross_region = true;
        assert!(validate(&c).is_empty());
        c.audit.sink = "s3://x".into();
        c.audit.batch_max_records = 0;
        c.audit.commit_max_wait_ms = 5_000;
        let keys: Vec<String> = validate(&c).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "audit.sink",
                "audit.batch_max_records",
                "audit.commit_max_wait_ms"
            ]
        );
    }
}
