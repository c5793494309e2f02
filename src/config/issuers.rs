//! Per-issuer configuration (`[[auth.issuers]]`) and its startup validation.

use std::net::IpAddr;
use std::path::PathBuf;

use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// The JWS algorithms presignd accepts; anything else (including `none`) is refused.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    pub fn is_symmetric(self) -> bool {
        self == Algorithm::HS256
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub(crate) fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        match alg {
            jsonwebtoken::Algorithm::HS256 => Some(Algorithm::HS256),
            jsonwebtoken::Algorithm::RS256 => Some(Algorithm::RS256),
            jsonwebtoken::Algorithm::ES256 => Some(Algorithm::ES256),
            jsonwebtoken::Algorithm::EdDSA => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// The token's audience (`audience_claim`) must be, or contain, one of these.
    pub audiences: Vec<String>,
    /// The claim holding the audience: `aud` (the default, RFC 7519), or another for
    /// providers whose access tokens carry none — Amazon Cognito's carry `client_id`.
    #[serde(default = "default_audience_claim")]
    pub audience_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub jwks_url: Option<String>,
    /// Inline PEM public key.
    pub public_key_pem: Option<String>,
    pub public_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    pub hs256_secret: Option<SecretString>,
    /// Dev only: private key PEM used by `presignd token`.
    pub signing_key_file: Option<PathBuf>,
    /// Claim name, or a dotted path into nested objects (`realm_access.roles`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Removed from the start of each group (Keycloak's group paths: `/premium` → `premium`).
    #[serde(default)]
    pub groups_strip_prefix: Option<String>,
    /// Extra names for groups, `"<group as the token has it>" = "<name the rules use>"`
    /// (Microsoft Entra ID sends group object ids): a member of the first is also in the second.
    #[serde(default)]
    pub group_aliases: std::collections::BTreeMap<String, String>,
    /// Array claim that lists `"mfa"` when a second factor was used (RFC 8176 `amr`).
    #[serde(default = "default_mfa_claim")]
    pub mfa_claim: String,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_seconds: u64,
    #[serde(default = "default_min_refetch")]
    pub jwks_min_refetch_seconds: u64,
}

