//! The verified-token cache (`auth.token_cache_entries`): a signature is checked once per
//! token, yet an expired, tampered, revoked or re-keyed token is never accepted from it.
//! Real RSA keys from a real JWKS endpoint; revocations through the admin API of a running app.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::app::{Backend, TestApp, avatars};
use common::jwt::{JwksServer, RSA1, RSA2, claims, http_client, issuer_config, jwks, now};
use presignd::auth::{AuthError, Verifier, VerifierOptions};
use presignd::config::{Algorithm, IssuerConfig};
use serde_json::json;

const IDP: &str = "https://idp.test/";

fn rs256_issuer(server: &JwksServer, leeway_seconds: u64) -> IssuerConfig {
    IssuerConfig {
        algorithms: vec![Algorithm::RS256],
        jwks_url: Some(server.url.clone()),
        leeway_seconds,
        ..issuer_config(IDP)
    }
}

/// A verifier with a cache of `entries`, and its (hits, misses) counters.
async fn cached_verifier(
    issuer: IssuerConfig,
    entries: usize,
) -> (Verifier, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (hits, misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (h, m) = (Arc::clone(&hits), Arc::clone(&misses));
    let options = VerifierOptions {
        token_cache_entries: entries,
        token_cache_observer: Some(Arc::new(move |result: &'static str| {
            match result {
                "hit" => h.fetch_add(1, Ordering::Relaxed),
                _ => m.fetch_add(1, Ordering::Relaxed),
            };
        })),
        ..VerifierOptions::default()
    };
    let v = Verifier::with_options(&[issuer], http_client(), options)
        .await
        .unwrap();
    (v, hits, misses)
}

#[tokio::test]
async fn a_cached_token_is_not_verified_again() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let (v, hits, misses) = cached_verifier(rs256_issuer(&server, 30), 100).await;
    let mut c = claims(IDP, "alice");
    c["groups"] = json!(["users"]);
    c["jti"] = json!("j-1");
    let token = RSA1.sign(&c);
    let first = v.verify(&token).await.unwrap();
    assert_eq!(v.signatures_checked(), 1);
    for _ in 0..10 {
        assert_eq!(v.verify(&token).await.unwrap(), first, "the same principal");
    }
    assert_eq!(v.signatures_checked(), 1, "hits check no signature");
    assert_eq!(
        (hits.load(Ordering::Relaxed), misses.load(Ordering::Relaxed)),
        (10, 1)
    );
    assert_eq!(first.groups, ["users"]);
    assert_eq!(first.jti.as_deref(), Some("j-1"));

    // Without the cache every request pays the signature check.
    let (uncached, _, _) = cached_verifier(rs256_issuer(&server, 30), 0).await;
    for _ in 0..3 {
        uncached.verify(&token).await.unwrap();
    }
    assert_eq!(uncached.signatures_checked(), 3);
    assert_eq!(uncached.cached_tokens(), 0);
}

