//! Fetching a JWKS and turning it into verification keys.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Deserialize;
use sha2::Digest;

use crate::config::Algorithm;
use crate::config::issuers::check_jwks_url;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// One verification key and the single algorithm it may verify.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Why a fetch produced no usable key set (the caller keeps the previous one).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("redirected to a disallowed URL: {0}")]
    Redirect(String),
    #[error("body larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no usable keys for the allowed algorithms")]
    NoUsableKeys,
}

/// GETs `url` (5 s, 1 MiB at most) and keeps the keys usable with `allowed` algorithms; also
/// returns the document's SHA-256, which tells a changed set from a refetched one.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    allowed: &[Algorithm],
) -> Result<(Vec<KeyEntry>, [u8; 32]), FetchError> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch_body(http, url))
        .await
        .map_err(|_| FetchError::Timeout)??;
    let keys = parse(&body, allowed)?;
    Ok((keys, sha2::Sha256::digest(&body).into()))
}

async fn fetch_body(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut response = http.get(url).timeout(FETCH_TIMEOUT).send().await?;
    // The client may follow redirects; the final URL must obey the same rule as the configured one.
    if check_jwks_url(response.url().as_str()).is_err() {
        return Err(FetchError::Redirect(response.url().to_string()));
    }
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Keys the set can't use (other algorithms, encryption keys, malformed entries) are
/// skipped, not fatal: IdPs publish keys for other consumers in the same set.
pub(crate) fn parse(body: &[u8], allowed: &[Algorithm]) -> Result<Vec<KeyEntry>, FetchError> {
    let raw: RawSet = serde_json::from_slice(body)?;
    let keys: Vec<KeyEntry> = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| key_entry(&jwk))
        .filter(|entry| allowed.contains(&entry.alg))
        .collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

fn key_entry(jwk: &Jwk) -> Option<KeyEntry> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if let Some(ops) = &common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    // The algorithm follows from the key type; a declared `alg` must agree with it.
    // Symmetric (`oct`) keys are never taken from a JWKS.
    let (alg, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(&p.n, &p.e).ok()?,
        ),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            if decoded_len(&p.x)? != 32 || decoded_len(&p.y)? != 32 {
                return None;
            }
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(&p.x, &p.y).ok()?,
            )
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            if decoded_len(&p.x)? != 32 {
                return None;
            }
            (
                Algorithm::EdDSA,
                DecodingKey::from_ed_components(&p.x).ok()?,
            )
        }
        _ => return None,
    };
    if let Some(declared) = common.key_algorithm
        && !declared_matches(declared, alg)
    {
        return None;
    }
    Some(KeyEntry {
        kid: common.key_id.clone(),
        alg,
        key,
    })
}

fn declared_matches(declared: KeyAlgorithm, alg: Algorithm) -> bool {
    matches!(
        (declared, alg),
        (KeyAlgorithm::RS256, Algorithm::RS256)
            | (KeyAlgorithm::ES256, Algorithm::ES256)
            | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
    )
}

fn decoded_len(b64: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(b64).ok().map(|bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let body = br#"{"keys": [
            {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "short"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "ps", "alg": "PS256"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "ok", "alg": "RS256", "use": "sig"},
            {"kty": "whatever"},
            "garbage"
        ]}"#;
        let keys = parse(body, &[Algorithm::RS256, Algorithm::ES256]).expect("one usable key");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("ok")]);
        assert!(matches!(
            parse(body, &[Algorithm::EdDSA]),
            Err(FetchError::NoUsableKeys)
        ));
        assert!(matches!(
            parse(b"{}", &[Algorithm::RS256]),
            Err(FetchError::Json(_))
        ));
    }
}
