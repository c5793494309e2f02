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
        native_tls: bool,
        headers: &HeaderMap,
        trusted_proxies: &[IpNet],
    ) -> ClientInfo {
        let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
        let peer = peer.map(|ip| ip.to_canonical());
        let via_proxy = peer.as_ref().is_some_and(trusted);
        let ip = if via_proxy {
            forwarded_client(headers, &trusted)
        } else {
            peer
        };
        // Forwarded headers count only from a trusted proxy.
        let tls = native_tls
            || (via_proxy
                && forwarded_proto(headers).is_some_and(|p| p.eq_ignore_ascii_case("https")));
        ClientInfo {
            request_id,
            ip,
            tls,
            user_agent: echoed(headers, "user-agent"),
            origin: echoed(headers, "origin"),
        }
    }
}

/// The hops a trusted proxy reports, nearest last: RFC 7239 `Forwarded: for=…` when present,
/// else `X-Forwarded-For`.
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
                    .unwrap_or_default()
            })
            .collect();
    }
    values("x-forwarded-for")
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]`, `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (ip, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The rightmost reported hop that is not a trusted proxy (hops to its left were supplied by
/// the client and prove nothing). `None` — no address — when the proxy reported none we can
/// read: an unknown caller must never pass as the proxy's own (internal) address.
fn forwarded_client(headers: &HeaderMap, trusted: &dyn Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    for hop in forwarded_hops(headers).iter().rev() {
        let ip = parse_hop(hop)?;
        if !trusted(&ip) {
            return Some(ip);
        }
    }
    None
}

fn forwarded_proto(headers: &HeaderMap) -> Option<String> {
    let forwarded: Option<String> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        });
    forwarded.or_else(|| {
        headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .map(|p| p.trim().to_string())
    })
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
        let c = ClientInfo::from_request(
            "r".into(),
            Some("9.9.9.9".parse().expect("ip")),
            false,
            &h,
            &[],
        );
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
            false,
            &h,
            &trusted,
        );
        assert_eq!(c.ip, Some("1.2.3.4".parse().expect("ip")));
        assert!(c.tls);
    }

    #[test]
    fn trusted_proxy_without_a_readable_client_fails_closed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let peer = Some("10.0.0.1".parse().expect("ip"));
        for h in [
            headers(&[]),
            headers(&[("x-forwarded-for", "garbage")]),
            headers(&[("x-forwarded-for", "10.0.0.9")]),
            headers(&[("forwarded", "for=unknown")]),
        ] {
            let c = ClientInfo::from_request("r".into(), peer, false, &h, &trusted);
            assert_eq!(c.ip, None, "{h:?}");
        }
    }

    #[test]
    fn forwarded_and_ports_and_mapped_addresses() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let peer = Some("::ffff:10.0.0.1".parse().expect("ip"));
        let cases = [
            (
                headers(&[(
                    "forwarded",
                    "for=192.0.2.60, for=\"[2001:db8::1]:4711\";proto=https",
                )]),
                "2001:db8::1",
                true,
            ),
            (
                headers(&[("x-forwarded-for", "198.51.100.7:5555")]),
                "198.51.100.7",
                false,
            ),
            (
                headers(&[("x-forwarded-for", "::ffff:198.51.100.8")]),
                "198.51.100.8",
                false,
            ),
        ];
        for (h, ip, tls) in cases {
            let c = ClientInfo::from_request("r".into(), peer, false, &h, &trusted);
            assert_eq!(c.ip, Some(ip.parse().expect("ip")), "{h:?}");
            assert_eq!(c.tls, tls, "{h:?}");
        }
    }

    #[test]
    fn request_ids_are_plain() {
        assert!(acceptable_request_id("abc-123_x.y"));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("a\nb"));
        assert!(!acceptable_request_id(&"x".repeat(65)));
    }
}