#[tokio::test]
async fn a_tampered_token_is_never_served_from_the_cache() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let (v, hits, _) = cached_verifier(rs256_issuer(&server, 30), 100).await;
    let token = RSA1.sign(&claims(IDP, "alice"));
    v.verify(&token).await.unwrap();

    // Same header and claims, one signature character changed. A middle one: every middle
    // character carries 6 signature bits, so the base64url stays canonical and only the
    // signature check can catch it (the last character's spare bits must stay zero: changing
    // it can make the token merely malformed).
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
    let sig: String = sig.into_iter().collect();
    let tampered = format!("{head}.{sig}");
    // Another subject's claims under alice's signature.
    let (header, _) = token.split_once('.').unwrap();
    let (_, signature) = token.rsplit_once('.').unwrap();
    let other_claims = RSA1.sign(&claims(IDP, "mallory"));
    let payload = other_claims.split('.').nth(1).unwrap();
    let swapped = format!("{header}.{payload}.{signature}");

    for _ in 0..3 {
        assert_eq!(v.verify(&tampered).await, Err(AuthError::BadSignature));
        assert_eq!(v.verify(&swapped).await, Err(AuthError::BadSignature));
    }
    assert_eq!(
        v.signatures_checked(),
        7,
        "every tampered attempt was checked"
    );
    assert_eq!(hits.load(Ordering::Relaxed), 0);
    assert_eq!(v.cached_tokens(), 1, "failures are not cached");
    assert_eq!(v.verify(&token).await.unwrap().sub, "alice");
    assert_eq!(hits.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_cached_token_expires_exactly_when_the_verifier_says() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let leeway = 1;
    let (v, hits, _) = cached_verifier(rs256_issuer(&server, leeway), 100).await;
    let start = now();
    let exp = start + 1;
    let mut c = claims(IDP, "alice");
    c["exp"] = json!(exp);
    let token = RSA1.sign(&c);
    v.verify(&token).await.unwrap();
    let last_second = exp + leeway as i64;

    // Poll until refused: every acceptance happened no later than exp + leeway, and every
    // one came from the cache.
    let refused_at = loop {
        let before = now();
        match v.verify(&token).await {
            Ok(_) => {
                assert!(
                    before <= last_second,
                    "accepted at {before}, past {last_second}"
                );
                assert_eq!(v.signatures_checked(), 1, "accepted from the cache");
            }
            Err(e) => {
                assert_eq!(e, AuthError::Expired);
                break now();
            }
        }
        assert!(now() < start + 10, "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused_at > last_second,
        "refused at {refused_at}, within the leeway"
    );
    assert!(
        hits.load(Ordering::Relaxed) > 0,
        "the cache was used while valid"
    );
    // The stale entry is gone: the refusal came from the full check, and stays.
    assert_eq!(v.signatures_checked(), 2);
    assert_eq!(v.verify(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn a_jwks_change_invalidates_cached_tokens() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let (v, hits, _) = cached_verifier(rs256_issuer(&server, 30), 100).await;
    let token = RSA1.sign(&claims(IDP, "alice"));
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(hits.load(Ordering::Relaxed), 1);

    // The same document again: entries stay.
    v.refresh().await;
    v.verify(&token).await.unwrap();
    assert_eq!(hits.load(Ordering::Relaxed), 2);

    // The IdP drops the key (say it leaked): its tokens stop working at the next refresh,
    // cached or not.
    server.set_jwks(jwks(&[RSA2.jwk()]));
    v.refresh().await;
    assert_eq!(v.verify(&token).await, Err(AuthError::UnknownKey));
    assert_eq!(hits.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn the_cache_stays_within_its_bound() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let (v, _, _) = cached_verifier(rs256_issuer(&server, 30), 20).await;
    for i in 0..100 {
        v.verify(&RSA1.sign(&claims(IDP, &format!("user-{i}"))))
            .await
            .unwrap();
        assert!(v.cached_tokens() <= 20, "{} cached", v.cached_tokens());
    }
    assert!(
        v.cached_tokens() >= 10,
        "the cache is used: {}",
        v.cached_tokens()
    );
}

async fn revoked_despite_a_cache_hit(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let metrics = app.state.metrics();
    let hits = || {
        metrics
            .jwt_cache_lookups_total
            .with_label_values(&["hit"])
            .get()
    };
    let admin = app.token("root", &["presignd-admins"], false);
    let alice = app.token("alice", &["users"], false);
    let get = json!({"operation": "get", "key": "alice/a.png"});
    assert_eq!(app.presign(&alice, "avatars", get.clone()).await.0, 200);
    assert_eq!(app.presign(&alice, "avatars", get.clone()).await.0, 200);
    let before = hits();
    assert!(before >= 1, "alice's second request was a cache hit");

    let (status, body) = app
        .post(&admin, "/v1/admin/revocations", json!({"sub": "alice"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, problem) = app.presign(&alice, "avatars", get.clone()).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{problem}"
    );
    assert_eq!(hits(), before + 1, "the refused request was a cache hit");
    assert_eq!(
        metrics
            .jwt_verifications_total
            .with_label_values(&[common::app::ISSUER, "revoked"])
            .get(),
        1
    );
    app.finish().await;
}
on_both_backends!(
    a_revoked_subject_is_refused_despite_a_cache_hit,
    revoked_despite_a_cache_hit
);
