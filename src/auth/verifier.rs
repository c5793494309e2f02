//! Token verification against the configured issuers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Principal;
use crate::auth::bearer::check_compact_jws;
use crate::auth::claims;
use crate::auth::jwks::{self, KeyEntry};
use crate::auth::token_cache::{self, TokenCache};
use crate::auth::{AuthError, AuthSetupError};
use crate::config::{Algorithm, IssuerConfig, decoding_key_from_pem};

/// Verifies bearer JWTs. Cheap to clone: all state is behind one `Arc`.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.inner.issuers.keys().collect::<Vec<_>>())
            .field("ready", &self.ready())
            .finish()
    }
}

struct Inner {
    issuers: HashMap<String, Issuer>,
    http: reqwest::Client,
    /// `None` when `auth.token_cache_entries` is 0.
    cache: Option<TokenCache>,
    cache_observer: Option<TokenCacheObserver>,
    /// Bumped whenever any JWKS changes: cached verifications under older keys miss.
    key_epoch: Arc<AtomicU64>,
    /// Signatures checked so far (cache hits check none).
    signatures_checked: AtomicU64,
}

struct Issuer {
    name: String,
    groups_claim: String,
    groups_strip_prefix: Option<String>,
    group_aliases: std::collections::BTreeMap<String, String>,
    /// `(audience_claim, audiences)` when the audience is not `aud` (which `jsonwebtoken`
    /// checks).
    audience: Option<(String, Vec<String>)>,
    mfa_claim: String,
    /// `leeway_seconds`: what `jsonwebtoken` allows around `exp` and `nbf`.
    leeway: i64,
    /// One `Validation` per allowed algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    keys: Keys,
}

enum Keys {
    /// Configured key: the token's `kid` is irrelevant.
    Static(Vec<KeyEntry>),
    Jwks(Jwks),
}

struct Jwks {
    url: String,
    allowed: Vec<Algorithm>,
    /// `None` until the first successful fetch; a failed fetch never replaces it.
    set: ArcSwapOption<Vec<KeyEntry>>,
    /// SHA-256 of the document behind `set`: a different one bumps `key_epoch`.
    fingerprint: std::sync::Mutex<Option<[u8; 32]>>,
    key_epoch: Arc<AtomicU64>,
    /// Serializes on-demand refetches and remembers when the last one started.
    refetch: Mutex<Option<Instant>>,
    min_refetch: Duration,
    refresh: Duration,
    observer: Option<JwksObserver>,
}

