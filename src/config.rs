//! Configuration: built-in defaults, then one TOML file, then `PRESIGND_…` environment
//! overrides (`PRESIGND_SERVER__LISTEN=…`, `__` between levels). Validated completely before
//! anything binds a port; every problem names the key it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::IssuerConfig;

/// SigV4 presigned URLs cannot live longer than 7 days.
pub const SIGV4_MAX_EXPIRES: u32 = 604_800;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub access_points: AccessPointsConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Shared rate-limit state (`crate::limits`); absent URL: limits per instance.
    #[serde(default)]
    pub redis: crate::limits::RedisConfig,
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// `/metrics`: separate listener, bearer token, plain-HTTP exemption.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// Multipart uploads: part URLs handed out at creation, the abandoned-upload sweeper.
    #[serde(default)]
    pub uploads: crate::uploads::UploadsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: both set = serve TLS natively (reloaded when the
    /// files change and on SIGHUP). Plain HTTP on the same port is still answered, with 403
    /// `https_required`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes (reloaded when their contents
    /// differ); 0 turns the watch off, leaving SIGHUP.
    pub tls_reload_interval_seconds: u64,
    /// `Strict-Transport-Security: max-age=…` on responses to TLS requests; 0 disables it.
    pub hsts_max_age_seconds: u64,
    /// Refuse API requests that did not arrive over TLS (403 `https_required`). A request
    /// counts as TLS only when a trusted proxy says so with `X-Forwarded-Proto: https`.
    pub require_https: bool,
    /// Only peers in these networks may say who the client is and whether it used TLS.
    pub trusted_proxies: Vec<IpNet>,
    /// Which header family those proxies write: only that one is read.
    pub forwarded_header: ForwardedHeader,
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout_ms: u64,
    /// A connection must deliver a request's headers within this long: of being accepted (its
    /// first request), or of that request's first byte (later ones). Slow-header clients are
    /// closed.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// How long a TLS handshake may take (from the accept).
    pub tls_handshake_timeout_ms: u64,
    /// Open connections at most; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    pub body_limit_bytes: usize,
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            tls_reload_interval_seconds: 10,
            hsts_max_age_seconds: 31_536_000,
            require_https: true,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwarded,
            cors_allowed_origins: Vec::new(),
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            max_connections: 4_096,
            body_limit_bytes: 256 * 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// The headers a trusted proxy reports the client with (`server.forwarded_header`). A proxy
/// writes one family and usually passes the other through from the client untouched, so
/// reading both would let the client choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (client: the rightmost untrusted hop) and `X-Forwarded-Proto` (its
    /// last value). nginx, HAProxy, AWS ALB, Traefik, Envoy, most ingresses.
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// RFC 7239 `Forwarded: for=…;proto=…` (client: the rightmost untrusted `for`, with the
    /// `proto` of the same element).
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created if missing) or `postgres://…`. May hold a password.
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    pub migrate_on_start: bool,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://var/presignd.db"),
            migrate_on_start: true,
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    pub admin_group: String,
    /// Issuers whose tokens may carry admin rights (`admin_group` is only looked for in
    /// their tokens). Empty with one issuer: that issuer. Required with several: a partner
    /// IdP's group of the same name must not administer presignd.
    pub admin_issuers: Vec<String>,
    /// Longest token lifetime accepted (`exp − iat`). Revocations are kept this long after
    /// their cut-off, so a longer-lived token could outlive its revocation: it is refused.
    pub max_token_lifetime_seconds: u64,
    /// Verified tokens remembered (by SHA-256), so a signature is checked once per token;
    /// 0 checks it on every request. Revocations apply on every request either way.
    pub token_cache_entries: usize,
}

impl AuthConfig {
    /// Is this verified caller an administrator: in `admin_group`, in a token from one of the
    /// admin issuers?
    pub fn is_admin(&self, p: &crate::Principal) -> bool {
        self.is_admin_issuer(&p.iss) && p.in_group(&self.admin_group)
    }

