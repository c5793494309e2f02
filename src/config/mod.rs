//! Configuration: built-in defaults, then one TOML file, then `PRESIGND_…` environment
//! overrides (`PRESIGND_SERVER__LISTEN=…`, `__` between levels). Validated completely before
//! anything binds a port; every problem names the key it is about. One file per section, each
//! with its own checks; this one loads, merges and runs them all.

mod access_points;
mod audit;
mod auth;
mod cloudfront;
mod database;
mod grants;
pub(crate) mod issuers;
mod limits;
mod log;
mod metrics;
mod s3;
mod server;
mod uploads;
mod webhooks;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use access_points::AccessPointsConfig;
pub use audit::AuditConfig;
pub use auth::{AuthConfig, MAX_TOKEN_CACHE_ENTRIES};
pub use cloudfront::{CloudFrontConfig, CloudFrontKeyConfig};
pub use database::DatabaseConfig;
pub use grants::{GrantsConfig, MAX_GRANT_SECONDS};
pub(crate) use issuers::decoding_key_from_pem;
pub use issuers::{Algorithm, IssuerConfig, MIN_HS256_SECRET_BYTES};
pub use limits::{LimitsConfig, MAX_RATE, OnRedisError, RedisConfig};
pub use log::{LogConfig, LogFormat};
pub use metrics::{MIN_BEARER_TOKEN_BYTES, MetricsConfig};
pub use s3::S3Config;
pub use server::{ForwardedHeader, ServerConfig};
pub use uploads::UploadsConfig;
pub use webhooks::{WebhookConfig, WebhookDeliveryConfig};

/// SigV4 presigned URLs cannot live longer than 7 days.
pub const SIGV4_MAX_EXPIRES: u32 = 604_800;

/// The whole configuration. `Default` is the built-in defaults (which do not validate: they
/// have no issuer).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    pub redis: RedisConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `/metrics`: separate listener, bearer token, plain-HTTP exemption.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Multipart uploads: part URLs handed out at creation, the abandoned-upload sweeper.
    #[serde(default)]
    pub uploads: UploadsConfig,
    /// Keys for CloudFront signed URLs and cookies (access points with `delivery.cloudfront`).
    #[serde(default)]
    pub cloudfront: CloudFrontConfig,
    /// Download grants: revocable N-use links (needs `server.public_base_url`).
    #[serde(default)]
    pub grants: GrantsConfig,
    /// Endpoints told about upload outcomes (signed, at least once).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub webhook_delivery: WebhookDeliveryConfig,
}

pub(crate) fn redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

pub(crate) fn redacted_opt<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
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

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
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
        .map(|p| format!("  {p}"))
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
        let mut p = self.server.validate();
        p.extend(self.database.validate());
        p.extend(self.auth.validate());
        p.extend(self.redis.validate());
        p.extend(self.limits.validate());
        p.extend(self.metrics.validate(self.server.listen));
        p.extend(self.uploads.validate());
        p.extend(self.s3.validate());
        p.extend(audit::validate(self));
        p.extend(self.log.validate());
        p.extend(self.access_points.validate());
        p.extend(self.cloudfront.validate());
        p.extend(self.grants.validate());
        p.extend(webhooks::validate(&self.webhooks));
        p.extend(self.webhook_delivery.validate());
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
        for key in &self.cloudfront.keys {
            if let Ok(loaded) = key.load() {
                notes.push(format!(
                    "cloudfront: key {} ({}) from {} signs for access points that name it",
                    key.key_pair_id,
                    loaded.kind(),
                    key.private_key_file.display()
                ));
            }
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
///
/// A Service name may itself hold `--` (`presignd-server--x` gives
/// `PRESIGND_SERVER__X_SERVICE_HOST`), so names shaped like Kubernetes service variables are
/// never configuration either: no configuration key ends in `_service_host`, `_port` or the
/// like, so anyone who may create a Service cannot stop presignd from starting.
pub fn is_config_variable(name: &str) -> bool {
    name.strip_prefix("PRESIGND_")
        .is_some_and(|rest| rest.contains("__"))
        && !is_kubernetes_service_variable(name)
}

/// `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT`,
/// `<SVC>_PORT_<N>_<PROTO>[_ADDR|_PORT|_PROTO]`: what the kubelet injects for each Service.
fn is_kubernetes_service_variable(name: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_PORT") {
        return true;
    }
    if name.contains("_SERVICE_PORT") {
        return true;
    }
    let base = ["_ADDR", "_PORT", "_PROTO"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let Some(rest) = ["_TCP", "_UDP", "_SCTP"]
        .iter()
        .find_map(|p| base.strip_suffix(p))
    else {
        return false;
    };
    rest.rsplit_once("_PORT_")
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
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
        // An IPv4-mapped entry would never match (peers are compared as IPv4): refused.
        let mapped = proxied.replace("10.0.0.0/8", "::ffff:10.0.0.0/104");
        let problems = match Config::from_toml(&mapped) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected a problem, got {other:?}"),
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].to_string().contains("write 10.0.0.0/8"),
            "{problems:?}"
        );
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
        // A Service whose name holds `--` (the second review): its variables hold `__` too.
        let dashed = vec![
            pair("PRESIGND_SERVER__X_SERVICE_HOST", "10.96.0.18"),
            pair("PRESIGND_SERVER__X_SERVICE_PORT", "80"),
            pair("PRESIGND_SERVER__X_SERVICE_PORT_HTTP", "80"),
            pair("PRESIGND_SERVER__X_PORT", "tcp://10.96.0.18:80"),
            pair("PRESIGND_SERVER__X_PORT_80_TCP", "tcp://10.96.0.18:80"),
            pair("PRESIGND_SERVER__X_PORT_80_TCP_ADDR", "10.96.0.18"),
            pair("PRESIGND_SERVER__X_PORT_80_TCP_PORT", "80"),
            pair("PRESIGND_SERVER__X_PORT_80_TCP_PROTO", "tcp"),
        ];
        Config::load(&file, true, dashed.clone()).expect("starts beside a dashed Service");
        assert_eq!(ignored_variables(dashed).len(), 8);
        // A typo in a real key still fails, with its name.
        let typo = vec![pair("PRESIGND_SERVER__LISTN", "127.0.0.1:1")];
        assert!(Config::load(&file, true, typo).is_err());
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