/// Told `(issuer, "ok" | "error")` after every JWKS fetch (the metrics count them).
pub type JwksObserver = Arc<dyn Fn(&str, &'static str) + Send + Sync>;

/// Told `"hit"` or `"miss"` for every token looked up in the verified-token cache.
pub type TokenCacheObserver = Arc<dyn Fn(&'static str) + Send + Sync>;

/// What [`Verifier::with_options`] takes besides the issuers.
#[derive(Default, Clone)]
pub struct VerifierOptions {
    pub jwks_observer: Option<JwksObserver>,
    /// Verified tokens remembered (`auth.token_cache_entries`); 0 verifies every request.
    pub token_cache_entries: usize,
    pub token_cache_observer: Option<TokenCacheObserver>,
}

/// The only claim read before the signature is checked: it picks the issuer config.
#[derive(Deserialize)]
struct UnverifiedIss {
    iss: Option<Value>,
}

impl Verifier {
    /// Validates the issuers, loads static keys and fetches each JWKS once. A failed fetch
    /// is logged, not fatal: that issuer's tokens fail until its keys arrive.
    pub async fn new(
        issuers: &[IssuerConfig],
        http: reqwest::Client,
    ) -> Result<Verifier, AuthSetupError> {
        Verifier::with_jwks_observer(issuers, http, None).await
    }

    /// [`Verifier::new`], telling `observer` the outcome of every JWKS fetch (the first
    /// ones included).
    pub async fn with_jwks_observer(
        issuers: &[IssuerConfig],
        http: reqwest::Client,
        observer: Option<JwksObserver>,
    ) -> Result<Verifier, AuthSetupError> {
        let options = VerifierOptions {
            jwks_observer: observer,
            ..VerifierOptions::default()
        };
        Verifier::with_options(issuers, http, options).await
    }

    /// [`Verifier::new`] with a JWKS observer and the verified-token cache.
    pub async fn with_options(
        issuers: &[IssuerConfig],
        http: reqwest::Client,
        options: VerifierOptions,
    ) -> Result<Verifier, AuthSetupError> {
        let observer = options.jwks_observer;
        let key_epoch = Arc::new(AtomicU64::new(0));
        let problems: Vec<_> = issuers
            .iter()
            .enumerate()
            .flat_map(|(i, cfg)| cfg.validate(&format!("auth.issuers[{i}]")))
            .collect();
        if !problems.is_empty() {
            return Err(AuthSetupError::Config(problems));
        }

        let mut map = HashMap::new();
        for (i, cfg) in issuers.iter().enumerate() {
            let issuer = Issuer::from_config(
                cfg,
                &format!("auth.issuers[{i}]"),
                observer.clone(),
                Arc::clone(&key_epoch),
            )?;
            if map.insert(cfg.issuer.clone(), issuer).is_some() {
                return Err(AuthSetupError::DuplicateIssuer(cfg.issuer.clone()));
            }
        }
        let verifier = Verifier {
            inner: Arc::new(Inner {
                issuers: map,
                http,
                cache: TokenCache::new(options.token_cache_entries),
                cache_observer: options.token_cache_observer,
                key_epoch,
                signatures_checked: AtomicU64::new(0),
            }),
        };
        verifier.refresh().await;
        Ok(verifier)
    }

    /// Refetches every JWKS now, concurrently; a failed fetch keeps that issuer's last good set.
    pub async fn refresh(&self) {
        let mut fetches = tokio::task::JoinSet::new();
        for name in self.inner.issuers.keys() {
            let (verifier, name) = (self.clone(), name.clone());
            fetches.spawn(async move { verifier.refresh_issuer(&name).await });
        }
        while fetches.join_next().await.is_some() {}
    }

    async fn refresh_issuer(&self, name: &str) {
        if let Some(issuer) = self.inner.issuers.get(name)
            && let Keys::Jwks(jwks) = &issuer.keys
        {
            jwks.fetch_and_store(&self.inner.http, &issuer.name).await;
        }
    }

    /// Refreshes each JWKS every `jwks_refresh_seconds` (sooner while it has no keys yet).
    /// Aborting the handle stops all refreshes.
    pub fn spawn_background_refresh(&self) -> tokio::task::JoinHandle<()> {
        let verifier = self.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for name in verifier.inner.issuers.keys() {
                let (verifier, name) = (verifier.clone(), name.clone());
                tasks.spawn(async move { verifier.refresh_loop(&name).await });
            }
            while tasks.join_next().await.is_some() {}
        })
    }

    async fn refresh_loop(&self, name: &str) {
        let Some(issuer) = self.inner.issuers.get(name) else {
            return;
        };
        let Keys::Jwks(jwks) = &issuer.keys else {
            return;
        };
        loop {
            // Without any keys the issuer is unusable: retry at the refetch pace, not every 5 min.
            let wait = if jwks.set.load().is_some() {
                jwks.refresh
            } else {
                jwks.min_refetch
                    .min(jwks.refresh)
                    .max(Duration::from_secs(1))
            };
            tokio::time::sleep(wait).await;
            jwks.fetch_and_store(&self.inner.http, &issuer.name).await;
        }
    }

    /// True when every JWKS issuer has a key set.
    pub fn ready(&self) -> bool {
        self.inner
            .issuers
            .values()
            .all(|issuer| match &issuer.keys {
                Keys::Static(_) => true,
                Keys::Jwks(jwks) => jwks.set.load().is_some(),
            })
    }

    /// The token's (unverified) `iss` when it names a configured issuer: a label for metrics
    /// about a token that failed verification, never a basis for a decision.
    pub fn configured_issuer(&self, token: &str) -> Option<String> {
        check_compact_jws(token).ok()?;
        let unverified: UnverifiedIss =
            jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        match unverified.iss {
            Some(Value::String(iss)) if self.inner.issuers.contains_key(&iss) => Some(iss),
            _ => None,
        }
    }

    /// Signatures checked since start: requests answered from the token cache add nothing.
    pub fn signatures_checked(&self) -> u64 {
        self.inner.signatures_checked.load(Ordering::Relaxed)
    }

    /// Tokens in the verified-token cache (0 when it is disabled).
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// Verifies `token`, or finds it among the tokens verified before: same bytes, still
    /// within `exp`/`nbf` (with the issuer's leeway) and the key sets unchanged. Revocations
    /// are the caller's to check, on every request.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let Some(cache) = &self.inner.cache else {
            check_compact_jws(token)?;
            return self.verify_signed(token).await.map(|v| v.principal);
        };
        // Read before any key is looked up: a JWKS change during verification leaves the
        // entry under the old epoch, where it misses.
        let epoch = self.inner.key_epoch.load(Ordering::Acquire);
        let key = token_cache::digest(token);
        let now = crate::auth::revocations::unix_now();
        let observe = |result| {
            if let Some(observer) = &self.inner.cache_observer {
                observer(result);
            }
        };
        if let Some(principal) = cache.get(&key, now, epoch) {
            observe("hit");
            return Ok(Principal::clone(&principal));
        }
        // Only here: a hit is these exact bytes, which passed this check and more before.
        check_compact_jws(token)?;
        observe("miss");
        let verified = self.verify_signed(token).await?;
        let entry = token_cache::Entry {
            principal: Arc::new(verified.principal.clone()),
            valid_from: verified.valid_from,
            valid_until: verified.valid_until,
            epoch,
        };
        cache.insert(key, entry, now);
        Ok(verified.principal)
    }

    /// Full verification: header, issuer, key, signature and claims.
    async fn verify_signed(&self, token: &str) -> Result<Verified, AuthError> {
        // Parsed by jsonwebtoken: `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: we understand no extensions, so any `crit` is fatal.
            return Err(AuthError::Invalid("unsupported critical header"));
        }
        // Unverified `iss`, only to choose the issuer config. `jku`, `x5u`, `jwk` and `x5c`
        // are never looked at: keys come from configuration only.
        let unverified: UnverifiedIss = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Malformed)?;
        let iss = match unverified.iss {
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(AuthError::Invalid("the iss claim must be a string")),
            None => return Err(AuthError::Invalid("the iss claim is required")),
        };
        let issuer = self
            .inner
            .issuers
            .get(&iss)
            .ok_or(AuthError::UnknownIssuer)?;

        let alg = Algorithm::from_jwt(header.alg).ok_or(AuthError::AlgorithmNotAllowed)?;
        let validation = issuer
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let key = issuer
            .key(&self.inner.http, alg, header.kid.as_deref())
            .await?;

        self.inner
            .signatures_checked
            .fetch_add(1, Ordering::Relaxed);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        // The window `jsonwebtoken` just checked, never wider: `exp` rounded down (it rounds a
        // fractional one to nearest), `nbf` up.
        let valid_from = match data.claims.get("nbf").and_then(Value::as_f64) {
            Some(nbf) => (nbf.ceil() as i64).saturating_sub(issuer.leeway),
            None => i64::MIN,
        };
        let principal = issuer.principal(data.claims)?;
        // `iat` is not checked by `jsonwebtoken`. A future one would shrink `exp - iat` under
        // the lifetime bound and pass as issued after a subject revocation.
        if principal.issued_at.is_some_and(|iat| {
            iat > crate::auth::revocations::unix_now().saturating_add(issuer.leeway)
        }) {
            return Err(AuthError::IssuedInFuture);
        }
        Ok(Verified {
            valid_from,
            valid_until: principal.expires_at.saturating_add(issuer.leeway),
            principal,
        })
    }
}

