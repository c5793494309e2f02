//! `[server]`: the listener, native TLS, which proxies are believed about the client, CORS,
//! and what bounds a request and a connection.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigProblem;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: both set = serve TLS natively (reloaded when the
    /// files change and on SIGHUP). Plain HTTP on the same port is still answered, with 403
    /// `https_required`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes (reloaded when their contents
    /// differ); 0 turns the watch off, leaving SIGHUP.
    pub tls_reload_interval_seconds: u64,
    /// `Strict-Transport-Security: max-age=…` on responses to TLS requests; 0 disables it.
    pub hsts_max_age_seconds: u64,
    /// Refuse API requests that did not arrive over TLS (403 `https_required`). A request
    /// counts as TLS only when a trusted proxy says so with `X-Forwarded-Proto: https`.
    pub require_https: bool,
    /// Only peers in these networks may say who the client is and whether it used TLS.
    pub trusted_proxies: Vec<IpNet>,
    /// Which header family those proxies write: only that one is read.
    pub forwarded_header: ForwardedHeader,
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout_ms: u64,
    /// A connection must deliver a request's headers within this long: of being accepted (its
    /// first request), or of that request's first byte (later ones). Slow-header clients are
    /// closed.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// How long a TLS handshake may take (from the accept).
    pub tls_handshake_timeout_ms: u64,
    /// Open connections at most; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    pub body_limit_bytes: usize,
    pub shutdown_grace_ms: u64,
    /// The URL clients reach presignd at (`https://files.example.com`, no trailing `/`):
    /// download grant links are `{public_base_url}/g/{token}`. Required for grants.
    pub public_base_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            tls_reload_interval_seconds: 10,
            hsts_max_age_seconds: 31_536_000,
            require_https: true,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwarded,
            cors_allowed_origins: Vec::new(),
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            max_connections: 4_096,
            body_limit_bytes: 256 * 1024,
            shutdown_grace_ms: 10_000,
            public_base_url: None,
        }
    }
}

/// The headers a trusted proxy reports the client with (`server.forwarded_header`). A proxy
/// writes one family and usually passes the other through from the client untouched, so
/// reading both would let the client choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (client: the rightmost untrusted hop) and `X-Forwarded-Proto` (its
    /// last value). nginx, HAProxy, AWS ALB, Traefik, Envoy, most ingresses.
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// RFC 7239 `Forwarded: for=…;proto=…` (client: the rightmost untrusted `for`, with the
    /// `proto` of the same element).
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let s = self;
        if s.request_timeout_ms == 0 {
            p.push(ConfigProblem::new(
                "server.request_timeout_ms",
                "must be at least 1",
            ));
        }
        for (key, ms) in [
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            (
                "server.tls_handshake_timeout_ms",
                s.tls_handshake_timeout_ms,
            ),
        ] {
            if !(100..=600_000).contains(&ms) {
                p.push(ConfigProblem::new(
                    key,
                    "must be between 100 and 600000 (10 minutes)",
                ));
            }
        }
        // Peers are compared as IPv4 when they are IPv4-mapped, so such an entry would never
        // match: the proxy would go untrusted and its own address pass as the client's.
        for net in &s.trusted_proxies {
            if let ipnet::IpNet::V6(v6) = net
                && let Some(v4) = v6.addr().to_ipv4_mapped()
                && v6.prefix_len() >= 96
            {
                p.push(ConfigProblem::new(
                    "server.trusted_proxies",
                    format!(
                        "{net} is an IPv4-mapped IPv6 network, which never matches (peers are compared as IPv4): write {v4}/{}",
                        v6.prefix_len() - 96
                    ),
                ));
            }
        }
        if !(1..=1_000_000).contains(&s.max_connections) {
            p.push(ConfigProblem::new(
                "server.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if s.body_limit_bytes < 1024 {
            p.push(ConfigProblem::new(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => {
                if let Err(e) = crate::serve::tls::load_certified_key(cert, key) {
                    p.push(ConfigProblem::new("server.tls_cert", e.to_string()));
                }
            }
            (Some(_), None) => p.push(ConfigProblem::new(
                "server.tls_key",
                "is required when server.tls_cert is set",
            )),
            (None, Some(_)) => p.push(ConfigProblem::new(
                "server.tls_cert",
                "is required when server.tls_key is set",
            )),
            (None, None) => {}
        }
        if s.require_https && s.tls_cert.is_none() && s.trusted_proxies.is_empty() {
            // Without native TLS or a trusted TLS-terminating proxy every API request would be
            // refused.
            p.push(ConfigProblem::new(
                "server.require_https",
                "is true but neither server.tls_cert/tls_key nor server.trusted_proxies are set, so no request can prove it arrived over TLS; serve TLS natively, put presignd behind a TLS-terminating proxy listed in server.trusted_proxies, or set require_https = false for local development",
            ));
        }
        for (i, o) in s.cors_allowed_origins.iter().enumerate() {
            if let Err(m) = crate::policy::check_origin(o) {
                p.push(ConfigProblem::new(
                    format!("server.cors_allowed_origins[{i}]"),
                    m,
                ));
            }
        }
        if let Some(url) = &s.public_base_url
            && let Err(m) = check_public_base_url(url, s.require_https)
        {
            p.push(ConfigProblem::new("server.public_base_url", m));
        }
        p
    }
}

/// `https://host[:port][/path]`, no trailing `/`, query, fragment or user info: grant links
/// are built by appending `/g/{token}`. Plain `http://` only with `require_https = false`
/// (the link is a bearer credential).
fn check_public_base_url(url: &str, require_https: bool) -> Result<(), String> {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(_)) if require_https => {
            return Err("must be https:// while server.require_https is true (a grant link is a bearer credential)".into());
        }
        (None, Some(rest)) => rest,
        (None, None) => return Err(format!("{url:?} must start with https://")),
    };
    let host = rest.split('/').next().unwrap_or_default();
    let port = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, p)| p).unwrap_or("x"),
        None => host.split_once(':').map_or("", |(_, p)| p),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .unwrap_or(port)
            .parse::<u16>()
            .is_ok_and(|p| p > 0);
    let ok = !host.is_empty()
        && port_ok
        && !url.ends_with('/')
        && url.bytes().all(|b| b.is_ascii_graphic())
        && !url.contains(['?', '#', '@', '\\', '%'])
        && !rest
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{url:?} must be an absolute URL like https://files.example.com or https://example.com/presignd: a host, an optional path, no trailing /, query, fragment or user"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_public_base_url;

    #[test]
    fn public_base_urls_are_absolute_and_bare() {
        for ok in [
            "https://files.example.com",
            "https://example.com:8443/presignd",
            "https://[::1]:8443",
        ] {
            assert_eq!(check_public_base_url(ok, true), Ok(()), "{ok}");
        }
        assert_eq!(
            check_public_base_url("http://127.0.0.1:8080", false),
            Ok(())
        );
        for bad in [
            "http://files.example.com",
            "files.example.com",
            "https://files.example.com/",
            "https://files.example.com/a?b",
            "https://u@files.example.com",
            "https://",
            "https://x.com//a",
            "https://x.com/../a",
            "https://x.com/a b",
            "https://x.com/%2e%2e",
            "https://x.com:http",
            "https://x.com:0",
            "https://[::1]x",
        ] {
            assert!(check_public_base_url(bad, true).is_err(), "{bad}");
        }
    }
}