fn default_audience_claim() -> String {
    "aud".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_mfa_claim() -> String {
    "amr".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refetch() -> u64 {
    30
}

pub const MIN_HS256_SECRET_BYTES: usize = 32;
const MAX_LEEWAY_SECONDS: u64 = 300;
const MIN_REFRESH_SECONDS: u64 = 10;

impl IssuerConfig {
    /// All problems of this issuer; `at` is its own key, e.g. `auth.issuers[0]`.
    pub fn validate(&self, at: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(ConfigProblem {
                key: format!("{at}.{field}"),
                message,
            });
        };

        if self.issuer.is_empty() {
            problem("issuer", "must not be empty".into());
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            problem(
                "audiences",
                "must list at least one non-empty audience".into(),
            );
        }
        if self.algorithms.is_empty() {
            problem("algorithms", "must list at least one algorithm".into());
        }

        let sources: Vec<&str> = [
            ("jwks_url", self.jwks_url.is_some()),
            ("public_key_pem", self.public_key_pem.is_some()),
            ("public_key_file", self.public_key_file.is_some()),
            ("hs256_secret", self.hs256_secret.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        match sources.as_slice() {
            [] => problem(
                "jwks_url",
                "no key source: set one of jwks_url, public_key_pem, public_key_file, hs256_secret"
                    .into(),
            ),
            [_] => {}
            [first, rest @ ..] => {
                for name in rest {
                    problem(
                        name,
                        format!("conflicts with {first}: set exactly one key source"),
                    );
                }
            }
        }

        // Symmetric and asymmetric algorithms never share an issuer: that is how key
        // confusion (an RSA public key used as an HMAC secret) happens.
        let has_hs = self.algorithms.contains(&Algorithm::HS256);
        if let Some(secret) = &self.hs256_secret {
            if self.algorithms.iter().any(|a| !a.is_symmetric()) {
                problem(
                    "algorithms",
                    "with hs256_secret the only allowed algorithm is HS256".into(),
                );
            }
            if secret.expose_secret().len() < MIN_HS256_SECRET_BYTES {
                problem(
                    "hs256_secret",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                );
            }
        } else if has_hs {
            problem(
                "algorithms",
                "HS256 is allowed only with hs256_secret as the key source".into(),
            );
        }

        if let Some(url) = &self.jwks_url
            && let Err(message) = check_jwks_url(url)
        {
            problem("jwks_url", message);
        }

        match self.static_pem() {
            Ok(None) => {}
            Ok(Some((field, pem))) => {
                for alg in self.algorithms.iter().filter(|a| !a.is_symmetric()) {
                    if let Err(message) = decoding_key_from_pem(*alg, &pem) {
                        problem(field, message);
                    }
                }
            }
            Err((field, message)) => problem(field, message),
        }

        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            problem(
                "leeway_seconds",
                format!("must be at most {MAX_LEEWAY_SECONDS}"),
            );
        }
        if self.jwks_refresh_seconds < MIN_REFRESH_SECONDS {
            problem(
                "jwks_refresh_seconds",
                format!("must be at least {MIN_REFRESH_SECONDS}"),
            );
        }
        if self.jwks_min_refetch_seconds == 0 {
            // 0 would let every token with an unknown `kid` trigger a fetch from the IdP.
            problem("jwks_min_refetch_seconds", "must be at least 1".into());
        }
        if self.groups_claim.is_empty() {
            problem("groups_claim", "must not be empty".into());
        }
        if self.mfa_claim.is_empty() {
            problem("mfa_claim", "must not be empty".into());
        }
        if self.audience_claim.is_empty() {
            problem("audience_claim", "must not be empty".into());
        }
        if self.groups_strip_prefix.as_deref() == Some("") {
            problem("groups_strip_prefix", "must not be empty when set".into());
        }
        for (group, alias) in &self.group_aliases {
            if group.is_empty() || alias.is_empty() || alias == "*" {
                problem(
                    "group_aliases",
                    format!(
                        "{group:?} = {alias:?}: both sides must be non-empty, and the alias not \"*\""
                    ),
                );
            }
        }
        if let Some(path) = &self.signing_key_file
            && let Err(e) = std::fs::read(path)
        {
            problem(
                "signing_key_file",
                format!("cannot read {}: {e}", path.display()),
            );
        }
        problems
    }

    /// The static public key PEM (inline or from the file) with the field it came from.
    pub(crate) fn static_pem(
        &self,
    ) -> Result<Option<(&'static str, String)>, (&'static str, String)> {
        if let Some(pem) = &self.public_key_pem {
            return Ok(Some(("public_key_pem", pem.clone())));
        }
        if let Some(path) = &self.public_key_file {
            return std::fs::read_to_string(path)
                .map(|pem| Some(("public_key_file", pem)))
                .map_err(|e| {
                    (
                        "public_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                });
        }
        Ok(None)
    }
}

/// `https://` anywhere, or plain `http://` to a loopback host only (local IdPs in dev/test).
pub(crate) fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => {
            // host_str brackets IPv6 literals and normalizes IPv4 forms such as `127.1`.
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("must be https:// (plain http:// only to a loopback host)".into())
            }
        }
        _ => Err("must be https:// (plain http:// only to a loopback host)".into()),
    }
}

/// Parses a public key PEM for `alg`, checking the key really is of that type and curve.
pub(crate) fn decoding_key_from_pem(alg: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let bad = |what: &str| format!("not a valid {what} public key PEM for {alg:?}");
    match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| bad("RSA")),
        Algorithm::ES256 => match DecodingKey::from_ec_pem(pem.as_bytes()) {
            // An uncompressed P-256 point is 65 bytes; other curves would never verify.
            Ok(key) if key.try_get_as_bytes().is_ok_and(|b| b.len() == 65) => Ok(key),
            _ => Err(bad("EC P-256")),
        },
        Algorithm::EdDSA => match DecodingKey::from_ed_pem(pem.as_bytes()) {
            Ok(key) if key.try_get_as_bytes().is_ok_and(|b| b.len() == 32) => Ok(key),
            _ => Err(bad("Ed25519")),
        },
        Algorithm::HS256 => Err("HS256 takes hs256_secret, not a PEM".into()),
    }
}