/// A token that passed full verification, with the Unix seconds it is acceptable between.
struct Verified {
    principal: Principal,
    valid_from: i64,
    valid_until: i64,
}

impl Issuer {
    fn from_config(
        cfg: &IssuerConfig,
        at: &str,
        observer: Option<JwksObserver>,
        key_epoch: Arc<AtomicU64>,
    ) -> Result<Issuer, AuthSetupError> {
        let validations = cfg
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(alg.to_jwt());
                v.validate_exp = true;
                v.validate_nbf = true;
                v.leeway = cfg.leeway_seconds;
                v.set_issuer(&[&cfg.issuer]);
                if cfg.audience_claim == "aud" {
                    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                    v.set_audience(&cfg.audiences);
                } else {
                    // Checked in `principal` against the configured claim instead.
                    v.set_required_spec_claims(&["exp", "iss", "sub"]);
                    v.validate_aud = false;
                }
                (*alg, v)
            })
            .collect();

        let keys = if let Some(url) = &cfg.jwks_url {
            Keys::Jwks(Jwks {
                url: url.clone(),
                allowed: cfg.algorithms.clone(),
                set: ArcSwapOption::empty(),
                fingerprint: std::sync::Mutex::new(None),
                key_epoch,
                refetch: Mutex::new(None),
                min_refetch: Duration::from_secs(cfg.jwks_min_refetch_seconds),
                refresh: Duration::from_secs(cfg.jwks_refresh_seconds),
                observer,
            })
        } else if let Some(secret) = &cfg.hs256_secret {
            let key = DecodingKey::from_secret(secret.expose_secret().as_bytes());
            Keys::Static(vec![KeyEntry {
                kid: None,
                alg: Algorithm::HS256,
                key,
            }])
        } else {
            let key_error = |(field, message): (&str, String)| AuthSetupError::Key {
                key: format!("{at}.{field}"),
                message,
            };
            let (field, pem) = cfg
                .static_pem()
                .map_err(key_error)?
                .ok_or_else(|| key_error(("jwks_url", "no key source configured".into())))?;
            let entries = cfg
                .algorithms
                .iter()
                .map(|alg| {
                    let key =
                        decoding_key_from_pem(*alg, &pem).map_err(|m| key_error((field, m)))?;
                    Ok(KeyEntry {
                        kid: None,
                        alg: *alg,
                        key,
                    })
                })
                .collect::<Result<_, AuthSetupError>>()?;
            Keys::Static(entries)
        };

        Ok(Issuer {
            name: cfg.issuer.clone(),
            groups_claim: cfg.groups_claim.clone(),
            groups_strip_prefix: cfg.groups_strip_prefix.clone(),
            group_aliases: cfg.group_aliases.clone(),
            audience: (cfg.audience_claim != "aud")
                .then(|| (cfg.audience_claim.clone(), cfg.audiences.clone())),
            mfa_claim: cfg.mfa_claim.clone(),
            leeway: i64::try_from(cfg.leeway_seconds).unwrap_or(i64::MAX),
            validations,
            keys,
        })
    }

    async fn key(
        &self,
        http: &reqwest::Client,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<DecodingKey, AuthError> {
        match &self.keys {
            Keys::Static(entries) => {
                find_key(entries, alg, None).ok_or(AuthError::AlgorithmNotAllowed)
            }
            Keys::Jwks(jwks) => jwks.key(http, &self.name, alg, kid).await,
        }
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, AuthError> {
        // With another audience claim, an `aud` the token still carries must match too: a
        // token the same client got for another API is not for presignd.
        if let Some((claim, accepted)) = &self.audience
            && (!claims::audience_accepted(&claims, claim, accepted)
                || (claims.contains_key("aud")
                    && !claims::audience_accepted(&claims, "aud", accepted)))
        {
            return Err(AuthError::Invalid("the token audience is not accepted"));
        }
        let sub = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => {
                return Err(AuthError::Invalid(
                    "the sub claim must be a non-empty string",
                ));
            }
        };
        let groups = claims::groups(&claims, &self.groups_claim);
        claims::check_identity(&sub, &groups)?;
        let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
        if jti.as_deref().is_some_and(|j| !claims::printable(j)) {
            return Err(AuthError::Invalid(
                "the jti claim must not contain control characters",
            ));
        }
        let expires_at = claims::numeric_date(&claims, "exp")
            .ok_or(AuthError::Invalid("the exp claim must be a number"))?;
        let issued_at = match claims.get("iat") {
            None => None,
            Some(_) => Some(
                claims::numeric_date(&claims, "iat")
                    .ok_or(AuthError::Invalid("the iat claim must be a number"))?,
            ),
        };
        Ok(Principal {
            sub,
            iss: self.name.clone(),
            groups: claims::mapped_groups(
                groups,
                self.groups_strip_prefix.as_deref(),
                &self.group_aliases,
            ),
            mfa: claims::mfa(&claims, &self.mfa_claim),
            issued_at,
            expires_at,
            jti,
        })
    }
}

