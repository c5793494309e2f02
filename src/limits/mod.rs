//! Issuance rate limits: per subject, per access point, and the SSE-KMS budget of `sse-kms`
//! access points. Shared by every instance through Redis (one atomic GCRA script call per
//! request) when `redis.url` is set; otherwise, and as the fallback while Redis is unreachable,
//! kept in this process with the same arithmetic.
//!
//! - `gcra`: the algorithm (`gcra.lua` is its Redis twin);
//! - `local` and `shared` (Redis): the two places buckets live;
//! - `refusals`: the limit on refused callers (their audit records), kept in this process.

mod gcra;
mod local;
mod refusals;
mod shared;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

pub use gcra::Quota;
pub use local::LocalLimiter;
pub use refusals::{Admission, Caller, RefusalLimiter, source_of};

use crate::Principal;
use crate::config::{LimitsConfig, OnRedisError, RedisConfig};
use crate::metrics::Metrics;
use crate::policy::{CompiledAccessPoint, Encryption, Operation};

/// Redis trouble is logged at most this often (the metrics count every occurrence).
const LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Which limit refused a request (the `scope` label of `presignd_ratelimit_rejections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `[limits] per_subject_per_minute`: one subject over all access points.
    Subject,
    /// An access point's `limits.per_subject_per_minute`: one subject on that access point.
    AccessPointSubject,
    /// An access point's `limits.per_second` (or `[limits] per_access_point_per_second`).
    AccessPoint,
    /// An `sse-kms` access point's `limits.sse_kms_per_second` budget.
    SseKms,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Subject => "subject",
            Scope::AccessPointSubject => "access_point_subject",
            Scope::AccessPoint => "access_point",
            Scope::SseKms => "sse_kms",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("rate limit exceeded ({}); retry after {} s", .scope.as_str(), .retry_after.as_secs())]
    Exceeded { scope: Scope, retry_after: Duration },
    /// Redis is unreachable and `limits.on_redis_error = "deny"`.
    #[error("the shared rate limiter (Redis) is unreachable")]
    Unavailable,
}

/// One bucket a request is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub quota: Quota,
    pub scope: Scope,
}

/// Where decisions are made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// No Redis configured.
    Local,
    /// Redis configured and connected.
    Redis,
    /// Redis configured but unreachable: local fallback, or refusal with `deny`.
    RedisDown,
}

#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    limits: LimitsConfig,
    prefix: String,
    local: LocalLimiter,
    redis: Option<Arc<shared::RedisLimiter>>,
    metrics: Arc<Metrics>,
    last_warning: Mutex<Option<Instant>>,
}

impl Limiter {
    /// Connects to Redis when configured. An unreachable Redis is not fatal: the limiter
    /// starts degraded and `spawn_background` keeps trying.
    pub async fn new(
        limits: &LimitsConfig,
        redis_config: &RedisConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Limiter, String> {
        let redis = match &redis_config.url {
            None => None,
            Some(url) => {
                let r = shared::RedisLimiter::new(
                    url.expose_secret(),
                    Duration::from_millis(redis_config.timeout_ms),
                    Duration::from_millis(redis_config.retry_interval_ms),
                )?;
                match r.connect().await {
                    Ok(()) => {
                        metrics.dependency_up.with_label_values(&["redis"]).set(1);
                        tracing::info!("rate limits shared through Redis");
                    }
                    Err(error) => {
                        metrics.dependency_up.with_label_values(&["redis"]).set(0);
                        tracing::warn!(%error, on_redis_error = ?limits.on_redis_error,
                            "Redis unreachable at startup; rate limits fall back until it is back");
                    }
                }
                Some(Arc::new(r))
            }
        };
        Ok(Limiter {
            inner: Arc::new(Inner {
                limits: limits.clone(),
                prefix: redis_config.key_prefix.clone(),
                local: LocalLimiter::default(),
                redis,
                metrics,
                last_warning: Mutex::new(None),
            }),
        })
    }

    /// Keeps the Redis connection alive (reconnects after failures). `None` without Redis.
    pub fn spawn_background(&self) -> Option<tokio::task::JoinHandle<()>> {
        let redis = self.inner.redis.clone()?;
        let inner = Arc::clone(&self.inner);
        Some(tokio::spawn(redis.maintain(move || {
            inner
                .metrics
                .dependency_up
                .with_label_values(&["redis"])
                .set(1);
            tracing::info!("Redis reachable: rate limits are shared again");
        })))
    }

    pub fn backend(&self) -> Backend {
        match &self.inner.redis {
            None => Backend::Local,
            Some(r) if r.is_connected() => Backend::Redis,
            Some(_) => Backend::RedisDown,
        }
    }

    /// For readiness: `None` without Redis, else whether Redis answers a PING now.
    pub async fn redis_reachable(&self) -> Option<bool> {
        let redis = self.inner.redis.as_ref()?;
        let up = match redis.ping().await {
            Ok(()) => true,
            Err(error) => {
                self.redis_failed(&error);
                false
            }
        };
        Some(up)
    }

    /// Whether presign requests are refused while Redis is down (`on_redis_error = "deny"`).
    pub fn fails_closed(&self) -> bool {
        self.inner.limits.on_redis_error == OnRedisError::Deny
    }

    /// The buckets a presign request is charged to, given its access point and operation.
    pub fn buckets(
        &self,
        principal: &Principal,
        ap: &CompiledAccessPoint,
        op: Operation,
    ) -> Vec<Bucket> {
        buckets(&self.inner.limits, &self.inner.prefix, principal, ap, op)
    }

    /// Charges one presign request; `Err` when a limit refuses it (nothing is charged then).
    pub async fn admit(
        &self,
        principal: &Principal,
        ap: &CompiledAccessPoint,
        op: Operation,
    ) -> Result<(), LimitError> {
        let buckets = self.buckets(principal, ap, op);
        self.admit_buckets(&buckets).await
    }

    /// Charges one request to every bucket, or to none.
    pub async fn admit_buckets(&self, buckets: &[Bucket]) -> Result<(), LimitError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(&str, Quota)> = buckets.iter().map(|b| (b.key.as_str(), b.quota)).collect();
        let decision = match &self.inner.redis {
            None => self.inner.local.admit(&pairs),
            Some(redis) => match redis.admit(&pairs).await {
                Ok(decision) => decision,
                Err(error) => {
                    self.redis_failed(&error);
                    match self.inner.limits.on_redis_error {
                        OnRedisError::Local => {
                            self.inner.metrics.ratelimit_fallback_total.inc();
                            self.inner.local.admit(&pairs)
                        }
                        OnRedisError::Deny => {
                            self.inner
                                .metrics
                                .ratelimit_rejections_total
                                .with_label_values(&["redis_unavailable"])
                                .inc();
                            return Err(LimitError::Unavailable);
                        }
                    }
                }
            },
        };
        decision.map_err(|(index, wait_us)| {
            let scope = buckets.get(index).map_or(Scope::Subject, |b| b.scope);
            self.inner
                .metrics
                .ratelimit_rejections_total
                .with_label_values(&[scope.as_str()])
                .inc();
            LimitError::Exceeded {
                scope,
                retry_after: Duration::from_micros(wait_us),
            }
        })
    }

    fn redis_failed(&self, error: &shared::Unreachable) {
        self.inner
            .metrics
            .dependency_up
            .with_label_values(&["redis"])
            .set(0);
        let mut last = self
            .inner
            .last_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(%error, on_redis_error = ?self.inner.limits.on_redis_error,
                "Redis unreachable: rate limits {} until it is back (logged at most every {} s)",
                match self.inner.limits.on_redis_error {
                    OnRedisError::Local => "are kept per instance",
                    OnRedisError::Deny => "refuse every presign request",
                },
                LOG_INTERVAL.as_secs());
        }
    }
}

/// The refusal limit (`limits.refusals_per_minute` / `refusals_burst`); `None`: unlimited.
pub fn refusal_quota(cfg: &LimitsConfig) -> Option<Quota> {
    Quota::per_minute(cfg.refusals_per_minute, cfg.refusals_burst)
}

/// The buckets a presign request is charged to under `cfg`, their Redis keys under `prefix`
/// (what `explain` lists, too).
pub fn buckets(
    cfg: &LimitsConfig,
    prefix: &str,
    principal: &Principal,
    ap: &CompiledAccessPoint,
    op: Operation,
) -> Vec<Bucket> {
    let own = &ap.spec.limits;
    let name = ap.name();
    let mut out = Vec::with_capacity(4);
    let mut subject = None;
    let mut subject_hash = || {
        subject
            .get_or_insert_with(|| subject_key(&principal.iss, &principal.sub))
            .clone()
    };
    if let Some(quota) = Quota::per_minute(cfg.per_subject_per_minute, cfg.per_subject_burst) {
        out.push(Bucket {
            key: format!("{}rl:s:{}", prefix, subject_hash()),
            quota,
            scope: Scope::Subject,
        });
    }
    if let Some(rate) = own.per_subject_per_minute
        && let Some(quota) =
            Quota::per_minute(rate, own.per_subject_burst.unwrap_or(cfg.per_subject_burst))
    {
        out.push(Bucket {
            key: format!("{}rl:as:{name}:{}", prefix, subject_hash()),
            quota,
            scope: Scope::AccessPointSubject,
        });
    }
    let (rate, burst) = overridden(
        own.per_second,
        own.burst,
        cfg.per_access_point_per_second,
        cfg.per_access_point_burst,
    );
    if let Some(quota) = Quota::per_second(rate, burst) {
        out.push(Bucket {
            key: format!("{}rl:a:{name}", prefix),
            quota,
            scope: Scope::AccessPoint,
        });
    }
    // S3 calls KMS for every SSE-KMS PUT (GenerateDataKey) and GET (Decrypt).
    if matches!(ap.spec.encryption, Encryption::SseKms { .. }) && op != Operation::Delete {
        let (rate, burst) = overridden(
            own.sse_kms_per_second,
            own.sse_kms_burst,
            cfg.sse_kms_per_second,
            cfg.sse_kms_burst,
        );
        if let Some(quota) = Quota::per_second(rate, burst) {
            out.push(Bucket {
                key: format!("{}rl:k:{name}", prefix),
                quota,
                scope: Scope::SseKms,
            });
        }
    }
    out
}

/// An access point's own `(rate, burst)` when it sets a rate, else the global default; a
/// missing burst is one second's worth.
fn overridden(
    own_rate: Option<u32>,
    own_burst: Option<u32>,
    default_rate: u32,
    default_burst: Option<u32>,
) -> (u32, u32) {
    match own_rate {
        Some(rate) => (rate, own_burst.unwrap_or(rate)),
        None => (
            default_rate,
            own_burst.or(default_burst).unwrap_or(default_rate),
        ),
    }
}

/// Buckets are keyed by a digest of issuer and subject: bounded length, no identifiers in
/// Redis, and the same `sub` from two identity providers is two subjects.
fn subject_key(iss: &str, sub: &str) -> String {
    let mut h = Sha256::new();
    h.update(iss.as_bytes());
    h.update([0]);
    h.update(sub.as_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AccessPointLimits, AccessPointSpec};

    fn ap(json: serde_json::Value) -> CompiledAccessPoint {
        let spec: AccessPointSpec = serde_json::from_value(json).expect("spec");
        CompiledAccessPoint::compile(spec).expect("valid")
    }

    fn principal(iss: &str, sub: &str) -> Principal {
        Principal::for_tests(iss, sub, &[])
    }

    async fn limiter(limits: LimitsConfig) -> Limiter {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        Limiter::new(&limits, &RedisConfig::default(), metrics)
            .await
            .expect("limiter")
    }

    #[tokio::test]
    async fn buckets_follow_config_and_access_point_overrides() {
        let l = limiter(LimitsConfig {
            per_access_point_per_second: 50,
            ..LimitsConfig::default()
        })
        .await;
        let plain = ap(serde_json::json!({"name": "plain", "bucket": "bkt",
            "rules": [{"effect": "allow", "groups": ["*"], "operations": ["get", "put"]}]}));
        let p = principal("https://idp/", "alice");
        let b = l.buckets(&p, &plain, Operation::Put);
        let scopes: Vec<Scope> = b.iter().map(|b| b.scope).collect();
        assert_eq!(scopes, [Scope::Subject, Scope::AccessPoint]);
        assert_eq!(b[0].quota, Quota::per_minute(600, 100).expect("quota"));
        assert_eq!(b[1].quota, Quota::per_second(50, 50).expect("quota"));
        assert!(b[0].key.starts_with("presignd:rl:s:"));
        assert!(!b[0].key.contains("alice"), "no identifiers in keys");

        let kms = ap(serde_json::json!({"name": "kms", "bucket": "bkt",
            "encryption": {"mode": "sse-kms", "kms_key_id": "alias/k"},
            "limits": {"per_subject_per_minute": 6, "per_second": 0, "sse_kms_per_second": 20},
            "rules": [{"effect": "allow", "groups": ["*"], "operations": ["get", "put"]}]}));
        let b = l.buckets(&p, &kms, Operation::Get);
        let scopes: Vec<Scope> = b.iter().map(|b| b.scope).collect();
        assert_eq!(
            scopes,
            [Scope::Subject, Scope::AccessPointSubject, Scope::SseKms],
            "per_second 0 switches the access point limit off"
        );
        assert_eq!(b[2].quota, Quota::per_second(20, 20).expect("quota"));
        assert_eq!(
            kms.spec.limits,
            AccessPointLimits {
                per_subject_per_minute: Some(6),
                per_second: Some(0),
                sse_kms_per_second: Some(20),
                ..AccessPointLimits::default()
            }
        );
        // Another issuer's "alice" is another subject.
        let other = l.buckets(
            &principal("https://other/", "alice"),
            &plain,
            Operation::Put,
        );
        assert_ne!(other[0].key, l.buckets(&p, &plain, Operation::Put)[0].key);
    }

    #[tokio::test]
    async fn local_limiter_refuses_past_the_burst_with_a_retry_after() {
        let l = limiter(LimitsConfig {
            per_subject_per_minute: 60,
            per_subject_burst: 2,
            ..LimitsConfig::default()
        })
        .await;
        assert_eq!(l.backend(), Backend::Local);
        let plain = ap(serde_json::json!({"name": "plain", "bucket": "bkt",
            "rules": [{"effect": "allow", "groups": ["*"], "operations": ["get"]}]}));
        let p = principal("https://idp/", "bob");
        l.admit(&p, &plain, Operation::Get).await.expect("1");
        l.admit(&p, &plain, Operation::Get).await.expect("2");
        match l.admit(&p, &plain, Operation::Get).await {
            Err(LimitError::Exceeded { scope, retry_after }) => {
                assert_eq!(scope, Scope::Subject);
                assert!(retry_after > Duration::from_millis(900), "{retry_after:?}");
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another subject has its own bucket.
        l.admit(&principal("https://idp/", "carol"), &plain, Operation::Get)
            .await
            .expect("carol");
    }
}
