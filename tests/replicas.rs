//! Two real presignd processes (the binary, two configs) on one PostgreSQL database and one
//! Redis: what one instance changes, the other enforces within a second (PostgreSQL
//! `LISTEN/NOTIFY`; the periodic reload is set to a minute so it cannot be what does it); a
//! per-subject rate limit holds across both together; and Redis dying under them switches them
//! to their local limiters until it is back — without restarting either.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::app::{
    AUDIENCE, BUCKET, HS_SECRET, ISSUER, create_postgres_database, drop_postgres_database,
    mint_hs256, with_database,
};
use common::redis::{ThrowawayRedis, clients, key_prefix, redis_url};
use common::s3::TestS3;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ADMIN_GROUP: &str = "presignd-admins";

/// One PostgreSQL database, one S3 endpoint, one temp dir: what the replicas share.
struct Cluster {
    admin_url: String,
    db: String,
    s3: TestS3,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

struct Replica {
    base: String,
    log: PathBuf,
    _child: Child,
}

impl Cluster {
    async fn new() -> Cluster {
        let (admin_url, db) = create_postgres_database("presignd_replicas").await;
        let s3 = TestS3::start().await;
        s3.create_bucket(BUCKET).await;
        Cluster {
            admin_url,
            db,
            s3,
            dir: tempfile::tempdir().expect("tempdir"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(16)
                .build()
                .expect("http client"),
        }
    }

    /// Starts `presignd serve` with its own config and waits until it listens.
    async fn start(&self, name: &str, redis: &str, prefix: &str, limits: &str) -> Replica {
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
require_https = false

[database]
url = "{db}"
max_connections = 5

{issuer}
[s3]
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "{ak}"
secret_access_key = "{sk}"

[audit]
sink = "file://{audit}"
instance = "{name}"
flush_interval_ms = 200

[access_points]
# A minute: only the change notifications can make the one-second deadline.
reload_interval_ms = 60000

[redis]
url = "{redis}"
key_prefix = "{prefix}"
retry_interval_ms = 100

[limits]
{limits}

[log]
format = "json"
filter = "info"
"#,
                db = with_database(&self.admin_url, &self.db),
                endpoint = self.s3.endpoint,
                ak = self.s3.access_key,
                sk = self.s3.secret_key,
                audit = self.dir.path().join("audit").display(),
                issuer = common::app::issuer_toml(),
            ),
        )
        .expect("write config");
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_presignd"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            // Only the config file speaks: no PRESIGND_* or RUST_LOG from the test's environment.
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start presignd");
        let addr = listening_address(&log).await;
        Replica {
            base: format!("http://{addr}"),
            log,
            _child: child,
        }
    }

    async fn finish(self) {
        drop_postgres_database(&self.admin_url, &self.db).await;
    }
}