impl Jwks {
    async fn key(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.lookup(alg, kid) {
            return Ok(key);
        }
        // Unknown kid (or no keys yet): one shared refetch at most once per min_refetch.
        // Waiters queue on the lock and then find the key the first fetch stored.
        let mut last = self.refetch.lock().await;
        if let Some(key) = self.lookup(alg, kid) {
            return Ok(key);
        }
        let throttled = last.is_some_and(|at| at.elapsed() < self.min_refetch);
        if !throttled {
            *last = Some(Instant::now());
            self.fetch_and_store(http, issuer).await;
            if let Some(key) = self.lookup(alg, kid) {
                return Ok(key);
            }
        }
        Err(if self.set.load().is_some() {
            AuthError::UnknownKey
        } else {
            AuthError::KeysUnavailable
        })
    }

    fn lookup(&self, alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
        let set = self.set.load();
        find_key(set.as_deref()?, alg, kid)
    }

    async fn fetch_and_store(&self, http: &reqwest::Client, issuer: &str) {
        let result = match jwks::fetch(http, &self.url, &self.allowed).await {
            Ok((keys, fingerprint)) => {
                tracing::debug!(issuer, keys = keys.len(), "JWKS refreshed");
                self.set.store(Some(Arc::new(keys)));
                // After the store: a verification that still saw the old keys holds the old
                // epoch. The first set is no change (nothing was verified without keys).
                let mut last = self
                    .fingerprint
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.is_some_and(|last| last != fingerprint) {
                    self.key_epoch.fetch_add(1, Ordering::AcqRel);
                }
                *last = Some(fingerprint);
                "ok"
            }
            Err(error) => {
                let kept = self.set.load().is_some();
                tracing::warn!(issuer, url = %self.url, %error, kept_previous_keys = kept,
                    "JWKS fetch failed");
                "error"
            }
        };
        if let Some(observer) = &self.observer {
            observer(issuer, result);
        }
    }
}

