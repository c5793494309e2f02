//! `[redis]` and `[limits]`: where shared state lives, and the global rate-limit defaults.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// Largest configurable rate (per second or per minute): the GCRA interval must stay ≥ 1 µs.
pub const MAX_RATE: u32 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`. Absent: rate limits are kept in each
    /// instance (they then hold per instance, not across instances).
    #[serde(serialize_with = "redacted_opt")]
    pub url: Option<SecretString>,
    /// Prepended to every key presignd writes, so several deployments can share one Redis.
    pub key_prefix: String,
    /// A Redis call slower than this counts as Redis being down.
    pub timeout_ms: u64,
    /// While Redis is down, how often to try to reconnect.
    pub retry_interval_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            key_prefix: "presignd:".into(),
            timeout_ms: 250,
            retry_interval_ms: 1_000,
        }
    }
}

/// What a request meets while Redis is configured but unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRedisError {
    /// The in-process limiter decides (limits hold per instance until Redis is back).
    #[default]
    Local,
    /// Presign requests are refused with 503 `unavailable` until Redis is back.
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// URLs one subject (issuer + `sub`) may obtain per minute, over all access points.
    /// 0: unlimited.
    pub per_subject_per_minute: u32,
    /// How many of those may come at once (a batch of 100 items is 100 requests).
    pub per_subject_burst: u32,
    /// Default for every access point's own rate (all callers together), per second.
    /// 0: unlimited. An access point's `limits.per_second` overrides it.
    pub per_access_point_per_second: u32,
    /// Default burst for that rate; absent: one second's worth.
    pub per_access_point_burst: Option<u32>,
    /// Default issuance budget per second of each `sse-kms` access point (GET and PUT URLs:
    /// each one costs S3 a KMS call). 0: unlimited. An access point's
    /// `limits.sse_kms_per_second` overrides it.
    pub sse_kms_per_second: u32,
    /// Default burst for that budget; absent: one second's worth.
    pub sse_kms_burst: Option<u32>,
    /// `local` (default) or `deny`: what happens while Redis is configured but unreachable.
    pub on_redis_error: OnRedisError,
    /// Refused requests (deny records) one caller may have recorded one by one per minute:
    /// an authenticated caller by issuer + subject, an anonymous one by source address (IPv6
    /// by /64). Past it, refusals are answered 429 and counted into one summary record per
    /// caller per `refusal_summary_interval_seconds`. Per instance. 0: unlimited.
    pub refusals_per_minute: u32,
    /// How many refusals may come at once (a batch's denied items count one each).
    pub refusals_burst: u32,
    /// How often summaries of the refusals past the limit are written to the audit outbox.
    pub refusal_summary_interval_seconds: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_subject_per_minute: 600,
            per_subject_burst: 100,
            per_access_point_per_second: 0,
            per_access_point_burst: None,
            sse_kms_per_second: 1_000,
            sse_kms_burst: None,
            on_redis_error: OnRedisError::Local,
            refusals_per_minute: 600,
            refusals_burst: 300,
            refusal_summary_interval_seconds: 60,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        for (key, rate) in [
            ("limits.per_subject_per_minute", self.per_subject_per_minute),
            (
                "limits.per_access_point_per_second",
                self.per_access_point_per_second,
            ),
            ("limits.sse_kms_per_second", self.sse_kms_per_second),
        ] {
            if rate > MAX_RATE {
                p.push(ConfigProblem::new(
                    key,
                    format!("must be at most {MAX_RATE} (0 disables the limit)"),
                ));
            }
        }
        if self.refusals_per_minute > MAX_RATE {
            p.push(ConfigProblem::new(
                "limits.refusals_per_minute",
                format!("must be at most {MAX_RATE} (0 disables the limit)"),
            ));
        }
        if self.refusals_per_minute > 0 && self.refusals_burst == 0 {
            p.push(ConfigProblem::new(
                "limits.refusals_burst",
                "must be at least 1 while limits.refusals_per_minute is set",
            ));
        }
        if !(1..=3_600).contains(&self.refusal_summary_interval_seconds) {
            p.push(ConfigProblem::new(
                "limits.refusal_summary_interval_seconds",
                "must be between 1 and 3600",
            ));
        }
        if self.per_subject_per_minute > 0 && self.per_subject_burst == 0 {
            p.push(ConfigProblem::new(
                "limits.per_subject_burst",
                "must be at least 1 while limits.per_subject_per_minute is set",
            ));
        }
        for (key, burst) in [
            ("limits.per_access_point_burst", self.per_access_point_burst),
            ("limits.sse_kms_burst", self.sse_kms_burst),
        ] {
            if burst == Some(0) {
                p.push(ConfigProblem::new(
                    key,
                    "must be at least 1 (leave it out for one second's worth)",
                ));
            }
        }
        p
    }
}

impl RedisConfig {
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if let Some(url) = &self.url {
            let url = url.expose_secret();
            let scheme_ok = url.starts_with("redis://") || url.starts_with("redis+unix://");
            if !scheme_ok || redis::parse_redis_url(url).is_none() {
                p.push(ConfigProblem::new(
                    "redis.url",
                    "must be a redis://host:port[/db] or redis+unix:///path URL",
                ));
            }
        }
        if self
            .key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            p.push(ConfigProblem::new(
                "redis.key_prefix",
                "must not contain whitespace or control characters",
            ));
        }
        if self.timeout_ms == 0 {
            p.push(ConfigProblem::new("redis.timeout_ms", "must be at least 1"));
        }
        if self.retry_interval_ms < 10 {
            p.push(ConfigProblem::new(
                "redis.retry_interval_ms",
                "must be at least 10",
            ));
        }
        p
    }
}

fn redacted_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: Vec<ConfigProblem>) -> Vec<String> {
        p.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn problems_name_their_keys() {
        let redis = RedisConfig {
            url: Some("http://redis:6379".to_string().into()),
            key_prefix: "has space".into(),
            timeout_ms: 0,
            retry_interval_ms: 1,
        };
        assert_eq!(
            keys(redis.validate()),
            [
                "redis.url",
                "redis.key_prefix",
                "redis.timeout_ms",
                "redis.retry_interval_ms"
            ]
        );
        let ok = RedisConfig {
            url: Some("redis://:pw@127.0.0.1:6379/2".to_string().into()),
            ..RedisConfig::default()
        };
        assert!(ok.validate().is_empty());
        let limits = LimitsConfig {
            per_subject_per_minute: MAX_RATE + 1,
            per_subject_burst: 0,
            sse_kms_burst: Some(0),
            ..LimitsConfig::default()
        };
        assert_eq!(
            keys(limits.validate()),
            [
                "limits.per_subject_per_minute",
                "limits.per_subject_burst",
                "limits.sse_kms_burst"
            ]
        );
        assert!(LimitsConfig::default().validate().is_empty());
    }

    #[test]
    fn the_redis_url_is_never_shown() {
        let c = RedisConfig {
            url: Some("redis://:hunter2@redis:6379".to_string().into()),
            ..RedisConfig::default()
        };
        let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("json"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
