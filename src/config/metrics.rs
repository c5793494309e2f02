//! `[metrics]`: where `/metrics` is served and who may read it.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ConfigProblem, redacted_opt};

/// The `[metrics]` configuration table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on this address only (a second listener that serves nothing
    /// else, with the main port's TLS settings). Absent: `/metrics` is on the main port.
    pub listen: Option<SocketAddr>,
    /// When set, `/metrics` requires `Authorization: Bearer <token>` (compared in constant
    /// time); anything else gets 401.
    #[serde(serialize_with = "redacted_opt")]
    pub bearer_token: Option<SecretString>,
    /// Answer `/metrics` over plain HTTP even when `server.require_https` is on (scrapers on
    /// a private network often speak plain HTTP).
    pub allow_plain_http: bool,
}

/// Shortest accepted `metrics.bearer_token`.
pub const MIN_BEARER_TOKEN_BYTES: usize = 16;

impl MetricsConfig {
    pub fn validate(&self, server_listen: SocketAddr) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if let Some(token) = &self.bearer_token {
            let token = token.expose_secret();
            if token.len() < MIN_BEARER_TOKEN_BYTES {
                p.push(ConfigProblem::new(
                    "metrics.bearer_token",
                    format!("must be at least {MIN_BEARER_TOKEN_BYTES} bytes"),
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                p.push(ConfigProblem::new(
                    "metrics.bearer_token",
                    "must be printable ASCII without spaces (it travels in an HTTP header)",
                ));
            }
        }
        if let Some(listen) = self.listen
            && listen.port() != 0
            && listen == server_listen
        {
            p.push(ConfigProblem::new(
                "metrics.listen",
                "must differ from server.listen (leave it unset to serve /metrics on the main port)",
            ));
        }
        p
    }

    /// Whether `Authorization` carries the configured token; true when none is configured.
    /// Both sides are hashed first, so the comparison takes the same time whatever the
    /// length or content of the presented token.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.bearer_token else {
            return true;
        };
        let presented = authorization
            .and_then(|v| {
                let (scheme, token) = v.split_at_checked(7)?;
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
            })
            .unwrap_or_default();
        let a = Sha256::digest(presented);
        let b = Sha256::digest(expected.expose_secret().as_bytes());
        let diff = a
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        diff == 0 && !presented.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>) -> MetricsConfig {
        MetricsConfig {
            bearer_token: token.map(|t| SecretString::from(t.to_string())),
            ..MetricsConfig::default()
        }
    }

    #[test]
    fn bearer_token_is_checked_only_when_configured() {
        assert!(config(None).authorized(None));
        assert!(config(None).authorized(Some(b"Bearer anything")));
        let c = config(Some("scrape-token-0123456789"));
        assert!(c.authorized(Some(b"Bearer scrape-token-0123456789")));
        assert!(c.authorized(Some(b"bearer scrape-token-0123456789")));
        for wrong in [
            &b""[..],
            b"Bearer ",
            b"Bearer scrape-token-012345678",
            b"Bearer scrape-token-01234567890",
            b"Basic scrape-token-0123456789",
            b"scrape-token-0123456789",
        ] {
            assert!(
                !c.authorized(Some(wrong)),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!c.authorized(None));
    }

    #[test]
    fn config_problems_name_their_keys() {
        let listen: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let keys = |c: &MetricsConfig| -> Vec<String> {
            c.validate(listen).into_iter().map(|p| p.key).collect()
        };
        assert!(keys(&config(Some("long-enough-token-0123"))).is_empty());
        assert_eq!(keys(&config(Some("short"))), ["metrics.bearer_token"]);
        assert_eq!(
            keys(&config(Some("has a space in it 0123"))),
            ["metrics.bearer_token"]
        );
        let same = MetricsConfig {
            listen: Some(listen),
            ..MetricsConfig::default()
        };
        assert_eq!(keys(&same), ["metrics.listen"]);
    }
}