    /// `admin_issuers`, or with none listed, the only issuer (never any of several).
    pub fn is_admin_issuer(&self, iss: &str) -> bool {
        if self.admin_issuers.is_empty() {
            return matches!(self.issuers.as_slice(), [only] if only.issuer == iss);
        }
        self.admin_issuers.iter().any(|a| a == iss)
    }
}

/// Largest `auth.token_cache_entries` (an entry is a few hundred bytes).
pub const MAX_TOKEN_CACHE_ENTRIES: usize = 1_000_000;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            admin_group: "presignd-admins".into(),
            admin_issuers: Vec::new(),
            max_token_lifetime_seconds: 86_400,
            token_cache_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub region: String,
    /// For S3-compatible stores; absent = AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    /// Dev/test only: permit an `http://` endpoint (issued URLs are then plain HTTP).
    pub allow_insecure_endpoint: bool,
    /// Static credentials, for S3-compatible stores. Absent = the standard AWS provider chain.
    pub access_key_id: Option<String>,
    #[serde(serialize_with = "redacted_opt")]
    pub secret_access_key: Option<SecretString>,
    /// How often each served bucket's CORS is read back and compared with what its access
    /// points' browser origins need (warnings on `/readyz`); 0 turns the check off.
    pub cors_check_interval_seconds: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            allow_insecure_endpoint: false,
            access_key_id: None,
            secret_access_key: None,
            cors_check_interval_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where shipped batches go: `s3://bucket/prefix/` (the log bucket) or `file:///dir`
    /// (same layout on disk). Records are durable in the database's outbox first.
    pub sink: String,
    /// Names this instance in records and object keys; default: the hostname (stable across
    /// restarts, so a batch retried after a crash gets the same key).
    pub instance: Option<String>,
    /// The log bucket's region; default: `s3.region`.
    pub region: Option<String>,
    /// Permit a log bucket outside the served buckets' region.
    pub allow_cross_region: bool,
    /// Records per shipped object (at most).
    pub batch_max_records: usize,
    /// How often the shipper looks for new records.
    pub flush_interval_ms: u64,
    /// Records per outbox transaction (group commit), at most.
    pub commit_max_records: usize,
    /// How long the writer keeps collecting queued records for one transaction, at most.
    pub commit_max_wait_ms: u64,
    /// How long a graceful shutdown may spend shipping the outbox.
    pub shutdown_flush_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            sink: "file://var/audit".into(),
            instance: None,
            region: None,
            allow_cross_region: false,
            batch_max_records: 512,
            flush_interval_ms: 1_000,
            commit_max_records: 512,
            commit_max_wait_ms: 2,
            shutdown_flush_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPointsConfig {
    /// A YAML/TOML file applied at startup, like `presignd apply -f` (without `--prune`).
    pub file: Option<PathBuf>,
    /// How often every instance reloads access points and revocations from the database in
    /// full: the safety net. On PostgreSQL every change reaches every instance at once through
    /// `LISTEN/NOTIFY`; an instance applies its own admin changes at once.
    pub reload_interval_ms: u64,
}

impl Default for AccessPointsConfig {
    fn default() -> Self {
        Self {
            file: None,
            reload_interval_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Compact,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,presignd=debug`. `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Compact,
            filter: "info".into(),
        }
    }
}

fn redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn redacted_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

