//! JWT verification against real keys (RSA-2048, P-256, Ed25519, HS256) served from a real
//! JWKS HTTP endpoint on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::jwt::{
    self as jwt, EC, ED, JwksServer, RSA1, RSA2, TestKey, claims, hs256, http_client,
    issuer_config, jwks, now,
};
use jsonwebtoken::Header;
use presignd::Principal;
use presignd::auth::{
    AuthError, AuthSetupError, DevTokenError, Verifier, bearer_token, find_dev_issuer,
    mint_dev_token,
};
use presignd::config::{Algorithm, IssuerConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

const IDP: &str = "https://idp.test/";
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn jwks_issuer(server: &JwksServer, algorithms: &[Algorithm]) -> IssuerConfig {
    IssuerConfig {
        algorithms: algorithms.to_vec(),
        jwks_url: Some(server.url.clone()),
        ..issuer_config(IDP)
    }
}

fn hs_issuer(iss: &str) -> IssuerConfig {
    IssuerConfig {
        algorithms: vec![Algorithm::HS256],
        hs256_secret: Some(SecretString::from(HS_SECRET)),
        ..issuer_config(iss)
    }
}

fn static_issuer(iss: &str, key: &TestKey, alg: Algorithm) -> IssuerConfig {
    IssuerConfig {
        algorithms: vec![alg],
        public_key_pem: Some(key.public_pem.to_owned()),
        ..issuer_config(iss)
    }
}

async fn verifier(issuers: &[IssuerConfig]) -> Verifier {
    Verifier::new(issuers, http_client()).await.unwrap()
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn without(mut base: Value, claim: &str) -> Value {
    base.as_object_mut().unwrap().remove(claim);
    base
}

async fn refused(v: &Verifier, token: &str) -> AuthError {
    match v.verify(token).await {
        Ok(p) => panic!("token unexpectedly accepted: {p:?}"),
        Err(e) => e,
    }
}

async fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- valid tokens -----------------------------------------------------------------------

#[tokio::test]
async fn rs256_token_from_jwks_verifies_to_principal() {
    let server = JwksServer::start(jwks(&[RSA1.jwk(), EC.jwk(), ED.jwk()])).await;
    let v = verifier(&[jwks_issuer(&server, &[Algorithm::RS256])]).await;
    assert!(v.ready());

    let c = with(
        claims(IDP, "alice"),
        json!({"groups": ["users", "staff"], "amr": ["pwd", "mfa"], "jti": "j-1"}),
    );
    let p = v.verify(&RSA1.sign(&c)).await.unwrap();
    assert_eq!(
        p,
        Principal {
            sub: "alice".into(),
            iss: IDP.into(),
            groups: vec!["users".into(), "staff".into()],
            mfa: true,
            issued_at: c["iat"].as_i64(),
            expires_at: c["exp"].as_i64().unwrap(),
            jti: Some("j-1".into()),
        }
    );
    // The EC key in the same set is not usable: ES256 is not in this issuer's allowlist.
    let err = refused(&v, &EC.sign(&c)).await;
    assert_eq!(err, AuthError::AlgorithmNotAllowed);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn es256_token_with_cognito_groups() {
    let server = JwksServer::start(jwks(&[EC.jwk()])).await;
    let cfg = IssuerConfig {
        groups_claim: "cognito:groups".into(),
        ..jwks_issuer(&server, &[Algorithm::ES256])
    };
    let v = verifier(&[cfg]).await;
    let c = with(
        claims(IDP, "bob"),
        json!({"cognito:groups": ["editors"], "amr": ["pwd"]}),
    );
    let p = v.verify(&EC.sign(&c)).await.unwrap();
    assert_eq!(
        (p.sub.as_str(), p.groups, p.mfa, p.jti),
        ("bob", vec!["editors".to_string()], false, None)
    );
}

#[tokio::test]
async fn eddsa_token_with_realm_access_roles() {
    let server = JwksServer::start(jwks(&[ED.jwk()])).await;
    let cfg = IssuerConfig {
        groups_claim: "realm_access.roles".into(),
        ..jwks_issuer(&server, &[Algorithm::EdDSA])
    };
    let v = verifier(&[cfg]).await;
    let c = with(
        claims(IDP, "carol"),
        json!({"realm_access": {"roles": ["admins", "users"]}, "amr": ["mfa"]}),
    );
    let p = v.verify(&ED.sign(&c)).await.unwrap();
    assert_eq!(
        (p.groups, p.mfa),
        (vec!["admins".to_string(), "users".to_string()], true)
    );
}

#[tokio::test]
async fn hs256_token_with_auth0_namespaced_groups() {
    let cfg = IssuerConfig {
        groups_claim: "https://example.com/groups".into(),
        ..hs_issuer(IDP)
    };
    let v = verifier(&[cfg]).await;
    let c = with(
        claims(IDP, "dave"),
        json!({"https://example.com/groups": ["premium"]}),
    );
    let p = v.verify(&hs256(HS_SECRET.as_bytes(), &c)).await.unwrap();
    assert_eq!((p.groups, p.mfa), (vec!["premium".to_string()], false));

    // A single string is one group; any other type is no groups.
    let c2 = with(
        claims(IDP, "dave"),
        json!({"https://example.com/groups": "solo"}),
    );
    assert_eq!(
        v.verify(&hs256(HS_SECRET.as_bytes(), &c2))
            .await
            .unwrap()
            .groups,
        ["solo"]
    );
    let c3 = with(
        claims(IDP, "dave"),
        json!({"https://example.com/groups": {"x": 1}}),
    );
    assert!(
        v.verify(&hs256(HS_SECRET.as_bytes(), &c3))
            .await
            .unwrap()
            .groups
            .is_empty()
    );
    // Wrong secret.
    let err = refused(&v, &hs256(b"another-secret-another-secret-0123", &c)).await;
    assert_eq!(err, AuthError::BadSignature);
}

#[tokio::test]
async fn several_issuers_are_selected_by_iss() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let other = "https://other.test/";
    let v = verifier(&[jwks_issuer(&server, &[Algorithm::RS256]), hs_issuer(other)]).await;
    assert_eq!(
        v.verify(&RSA1.sign(&claims(IDP, "a"))).await.unwrap().iss,
        IDP
    );
    assert_eq!(
        v.verify(&hs256(HS_SECRET.as_bytes(), &claims(other, "b")))
            .await
            .unwrap()
            .iss,
        other
    );
    // An RS256 token claiming the HS256 issuer is refused by that issuer's allowlist.
    assert_eq!(
        refused(&v, &RSA1.sign(&claims(other, "a"))).await,
        AuthError::AlgorithmNotAllowed
    );
}

// ---- JWKS lifecycle ---------------------------------------------------------------------

#[tokio::test]
async fn rotated_key_is_accepted_without_restart() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let v = verifier(&[jwks_issuer(&server, &[Algorithm::RS256])]).await;
    let old = RSA1.sign(&claims(IDP, "alice"));
    let new = RSA2.sign(&claims(IDP, "alice"));
    v.verify(&old).await.unwrap();

    server.set_jwks(jwks(&[RSA2.jwk()]));
    assert_eq!(v.verify(&new).await.unwrap().sub, "alice");
    assert_eq!(
        server.hits(),
        2,
        "the unknown kid caused exactly one refetch"
    );
    // The retired key is gone from the cache; the refetch is throttled, so no new hit.
    assert_eq!(refused(&v, &old).await, AuthError::UnknownKey);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn background_refresh_picks_up_new_keys() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let cfg = IssuerConfig {
        jwks_refresh_seconds: 10,
        ..jwks_issuer(&server, &[Algorithm::RS256])
    };
    let v = verifier(&[cfg]).await;
    let refresher = v.spawn_background_refresh();
    server.set_jwks(jwks(&[RSA1.jwk(), RSA2.jwk()]));
    poll_until("a background JWKS refresh", Duration::from_secs(20), || {
        server.hits() >= 2
    })
    .await;
    // Poll on the outcome too: the hit is counted before the new set is stored.
    let token = RSA2.sign(&claims(IDP, "alice"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.verify(&token).await.is_err() {
        assert!(Instant::now() < deadline, "rotated key never became usable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refresher.abort();
}

#[tokio::test]
async fn idp_down_keeps_last_good_keys() {
    let mut server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let v = verifier(&[jwks_issuer(&server, &[Algorithm::RS256])]).await;
    let token = RSA1.sign(&claims(IDP, "alice"));

    server.set_failing(true);
    v.refresh().await;
    assert_eq!(server.hits(), 2);
    assert_eq!(v.verify(&token).await.unwrap().sub, "alice");

    server.set_failing(false);
    server.set_jwks(json!({"keys": []})); // an empty set is not a usable replacement either
    v.refresh().await;
    assert_eq!(v.verify(&token).await.unwrap().sub, "alice");

    server.shutdown().await;
    v.refresh().await; // connection refused
    assert_eq!(server.hits(), 3, "the stopped server served nothing");
    assert_eq!(v.verify(&token).await.unwrap().sub, "alice");
    assert!(v.ready());
}

#[tokio::test]
async fn keys_unavailable_until_first_fetch_succeeds() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    server.set_failing(true);
    let cfg = IssuerConfig {
        jwks_min_refetch_seconds: 1,
        ..jwks_issuer(&server, &[Algorithm::RS256])
    };
    let v = verifier(&[cfg]).await;
    assert!(!v.ready());
    let token = RSA1.sign(&claims(IDP, "alice"));
    let err = refused(&v, &token).await;
    assert_eq!(
        (err.clone(), err.code()),
        (AuthError::KeysUnavailable, "unauthenticated")
    );

    server.set_failing(false);
    // Refetches are throttled to one per second: poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match v.verify(&token).await {
            Ok(p) => {
                assert_eq!(p.sub, "alice");
                break;
            }
            Err(e) => {
                assert_eq!(e, AuthError::KeysUnavailable);
                assert!(std::time::Instant::now() < deadline, "keys never arrived");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    assert!(v.ready());
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let cfg = IssuerConfig {
        jwks_min_refetch_seconds: 60,
        ..jwks_issuer(&server, &[Algorithm::RS256])
    };
    let v = verifier(&[cfg]).await;
    assert_eq!(server.hits(), 1);
    let unknown = RSA2.sign(&claims(IDP, "alice"));

    // Many concurrent requests with an unknown kid share one fetch.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (v, t) = (v.clone(), unknown.clone());
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(
            (err.clone(), err.code()),
            (AuthError::UnknownKey, "unauthenticated")
        );
    }
    assert_eq!(server.hits(), 2);

    // Within the interval: no more fetches, even though the IdP now has the key.
    server.set_jwks(jwks(&[RSA1.jwk(), RSA2.jwk()]));
    for _ in 0..5 {
        assert_eq!(refused(&v, &unknown).await, AuthError::UnknownKey);
    }
    assert_eq!(server.hits(), 2);
    v.verify(&RSA1.sign(&claims(IDP, "alice"))).await.unwrap();
}

#[tokio::test]
async fn jku_x5u_jwk_headers_are_never_followed() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    // The attacker publishes their own key under the legitimate kid and under a new one.
    let attacker = JwksServer::start(jwks(&[
        RSA2.jwk_with_kid("rsa1"),
        RSA2.jwk_with_kid("evil"),
    ]))
    .await;
    let cfg = IssuerConfig {
        jwks_min_refetch_seconds: 1,
        ..jwks_issuer(&server, &[Algorithm::RS256])
    };
    let v = verifier(&[cfg]).await;
    let c = claims(IDP, "mallory");

    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    h.jku = Some(attacker.url.clone());
    assert_eq!(
        refused(&v, &RSA2.sign_with(&h, &c)).await,
        AuthError::BadSignature
    );

    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("rsa1".into());
    h.x5u = Some(attacker.url.clone());
    h.jwk = Some(serde_json::from_value(RSA2.jwk_with_kid("rsa1")).unwrap());
    h.x5c = Some(vec![URL_SAFE_NO_PAD.encode(b"not a certificate")]);
    assert_eq!(
        refused(&v, &RSA2.sign_with(&h, &c)).await,
        AuthError::BadSignature
    );

    let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("evil".into());
    h.jku = Some(attacker.url.clone());
    assert_eq!(
        refused(&v, &RSA2.sign_with(&h, &c)).await,
        AuthError::UnknownKey
    );

    assert_eq!(attacker.hits(), 0, "the attacker's JWKS was never fetched");
}

// ---- refused tokens ---------------------------------------------------------------------

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn alg_none_is_refused() {
    let v = verifier(&[static_issuer(IDP, &RSA1, Algorithm::RS256)]).await;
    let payload = b64(&claims(IDP, "alice"));
    for alg in ["none", "None", "HS512", "PS256"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            let err = refused(&v, &token).await;
            assert!(
                matches!(err, AuthError::Malformed | AuthError::AlgorithmNotAllowed),
                "{alg}: {err:?}"
            );
            assert_eq!(err.code(), "unauthenticated");
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_rsa_public_key_is_refused() {
    // Key confusion: the RSA public key PEM used as an HMAC secret, against RS256 issuers.
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let static_rs = static_issuer("https://static.test/", &RSA1, Algorithm::RS256);
    let v = verifier(&[static_rs, jwks_issuer(&server, &[Algorithm::RS256])]).await;
    for iss in ["https://static.test/", IDP] {
        let token = hs256(RSA1.public_pem.as_bytes(), &claims(iss, "mallory"));
        let err = refused(&v, &token).await;
        assert_eq!(
            (err.clone(), err.code()),
            (AuthError::AlgorithmNotAllowed, "unauthenticated")
        );
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("rsa1".into());
        let token = jsonwebtoken::encode(
            &h,
            &claims(iss, "mallory"),
            &jsonwebtoken::EncodingKey::from_secret(RSA1.public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(refused(&v, &token).await, AuthError::AlgorithmNotAllowed);
    }
}

#[tokio::test]
async fn invalid_claims_are_refused() {
    let v = verifier(&[static_issuer(IDP, &RSA1, Algorithm::RS256)]).await;
    let base = claims(IDP, "alice");
    let t = now();
    let cases: Vec<(&str, Value, AuthError)> = vec![
        (
            "wrong iss",
            with(base.clone(), json!({"iss": "https://evil.test/"})),
            AuthError::UnknownIssuer,
        ),
        (
            "iss not exact",
            with(base.clone(), json!({"iss": "https://idp.test"})),
            AuthError::UnknownIssuer,
        ),
        (
            "missing iss",
            without(base.clone(), "iss"),
            AuthError::Invalid("the iss claim is required"),
        ),
        (
            "array iss",
            with(base.clone(), json!({"iss": [IDP]})),
            AuthError::Invalid("the iss claim must be a string"),
        ),
        (
            "wrong aud",
            with(base.clone(), json!({"aud": "other"})),
            AuthError::Invalid("the token audience is not accepted"),
        ),
        (
            "wrong aud list",
            with(base.clone(), json!({"aud": ["a", "b"]})),
            AuthError::Invalid("the token audience is not accepted"),
        ),
        (
            "missing aud",
            without(base.clone(), "aud"),
            AuthError::Invalid("the aud claim is missing or malformed"),
        ),
        (
            "missing exp",
            without(base.clone(), "exp"),
            AuthError::Invalid("the exp claim is missing or not a number"),
        ),
        (
            "string exp",
            with(base.clone(), json!({"exp": "9999999999"})),
            AuthError::Invalid("the exp claim is missing or not a number"),
        ),
        (
            "expired",
            with(base.clone(), json!({"exp": t - 120})),
            AuthError::Expired,
        ),
        (
            "nbf in future",
            with(base.clone(), json!({"nbf": t + 3600})),
            AuthError::NotYetValid,
        ),
        (
            "string nbf",
            with(base.clone(), json!({"nbf": "0"})),
            AuthError::Invalid("a claim has the wrong type"),
        ),
        (
            "missing sub",
            without(base.clone(), "sub"),
            AuthError::Invalid("the sub claim must be a non-empty string"),
        ),
        (
            "empty sub",
            with(base.clone(), json!({"sub": ""})),
            AuthError::Invalid("the sub claim must be a non-empty string"),
        ),
        (
            "numeric sub",
            with(base.clone(), json!({"sub": 42})),
            AuthError::Invalid("the sub claim must be a non-empty string"),
        ),
        // Control characters: PostgreSQL cannot store NUL, and logs and audit lines must not
        // be forgeable by a line feed in an identity.
        (
            "NUL in sub",
            with(base.clone(), json!({"sub": "ali\u{0}ce"})),
            AuthError::Invalid("the sub claim must not contain control characters"),
        ),
        (
            "line feed in sub",
            with(base.clone(), json!({"sub": "alice\nadmin"})),
            AuthError::Invalid("the sub claim must not contain control characters"),
        ),
        (
            "NUL in a group",
            with(base.clone(), json!({"groups": ["users", "pre\u{0}mium"]})),
            AuthError::Invalid("the groups claim must not contain control characters"),
        ),
        (
            "DEL in the one group",
            with(base.clone(), json!({"groups": "users\u{7f}"})),
            AuthError::Invalid("the groups claim must not contain control characters"),
        ),
        (
            "NUL in jti",
            with(base.clone(), json!({"jti": "abc\u{0}"})),
            AuthError::Invalid("the jti claim must not contain control characters"),
        ),
    ];
    for (name, c, expected) in cases {
        let err = refused(&v, &RSA1.sign(&c)).await;
        assert_eq!(err, expected, "{name}");
        let code = if expected == AuthError::Expired {
            "token_expired"
        } else {
            "unauthenticated"
        };
        assert_eq!(err.code(), code, "{name}");
    }

    // Accepted: an aud list intersecting the audiences; expiry and nbf within the 30 s leeway.
    let ok = with(
        base.clone(),
        json!({"aud": ["x", "presignd"], "exp": t - 5, "nbf": t + 5}),
    );
    v.verify(&RSA1.sign(&ok)).await.unwrap();
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let v = verifier(&[static_issuer(IDP, &RSA1, Algorithm::RS256)]).await;
    let good = RSA1.sign(&claims(IDP, "alice"));
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();

    let cases = [
        String::new(),
        "garbage".to_string(),
        format!("{header}.{payload}"),
        format!("{header}.{payload}.{sig}.extra"),
        format!("{header}.{payload}.{sig}=="), // padded base64
        format!("{header}.pay+load/.{sig}"),   // standard, not url-safe, alphabet
        format!("{header}.%%%.{sig}"),
        format!("{header}.{}.{sig}", URL_SAFE_NO_PAD.encode(b"not json")),
        format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode(b"{\"alg\":")),
        format!("{header}.A.{sig}"), // invalid base64 length
    ];
    for token in &cases {
        assert_eq!(refused(&v, token).await, AuthError::Malformed, "{token}");
    }

    // A valid-looking token whose payload was swapped.
    let forged = format!("{header}.{}.{sig}", b64(&claims(IDP, "admin")));
    assert_eq!(refused(&v, &forged).await, AuthError::BadSignature);

    let big = with(claims(IDP, "alice"), json!({"pad": "x".repeat(9 * 1024)}));
    let err = refused(&v, &RSA1.sign(&big)).await;
    assert_eq!(
        (err.clone(), err.code()),
        (AuthError::TooLarge, "unauthenticated")
    );
}

#[test]
fn error_codes_and_details_are_safe() {
    assert_eq!(AuthError::Expired.code(), "token_expired");
    for e in [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::UnknownKey,
    ] {
        assert_eq!(e.code(), "unauthenticated");
        assert!(!e.detail().is_empty());
    }
}

// ---- bearer extraction ------------------------------------------------------------------

fn headers(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    map
}

#[test]
fn bearer_extraction() {
    assert_eq!(bearer_token(&headers(&["Bearer aa.bb.cc"])), Ok("aa.bb.cc"));
    assert_eq!(bearer_token(&headers(&["bearer aa.bb.cc"])), Ok("aa.bb.cc"));
    assert_eq!(
        bearer_token(&headers(&["BEARER  aa.bb.cc "])),
        Ok("aa.bb.cc")
    );
    assert_eq!(bearer_token(&headers(&[])), Err(AuthError::Missing));
    assert_eq!(
        bearer_token(&headers(&["Bearer aa.bb.cc", "Bearer aa.bb.cc"])),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        bearer_token(&headers(&["Basic YWxpY2U6cHc="])),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        bearer_token(&headers(&["Bearer"])),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        bearer_token(&headers(&["Bearer "])),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        bearer_token(&headers(&["Bearer aa.bb.cc dd"])),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        bearer_token(&headers(&["Bearer aa.bb"])),
        Err(AuthError::Malformed)
    );
    let big = format!("Bearer aa.{}.cc", "b".repeat(9 * 1024));
    assert_eq!(bearer_token(&headers(&[&big])), Err(AuthError::TooLarge));
}

// ---- configuration ----------------------------------------------------------------------

fn problem_keys(cfg: &IssuerConfig) -> Vec<String> {
    let mut keys: Vec<String> = cfg
        .validate("auth.issuers[0]")
        .into_iter()
        .map(|p| p.key)
        .collect();
    keys.sort();
    keys
}

#[test]
fn config_validation_names_the_key() {
    let ok_rs = static_issuer(IDP, &RSA1, Algorithm::RS256);
    assert_eq!(problem_keys(&ok_rs), Vec::<String>::new());
    assert_eq!(problem_keys(&hs_issuer(IDP)), Vec::<String>::new());
    let ok_jwks = IssuerConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        jwks_url: Some("https://idp.example.com/.well-known/jwks.json".into()),
        ..issuer_config(IDP)
    };
    assert_eq!(problem_keys(&ok_jwks), Vec::<String>::new());
    for url in [
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/j",
        "http://127.1.2.3/j",
    ] {
        let cfg = IssuerConfig {
            jwks_url: Some(url.into()),
            ..ok_jwks.clone()
        };
        assert_eq!(problem_keys(&cfg), Vec::<String>::new(), "{url}");
    }

    let k = |field: &str| format!("auth.issuers[0].{field}");
    let cases: Vec<(&str, IssuerConfig, Vec<String>)> = vec![
        (
            "empty issuer and audiences",
            IssuerConfig {
                issuer: String::new(),
                audiences: vec![],
                ..ok_rs.clone()
            },
            vec![k("audiences"), k("issuer")],
        ),
        (
            "no algorithms",
            IssuerConfig {
                algorithms: vec![],
                ..ok_jwks.clone()
            },
            vec![k("algorithms")],
        ),
        (
            "no key source",
            IssuerConfig {
                public_key_pem: None,
                ..ok_rs.clone()
            },
            vec![k("jwks_url")],
        ),
        (
            "two key sources",
            IssuerConfig {
                jwks_url: ok_jwks.jwks_url.clone(),
                ..ok_rs.clone()
            },
            vec![k("public_key_pem")],
        ),
        (
            "HS256 without secret",
            IssuerConfig {
                algorithms: vec![Algorithm::RS256, Algorithm::HS256],
                ..ok_jwks.clone()
            },
            vec![k("algorithms")],
        ),
        (
            "secret with RS256",
            IssuerConfig {
                algorithms: vec![Algorithm::HS256, Algorithm::RS256],
                ..hs_issuer(IDP)
            },
            vec![k("algorithms")],
        ),
        (
            "short secret",
            IssuerConfig {
                hs256_secret: Some(SecretString::from("short")),
                ..hs_issuer(IDP)
            },
            vec![k("hs256_secret")],
        ),
        (
            "plain http to a remote host",
            IssuerConfig {
                jwks_url: Some("http://idp.example.com/jwks".into()),
                ..ok_jwks.clone()
            },
            vec![k("jwks_url")],
        ),
        (
            "http to a lookalike host",
            IssuerConfig {
                jwks_url: Some("http://localhost.evil.com/jwks".into()),
                ..ok_jwks.clone()
            },
            vec![k("jwks_url")],
        ),
        (
            "not a URL",
            IssuerConfig {
                jwks_url: Some("idp/jwks".into()),
                ..ok_jwks.clone()
            },
            vec![k("jwks_url")],
        ),
        (
            "ftp",
            IssuerConfig {
                jwks_url: Some("ftp://idp.example.com/jwks".into()),
                ..ok_jwks.clone()
            },
            vec![k("jwks_url")],
        ),
        (
            "EC key for RS256",
            IssuerConfig {
                public_key_pem: Some(EC.public_pem.into()),
                ..ok_rs.clone()
            },
            vec![k("public_key_pem")],
        ),
        (
            "RSA key also for ES256",
            IssuerConfig {
                algorithms: vec![Algorithm::RS256, Algorithm::ES256],
                ..ok_rs.clone()
            },
            vec![k("public_key_pem")],
        ),
        (
            "not a PEM",
            IssuerConfig {
                public_key_pem: Some("hello".into()),
                ..ok_rs.clone()
            },
            vec![k("public_key_pem")],
        ),
        (
            "missing key file",
            IssuerConfig {
                public_key_pem: None,
                public_key_file: Some("/nonexistent/key.pem".into()),
                ..ok_rs.clone()
            },
            vec![k("public_key_file")],
        ),
        (
            "leeway too large",
            IssuerConfig {
                leeway_seconds: 301,
                ..ok_rs.clone()
            },
            vec![k("leeway_seconds")],
        ),
        (
            "refresh too often",
            IssuerConfig {
                jwks_refresh_seconds: 9,
                ..ok_jwks.clone()
            },
            vec![k("jwks_refresh_seconds")],
        ),
        (
            "unreadable signing key",
            IssuerConfig {
                signing_key_file: Some("/nonexistent/key.pem".into()),
                ..ok_rs.clone()
            },
            vec![k("signing_key_file")],
        ),
    ];
    for (name, cfg, expected) in cases {
        assert_eq!(problem_keys(&cfg), expected, "{name}");
    }

    let ok_file = IssuerConfig {
        algorithms: vec![Algorithm::EdDSA],
        public_key_file: Some(jwt::fixture_path("ed25519.pub.pem")),
        signing_key_file: Some(jwt::fixture_path("ed25519.pem")),
        ..issuer_config(IDP)
    };
    assert_eq!(problem_keys(&ok_file), Vec::<String>::new());
}

#[test]
fn config_deserializes_with_defaults_and_never_shows_the_secret() {
    let cfg: IssuerConfig = toml::from_str(&format!(
        r#"
        issuer = "{IDP}"
        audiences = ["presignd"]
        algorithms = ["HS256"]
        hs256_secret = "{HS_SECRET}"
        "#
    ))
    .unwrap();
    assert_eq!(cfg.groups_claim, "groups");
    assert_eq!(cfg.mfa_claim, "amr");
    assert_eq!(
        (
            cfg.leeway_seconds,
            cfg.jwks_refresh_seconds,
            cfg.jwks_min_refetch_seconds
        ),
        (30, 300, 30)
    );
    assert!(!format!("{cfg:?}").contains(HS_SECRET));
    let serialized = serde_json::to_string(&cfg).unwrap();
    assert!(
        !serialized.contains(HS_SECRET) && !serialized.contains("hs256_secret"),
        "{serialized}"
    );

    let all: Vec<Algorithm> = toml::from_str::<IssuerConfig>(
        r#"issuer = "x"
        audiences = ["a"]
        algorithms = ["HS256", "RS256", "ES256", "EdDSA"]"#,
    )
    .unwrap()
    .algorithms;
    assert_eq!(
        all,
        [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA
        ]
    );
    for bad in [
        r#"issuer = "x"
        audiences = ["a"]
        algorithms = ["none"]"#,
        r#"issuer = "x"
        audiences = ["a"]
        algorithms = ["HS512"]"#,
        r#"issuer = "x"
        audiences = ["a"]
        algorithms = ["RS256"]
        jwks_uri = "https://typo.example/""#,
    ] {
        assert!(toml::from_str::<IssuerConfig>(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn verifier_refuses_invalid_configuration() {
    let mixed = IssuerConfig {
        algorithms: vec![Algorithm::HS256, Algorithm::RS256],
        ..hs_issuer(IDP)
    };
    match Verifier::new(&[mixed], http_client()).await {
        Err(AuthSetupError::Config(problems)) => {
            assert_eq!(problems[0].key, "auth.issuers[0].algorithms");
        }
        other => panic!("expected a config error, got {:?}", other.err()),
    }
    let dup = [hs_issuer(IDP), hs_issuer(IDP)];
    assert!(matches!(
        Verifier::new(&dup, http_client()).await,
        Err(AuthSetupError::DuplicateIssuer(_))
    ));
}

// ---- dev tokens -------------------------------------------------------------------------

#[tokio::test]
async fn dev_tokens_round_trip() {
    let groups = vec!["users".to_string(), "moderators".to_string()];
    let ttl = Duration::from_secs(15 * 60);

    let hs = IssuerConfig {
        groups_claim: "realm_access.roles".into(),
        ..hs_issuer("https://hs.test/")
    };
    let rs = IssuerConfig {
        algorithms: vec![Algorithm::RS256],
        public_key_file: Some(jwt::fixture_path("rsa1.pub.pem")),
        signing_key_file: Some(jwt::fixture_path("rsa1.pem")),
        groups_claim: "cognito:groups".into(),
        ..issuer_config("https://rs.test/")
    };
    let ed = IssuerConfig {
        algorithms: vec![Algorithm::EdDSA],
        public_key_pem: Some(ED.public_pem.into()),
        signing_key_file: Some(jwt::fixture_path("ed25519.pem")),
        groups_claim: "https://example.com/groups".into(),
        ..issuer_config("https://ed.test/")
    };
    let issuers = [hs.clone(), rs.clone(), ed.clone()];
    let v = verifier(&issuers).await;

    for (cfg, mfa) in [(&hs, true), (&rs, false), (&ed, true)] {
        let token = mint_dev_token(cfg, "alice", &groups, mfa, ttl, now()).unwrap();
        let p = v.verify(&token).await.unwrap();
        assert_eq!(
            (p.sub.as_str(), p.iss.as_str(), &p.groups, p.mfa),
            ("alice", cfg.issuer.as_str(), &groups, mfa)
        );
        assert_eq!(p.expires_at - p.issued_at.unwrap(), 900);
        assert!(p.jti.is_some_and(|j| uuid::Uuid::parse_str(&j).is_ok()));
    }

    // A minted token still expires.
    let old = mint_dev_token(
        &hs,
        "alice",
        &groups,
        false,
        Duration::from_secs(60),
        now() - 3600,
    )
    .unwrap();
    assert_eq!(refused(&v, &old).await, AuthError::Expired);

    let no_key = static_issuer("https://pub.test/", &RSA1, Algorithm::RS256);
    assert!(matches!(
        mint_dev_token(&no_key, "alice", &groups, false, ttl, now()),
        Err(DevTokenError::NoSigningKey)
    ));

    let with_plain = [no_key.clone(), rs.clone(), hs.clone()];
    assert_eq!(
        find_dev_issuer(&with_plain, None).map(|i| i.issuer.as_str()),
        Some("https://rs.test/")
    );
    assert_eq!(
        find_dev_issuer(&with_plain, Some("https://hs.test/")).map(|i| i.issuer.as_str()),
        Some("https://hs.test/")
    );
    assert!(find_dev_issuer(&with_plain, Some("https://nope.test/")).is_none());
    assert!(find_dev_issuer(&[no_key], None).is_none());
}
