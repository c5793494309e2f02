//! Real test keys (`tests/fixtures/jwt/`), token minting, and a real JWKS HTTP server on
//! 127.0.0.1:0 whose key set can be switched, made to fail, or shut down, and which counts hits.
//! Other test crates can use it with `pub mod jwt;` in `tests/common/mod.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presignd::config::IssuerConfig;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt/",
            $name
        ))
    };
}

pub const AUDIENCE: &str = "presignd";

/// A fixture key pair with the `kid` the test JWKS publishes it under.
#[derive(Clone, Copy)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: &'static str,
    pub private_pem: &'static str,
    pub public_pem: &'static str,
}

pub const RSA1: TestKey = TestKey {
    alg: Algorithm::RS256,
    kid: "rsa1",
    private_pem: fixture!("rsa1.pem"),
    public_pem: fixture!("rsa1.pub.pem"),
};
pub const RSA2: TestKey = TestKey {
    alg: Algorithm::RS256,
    kid: "rsa2",
    private_pem: fixture!("rsa2.pem"),
    public_pem: fixture!("rsa2.pub.pem"),
};
pub const EC: TestKey = TestKey {
    alg: Algorithm::ES256,
    kid: "ec1",
    private_pem: fixture!("ec.pem"),
    public_pem: fixture!("ec.pub.pem"),
};
pub const ED: TestKey = TestKey {
    alg: Algorithm::EdDSA,
    kid: "ed1",
    private_pem: fixture!("ed25519.pem"),
    public_pem: fixture!("ed25519.pub.pem"),
};

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

impl TestKey {
    pub fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pem.as_bytes();
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            other => panic!("no fixture key for {other:?}"),
        }
        .expect("fixture private key parses")
    }

    /// The public JWK, derived from the private key, as an IdP would publish it.
    pub fn jwk(&self) -> Value {
        self.jwk_with_kid(self.kid)
    }

    pub fn jwk_with_kid(&self, kid: &str) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).expect("public JWK");
        let mut value = serde_json::to_value(jwk).expect("JWK serializes");
        value["kid"] = json!(kid);
        value["use"] = json!("sig");
        value
    }

    /// A header with this key's `alg` and `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        header
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding_key()).expect("token signs")
    }
}

pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// Valid claims for `iss`, audience `presignd`, 10 minutes left.
pub fn claims(iss: &str, sub: &str) -> Value {
    let now = now();
    json!({ "iss": iss, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + 600 })
}

pub fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token signs")
}

/// Issuer config with the documented defaults and no key source.
pub fn issuer_config(issuer: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: issuer.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        algorithms: Vec::new(),
        jwks_url: None,
        public_key_pem: None,
        public_key_file: None,
        hs256_secret: None,
        signing_key_file: None,
        audience_claim: "aud".to_owned(),
        groups_claim: "groups".to_owned(),
        groups_strip_prefix: None,
        group_aliases: Default::default(),
        mfa_claim: "amr".to_owned(),
        leeway_seconds: 30,
        jwks_refresh_seconds: 300,
        jwks_min_refetch_seconds: 30,
    }
}

/// An HTTP client that goes straight to loopback, whatever proxy the environment sets.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

struct ServerState {
    jwks: Mutex<Value>,
    failing: AtomicBool,
    hits: AtomicUsize,
}

/// A JWKS endpoint at `url` (`http://127.0.0.1:PORT/jwks.json`).
pub struct JwksServer {
    pub url: String,
    state: Arc<ServerState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub async fn start(jwks: Value) -> JwksServer {
        let state = Arc::new(ServerState {
            jwks: Mutex::new(jwks),
            failing: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("JWKS server runs");
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().expect("lock") = jwks;
    }

    /// While failing, every request gets a 500 (still counted as a hit).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Stops listening; afterwards connections are refused.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("JWKS server stops");
        }
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let jwks = state.jwks.lock().expect("lock").clone();
    Json(jwks).into_response()
}
