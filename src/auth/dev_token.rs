//! `presignd token`: mint a token for local development from a locally configured key.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::config::{Algorithm, IssuerConfig, MIN_HS256_SECRET_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    #[error("issuer has neither hs256_secret nor signing_key_file: cannot mint a token")]
    NoSigningKey,
    #[error("issuer has no audience")]
    NoAudience,
    #[error("hs256_secret is shorter than {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("signing_key_file: {0}")]
    Key(String),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The issuer named `name`, or else the first one that can mint (has a signing key).
pub fn find_dev_issuer<'a>(
    issuers: &'a [IssuerConfig],
    name: Option<&str>,
) -> Option<&'a IssuerConfig> {
    match name {
        Some(name) => issuers.iter().find(|i| i.issuer == name),
        None => issuers
            .iter()
            .find(|i| i.hs256_secret.is_some() || i.signing_key_file.is_some()),
    }
}

/// Signs with `hs256_secret` (HS256), else with the PEM private key in `signing_key_file`
/// using the issuer's first asymmetric algorithm.
pub fn mint_dev_token(
    cfg: &IssuerConfig,
    sub: &str,
    groups: &[String],
    mfa: bool,
    ttl: Duration,
    now: i64,
) -> Result<String, DevTokenError> {
    let (alg, key) = signing_key(cfg)?;
    let aud = cfg.audiences.first().ok_or(DevTokenError::NoAudience)?;
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);

    let mut claims = Map::new();
    insert_claim(&mut claims, &cfg.groups_claim, json!(groups));
    let amr = if mfa {
        json!(["pwd", "mfa"])
    } else {
        json!(["pwd"])
    };
    insert_claim(&mut claims, &cfg.mfa_claim, amr);
    if cfg.audience_claim != "aud" {
        insert_claim(&mut claims, &cfg.audience_claim, json!(aud));
    }
    // Registered claims last, so a misconfigured claim name cannot shadow them.
    for (name, value) in [
        ("iss", json!(cfg.issuer)),
        ("aud", json!(aud)),
        ("sub", json!(sub)),
        ("iat", json!(now)),
        ("nbf", json!(now)),
        ("exp", json!(now.saturating_add(ttl))),
        ("jti", json!(uuid::Uuid::new_v4().to_string())),
    ] {
        claims.insert(name.to_owned(), value);
    }
    Ok(jsonwebtoken::encode(
        &Header::new(alg.to_jwt()),
        &claims,
        &key,
    )?)
}

fn signing_key(cfg: &IssuerConfig) -> Result<(Algorithm, EncodingKey), DevTokenError> {
    if let Some(secret) = &cfg.hs256_secret {
        let secret = secret.expose_secret().as_bytes();
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(DevTokenError::WeakSecret);
        }
        return Ok((Algorithm::HS256, EncodingKey::from_secret(secret)));
    }
    let path = cfg
        .signing_key_file
        .as_ref()
        .ok_or(DevTokenError::NoSigningKey)?;
    let alg = cfg
        .algorithms
        .iter()
        .copied()
        .find(|a| !a.is_symmetric())
        .ok_or_else(|| DevTokenError::Key("the issuer allows no asymmetric algorithm".into()))?;
    let pem = std::fs::read(path)
        .map_err(|e| DevTokenError::Key(format!("cannot read {}: {e}", path.display())))?;
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::HS256 => return Err(DevTokenError::NoSigningKey),
    }
    .map_err(|_| DevTokenError::Key(format!("not a PKCS#8 private key PEM for {alg:?}")))?;
    Ok((alg, key))
}

/// A dotted name becomes nested objects (`realm_access.roles`), matching the verifier's
/// path walk; URL-like or colon names (`https://example.com/groups`, `cognito:groups`) are
/// literal top-level claims.
fn insert_claim(claims: &mut Map<String, Value>, name: &str, value: Value) {
    if name.contains(':') || name.contains('/') || !name.contains('.') {
        claims.insert(name.to_owned(), value);
        return;
    }
    let mut parts: Vec<&str> = name.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut map = claims;
    for part in parts {
        let entry = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        map = next;
    }
    map.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_placement() {
        let mut c = Map::new();
        insert_claim(&mut c, "realm_access.roles", json!(["a"]));
        insert_claim(&mut c, "realm_access.other", json!(1));
        insert_claim(&mut c, "cognito:groups", json!(["b"]));
        insert_claim(&mut c, "https://example.com/groups", json!(["c"]));
        assert_eq!(
            Value::Object(c),
            json!({
                "realm_access": {"roles": ["a"], "other": 1},
                "cognito:groups": ["b"],
                "https://example.com/groups": ["c"],
            })
        );
    }
}
