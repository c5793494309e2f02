//! A presignd instance for integration tests: real SQLite or PostgreSQL (a fresh database per
//! test), the in-process S3 server, a temp `file://` audit sink, HS256 and RS256 issuers, all on
//! 127.0.0.1:0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use presignd::App;
use presignd::config::Config;
use presignd::policy::AccessPointSpec;
use presignd::state::AppState;
use serde_json::Value;

use super::s3::TestS3;

pub const ISSUER: &str = "https://idp.test/";
pub const AUDIENCE: &str = "presignd";
pub const HS_SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const BUCKET: &str = "uploads";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per SQL backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::common::app::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::common::app::Backend::Postgres).await
            }
        }
    };
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub state: AppState,
    pub s3: TestS3,
    pub http: reqwest::Client,
    pub audit_dir: PathBuf,
    /// The database URL (for a second instance: `Options::shared_database`).
    pub db_url: String,
    /// The `metrics.listen` listener, when the config sets one.
    pub metrics_addr: Option<SocketAddr>,
    _dirs: tempfile::TempDir,
    db: TestDb,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

enum TestDb {
    Sqlite,
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another instance's database: not ours to drop.
    Shared,
}

pub use super::postgres::{create_postgres_database, drop_postgres_database, with_database};

/// The harness issuer as a `[[auth.issuers]]` table, for configuration files written for the
/// binary (`daemon`, replicas, CLI runs): its tokens are `mint_hs256`'s.
pub fn issuer_toml() -> String {
    format!(
        "[[auth.issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nalgorithms = [\"HS256\"]\nhs256_secret = \"{HS_SECRET}\"\n"
    )
}

/// How a test's instance differs from the harness default: the backend, the access points,
/// another S3 endpoint, and typed changes to the configuration (`config`).
pub struct Options {
    pub backend: Backend,
    pub access_points: Vec<AccessPointSpec>,
    /// Sign for this S3 endpoint instead of the in-process server (e.g. radosgw).
    pub s3_endpoint: Option<S3Endpoint>,
    /// Use this database (another instance's `db_url`) instead of a fresh one: a second
    /// instance of the same deployment. The owner drops it.
    pub shared_database: Option<String>,
    changes: Vec<ConfigChange>,
}

/// A typed change to the harness configuration.
pub type ConfigChange = Box<dyn FnOnce(&mut Config) + Send>;

/// Another S3-compatible endpoint for `[s3]`: URL and the keys presignd signs with.
pub struct S3Endpoint {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Options {
    pub fn new(backend: Backend, access_points: Vec<AccessPointSpec>) -> Options {
        Options {
            backend,
            access_points,
            s3_endpoint: None,
            shared_database: None,
            changes: Vec::new(),
        }
    }

    /// A change to the configuration, applied (in order) after the harness defaults and
    /// before validation: `opts.config(|c| c.limits.per_subject_burst = 3)`.
    pub fn config(&mut self, change: impl FnOnce(&mut Config) + Send + 'static) -> &mut Self {
        self.changes.push(Box::new(change));
        self
    }

    /// `require_https` behind proxies in these networks (`127.0.0.0/8`: the test client).
    pub fn behind_proxies(&mut self, networks: &[&str]) -> &mut Self {
        let networks: Vec<ipnet::IpNet> =
            networks.iter().map(|n| n.parse().expect("CIDR")).collect();
        self.config(move |c| {
            c.server.require_https = true;
            c.server.trusted_proxies = networks;
        })
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend, access_points: Vec<AccessPointSpec>) -> TestApp {
        TestApp::spawn_with(Options::new(backend, access_points)).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        let dirs = tempfile::tempdir().expect("tempdir");
        let s3 = TestS3::start().await;
        s3.create_bucket(BUCKET).await;

        let (db_url, db) = match (&opts.shared_database, opts.backend) {
            (Some(url), _) => (url.clone(), TestDb::Shared),
            (None, Backend::Sqlite) => (
                format!("sqlite://{}", dirs.path().join("presignd.db").display()),
                TestDb::Sqlite,
            ),
            (None, Backend::Postgres) => {
                let (admin_url, name) = create_postgres_database("presignd_test").await;
                (
                    with_database(&admin_url, &name),
                    TestDb::Postgres { admin_url, name },
                )
            }
        };

        let audit_dir = dirs.path().join("audit");
        let ap_file = dirs.path().join("access-points.json");
        std::fs::write(
            &ap_file,
            serde_json::to_vec(&serde_json::json!({ "access_points": opts.access_points }))
                .expect("serialize access points"),
        )
        .expect("write access points");

        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
require_https = false
cors_allowed_origins = ["https://app.example.com"]

[database]
url = "{db_url}"

[auth]
# Tests add issuers; admin rights stay with the test issuer.
admin_issuers = ["{ISSUER}"]

[[auth.issuers]]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
algorithms = ["HS256"]
hs256_secret = "{HS_SECRET}"

[s3]
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "{ak}"
secret_access_key = "{sk}"

[audit]
sink = "file://{audit}"
instance = "test"
flush_interval_ms = 200
shutdown_flush_ms = 3000

[access_points]
file = "{ap_file}"
reload_interval_ms = 200
"#,
            endpoint = opts
                .s3_endpoint
                .as_ref()
                .map_or(&s3.endpoint, |e| &e.endpoint),
            ak = opts
                .s3_endpoint
                .as_ref()
                .map_or(&s3.access_key, |e| &e.access_key),
            sk = opts
                .s3_endpoint
                .as_ref()
                .map_or(&s3.secret_key, |e| &e.secret_key),
            audit = audit_dir.display(),
            ap_file = ap_file.display(),
        );
        let mut config: Config = toml::from_str(&toml).expect("the harness configuration parses");
        // Another instance of the same deployment has its own audit.instance (docs/audit.md):
        // under one name, each shipper would resume the other's batch in flight as its own and
        // ship it into its own sink too (the same record in both test sinks).
        if opts.shared_database.is_some() {
            config.audit.instance = Some(format!(
                "shared-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ));
        }
        for change in opts.changes {
            change(&mut config);
        }
        config.validate().expect("valid test config");
        let app = App::build(config).await.expect("app builds");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            state,
            s3,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            audit_dir,
            db_url: db_url.clone(),
            metrics_addr,
            _dirs: dirs,
            db,
            server,
            stop: Some(tx),
        }
    }

