//! Prometheus metrics, one registry per running app (tests run several apps in one process).
//! Labels are bounded: never a key, subject or token; access point labels only for configured
//! access points.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub presign_decisions_total: IntCounterVec,
    pub jwt_verifications_total: IntCounterVec,
    pub jwks_refresh_total: IntCounterVec,
    pub audit_outbox_pending: IntGauge,
    pub audit_shipped_total: IntCounter,
    pub audit_ship_failures_total: IntCounter,
    pub audit_last_ship_timestamp_seconds: Gauge,
    pub ratelimit_rejections_total: IntCounterVec,
    pub dependency_up: IntGaugeVec,
    pub build_info: IntGaugeVec,
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
        let http_requests_total = counter_vec(
            "presignd_http_requests_total",
            "HTTP requests by matched route, method and status.",
            &["route", "method", "status"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "presignd_http_request_duration_seconds",
                "HTTP request latency by matched route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
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
        Ok(Metrics {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            presign_decisions_total,
            jwt_verifications_total,
            jwks_refresh_total,
            audit_outbox_pending,
            audit_shipped_total,
            audit_ship_failures_total,
            audit_last_ship_timestamp_seconds,
            ratelimit_rejections_total,
            dependency_up,
            build_info,
        })
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
