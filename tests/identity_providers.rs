//! Tokens shaped as each identity provider issues them (claims and header as its documentation
//! shows them), signed with real keys and verified through a real JWKS endpoint, with the
//! issuer configuration `docs/guides/identity-providers.md` recommends for that provider.

#![allow(clippy::unwrap_used)]

mod common;

use common::jwt::{JwksServer, RSA1, http_client, issuer_config, jwks, now};
use presignd::Principal;
use presignd::auth::{AuthError, Verifier};
use presignd::config::{Algorithm, IssuerConfig};
use serde_json::{Value, json};

fn base(server: &JwksServer, issuer: &str, audiences: &[&str]) -> IssuerConfig {
    IssuerConfig {
        algorithms: vec![Algorithm::RS256],
        jwks_url: Some(server.url.clone()),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        ..issuer_config(issuer)
    }
}

async fn verify(cfg: IssuerConfig, claims: &Value) -> Result<Principal, AuthError> {
    let v = Verifier::new(&[cfg], http_client()).await.unwrap();
    v.verify(&RSA1.sign(claims)).await
}

fn times() -> (i64, i64) {
    let t = now();
    (t, t + 3600)
}

#[tokio::test]
async fn auth0_namespaced_groups_and_an_audience_array() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let iss = "https://acme.eu.auth0.com/";
    let cfg = IssuerConfig {
        groups_claim: "https://presignd.acme.com/groups".into(),
        ..base(&server, iss, &["https://api.acme.com"])
    };
    let (iat, exp) = times();
    // An Auth0 access token for a custom API: aud is an array (the API and /userinfo), the
    // groups come from an Action under a namespaced claim, amr lists mfa after MFA.
    let token = json!({
        "iss": iss, "sub": "auth0|64f1c2d3e4", "aud": ["https://api.acme.com", "https://acme.eu.auth0.com/userinfo"],
        "iat": iat, "exp": exp, "azp": "k3LmN0pQ", "scope": "openid profile",
        "https://presignd.acme.com/groups": ["premium", "users"], "amr": ["mfa"]
    });
    let p = verify(cfg.clone(), &token).await.unwrap();
    assert_eq!(
        (p.sub.as_str(), p.groups, p.mfa),
        (
            "auth0|64f1c2d3e4",
            vec!["premium".to_string(), "users".into()],
            true
        )
    );
    // A token for another API is refused.
    let mut other = token.clone();
    other["aud"] = json!(["https://other.example"]);
    assert!(verify(cfg, &other).await.is_err());
}

#[tokio::test]
async fn cognito_id_tokens_and_access_tokens() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let iss = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
    let client_id = "5q1k2m3n4o5p6q7r8s9t0u1v2w";
    let (iat, exp) = times();
    // ID token: aud is the app client id.
    let id_cfg = IssuerConfig {
        groups_claim: "cognito:groups".into(),
        ..base(&server, iss, &[client_id])
    };
    let id_token = json!({
        "iss": iss, "sub": "8c2f5e1a-1b2c-4d3e-9f00-aa11bb22cc33", "aud": client_id,
        "token_use": "id", "auth_time": iat, "iat": iat, "exp": exp,
        "cognito:username": "alice", "cognito:groups": ["premium"], "email": "alice@example.com"
    });
    let p = verify(id_cfg.clone(), &id_token).await.unwrap();
    assert_eq!(p.groups, ["premium"]);
    // Access token: no aud at all; the client id is in client_id. Refused with the default
    // audience claim, accepted with audience_claim = "client_id".
    let access_token = json!({
        "iss": iss, "sub": "8c2f5e1a-1b2c-4d3e-9f00-aa11bb22cc33", "client_id": client_id,
        "token_use": "access", "scope": "aws.cognito.signin.user.admin", "auth_time": iat,
        "iat": iat, "exp": exp, "jti": "0f3c", "username": "alice", "cognito:groups": ["premium"]
    });
    assert!(verify(id_cfg.clone(), &access_token).await.is_err());
    let access_cfg = IssuerConfig {
        audience_claim: "client_id".into(),
        ..id_cfg
    };
    let p = verify(access_cfg.clone(), &access_token).await.unwrap();
    assert_eq!(
        (p.groups, p.jti.as_deref()),
        (vec!["premium".to_string()], Some("0f3c"))
    );
    // Another app client's access token is refused.
    let mut other = access_token.clone();
    other["client_id"] = json!("someotherclient");
    assert_eq!(
        verify(access_cfg.clone(), &other).await.unwrap_err(),
        AuthError::Invalid("the token audience is not accepted")
    );
    // And one that also carries an aud for another API (the third review).
    let mut elsewhere = access_token.clone();
    elsewhere["aud"] = json!("https://other-api.example");
    assert!(verify(access_cfg.clone(), &elsewhere).await.is_err());
    // So is one without the claim.
    let mut none = access_token;
    none.as_object_mut().unwrap().remove("client_id");
    assert!(verify(access_cfg, &none).await.is_err());
}

