//! `[[webhooks]]`: endpoints told about upload outcomes, signed per Standard Webhooks; and
//! `[webhook_delivery]`: how hard presignd tries.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::webhooks::{EventType, SigningKey, destination_problem};

/// One endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the endpoint in dead letters, metrics and logs; deliveries find their endpoint
    /// by it, so what is queued for a renamed one is retried (and dead-lettered in the end)
    /// under the old name.
    pub name: String,
    /// `https://…` (`http://` only with `allow_private_network`, for local receivers).
    pub url: String,
    /// `whsec_` + base64 of 24 to 64 random bytes, shared with the receiver.
    #[serde(serialize_with = "redacted")]
    pub secret: SecretString,
    /// `upload.verified`, `upload.rejected`.
    pub events: Vec<EventType>,
    /// Only events of these access points; empty: all.
    #[serde(default)]
    pub access_points: Vec<String>,
    /// Allows a URL that resolves to loopback, private, link-local or other non-public
    /// addresses (a receiver on the same host or network). Off: such deliveries are refused
    /// (server-side request forgery guard).
    #[serde(default)]
    pub allow_private_network: bool,
}

fn redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDeliveryConfig {
    /// A delivery is retried (exponential backoff with jitter) for this long after the event,
    /// then dead-lettered.
    pub retry_for_seconds: u64,
    /// The first retry's delay; each next one doubles, up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// One attempt's time limit (connect, send, answer).
    pub timeout_ms: u64,
    /// How often each instance looks for deliveries due.
    pub poll_interval_ms: u64,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            retry_for_seconds: 86_400,
            initial_backoff_ms: 5_000,
            max_backoff_ms: 900_000,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
        }
    }
}

impl WebhookDeliveryConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut check = |key: &str, ok: bool, msg: &str| {
            if !ok {
                p.push(ConfigProblem::new(format!("webhook_delivery.{key}"), msg));
            }
        };
        check(
            "retry_for_seconds",
            (1..=2_592_000).contains(&self.retry_for_seconds),
            "must be between 1 and 2592000 (30 days)",
        );
        check(
            "initial_backoff_ms",
            (10..=3_600_000).contains(&self.initial_backoff_ms),
            "must be between 10 and 3600000",
        );
        check(
            "max_backoff_ms",
            self.max_backoff_ms >= self.initial_backoff_ms && self.max_backoff_ms <= 86_400_000,
            "must be at least initial_backoff_ms and at most 86400000",
        );
        check(
            "timeout_ms",
            (100..=60_000).contains(&self.timeout_ms),
            "must be between 100 and 60000",
        );
        check(
            "poll_interval_ms",
            (10..=60_000).contains(&self.poll_interval_ms),
            "must be between 10 and 60000",
        );
        p
    }
}

/// Every endpoint's problems, keyed `webhooks[i].field`.
pub(super) fn validate(hooks: &[WebhookConfig]) -> Vec<ConfigProblem> {
    let mut p = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        let key = |field: &str| format!("webhooks[{i}].{field}");
        let name_ok = (1..=64).contains(&h.name.len())
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            p.push(ConfigProblem::new(
                key("name"),
                "must be 1 to 64 of a-z, A-Z, 0-9, '-', '_'",
            ));
        }
        if hooks[..i].iter().any(|o| o.name == h.name) {
            p.push(ConfigProblem::new(
                key("name"),
                "is used by another webhook",
            ));
        }
        if let Some(problem) = destination_problem(&h.url, h.allow_private_network) {
            p.push(ConfigProblem::new(key("url"), problem));
        }
        if let Err(e) = SigningKey::parse(h.secret.expose_secret()) {
            p.push(ConfigProblem::new(key("secret"), e));
        }
        if h.events.is_empty() {
            p.push(ConfigProblem::new(key("events"), "name at least one event"));
        }
    }
    p
}
