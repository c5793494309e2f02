//! CloudFront signing inputs, pure: the policy statement, its URL-safe base64, the resource
//! URL of an object key and the signed URL's query. Shaped exactly as
//! `@aws-sdk/cloudfront-signer` shapes them (`tests/cloudfront_reference.rs` compares the two
//! byte for byte), which is what CloudFront verifies.

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;

/// When and from where a signature is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// `DateLessThan`: the signature is refused from this epoch second on.
    pub expires: i64,
    /// `DateGreaterThan`: refused before this epoch second.
    pub not_before: Option<i64>,
    /// `IpAddress`: only this address (`/32` or `/128`).
    pub source_ip: Option<IpAddr>,
}

impl Conditions {
    /// A canned policy carries only the expiry (and is rebuilt by CloudFront from the URL); a
    /// start time or an address needs a custom policy sent along.
    pub fn is_canned(&self) -> bool {
        self.not_before.is_none() && self.source_ip.is_none()
    }
}

/// The policy statement for `resource`: `{"Statement":[{"Resource":…,"Condition":{…}}]}`,
/// no whitespace, conditions in the order DateLessThan, DateGreaterThan, IpAddress.
pub fn policy_json(resource: &str, c: &Conditions) -> String {
    let resource = serde_json::Value::String(resource.to_owned());
    let mut out = format!(
        r#"{{"Statement":[{{"Resource":{resource},"Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}"#,
        c.expires
    );
    if let Some(start) = c.not_before {
        let _ = write!(out, r#","DateGreaterThan":{{"AWS:EpochTime":{start}}}"#);
    }
    if let Some(ip) = c.source_ip {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let _ = write!(out, r#","IpAddress":{{"AWS:SourceIp":"{ip}/{bits}"}}"#);
    }
    out.push_str("}}]}");
    out
}

/// Base64 with CloudFront's URL-safe substitutions: `+` → `-`, `=` → `_`, `/` → `~`.
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// `key` as a URL path: each `/`-separated segment percent-encoded as JavaScript's
/// `encodeURIComponent` does, except `*`, which is encoded too (`%2A`): in a policy resource a
/// bare `*` is a wildcard, and a key must never name more than itself.
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + key.len() / 4);
    for b in key.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-' | b'_' | b'.' | b'!' | b'~' | b'\'' | b'(' | b')'
            );
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The query a signed URL ends with (after `?` or `&`): `Expires` for a canned policy or
/// `Policy` for a custom one, then `Key-Pair-Id`, `Signature` and `Hash-Algorithm=SHA256`.
/// Every value is digits or CloudFront base64, which need no further encoding.
pub fn signed_query(
    c: &Conditions,
    policy_json: &str,
    key_pair_id: &str,
    signature: &str,
) -> String {
    let mut q = String::with_capacity(policy_json.len() * 2 + signature.len() + 64);
    if c.is_canned() {
        let _ = write!(q, "Expires={}", c.expires);
    } else {
        q.push_str("Policy=");
        q.push_str(&cloudfront_base64(policy_json.as_bytes()));
    }
    let _ = write!(
        q,
        "&Key-Pair-Id={key_pair_id}&Signature={signature}&Hash-Algorithm=SHA256"
    );
    q
}

/// `url` with the signed query appended.
pub fn signed_url(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_canned_policy_is_the_expiry_alone() {
        let c = Conditions {
            expires: 1_767_225_600,
            not_before: None,
            source_ip: None,
        };
        assert!(c.is_canned());
        assert_eq!(
            policy_json("https://d1.cloudfront.net/a.mp4", &c),
            r#"{"Statement":[{"Resource":"https://d1.cloudfront.net/a.mp4","Condition":{"DateLessThan":{"AWS:EpochTime":1767225600}}}]}"#
        );
    }

    #[test]
    fn a_custom_policy_orders_its_conditions() {
        let c = Conditions {
            expires: 20,
            not_before: Some(10),
            source_ip: Some("2001:db8::1".parse().expect("ip")),
        };
        assert!(!c.is_canned());
        assert_eq!(
            policy_json("https://d/v/*", &c),
            r#"{"Statement":[{"Resource":"https://d/v/*","Condition":{"DateLessThan":{"AWS:EpochTime":20},"DateGreaterThan":{"AWS:EpochTime":10},"IpAddress":{"AWS:SourceIp":"2001:db8::1/128"}}}]}"#
        );
        let v4 = Conditions {
            source_ip: Some("192.0.2.7".parse().expect("ip")),
            not_before: None,
            ..c
        };
        assert!(
            policy_json("r", &v4).ends_with(r#""IpAddress":{"AWS:SourceIp":"192.0.2.7/32"}}}]}"#)
        );
    }

    #[test]
    fn paths_keep_segments_and_encode_wildcards() {
        assert_eq!(encode_path("show 1/ép*?.ts"), "show%201/%C3%A9p%2A%3F.ts");
        assert_eq!(encode_path("a/(b)!~'c"), "a/(b)!~'c");
        assert_eq!(encode_path("100%/x"), "100%25/x");
    }

    #[test]
    fn the_query_names_the_policy_kind() {
        let canned = Conditions {
            expires: 5,
            not_before: None,
            source_ip: None,
        };
        assert_eq!(
            signed_query(&canned, "{}", "K1", "sig"),
            "Expires=5&Key-Pair-Id=K1&Signature=sig&Hash-Algorithm=SHA256"
        );
        let custom = Conditions {
            not_before: Some(1),
            ..canned
        };
        assert_eq!(
            signed_query(&custom, "{}", "K1", "sig"),
            "Policy=e30_&Key-Pair-Id=K1&Signature=sig&Hash-Algorithm=SHA256"
        );
        assert_eq!(signed_url("https://d/a?x=1", "q"), "https://d/a?x=1&q");
        assert_eq!(signed_url("https://d/a", "q"), "https://d/a?q");
    }

    proptest! {
        /// Nothing a key holds survives into the path as a wildcard, a query or a fragment,
        /// and decoding gives the key back.
        #[test]
        fn encoded_paths_are_literal_and_reversible(key in "\\PC{0,40}") {
            let path = encode_path(&key);
            prop_assert!(!path.contains(['*', '?', '#', ' ', '"', '\\']), "{path}");
            prop_assert!(path.is_ascii());
            let mut bytes = Vec::new();
            let mut rest = path.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'%' {
                    let hex = std::str::from_utf8(&tail[..2]).expect("ascii");
                    bytes.push(u8::from_str_radix(hex, 16).expect("hex"));
                    rest = &tail[2..];
                } else {
                    bytes.push(b);
                    rest = tail;
                }
            }
            prop_assert_eq!(String::from_utf8(bytes).expect("utf-8"), key);
        }

        #[test]
        fn cloudfront_base64_is_url_safe(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = cloudfront_base64(&bytes);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')));
        }
    }
}