#[tokio::test]
async fn keycloak_group_paths_and_an_audience_mapper() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let iss = "https://sso.acme.com/realms/acme";
    let cfg = IssuerConfig {
        groups_strip_prefix: Some("/".into()),
        ..base(&server, iss, &["presignd"])
    };
    let (iat, exp) = times();
    // The "Group Membership" mapper with "Full group path" on (the default) writes /premium;
    // an "Audience" mapper adds presignd to aud next to account.
    let token = json!({
        "iss": iss, "sub": "f3a1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "aud": ["presignd", "account"],
        "typ": "Bearer", "azp": "web", "iat": iat, "exp": exp, "acr": "1",
        "realm_access": {"roles": ["offline_access", "default-roles-acme"]},
        "groups": ["/premium", "/staff/editors"], "preferred_username": "alice"
    });
    let p = verify(cfg, &token).await.unwrap();
    assert_eq!(p.groups, ["premium", "staff/editors"]);
}

#[tokio::test]
async fn entra_id_group_object_ids_with_aliases() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let iss = format!("https://login.microsoftonline.com/{tenant}/v2.0");
    let premium = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
    let cfg = IssuerConfig {
        group_aliases: [(premium.to_string(), "premium".to_string())].into(),
        ..base(&server, &iss, &["api://presignd"])
    };
    let (iat, exp) = times();
    let token = json!({
        "iss": iss, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "aud": "api://presignd",
        "tid": tenant, "oid": "00000000-0000-0000-66f3-3332eca7ea81", "ver": "2.0",
        "iat": iat, "nbf": iat, "exp": exp, "azp": "6cb04018-a3f5-46a7-b995-940c78f5aef3",
        "scp": "files.read", "groups": [premium, "9a8b7c6d-0000-4000-8000-000000000000"],
        "amr": ["pwd", "mfa"]
    });
    let p = verify(cfg, &token).await.unwrap();
    assert_eq!(
        (p.groups, p.mfa),
        (
            vec![
                premium.to_string(),
                "premium".into(),
                "9a8b7c6d-0000-4000-8000-000000000000".into()
            ],
            true
        )
    );
}

#[tokio::test]
async fn okta_custom_authorization_server() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let iss = "https://acme.okta.com/oauth2/default";
    let cfg = base(&server, iss, &["api://default"]);
    let (iat, exp) = times();
    // A groups claim added to the authorization server (filter "Matches regex .*").
    let token = json!({
        "ver": 1, "jti": "AT.x1y2z3", "iss": iss, "aud": "api://default", "iat": iat, "exp": exp,
        "cid": "0oa1b2c3d4", "uid": "00u1a2b3c4", "scp": ["openid"], "auth_time": iat,
        "sub": "alice@acme.com", "groups": ["Everyone", "premium"], "amr": ["pwd", "mfa", "otp"]
    });
    let p = verify(cfg, &token).await.unwrap();
    assert_eq!(
        (p.sub.as_str(), p.groups, p.mfa),
        (
            "alice@acme.com",
            vec!["Everyone".to_string(), "premium".into()],
            true
        )
    );
}

#[tokio::test]
async fn google_id_tokens_carry_no_groups() {
    let server = JwksServer::start(jwks(&[RSA1.jwk()])).await;
    let iss = "https://accounts.google.com";
    let client = "1234567890-abc123def456.apps.googleusercontent.com";
    let cfg = base(&server, iss, &[client]);
    let (iat, exp) = times();
    let token = json!({
        "iss": iss, "azp": client, "aud": client, "sub": "110169484474386276334",
        "hd": "acme.com", "email": "alice@acme.com", "email_verified": true,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q", "iat": iat, "exp": exp
    });
    let p = verify(cfg, &token).await.unwrap();
    // No groups: rules for `*` (any signed-in user) apply, group rules do not.
    assert_eq!((p.groups.len(), p.mfa), (0, false));
}