/// The `addr` of the "presignd listening" log line (JSON logs).
async fn listening_address(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["fields"]["message"] == "presignd listening")
                .then(|| v["fields"]["addr"].as_str().map(str::to_string))?
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "presignd did not start; its log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Replica {
    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| {
            panic!(
                "request to {}: {e}; log:\n{}",
                self.base,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        let headers = resp.headers().clone();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn presign(&self, http: &reqwest::Client, token: &str, ap: &str, body: Value) -> u16 {
        self.call(
            http,
            reqwest::Method::POST,
            &format!("/v1/access-points/{ap}/presign"),
            token,
            &[],
            Some(body),
        )
        .await
        .0
    }
}

/// Polls `check` until it holds; returns how long that took after `since`. Fails after 10 s.
async fn within<F, Fut>(since: Instant, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{what}: not seen after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const FAST: Duration = Duration::from_secs(1);

/// The tests of this file run one at a time: each runs two servers and some load on a small
/// machine, and the deadlines they check are about presignd, not about sharing the CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_instance_are_enforced_by_the_other_within_a_second() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let prefix = key_prefix();
    let limits = "per_subject_per_minute = 0";
    let a = cluster.start("a", &redis_url(), &prefix, limits).await;
    let b = cluster.start("b", &redis_url(), &prefix, limits).await;
    let http = &cluster.http;
    let admin = mint_hs256("root", &[ADMIN_GROUP], false, 600);
    let sam = mint_hs256("sam", &["staff"], false, 600);
    let get = json!({"operation": "get", "key": "a.txt"});
    let put = json!({"operation": "put", "key": "a.txt"});
    assert_eq!(b.presign(http, &sam, "docs", get.clone()).await, 404);

    // Created through A ...
    let spec = |ops: Value| {
        json!({"bucket": BUCKET, "prefix": "docs/",
               "rules": [{"effect": "allow", "groups": ["staff"], "operations": ops}]})
    };
    let (status, body, created) = a
        .call(
            http,
            reqwest::Method::PUT,
            "/v1/admin/access-points/docs",
            &admin,
            &[],
            Some(spec(json!(["get", "put"]))),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let v1 = created
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_string();
    let done = Instant::now();
    // ... served by B within a second.
    let took = within(done, "B serves the new access point", || async {
        b.presign(http, &sam, "docs", get.clone()).await == 200
    })
    .await;
    eprintln!("B served it after {took:?}");
    assert!(took < FAST, "B served it after {took:?}");
    assert_eq!(b.presign(http, &sam, "docs", put.clone()).await, 200);

    // Narrowed through A (no more put) ...
    let (status, _, _) = a
        .call(
            http,
            reqwest::Method::PUT,
            "/v1/admin/access-points/docs",
            &admin,
            &[("if-match", v1.as_str())],
            Some(spec(json!(["get"]))),
        )
        .await;
    assert_eq!(status, 200);
    let done = Instant::now();
    let took = within(done, "B enforces the narrowed rules", || async {
        b.presign(http, &sam, "docs", put.clone()).await == 403
    })
    .await;
    eprintln!("B enforced it after {took:?}");
    assert!(took < FAST, "B enforced it after {took:?}");
    // A stale writer on B is refused: the version is shared.
    let (status, _, _) = b
        .call(
            http,
            reqwest::Method::PUT,
            "/v1/admin/access-points/docs",
            &admin,
            &[("if-match", v1.as_str())],
            Some(spec(json!(["get", "put"]))),
        )
        .await;
    assert_eq!(status, 412);

    // A revocation through A ...
    assert_eq!(b.presign(http, &sam, "docs", get.clone()).await, 200);
    let (status, revoked, _) = a
        .call(
            http,
            reqwest::Method::POST,
            "/v1/admin/revocations",
            &admin,
            &[],
            Some(json!({"sub": "sam"})),
        )
        .await;
    assert_eq!(status, 201, "{revoked}");
    let done = Instant::now();
    // ... is enforced by B within a second.
    let took = within(done, "B refuses the revoked token", || async {
        b.presign(http, &sam, "docs", get.clone()).await == 401
    })
    .await;
    eprintln!("B refused it after {took:?}");
    assert!(took < FAST, "B refused it after {took:?}");
    // A token issued at or after the cut-off is fine.
    let not_before = time::OffsetDateTime::parse(
        revoked["not_before"].as_str().expect("not_before"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
    .unix_timestamp();
    let fresh = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "sam", "groups": ["staff"],
                "iat": not_before, "exp": not_before + 600}),
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign");
    assert_eq!(b.presign(http, &fresh, "docs", get.clone()).await, 200);

    // Deleted through A: gone from B within a second.
    let (status, _, _) = a
        .call(
            http,
            reqwest::Method::DELETE,
            "/v1/admin/access-points/docs",
            &admin,
            &[],
            None,
        )
        .await;
    assert_eq!(status, 204);
    let done = Instant::now();
    let took = within(done, "B stops serving the deleted access point", || async {
        b.presign(http, &fresh, "docs", get.clone()).await == 404
    })
    .await;
    eprintln!("B stopped after {took:?}");
    assert!(took < FAST, "B stopped after {took:?}");
    drop((a, b));
    cluster.finish().await;
}

/// What a load of `per_target` concurrent clients on each replica got in `window`.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    limited: usize,
    other: Vec<u16>,
    retry_after_ok: bool,
    elapsed: Duration,
}

async fn hammer(
    http: &reqwest::Client,
    replicas: &[&Replica],
    token: &str,
    per_target: usize,
    window: Duration,
) -> Tally {
    let started = Instant::now();
    let deadline = started + window;
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for replica in replicas {
        for _ in 0..per_target {
            let (http, tally, token) = (http.clone(), Arc::clone(&tally), token.to_string());
            let url = format!("{}/v1/access-points/docs/presign", replica.base);
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"operation": "get", "key": "a.txt"}))
                        .send()
                        .await
                        .expect("request");
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let mut t = tally.lock().expect("tally");
                    match status {
                        200 => t.ok += 1,
                        429 => {
                            t.limited += 1;
                            if retry_after.is_some_and(|s| s >= 1) && body["code"] == "rate_limited"
                            {
                                t.retry_after_ok = true;
                            }
                        }
                        other => t.other.push(other),
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut t = std::mem::take(&mut *tally.lock().expect("tally"));
    t.elapsed = started.elapsed();
    t
}

/// `R` per second, burst `B`, for the per-subject limit in these tests.
const RATE: f64 = 10.0;
const BURST: f64 = 5.0;
const LIMITS: &str = "per_subject_per_minute = 600\nper_subject_burst = 5";
const WINDOW: Duration = Duration::from_secs(2);

/// The most a shared limit can admit in `elapsed` from an idle bucket (+1 for the request
/// in flight at the edge of the window).
fn shared_bound(elapsed: Duration) -> f64 {
    BURST + RATE * elapsed.as_secs_f64() + 1.0
}

async fn put_docs(cluster: &Cluster, a: &Replica) {
    let admin = mint_hs256("root", &[ADMIN_GROUP], false, 600);
    let (status, body, _) = a
        .call(&cluster.http, reqwest::Method::PUT, "/v1/admin/access-points/docs", &admin, &[],
              Some(json!({"bucket": BUCKET, "prefix": "docs/",
                          "rules": [{"effect": "allow", "groups": ["staff"], "operations": ["get"]}]})))
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_subject_limit_holds_across_both_instances() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let prefix = key_prefix();
    let a = cluster.start("a", &redis_url(), &prefix, LIMITS).await;
    let b = cluster.start("b", &redis_url(), &prefix, LIMITS).await;
    put_docs(&cluster, &a).await;
    let http = &cluster.http;
    let sam = mint_hs256("sam", &["staff"], false, 600);
    within(Instant::now(), "B serves docs", || async {
        b.presign(http, &sam, "docs", json!({"operation": "get", "key": "x"}))
            .await
            != 404
    })
    .await;
    let fresh = mint_hs256("sue", &["staff"], false, 600);
    let t = hammer(http, &[&a, &b], &fresh, 3, WINDOW).await;
    eprintln!("load: {t:?} (shared bound {:.1})", shared_bound(t.elapsed));
    assert!(t.other.is_empty(), "only 200 and 429: {t:?}");
    let bound = shared_bound(t.elapsed);
    let expected = BURST + RATE * WINDOW.as_secs_f64();
    assert!(
        t.ok as f64 <= bound,
        "{} admitted across both instances in {:?}; a shared limit allows at most {bound}",
        t.ok,
        t.elapsed
    );
    assert!(
        t.ok as f64 >= 0.8 * expected,
        "{} admitted, expected about {expected}: the limit is stricter than configured ({t:?})",
        t.ok
    );
    assert!(
        t.limited > 0 && t.retry_after_ok,
        "429s carry Retry-After: {t:?}"
    );
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_under_both_instances_falls_back_locally_and_recovers() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let mut redis = ThrowawayRedis::start().await;
    let prefix = key_prefix();
    let a = cluster.start("a", &redis.url(), &prefix, LIMITS).await;
    let b = cluster.start("b", &redis.url(), &prefix, LIMITS).await;
    put_docs(&cluster, &a).await;
    let http = &cluster.http;
    let probe = mint_hs256("probe", &["staff"], false, 600);
    within(Instant::now(), "B serves docs", || async {
        b.presign(
            http,
            &probe,
            "docs",
            json!({"operation": "get", "key": "x"}),
        )
        .await
            != 404
    })
    .await;

    // Shared: both together stay within one budget.
    let t = hammer(
        http,
        &[&a, &b],
        &mint_hs256("one", &["staff"], false, 600),
        3,
        WINDOW,
    )
    .await;
    eprintln!("load: {t:?} (shared bound {:.1})", shared_bound(t.elapsed));
    assert!(t.other.is_empty(), "{t:?}");
    assert!(
        t.ok as f64 <= shared_bound(t.elapsed),
        "shared before the outage: {t:?}"
    );

    // Redis dies: requests go on (no 5xx), each instance limiting on its own, so together
    // they admit more than one shared budget would.
    redis.kill().await;
    let t = hammer(
        http,
        &[&a, &b],
        &mint_hs256("two", &["staff"], false, 600),
        3,
        WINDOW,
    )
    .await;
    eprintln!("load: {t:?} (shared bound {:.1})", shared_bound(t.elapsed));
    assert!(
        t.other.is_empty(),
        "the local limiter answers, not an error: {t:?}"
    );
    assert!(t.limited > 0, "still limited, per instance: {t:?}");
    assert!(
        t.ok as f64 > shared_bound(t.elapsed),
        "two local budgets admit more than one shared one: {t:?}"
    );

    // Redis is back: both reconnect by themselves (no restart) ...
    redis.restart().await;
    let url = redis.url();
    within(
        Instant::now(),
        "both instances reconnect to Redis",
        || async {
            // Each instance reconnects after its next failed call; keep them calling.
            a.presign(
                http,
                &probe,
                "docs",
                json!({"operation": "get", "key": "x"}),
            )
            .await;
            b.presign(
                http,
                &probe,
                "docs",
                json!({"operation": "get", "key": "x"}),
            )
            .await;
            clients(&url).await >= 2
        },
    )
    .await;
    // ... and the budget is shared again.
    let t = hammer(
        http,
        &[&a, &b],
        &mint_hs256("three", &["staff"], false, 600),
        3,
        WINDOW,
    )
    .await;
    eprintln!("load: {t:?} (shared bound {:.1})", shared_bound(t.elapsed));
    assert!(t.other.is_empty(), "{t:?}");
    assert!(
        t.ok as f64 <= shared_bound(t.elapsed),
        "shared again: {t:?}"
    );
    assert!(
        t.ok as f64 >= 0.8 * (BURST + RATE * WINDOW.as_secs_f64()),
        "{t:?}"
    );
    drop((a, b));
    cluster.finish().await;
}
