//! Who is calling, from where: the request id, the client address (the socket peer, or what a
//! trusted proxy forwarded) and whether the request arrived over TLS.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

pub use crate::config::ForwardedHeader;

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
        proxies: &Proxies<'_>,
    ) -> ClientInfo {
        let trusted = |ip: &IpAddr| proxies.trusted.iter().any(|n| n.contains(ip));
        let peer = peer.map(|ip| ip.to_canonical());
        let via_proxy = peer.as_ref().is_some_and(trusted);
        // Forwarded headers count only from a trusted proxy, and only the configured family:
        // a proxy that writes one family passes the other through from the client.
        let (ip, forwarded_tls) = if via_proxy {
            let hops = match proxies.header {
                ForwardedHeader::XForwarded => x_forwarded_hops(headers),
                ForwardedHeader::Forwarded => forwarded_hops(headers),
            };
            let client = client_hop(&hops, &trusted);
            let proto = match proxies.header {
                // The value the nearest proxy wrote (see `x_forwarded_proto`).
                ForwardedHeader::XForwarded => x_forwarded_proto(headers),
                // The proto of the element that reported the client; without a readable
                // client, the nearest proxy's element.
                ForwardedHeader::Forwarded => match &client {
                    Some(hop) => hop.proto.clone(),
                    None => hops.last().and_then(|h| h.proto.clone()),
                },
            };
            (
                client.map(|hop| hop.ip),
                proto.is_some_and(|p| p.eq_ignore_ascii_case("https")),
            )
        } else {
            (peer, false)
        };
        ClientInfo {
            request_id,
            ip,
            tls: native_tls || forwarded_tls,
            user_agent: echoed(headers, "user-agent"),
            origin: echoed(headers, "origin"),
        }
    }
}

/// Which proxies are believed, and which header family they write
/// (`server.trusted_proxies`, `server.forwarded_header`).
#[derive(Debug, Clone, Copy)]
pub struct Proxies<'a> {
    pub trusted: &'a [IpNet],
    pub header: ForwardedHeader,
}

/// One hop a proxy reported: the address it received the request from, and (RFC 7239
/// only) the protocol it received it over. `None` where the hop cannot be read.
struct Hop {
    ip: Option<IpAddr>,
    proto: Option<String>,
}

/// `X-Forwarded-For`, nearest hop last.
fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    list_values(headers, "x-forwarded-for")
        .map(|v| Hop {
            ip: parse_hop(v),
            proto: None,
        })
        .collect()
}

/// RFC 7239 `Forwarded: for=…;proto=…`, one element per hop, nearest last.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    list_values(headers, "forwarded")
        .map(|element| {
            let param = |name: &str| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
            };
            Hop {
                ip: param("for").as_deref().and_then(parse_hop),
                proto: param("proto"),
            }
        })
        .collect()
}

/// Every comma-separated value of every instance of a header, in order. A value that is not
/// visible ASCII reads as empty, in its place: a client's unreadable bytes to the left must
/// not hide the hops a proxy appended after them on the same line.
fn list_values<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|value| {
            std::str::from_utf8(value)
                .ok()
                .filter(|v| {
                    v.bytes()
                        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
                })
                .map_or("", str::trim)
        })
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
/// the client and prove nothing). `None` — no client — when the proxies reported none we can
/// read: an unknown caller must never pass as the proxy's own (internal) address.
fn client_hop(hops: &[Hop], trusted: &dyn Fn(&IpAddr) -> bool) -> Option<ClientHop> {
    for hop in hops.iter().rev() {
        let ip = hop.ip?;
        if !trusted(&ip) {
            return Some(ClientHop {
                ip,
                proto: hop.proto.clone(),
            });
        }
    }
    None
}

struct ClientHop {
    ip: IpAddr,
    proto: Option<String>,
}