/// One problem with the configuration, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(String),
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {}: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Defaults, then `file` (if it exists, or must exist when `required`), then `env`
    /// (`PRESIGND_…` pairs, passed in explicitly so tests never touch the process environment).
    pub fn load(
        file: &Path,
        required: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        if file.exists() {
            fig = fig.merge(Toml::file_exact(file));
        } else if required {
            return Err(ConfigError::Load(format!(
                "config file {} not found",
                file.display()
            )));
        }
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| is_config_variable(k))
            .collect();
        fig = fig.merge(env_provider(env));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Load(figment_error(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string (no environment); validates.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(figment_error(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        let s = &self.server;
        if s.request_timeout_ms == 0 {
            p.push(ConfigProblem::new(
                "server.request_timeout_ms",
                "must be at least 1",
            ));
        }
        for (key, ms) in [
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            (
                "server.tls_handshake_timeout_ms",
                s.tls_handshake_timeout_ms,
            ),
        ] {
            if !(100..=600_000).contains(&ms) {
                p.push(ConfigProblem::new(
                    key,
                    "must be between 100 and 600000 (10 minutes)",
                ));
            }
        }
        if !(1..=1_000_000).contains(&s.max_connections) {
            p.push(ConfigProblem::new(
                "server.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if s.body_limit_bytes < 1024 {
            p.push(ConfigProblem::new(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => {
                if let Err(e) = crate::tls::load_certified_key(cert, key) {
                    p.push(ConfigProblem::new("server.tls_cert", e.to_string()));
                }
            }
            (Some(_), None) => p.push(ConfigProblem::new(
                "server.tls_key",
                "is required when server.tls_cert is set",
            )),
            (None, Some(_)) => p.push(ConfigProblem::new(
                "server.tls_cert",
                "is required when server.tls_key is set",
            )),
            (None, None) => {}
        }
        if s.require_https && s.tls_cert.is_none() && s.trusted_proxies.is_empty() {
            // Without native TLS or a trusted TLS-terminating proxy every API request would be
            // refused.
            p.push(ConfigProblem::new(
                "server.require_https",
                "is true but neither server.tls_cert/tls_key nor server.trusted_proxies are set, so no request can prove it arrived over TLS; serve TLS natively, put presignd behind a TLS-terminating proxy listed in server.trusted_proxies, or set require_https = false for local development",
            ));
        }
        for (i, o) in s.cors_allowed_origins.iter().enumerate() {
            if let Err(m) = crate::policy::check_origin(o) {
                p.push(ConfigProblem::new(
                    format!("server.cors_allowed_origins[{i}]"),
                    m,
                ));
            }
        }
        use secrecy::ExposeSecret;
        let db = self.database.url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            p.push(ConfigProblem::new(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.database.max_connections == 0 {
            p.push(ConfigProblem::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.auth.issuers.is_empty() {
            p.push(ConfigProblem::new(
                "auth.issuers",
                "at least one issuer is required",
            ));
        }
        for (i, issuer) in self.auth.issuers.iter().enumerate() {
            p.extend(
                issuer
                    .validate(&format!("auth.issuers[{i}]"))
                    .into_iter()
                    .map(|c| ConfigProblem::new(c.key, c.message)),
            );
            if self.auth.issuers[..i]
                .iter()
                .any(|o| o.issuer == issuer.issuer)
            {
                p.push(ConfigProblem::new(
                    format!("auth.issuers[{i}].issuer"),
                    "duplicate issuer",
                ));
            }
        }
        if self.auth.admin_group.trim().is_empty() {
            p.push(ConfigProblem::new("auth.admin_group", "must not be empty"));
        }
        if self.auth.admin_issuers.is_empty() && self.auth.issuers.len() > 1 {
            p.push(ConfigProblem::new(
                "auth.admin_issuers",
                format!(
                    "is required when more than one issuer is configured: list the issuer(s) whose tokens in group {:?} administer presignd (otherwise a user of any issuer in a group of that name would)",
                    self.auth.admin_group
                ),
            ));
        }
        for (i, a) in self.auth.admin_issuers.iter().enumerate() {
            if !self.auth.issuers.iter().any(|iss| &iss.issuer == a) {
                p.push(ConfigProblem::new(
                    format!("auth.admin_issuers[{i}]"),
                    format!("{a:?} is not one of auth.issuers"),
                ));
            }
        }
        if !(60..=31_536_000).contains(&self.auth.max_token_lifetime_seconds) {
            p.push(ConfigProblem::new(
                "auth.max_token_lifetime_seconds",
                "must be between 60 and 31536000 (one year)",
            ));
        }
        if self.auth.token_cache_entries > MAX_TOKEN_CACHE_ENTRIES {
            p.push(ConfigProblem::new(
                "auth.token_cache_entries",
                format!("must be at most {MAX_TOKEN_CACHE_ENTRIES} (0 disables the cache)"),
            ));
        }
        p.extend(self.redis.validate());
        p.extend(self.limits.validate());
        p.extend(self.metrics.validate(self.server.listen));
        p.extend(self.uploads.validate());
        let s3 = &self.s3;
        if s3.region.is_empty()
            || !s3
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            p.push(ConfigProblem::new(
                "s3.region",
                "must be a region name such as us-east-1",
            ));
        }
        if let Some(ep) = &s3.endpoint {
            match ep.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => {}
                Some(("http", rest)) if !rest.is_empty() => {
                    if !s3.allow_insecure_endpoint {
                        p.push(ConfigProblem::new(
                            "s3.endpoint",
                            "is plain http: issued URLs would travel in clear text; use https, or set s3.allow_insecure_endpoint = true for dev/test only",
                        ));
                    }
                }
                _ => p.push(ConfigProblem::new("s3.endpoint", "must be an https:// URL")),
            }
        } else if s3.allow_insecure_endpoint {
            p.push(ConfigProblem::new(
                "s3.allow_insecure_endpoint",
                "only makes sense with an http:// s3.endpoint",
            ));
        }
        match (&s3.access_key_id, &s3.secret_access_key) {
            (Some(_), None) => p.push(ConfigProblem::new(
                "s3.secret_access_key",
                "is required when s3.access_key_id is set",
            )),
            (None, Some(_)) => p.push(ConfigProblem::new(
                "s3.access_key_id",
                "is required when s3.secret_access_key is set",
            )),
            _ => {}
        }
        p.extend(crate::audit::check_audit_config(self));
        if let Some(inst) = &self.audit.instance
            && (inst.is_empty()
                || !inst
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            p.push(ConfigProblem::new(
                "audit.instance",
                "must be non-empty [A-Za-z0-9_-]",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            p.push(ConfigProblem::new(
                "log.filter",
                format!("is not a valid filter: {e}"),
            ));
        }
        if self.access_points.reload_interval_ms < 100 {
            p.push(ConfigProblem::new(
                "access_points.reload_interval_ms",
                "must be at least 100",
            ));
        }
        if let Some(f) = &self.access_points.file
            && !f.exists()
        {
            p.push(ConfigProblem::new(
                "access_points.file",
                format!("{} does not exist", f.display()),
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p))
        }
    }

    /// What the security-relevant settings mean for this deployment, in words, for
    /// `check-config`: who is an admin, and which forwarding headers are believed from whom.
    pub fn explain(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let admin_issuers: Vec<&str> = self
            .auth
            .issuers
            .iter()
            .map(|i| i.issuer.as_str())
            .filter(|iss| self.auth.is_admin_issuer(iss))
            .collect();
        notes.push(format!(
            "admin API: callers in group {:?} with a token from {} (auth.admin_issuers); the same group name from any other issuer grants nothing",
            self.auth.admin_group,
            admin_issuers.join(", ")
        ));
        let s = &self.server;
        if s.trusted_proxies.is_empty() {
            notes.push(
                "forwarding headers: none believed (server.trusted_proxies is empty); the socket peer is the client".into(),
            );
        } else {
            let from: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
            let (read, ignored) = match s.forwarded_header {
                ForwardedHeader::XForwarded => (
                    "the client is the rightmost X-Forwarded-For hop outside them, TLS the last X-Forwarded-Proto value",
                    "Forwarded",
                ),
                ForwardedHeader::Forwarded => (
                    "the client is the rightmost Forwarded for= outside them, TLS that element's proto",
                    "X-Forwarded-For and X-Forwarded-Proto",
                ),
            };
            notes.push(format!(
                "forwarding headers (server.forwarded_header = {:?}): from {}, {read}; {ignored} ignored from everyone",
                match s.forwarded_header {
                    ForwardedHeader::XForwarded => "x-forwarded",
                    ForwardedHeader::Forwarded => "forwarded",
                },
                from.join(", ")
            ));
        }
        notes
    }

    /// The audit sink directory of a `file://` sink.
    pub fn audit_dir(&self) -> Option<PathBuf> {
        self.audit.sink.strip_prefix("file://").map(PathBuf::from)
    }
}

/// A configuration override is `PRESIGND_<SECTION>__<KEY>`: the double underscore marks it.
/// Other `PRESIGND_*` names are not configuration — Kubernetes injects `PRESIGND_PORT`,
/// `PRESIGND_SERVICE_HOST`, … into every pod of a namespace with a Service named `presignd`
/// (its port names are DNS labels, so they never hold `__`) — and are ignored. A typo inside
/// a real override (`PRESIGND_SERVER__LISTN`, `PRESIGND_SERVR__LISTEN`) still reaches the
/// strict parser and fails with the key's name. `PRESIGND_CONFIG` names the file.
pub fn is_config_variable(name: &str) -> bool {
    name.strip_prefix("PRESIGND_")
        .is_some_and(|rest| rest.contains("__"))
}

/// The `PRESIGND_*` names in `env` that are not configuration (see [`is_config_variable`]),
/// for a debug line at startup.
pub fn ignored_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut names: Vec<String> = env
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("PRESIGND_") && k != "PRESIGND_CONFIG" && !is_config_variable(k))
        .collect();
    names.sort();
    names
}

/// `PRESIGND_A__B=v` pairs as a figment provider, from an explicit list (not the process
/// environment), parsed the way figment's `Env` provider parses values.
fn env_provider(pairs: Vec<(String, String)>) -> Serialized<figment::value::Dict> {
    let mut dict = figment::value::Dict::new();
    for (name, raw) in pairs {
        let Some(rest) = name.strip_prefix("PRESIGND_") else {
            continue;
        };
        let path = rest.to_ascii_lowercase().replace("__", ".");
        let value: figment::value::Value = raw
            .parse()
            .unwrap_or_else(|_| figment::value::Value::from(raw.clone()));
        if let figment::value::Value::Dict(_, nested) = figment::util::nest(&path, value) {
            dict = merge_dicts(dict, nested);
        }
    }
    Serialized::defaults(dict)
}

fn merge_dicts(mut a: figment::value::Dict, b: figment::value::Dict) -> figment::value::Dict {
    use figment::value::Value;
    for (k, v) in b {
        let merged = match (a.remove(&k), v) {
            (Some(Value::Dict(_, x)), Value::Dict(tag, y)) => Value::Dict(tag, merge_dicts(x, y)),
            (_, v) => v,
        };
        a.insert(k, merged);
    }
    a
}

fn figment_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{key}: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
require_https = false
[[auth.issuers]]
issuer = "https://idp.example/"
audiences = ["presignd"]
algorithms = ["HS256"]
hs256_secret = "0123456789abcdef0123456789abcdef"
"#;

    fn keys(e: ConfigError) -> Vec<String> {
        match e {
            ConfigError::Invalid(p) => p.into_iter().map(|p| p.key).collect(),
            ConfigError::Load(m) => panic!("expected validation errors, got load error {m}"),
        }
    }

    #[test]
    fn minimal_config_uses_embedded_defaults() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert!(secrecy::ExposeSecret::expose_secret(&c.database.url).starts_with("sqlite:"));
        assert_eq!(c.audit.sink, "file://var/audit");
        assert_eq!(c.s3.region, "us-east-1");
    }

    #[test]
    fn token_cache_size_is_bounded() {
        let with = |n: usize| format!("[auth]\ntoken_cache_entries = {n}\n{MINIMAL}");
        assert_eq!(
            Config::from_toml(MINIMAL)
                .expect("valid")
                .auth
                .token_cache_entries,
            10_000
        );
        for ok in [0, 1, MAX_TOKEN_CACHE_ENTRIES] {
            assert!(Config::from_toml(&with(ok)).is_ok(), "{ok}");
        }
        let k = keys(Config::from_toml(&with(MAX_TOKEN_CACHE_ENTRIES + 1)).expect_err("invalid"));
        assert_eq!(k, ["auth.token_cache_entries"]);
    }

    #[test]
    fn problems_name_their_keys() {
        let bad = format!(
            "{MINIMAL}\n[s3]\nendpoint = \"http://minio:9000\"\nregion = \"US East\"\n[audit]\nsink = \"s3://x\"\n"
        );
        let k = keys(Config::from_toml(&bad).expect_err("invalid"));
        assert!(k.contains(&"s3.endpoint".to_string()), "{k:?}");
        assert!(k.contains(&"s3.region".to_string()), "{k:?}");
        assert!(k.contains(&"audit.sink".to_string()), "{k:?}");
    }

    #[test]
    fn require_https_needs_a_way_to_see_tls() {
        let on = MINIMAL.replace("require_https = false", "require_https = true");
        let k = keys(Config::from_toml(&on).expect_err("invalid"));
        assert_eq!(k, vec!["server.require_https".to_string()]);
        let proxied = on.replace(
            "require_https = true",
            "require_https = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
        );
        Config::from_toml(&proxied).expect("valid behind a trusted proxy");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let typo = MINIMAL.replace("require_https", "require_http");
        assert!(
            matches!(Config::from_toml(&typo), Err(ConfigError::Load(m)) if m.contains("require_http"))
        );
    }

    #[test]
    fn environment_pairs_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, MINIMAL).expect("write");
        let env = vec![
            (
                "PRESIGND_SERVER__LISTEN".to_string(),
                "127.0.0.1:9999".to_string(),
            ),
            ("PRESIGND_S3__REGION".to_string(), "eu-west-1".to_string()),
            (
                "PRESIGND_S3__FORCE_PATH_STYLE".to_string(),
                "true".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(&file, true, env).expect("valid");
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.s3.region, "eu-west-1");
        assert!(c.s3.force_path_style);
        assert!(
            !c.server.require_https,
            "file value kept where env is silent"
        );
    }

    /// Kubernetes injects service variables named after a Service called `presignd`; before
    /// the fix, `PRESIGND_PORT=tcp://…` failed startup with `port: unknown field`.
    #[test]
    fn kubernetes_service_variables_are_not_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, MINIMAL).expect("write");
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let kubernetes = vec![
            pair("PRESIGND_PORT", "tcp://10.96.0.17:8443"),
            pair("PRESIGND_PORT_8443_TCP", "tcp://10.96.0.17:8443"),
            pair("PRESIGND_PORT_8443_TCP_ADDR", "10.96.0.17"),
            pair("PRESIGND_PORT_8443_TCP_PORT", "8443"),
            pair("PRESIGND_PORT_8443_TCP_PROTO", "tcp"),
            pair("PRESIGND_SERVICE_HOST", "10.96.0.17"),
            pair("PRESIGND_SERVICE_PORT", "8443"),
            pair("PRESIGND_SERVICE_PORT_HTTPS", "8443"),
            pair("PRESIGND_CONFIG", "/etc/presignd/presignd.toml"),
            pair("PRESIGND_S3__REGION", "eu-west-1"),
        ];
        let c = Config::load(&file, true, kubernetes.clone()).expect("starts");
        assert_eq!(c.s3.region, "eu-west-1", "real overrides still apply");
        assert_eq!(
            ignored_variables(kubernetes),
            [
                "PRESIGND_PORT",
                "PRESIGND_PORT_8443_TCP",
                "PRESIGND_PORT_8443_TCP_ADDR",
                "PRESIGND_PORT_8443_TCP_PORT",
                "PRESIGND_PORT_8443_TCP_PROTO",
                "PRESIGND_SERVICE_HOST",
                "PRESIGND_SERVICE_PORT",
                "PRESIGND_SERVICE_PORT_HTTPS",
            ]
        );
        // A typo inside a real override still fails, naming the key.
        for (typo, named) in [
            ("PRESIGND_SERVER__LISTN", "listn"),
            ("PRESIGND_SERVR__LISTEN", "servr"),
        ] {
            let err = Config::load(&file, true, vec![pair(typo, "127.0.0.1:1")])
                .expect_err("typo refused");
            assert!(
                matches!(&err, ConfigError::Load(m) if m.contains(named)),
                "{typo}: {err}"
            );
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}\n[s3]\naccess_key_id = \"AK\"\nsecret_access_key = \"very-secret-value\"\n"
        ))
        .expect("valid");
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).expect("serialize");
        for shown in [debug, json] {
            assert!(!shown.contains("very-secret-value"));
            assert!(!shown.contains("0123456789abcdef0123456789abcdef"));
        }
    }
}
