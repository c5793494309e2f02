//! Prometheus metrics, one registry per running app (tests run several apps in one process).
//! Labels are bounded: never a key, subject or token; access point labels only for configured
//! access points, issuer labels only for configured issuers, methods and operations from fixed
//! sets. `docs/observability.md` lists every metric.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::audit::AuditRecord;
use crate::auth::{JwksObserver, TokenCacheObserver};
use crate::catalog::Catalog;

/// The HTTP method as a label: the standard methods, else `other` (hyper accepts any token
/// as a method, which must not become a label).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// An operation as the caller named it, as a label: `get`, `put`, `delete`, else `unknown`.
pub fn operation_label(operation: &str) -> &'static str {
    match operation {
        "get" => "get",
        "put" => "put",
        "delete" => "delete",
        "multipart_create" => "multipart_create",
        "multipart_parts" => "multipart_parts",
        "multipart_complete" => "multipart_complete",
        "multipart_abort" => "multipart_abort",
        "multipart_list_parts" => "multipart_list_parts",
        // Verified completion: refused requests, then each outcome.
        "upload_verify" => "upload_verify",
        "upload_verified" => "upload_verified",
        "upload_rejected" => "upload_rejected",
        // CloudFront signed cookies for a prefix.
        "cookies" => "cookies",
        // Download grants: created, redeemed (anonymous), revoked.
        "grant_create" => "grant_create",
        "grant_redeem" => "grant_redeem",
        "grant_revoke" => "grant_revoke",
        // An admin's explanation: recorded, nothing issued.
        "explain" => "explain",
        _ => "unknown",
    }
}

/// A reason code as a label. Reasons are codes (`allowed`, `forbidden`, `implicit_deny`, …);
/// anything that does not look like one becomes `other`.
fn reason_label(reason: &str) -> &str {
    let code_like = !reason.is_empty()
        && reason.len() <= 48
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if code_like { reason } else { "other" }
}

pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub presign_decisions_total: IntCounterVec,
    pub jwt_verifications_total: IntCounterVec,
    pub jwks_refresh_total: IntCounterVec,
    pub jwt_cache_lookups_total: IntCounterVec,
    pub audit_outbox_pending: IntGauge,
    pub audit_shipped_total: IntCounter,
    pub audit_ship_failures_total: IntCounter,
    pub audit_last_ship_timestamp_seconds: Gauge,
    pub audit_commit_seconds: HistogramVec,
    pub ratelimit_rejections_total: IntCounterVec,
    pub ratelimit_fallback_total: IntCounter,
    pub dependency_up: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub audit_refusals_summarized_total: IntCounter,
    pub http_connections_open: IntGauge,
    pub http_connection_timeouts_total: IntCounterVec,
    pub webhook_deliveries_total: IntCounterVec,
    pub webhook_dead_letters: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram_vec = |name: &str,
                             help: &str,
                             buckets: Vec<f64>,
                             labels: &[&str]|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let http_requests_total = counter_vec(
            "presignd_http_requests_total",
            "HTTP requests by matched route, method and status.",
            &["route", "method", "status"],
        )?;
        let http_request_duration_seconds = histogram_vec(
            "presignd_http_request_duration_seconds",
            "HTTP request latency by matched route.",
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
            &["route"],
        )?;
        let presign_decisions_total = counter_vec(
            "presignd_presign_decisions_total",
            "Presign decisions by access point, operation, decision and reason.",
            &["access_point", "operation", "decision", "reason"],
        )?;
        let jwt_verifications_total = counter_vec(
            "presignd_jwt_verifications_total",
            "JWT verifications by issuer and result.",
            &["issuer", "result"],
        )?;
        let jwks_refresh_total = counter_vec(
            "presignd_jwks_refresh_total",
            "JWKS fetches by issuer and result.",
            &["issuer", "result"],
        )?;
        let jwt_cache_lookups_total = counter_vec(
            "presignd_jwt_cache_lookups_total",
            "Verified-token cache lookups by result (hit: no signature check).",
            &["result"],
        )?;
        let audit_outbox_pending = IntGauge::new(
            "presignd_audit_outbox_pending",
            "Audit records not yet shipped.",
        )?;
        registry.register(Box::new(audit_outbox_pending.clone()))?;
        let audit_shipped_total = IntCounter::new(
            "presignd_audit_shipped_total",
            "Audit records shipped to the log bucket.",
        )?;
        registry.register(Box::new(audit_shipped_total.clone()))?;
        let audit_ship_failures_total = IntCounter::new(
            "presignd_audit_ship_failures_total",
            "Failed attempts to ship an audit batch.",
        )?;
        registry.register(Box::new(audit_ship_failures_total.clone()))?;
        let audit_last_ship_timestamp_seconds = Gauge::new(
            "presignd_audit_last_ship_timestamp_seconds",
            "Unix time of the last successful audit shipment.",
        )?;
        registry.register(Box::new(audit_last_ship_timestamp_seconds.clone()))?;
        let ratelimit_rejections_total = counter_vec(
            "presignd_ratelimit_rejections_total",
            "Requests refused by a rate limit, by scope.",
            &["scope"],
        )?;
        let ratelimit_fallback_total = IntCounter::new(
            "presignd_ratelimit_fallback_total",
            "Rate-limit decisions made by the in-process limiter because Redis was unreachable.",
        )?;
        registry.register(Box::new(ratelimit_fallback_total.clone()))?;
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "presignd_dependency_up",
                "1 when a dependency answered its last check.",
            ),
            &["dependency"],
        )?;
        registry.register(Box::new(dependency_up.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new("presignd_build_info", "Build information; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let audit_commit_seconds = histogram_vec(
            "presignd_audit_commit_seconds",
            "Audit outbox group commits by phase: turn (waiting for the shipper's or the checkpointer's write on SQLite), write (the transaction, fsync included).",
            vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
            &["phase"],
        )?;
        let audit_refusals_summarized_total = IntCounter::new(
            "presignd_audit_refusals_summarized_total",
            "Refusals past their caller's limit counted into a summary record instead of a record each.",
        )?;
        registry.register(Box::new(audit_refusals_summarized_total.clone()))?;
        let http_connections_open = IntGauge::new(
            "presignd_http_connections_open",
            "Open client connections (at most server.max_connections).",
        )?;
        registry.register(Box::new(http_connections_open.clone()))?;
        let http_connection_timeouts_total = counter_vec(
            "presignd_http_connection_timeouts_total",
            "Connections closed by a deadline, by phase: header (request headers too slow), idle (keep-alive), tls_handshake.",
            &["phase"],
        )?;
        let webhook_deliveries_total = counter_vec(
            "presignd_webhook_deliveries_total",
            "Webhook delivery attempts by endpoint and outcome: delivered, failed (retried later), dead (dead-lettered).",
            &["endpoint", "outcome"],
        )?;
        let webhook_dead_letters = IntGauge::new(
            "presignd_webhook_dead_letters",
            "Webhook deliveries dead-lettered and not retried yet (GET /v1/admin/webhooks/dead-letters), as this instance last counted.",
        )?;
        registry.register(Box::new(webhook_dead_letters.clone()))?;
        Ok(Metrics {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            presign_decisions_total,
            jwt_verifications_total,
            jwks_refresh_total,
            jwt_cache_lookups_total,
            audit_outbox_pending,
            audit_shipped_total,
            audit_ship_failures_total,
            audit_last_ship_timestamp_seconds,
            ratelimit_rejections_total,
            ratelimit_fallback_total,
            dependency_up,
            build_info,
            audit_refusals_summarized_total,
            audit_commit_seconds,
            webhook_deliveries_total,
            webhook_dead_letters,
            http_connections_open,
            http_connection_timeouts_total,
        })
    }

    /// One answered HTTP request. `route` is the matched route template or `unmatched`.
    pub fn observe_http(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        self.http_requests_total
            .with_label_values(&[route, method_label(method), &status.to_string()])
            .inc();
        self.http_request_duration_seconds
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Presign decisions that were made durable in the audit log, one per record.
    pub fn observe_decisions(&self, catalog: &Catalog, records: &[AuditRecord]) {
        for r in records {
            let access_point = r
                .access_point
                .as_deref()
                .filter(|name| catalog.get(name).is_some())
                .unwrap_or("unknown");
            let decision = match r.decision {
                crate::audit::Verdict::Allow => "allow",
                crate::audit::Verdict::Deny => "deny",
            };
            self.presign_decisions_total
                .with_label_values(&[
                    access_point,
                    operation_label(&r.operation),
                    decision,
                    reason_label(&r.reason),
                ])
                .inc();
        }
    }

    /// One bearer-token authentication: `issuer` must already be a configured issuer or
    /// `unknown`; `result` is `ok` or a failure kind.
    pub fn observe_jwt(&self, issuer: &str, result: &str) {
        self.jwt_verifications_total
            .with_label_values(&[issuer, result])
            .inc();
    }

    /// Counts JWKS fetches in `presignd_jwks_refresh_total` (issuer names come from the
    /// configuration, so they are bounded).
    pub fn jwks_observer(self: &Arc<Self>) -> JwksObserver {
        let counter = self.jwks_refresh_total.clone();
        Arc::new(move |issuer: &str, result: &'static str| {
            counter.with_label_values(&[issuer, result]).inc();
        })
    }

    /// Counts verified-token cache lookups in `presignd_jwt_cache_lookups_total` (`hit` or
    /// `miss`: a fixed set).
    pub fn token_cache_observer(self: &Arc<Self>) -> TokenCacheObserver {
        let hit = self.jwt_cache_lookups_total.with_label_values(&["hit"]);
        let miss = self.jwt_cache_lookups_total.with_label_values(&["miss"]);
        Arc::new(move |result: &'static str| match result {
            "hit" => hit.inc(),
            _ => miss.inc(),
        })
    }

    /// Readiness of one dependency (`database`, `audit`, `jwks`, `redis`).
    pub fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
    }

    /// The Prometheus text exposition of this registry (plus process metrics).
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::default_registry().gather());
        let mut out = Vec::new();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").expect("extension method");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(operation_label("put"), "put");
        assert_eq!(operation_label("PUT"), "unknown");
        assert_eq!(operation_label("users/alice/secret.png"), "unknown");
        assert_eq!(reason_label("implicit_deny"), "implicit_deny");
        assert_eq!(reason_label("invalid key: ../x"), "other");
        assert_eq!(reason_label(""), "other");
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new().expect("registry");
        let text = m.render();
        for family in [
            "presignd_build_info",
            "presignd_audit_outbox_pending",
            "presignd_audit_shipped_total",
            "presignd_audit_ship_failures_total",
            "presignd_audit_last_ship_timestamp_seconds",
            "presignd_ratelimit_fallback_total",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