    /// Stops the server and drops the per-test PostgreSQL database.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        if let TestDb::Postgres { admin_url, name } = &self.db {
            drop_postgres_database(admin_url, name).await;
        }
    }

    pub fn token(&self, sub: &str, groups: &[&str], mfa: bool) -> String {
        mint_hs256(sub, groups, mfa, 600)
    }

    pub async fn presign(&self, token: &str, ap: &str, body: Value) -> (u16, Value) {
        self.post(token, &format!("/v1/access-points/{ap}/presign"), body)
            .await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        decode(resp).await
    }

    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        decode(resp).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await.expect("request")).await
    }

    /// Ships the audit outbox to the log sink now (fails the test after 20 s).
    pub async fn flush_audit(&self) {
        self.state
            .audit()
            .flush(Duration::from_secs(20))
            .await
            .expect("audit outbox ships to the log sink");
    }

    /// Every audit record written so far, in order: flushes the outbox, then reads the
    /// `file://` log sink's objects (gzip NDJSON). Needs a multi-thread runtime.
    pub fn audit_records(&self) -> Vec<Value> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.flush_audit())
        });
        audit_records_in(&self.audit_dir)
    }

    /// The per-test PostgreSQL database: `(admin_url, name)`.
    pub fn postgres_database(&self) -> Option<(String, String)> {
        match &self.db {
            TestDb::Postgres { admin_url, name } => Some((admin_url.clone(), name.clone())),
            TestDb::Sqlite | TestDb::Shared => None,
        }
    }
}

/// Every audit record in a `file://` sink directory, in order: object keys are
/// `dt=…/hour=…/{instance}-{first_id}-{last_id}` and ids are UUIDv7, so the path order is the
/// time order.
pub fn audit_records_in(dir: &std::path::Path) -> Vec<Value> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files.retain(|f| f.to_string_lossy().ends_with(".ndjson.gz"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            ndjson_gz(&std::fs::read(f).expect("read audit object"))
                .into_iter()
                .map(|l| serde_json::from_str::<Value>(&l).expect("audit line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The lines of a gzip NDJSON object.
pub fn ndjson_gz(bytes: &[u8]) -> Vec<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines().map(str::to_string).collect()
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let is_problem = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response carries x-request-id"
    );
    let text = resp.text().await.expect("body");
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status >= 400 {
        assert!(is_problem, "error {status} must be problem+json: {body}");
        assert!(body["code"].is_string(), "problem has a code: {body}");
        assert!(
            body["request_id"].is_string(),
            "problem has a request_id: {body}"
        );
    }
    (status, body)
}

/// A real HS256 JWT for the test issuer.
pub fn mint_hs256(sub: &str, groups: &[&str], mfa: bool, ttl_secs: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let amr = if mfa { vec!["pwd", "mfa"] } else { vec!["pwd"] };
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": groups, "amr": amr,
        "iat": now, "nbf": now, "exp": now + ttl_secs,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign test token")
}

/// Parses an access point from JSON (the admin API shape).
pub fn ap(v: Value) -> AccessPointSpec {
    serde_json::from_value(v).expect("valid access point JSON")
}

/// `avatars` with its per-user folders (rule 0, `${jwt:sub}/*`) owned by the subjects of
/// `issuers`: what an access point needs once several issuers are configured.
pub fn avatars_of(issuers: &[&str]) -> AccessPointSpec {
    let mut spec = avatars();
    spec.rules[0].issuers = issuers.iter().map(|i| i.to_string()).collect();
    spec
}

/// The avatars access point of the docs (docs/configuration.md), on the test bucket.
pub fn avatars() -> AccessPointSpec {
    ap(serde_json::json!({
        "name": "avatars",
        "bucket": BUCKET,
        "prefix": "avatars/",
        "default_expires_in": 300,
        "max_expires_in": 3600,
        "upload": { "max_content_length": 5242880, "content_types": ["image/*", "text/plain"] },
        "rules": [
            { "effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"] },
            { "effect": "allow", "groups": ["moderators"], "operations": ["get"], "keys": ["*"] },
            { "effect": "allow", "groups": ["moderators"], "operations": ["delete"], "keys": ["*"], "require_mfa": true },
            { "effect": "deny", "groups": ["suspended"], "operations": ["*"] }
        ]
    }))
}
