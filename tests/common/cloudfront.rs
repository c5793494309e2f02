//! What CloudFront does with a signed URL or signed cookies, written from its documentation
//! for the tests (there is no CloudFront on loopback): rebuild or decode the policy, verify
//! the signature with the public key, then check the resource (with `*` and `?` wildcards),
//! the dates and the address. Independent of presignd's signer, which it checks.

use std::collections::HashMap;
use std::net::IpAddr;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::Value;

/// A generated ECDSA P-256 key: its PEM for `[[cloudfront.keys]]`, its public half for
/// [`Distribution`].
pub struct TestKey {
    pub pem: String,
    pub public: Vec<u8>,
}

pub fn p256_key() -> TestKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    TestKey {
        pem: key.serialize_pem(),
        public: key.public_key_raw().to_vec(),
    }
}

/// A distribution's trusted key group: one key, by id.
pub struct Distribution {
    pub key_pair_id: String,
    pub public: Vec<u8>,
}

const SIGNING_PARAMS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// CloudFront's URL-safe base64 (`-`, `_`, `~` for `+`, `=`, `/`), decoded.
pub fn unbase64(s: &str) -> Result<Vec<u8>, String> {
    let std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(std)
        .map_err(|e| format!("bad base64: {e}"))
}

/// `*` matches any run of characters, `?` one.
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    match (pattern.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => matches(rest, s) || (!s.is_empty() && matches(pattern, &s[1..])),
        (Some((b'?', rest)), Some((_, tail))) => matches(rest, tail),
        (Some((p, rest)), Some((c, tail))) => p == c && matches(rest, tail),
        _ => false,
    }
}

fn epoch(condition: &Value, name: &str) -> Option<i64> {
    condition.get(name)?.get("AWS:EpochTime")?.as_i64()
}

impl Distribution {
    fn verify(
        &self,
        policy: &str,
        signature: &str,
        key_pair_id: &str,
        hash: Option<&str>,
    ) -> Result<(), String> {
        if key_pair_id != self.key_pair_id {
            return Err(format!("key {key_pair_id} is not in the trusted key group"));
        }
        if hash != Some("SHA256") {
            return Err(format!("hash algorithm {hash:?}: this key verifies SHA256"));
        }
        let sig = unbase64(signature)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.public)
            .verify(policy.as_bytes(), &sig)
            .map_err(|_| "signature does not verify".to_string())
    }

    fn check(&self, policy: &str, url: &str, now: i64, client: IpAddr) -> Result<(), String> {
        let v: Value = serde_json::from_str(policy).map_err(|e| format!("policy JSON: {e}"))?;
        let statement = &v["Statement"][0];
        let resource = statement["Resource"].as_str().ok_or("no Resource")?;
        if !matches(resource.as_bytes(), url.as_bytes()) {
            return Err(format!(
                "{url} is not under the policy's resource {resource}"
            ));
        }
        let c = &statement["Condition"];
        let expires = epoch(c, "DateLessThan").ok_or("no DateLessThan")?;
        if now >= expires {
            return Err("expired".into());
        }
        if epoch(c, "DateGreaterThan").is_some_and(|start| now <= start) {
            return Err("not valid yet".into());
        }
        if let Some(cidr) = c
            .get("IpAddress")
            .and_then(|ip| ip["AWS:SourceIp"].as_str())
        {
            let net: ipnet::IpNet = cidr.parse().map_err(|e| format!("{cidr}: {e}"))?;
            if !net.contains(&client) {
                return Err(format!("{client} is not in {cidr}"));
            }
        }
        Ok(())
    }

    /// Whether CloudFront would serve this signed URL to `client` at `now`.
    pub fn check_url(&self, signed: &str, now: i64, client: IpAddr) -> Result<(), String> {
        let (base, query) = signed.split_once('?').ok_or("no query")?;
        let mut params = HashMap::new();
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if SIGNING_PARAMS.contains(&k) {
                params.insert(k, v);
            } else {
                kept.push(pair);
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let signature = params.get("Signature").ok_or("no Signature")?;
        let key_pair_id = params.get("Key-Pair-Id").ok_or("no Key-Pair-Id")?;
        let hash = params.get("Hash-Algorithm").copied();
        let policy = match (params.get("Expires"), params.get("Policy")) {
            (Some(expires), None) => format!(
                r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
            ),
            (None, Some(encoded)) => {
                String::from_utf8(unbase64(encoded)?).map_err(|e| e.to_string())?
            }
            _ => return Err("exactly one of Expires and Policy".into()),
        };
        self.verify(&policy, signature, key_pair_id, hash)?;
        self.check(&policy, &url, now, client)
    }

    /// Whether CloudFront would serve `url` to a request carrying these cookies.
    pub fn check_cookies(
        &self,
        url: &str,
        cookies: &HashMap<String, String>,
        now: i64,
        client: IpAddr,
    ) -> Result<(), String> {
        let get = |name: &str| {
            cookies
                .get(name)
                .map(String::as_str)
                .ok_or(format!("no {name} cookie"))
        };
        let policy =
            String::from_utf8(unbase64(get("CloudFront-Policy")?)?).map_err(|e| e.to_string())?;
        self.verify(
            &policy,
            get("CloudFront-Signature")?,
            get("CloudFront-Key-Pair-Id")?,
            cookies.get("CloudFront-Hash-Algorithm").map(String::as_str),
        )?;
        self.check(&policy, url, now, client)
    }
}
