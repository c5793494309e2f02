//! Signed webhooks (Standard Webhooks, <https://www.standardwebhooks.com>): the pure parts —
//! event types and payloads, the signature, the retry schedule and which destinations are
//! allowed. Deliveries are queued durably in the database with the event that causes them
//! (`store::webhooks`) and sent by every instance's dispatcher (`deliver`).

pub mod deliver;

use std::net::IpAddr;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "upload.verified")]
    UploadVerified,
    #[serde(rename = "upload.rejected")]
    UploadRejected,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UploadVerified => "upload.verified",
            EventType::UploadRejected => "upload.rejected",
        }
    }
}

/// A Standard Webhooks payload: `{"type", "timestamp", "data"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub type_: EventType,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: time::OffsetDateTime,
    pub data: serde_json::Value,
}

/// An endpoint's secret: `whsec_` + base64 of the key bytes.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or("must start with whsec_ (Standard Webhooks' secret format)")?;
        let bytes = B64
            .decode(b64)
            .map_err(|_| "after whsec_ must come base64")?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(
                "must hold 24 to 64 bytes (e.g. whsec_ + `openssl rand -base64 32`)".into(),
            );
        }
        Ok(SigningKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", B64.encode(ctx.sign().as_ref()))
    }
}

/// The delay before retry number `attempt` (1 for the first retry): `initial` doubled per
/// attempt, capped at `max`, times `jitter` in [0.5, 1] so instances that failed together do
/// not retry together.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    doubled.min(max).mul_f64(jitter.clamp(0.5, 1.0))
}

/// Whether presignd may deliver to `ip` without `allow_private_network`: only public unicast
/// addresses (no loopback, private, link-local, shared, documentation, multicast, …).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 192 && b == 88 && v4.octets()[2] == 99) // 6to4 relay anycast
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let [first, second, ..] = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && second == 0x0db8 // documentation
                || first == 0x2001 && second == 0x0000 // Teredo (embeds an IPv4 address)
                || first == 0x2002 // 6to4 (embeds an IPv4 address)
                || first == 0x0064 && second == 0xff9b // NAT64
                || v6.segments()[..6] == [0; 6]) // IPv4-compatible ::a.b.c.d
        }
    }
}

/// What is wrong with a webhook URL on its face (the addresses its host resolves to are
/// checked at each delivery): scheme, credentials, an address literal that is not public.
pub fn destination_problem(url: &str, allow_private: bool) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("not a URL: {e}")),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Some("must be https (http only with allow_private_network)".into()),
        _ => return Some("must be https".into()),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("must not carry credentials (sign with the secret)".into());
    }
    let Some(host) = parsed.host_str() else {
        return Some("must name a host".into());
    };
    let ip: Option<IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    match ip {
        Some(ip) if !allow_private && !is_public(ip) => Some(format!(
            "{ip} is not a public address; set allow_private_network = true to deliver there"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example in the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_enough_bytes() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_not base64!").is_err());
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err(), "5 bytes");
    }

    #[test]
    fn destinations() {
        assert_eq!(
            destination_problem("https://hooks.example.com/x", false),
            None
        );
        for (url, allow) in [
            ("http://hooks.example.com/x", false),
            ("ftp://hooks.example.com/x", true),
            ("https://user:pw@hooks.example.com/x", false),
            ("https://127.0.0.1/x", false),
            ("https://10.1.2.3/x", false),
            ("https://[::1]/x", false),
            ("https://[fd00::1]/x", false),
            ("https://169.254.169.254/latest/meta-data", false),
            ("not a url", true),
        ] {
            assert!(destination_problem(url, allow).is_some(), "{url}");
        }
        assert_eq!(destination_problem("http://127.0.0.1:9/x", true), None);
        assert!(is_public("93.184.216.34".parse().expect("ip")));
        assert!(!is_public("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!is_public("100.64.0.1".parse().expect("ip")));
        for tunnel in [
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "::7f00:1",
            "fec0::1",
        ] {
            assert!(!is_public(tunnel.parse().expect("ip")), "{tunnel}");
        }
        assert!(is_public("2606:4700::1111".parse().expect("ip")));
    }

    proptest! {
        /// Backoff grows, never beyond the cap, never below half the undelayed schedule.
        #[test]
        fn backoff_is_capped_doubling_with_jitter(attempt in 1u32..40, jitter in 0.0f64..1.5) {
            let (initial, max) = (Duration::from_millis(100), Duration::from_secs(60));
            let d = backoff(attempt, initial, max, jitter);
            prop_assert!(d <= max);
            let undelayed = initial.saturating_mul(1u32 << (attempt - 1).min(20)).min(max);
            prop_assert!(d >= undelayed / 2);
            prop_assert!(backoff(attempt + 1, initial, max, 1.0) >= backoff(attempt, initial, max, 1.0));
        }
    }
}
