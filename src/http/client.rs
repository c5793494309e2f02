//! Who is calling, from where: the request id, the client address (the socket peer, or what a
//! trusted proxy forwarded) and whether the request arrived over TLS.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

const MAX_ECHOED_HEADER: usize = 512;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub tls: bool,
    pub user_agent: Option<String>,
    pub origin: Option<String>,
}

impl ClientInfo {
    pub fn from_request(
        request_id: String,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        trusted_proxies: &[IpNet],
    ) -> ClientInfo {
        let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
        let via_proxy = peer.as_ref().is_some_and(trusted);
        let ip = match peer {
            Some(peer) if via_proxy => Some(forwarded_client(peer, headers, &trusted)),
            other => other,
        };
        // Forwarded headers count only from a trusted proxy; native TLS arrives with the
        // transport work (until then a request is TLS only when a trusted proxy says so).
        let tls = via_proxy
            && headers
                .get_all("x-forwarded-proto")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        ClientInfo {
            request_id,
            ip,
            tls,
            user_agent: echoed(headers, "user-agent"),
            origin: echoed(headers, "origin"),
        }
    }
}

/// The rightmost address in `X-Forwarded-For` that is not a trusted proxy (addresses to its
/// left were supplied by the client and prove nothing).
fn forwarded_client(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &dyn Fn(&IpAddr) -> bool,
) -> IpAddr {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    client
}

/// A header value fit for an audit record: printable, bounded.
fn echoed(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?;
    let v: String = v
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHOED_HEADER)
        .collect();
    Some(v)
}

/// A client-supplied request id is kept only if it is short and plain (it ends up in logs).
pub fn acceptable_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn forwarded_headers_ignored_from_untrusted_peer() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = ClientInfo::from_request("r".into(), Some("9.9.9.9".parse().expect("ip")), &h, &[]);
        assert_eq!(c.ip, Some("9.9.9.9".parse().expect("ip")));
        assert!(!c.tls);
    }

    #[test]
    fn trusted_proxy_forwards_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = ClientInfo::from_request(
            "r".into(),
            Some("10.0.0.1".parse().expect("ip")),
            &h,
            &trusted,
        );
        assert_eq!(c.ip, Some("1.2.3.4".parse().expect("ip")));
        assert!(c.tls);
    }

    #[test]
    fn request_ids_are_plain() {
        assert!(acceptable_request_id("abc-123_x.y"));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("a\nb"));
        assert!(!acceptable_request_id(&"x".repeat(65)));
    }
}