/// The last `X-Forwarded-Proto` value: the one the nearest proxy wrote (a proxy that sets the
/// header overwrites the client's; one that appends puts its own last). Never matched up
/// with an `X-Forwarded-For` position: a proxy that appends to one header and not the other
/// would let the client choose the value at that position.
fn x_forwarded_proto(headers: &HeaderMap) -> Option<String> {
    list_values(headers, "x-forwarded-proto")
        .last()
        .map(str::to_string)
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
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn client(peer: &str, h: &HeaderMap, trusted: &[IpNet], header: ForwardedHeader) -> ClientInfo {
        let proxies = Proxies { trusted, header };
        ClientInfo::from_request("r".into(), Some(ip(peer)), false, h, &proxies)
    }

    fn ten() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("net")]
    }

    #[test]
    fn forwarded_headers_ignored_from_untrusted_peer() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ]);
        for family in [ForwardedHeader::XForwarded, ForwardedHeader::Forwarded] {
            let c = client("9.9.9.9", &h, &[], family);
            assert_eq!(c.ip, Some(ip("9.9.9.9")));
            assert!(!c.tls);
        }
    }

    #[test]
    fn trusted_proxy_forwards_rightmost_untrusted_hop() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client("10.0.0.1", &h, &ten(), ForwardedHeader::XForwarded);
        assert_eq!(c.ip, Some(ip("1.2.3.4")));
        assert!(c.tls);
    }

    /// The second review: nginx appends the peer to the client's `X-Forwarded-For` on one
    /// line; a byte that is not ASCII in the client's part used to make the whole line
    /// unreadable, and the caller anonymous.
    #[test]
    fn unreadable_client_hops_do_not_hide_the_proxys() {
        let mut h = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").expect("obs-text value");
        h.append("x-forwarded-for", line);
        let c = client("10.0.0.1", &h, &ten(), ForwardedHeader::XForwarded);
        assert_eq!(c.ip, Some(ip("203.0.113.9")));
        // Unreadable at the right (the proxy's own position) still means no client.
        let mut h = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"203.0.113.9, \xff").expect("obs-text value");
        h.append("x-forwarded-for", line);
        let c = client("10.0.0.1", &h, &ten(), ForwardedHeader::XForwarded);
        assert_eq!(c.ip, None);
    }

    /// The finding: behind a proxy that writes `X-Forwarded-*` and passes `Forwarded`
    /// through, a client-sent `Forwarded` used to win (an allowed network and TLS, from a
    /// plain-HTTP caller elsewhere). Only the configured family is read now.
    #[test]
    fn only_the_configured_header_family_counts() {
        let h = headers(&[
            ("forwarded", "for=10.1.2.3;proto=https"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
        ]);
        let c = client("10.0.0.1", &h, &ten(), ForwardedHeader::XForwarded);
        assert_eq!((c.ip, c.tls), (Some(ip("203.0.113.9")), false));
        // A proxy that writes `Forwarded` (and passes X-Forwarded-* through) is read the
        // other way round.
        let h = headers(&[
            ("forwarded", "for=203.0.113.9;proto=http"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client("10.0.0.1", &h, &ten(), ForwardedHeader::Forwarded);
        assert_eq!((c.ip, c.tls), (Some(ip("203.0.113.9")), false));
    }

    /// A client's own `X-Forwarded-Proto: https` before the proxy's appended value, or a
    /// `Forwarded` element it prepended, never decides.
    #[test]
    fn the_protocol_is_the_proxys_never_the_clients() {
        let appended = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("x-forwarded-proto", "https, http"),
        ]);
        let c = client("10.0.0.1", &appended, &ten(), ForwardedHeader::XForwarded);
        assert_eq!((c.ip, c.tls), (Some(ip("203.0.113.9")), false));
        // Misaligned on purpose: positions in X-Forwarded-For say nothing about the proto.
        let misaligned = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.8"),
            ("x-forwarded-proto", "https, http"),
        ]);
        let c = client("10.0.0.1", &misaligned, &ten(), ForwardedHeader::XForwarded);
        assert!(!c.tls);
        let prepended = headers(&[(
            "forwarded",
            "for=10.9.9.9;proto=https, for=203.0.113.9;proto=http",
        )]);
        let c = client("10.0.0.1", &prepended, &ten(), ForwardedHeader::Forwarded);
        assert_eq!((c.ip, c.tls), (Some(ip("203.0.113.9")), false));
        // Through two trusted proxies, the element that reported the client decides.
        let chain = headers(&[(
            "forwarded",
            "for=203.0.113.9;proto=https, for=10.0.0.8;proto=http",
        )]);
        let c = client("10.0.0.1", &chain, &ten(), ForwardedHeader::Forwarded);
        assert_eq!((c.ip, c.tls), (Some(ip("203.0.113.9")), true));
    }

    #[test]
    fn trusted_proxy_without_a_readable_client_fails_closed() {
        for (h, family) in [
            (headers(&[]), ForwardedHeader::XForwarded),
            (
                headers(&[("x-forwarded-for", "garbage")]),
                ForwardedHeader::XForwarded,
            ),
            (
                headers(&[("x-forwarded-for", "10.0.0.9")]),
                ForwardedHeader::XForwarded,
            ),
            (
                headers(&[("forwarded", "for=unknown")]),
                ForwardedHeader::Forwarded,
            ),
            (
                headers(&[("forwarded", "for=1.2.3.4;proto=https")]),
                ForwardedHeader::XForwarded,
            ),
        ] {
            let c = client("10.0.0.1", &h, &ten(), family);
            assert_eq!(c.ip, None, "{h:?}");
            assert!(!c.tls, "{h:?}");
        }
        // The protocol does not depend on the client address being readable.
        for (h, family) in [
            (
                headers(&[("x-forwarded-proto", "https")]),
                ForwardedHeader::XForwarded,
            ),
            (
                headers(&[("forwarded", "for=unknown;proto=https")]),
                ForwardedHeader::Forwarded,
            ),
        ] {
            let c = client("10.0.0.1", &h, &ten(), family);
            assert_eq!((c.ip, c.tls), (None, true), "{h:?}");
        }
    }

    #[test]
    fn forwarded_and_ports_and_mapped_addresses() {
        let cases = [
            (
                headers(&[(
                    "forwarded",
                    "for=192.0.2.60, for=\"[2001:db8::1]:4711\";proto=https",
                )]),
                ForwardedHeader::Forwarded,
                "2001:db8::1",
                true,
            ),
            (
                headers(&[("x-forwarded-for", "198.51.100.7:5555")]),
                ForwardedHeader::XForwarded,
                "198.51.100.7",
                false,
            ),
            (
                headers(&[("x-forwarded-for", "::ffff:198.51.100.8")]),
                ForwardedHeader::XForwarded,
                "198.51.100.8",
                false,
            ),
        ];
        for (h, family, want, tls) in cases {
            let c = client("::ffff:10.0.0.1", &h, &ten(), family);
            assert_eq!(c.ip, Some(ip(want)), "{h:?}");
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