/// A token with a `kid` needs that exact key (and of the token's algorithm); a token without
/// one may use the only key of its algorithm. Static keys ignore `kid` (pass `None`).
fn find_key(entries: &[KeyEntry], alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => entries
            .iter()
            .find(|e| e.kid.as_deref() == Some(kid))
            .filter(|e| e.alg == alg)
            .map(|e| e.key.clone()),
        None => {
            let mut of_alg = entries.iter().filter(|e| e.alg == alg);
            match (of_alg.next(), of_alg.next()) {
                (Some(only), None) => Some(only.key.clone()),
                _ => None,
            }
        }
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed,
        ErrorKind::InvalidIssuer => AuthError::Invalid("the token issuer does not match"),
        ErrorKind::InvalidAudience => AuthError::Invalid("the token audience is not accepted"),
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Invalid(match claim.as_str() {
            "exp" => "the exp claim is missing or not a number",
            "aud" => "the aud claim is missing or malformed",
            "iss" => "the iss claim is missing or malformed",
            "sub" => "the sub claim must be a non-empty string",
            _ => "a required claim is missing",
        }),
        ErrorKind::InvalidClaimFormat(_) => AuthError::Invalid("a claim has the wrong type"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        _ => AuthError::Invalid("the token is invalid"),
    }
}
