//! What the Redis rate limiter adds to a request, measured in one run next to no limiter.
//!
//!   cargo bench --bench limiter          (Redis: $PRESIGND_TEST_REDIS_URL or 127.0.0.1:6379)
//!
//! 1. The limiter call alone: no buckets, the in-process limiter, Redis (one script call).
//! 2. A presign request through the in-process router (JWT verify, policy, limiter, sign),
//!    limits off vs limits on Redis, interleaved request by request so both see the same
//!    machine. The audit sink is a no-op here: its durable commit would drown the difference
//!    (it has its own benchmark).
//! 3. A batch of 100 items the same way: the items' limiter calls are pipelined on one
//!    connection, so the batch pays far less than 100 round trips.
//!
//! Under `cargo test` (no `--bench` argument) it runs a few iterations as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use presignd::App;
use presignd::audit::{AuditError, AuditRecord, AuditSink, BoxFuture};
use presignd::config::Config;
use presignd::config::{LimitsConfig, RedisConfig};
use presignd::limits::{Bucket, Limiter, Quota, Scope};
use presignd::metrics::Metrics;
use presignd::state::AppState;
use tower::ServiceExt;

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

struct NullSink;

impl AuditSink for NullSink {
    fn append_with<'a>(
        &'a self,
        _: &'a [AuditRecord],
        _: Vec<presignd::store::StoredIssuance>,
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async { Ok(()) })
    }
    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(async { Ok(()) })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:>9.1} µs", d.as_secs_f64() * 1e6)
}

fn row(label: &str, s: &Stats) {
    println!("  {label:<44} p50 {}   p99 {}", us(s.p50), us(s.p99));
}

fn diff(label: &str, with: &Stats, without: &Stats) {
    let d = |a: Duration, b: Duration| {
        let v = a.as_secs_f64() - b.as_secs_f64();
        format!("{:>+9.1} µs", v * 1e6)
    };
    println!(
        "  {label:<44} p50 {}   p99 {}",
        d(with.p50, without.p50),
        d(with.p99, without.p99)
    );
}

fn config(dir: &std::path::Path, redis: Option<&str>, prefix: &str) -> Config {
    let ap_file = dir.join("access-points.json");
    std::fs::write(
        &ap_file,
        serde_json::json!({"access_points": [{
            "name": "bench", "bucket": "bench-bucket", "prefix": "p/",
            "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"], "keys": ["${jwt:sub}/*"]}]
        }]})
        .to_string(),
    )
    .expect("write access points");
    let limits = match redis {
        // Limits high enough never to refuse: every request pays the full limiter path.
        Some(url) => format!(
            "[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\n[limits]\nper_subject_per_minute = 1000000\nper_subject_burst = 1000000\nper_access_point_per_second = 1000000\n"
        ),
        None => "[limits]\nper_subject_per_minute = 0\nper_access_point_per_second = 0\n".into(),
    };
    let db = dir.join(if redis.is_some() {
        "redis.db"
    } else {
        "none.db"
    });
    Config::from_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
require_https = false
[database]
url = "sqlite://{db}"
[[auth.issuers]]
issuer = "https://idp.bench/"
audiences = ["presignd"]
algorithms = ["HS256"]
hs256_secret = "{SECRET}"
[s3]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "AKBENCH"
secret_access_key = "bench-secret-key"
[audit]
sink = "file://{audit}"
[access_points]
file = "{ap}"
[log]
filter = "error"
{limits}
"#,
        db = db.display(),
        audit = dir.join("audit").display(),
        ap = ap_file.display(),
    ))
    .expect("bench config")
}

fn token(sub: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "https://idp.bench/", "aud": "presignd", "sub": sub,
                            "groups": ["users"], "iat": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

async fn app(dir: &std::path::Path, redis: Option<&str>, prefix: &str) -> AppState {
    let (state, _background) = App::assemble(config(dir, redis, prefix))
        .await
        .expect("app assembles");
    state.with_audit(Arc::new(NullSink))
}

async fn request(router: &axum::Router, path: &str, token: &str, body: &str) -> Duration {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let started = Instant::now();
    let resp = router.clone().oneshot(req).await.expect("response");
    let took = started.elapsed();
    assert_eq!(resp.status(), 200, "bench request refused");
    took
}

async fn run(iterations: usize) {
    let redis_url = std::env::var("PRESIGND_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presignd-bench-{}:", uuid::Uuid::new_v4().simple());
    println!("rate limiter overhead, {iterations} iterations each, Redis at {redis_url}");

    // 1. The limiter call alone.
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let limits = LimitsConfig::default();
    let local = Limiter::new(&limits, &RedisConfig::default(), Arc::clone(&metrics))
        .await
        .expect("local limiter");
    let redis_config = RedisConfig {
        url: Some(redis_url.clone().into()),
        key_prefix: prefix.clone(),
        ..RedisConfig::default()
    };
    let shared = Limiter::new(&limits, &redis_config, Arc::clone(&metrics))
        .await
        .expect("redis limiter");
    assert_eq!(
        shared.backend(),
        presignd::limits::Backend::Redis,
        "Redis is not reachable at {redis_url} (scripts/ensure-redis starts one)"
    );
    let quota = Quota::per_second(1_000_000, 1_000_000).expect("quota");
    let buckets: Vec<Bucket> = [Scope::Subject, Scope::AccessPoint]
        .into_iter()
        .map(|scope| Bucket {
            key: format!("{prefix}bench:{}", scope.as_str()),
            quota,
            scope,
        })
        .collect();
    let mut none = Vec::with_capacity(iterations);
    let mut in_process = Vec::with_capacity(iterations);
    let mut redis = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        local.admit_buckets(&[]).await.expect("no buckets");
        none.push(t.elapsed());
        let t = Instant::now();
        local.admit_buckets(&buckets).await.expect("admitted");
        in_process.push(t.elapsed());
        let t = Instant::now();
        shared.admit_buckets(&buckets).await.expect("admitted");
        redis.push(t.elapsed());
    }
    assert_eq!(
        metrics.ratelimit_fallback_total.get(),
        0,
        "Redis answered every call"
    );
    println!("limiter call alone (two buckets: subject + access point):");
    row("no limits", &stats(none));
    row("in-process limiter", &stats(in_process));
    row("Redis limiter (one EVALSHA round trip)", &stats(redis));

    // 2. and 3. Through the router, interleaved.
    let dir = tempfile::tempdir().expect("tempdir");
    let off = crate::app(dir.path(), None, &prefix).await;
    let on = crate::app(dir.path(), Some(&redis_url), &prefix).await;
    assert_eq!(on.limiter().backend(), presignd::limits::Backend::Redis);
    let (off, on) = (presignd::http::router(off), presignd::http::router(on));
    let tok = token("alice");
    let one = r#"{"operation": "get", "key": "alice/photo.png"}"#;
    let items: Vec<String> = (0..100)
        .map(|i| {
            format!(r#"{{"access_point": "bench", "operation": "get", "key": "alice/{i}.png"}}"#)
        })
        .collect();
    let batch = format!(r#"{{"items": [{}]}}"#, items.join(","));
    let path = "/v1/access-points/bench/presign";
    // Warm up both (connections, caches).
    for _ in 0..20 {
        request(&off, path, &tok, one).await;
        request(&on, path, &tok, one).await;
    }
    let (mut single_off, mut single_on) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        single_off.push(request(&off, path, &tok, one).await);
        single_on.push(request(&on, path, &tok, one).await);
    }
    let (single_off, single_on) = (stats(single_off), stats(single_on));
    println!("presign request through the router (audit sink: no-op):");
    row("limits off", &single_off);
    row("limits on Redis (subject + access point)", &single_on);
    diff("added by the Redis limiter", &single_on, &single_off);

    let batches = (iterations / 20).max(5);
    let (mut batch_off, mut batch_on) = (Vec::new(), Vec::new());
    for _ in 0..batches {
        batch_off.push(request(&off, "/v1/presign/batch", &tok, &batch).await);
        batch_on.push(request(&on, "/v1/presign/batch", &tok, &batch).await);
    }
    let (batch_off, batch_on) = (stats(batch_off), stats(batch_on));
    println!("batch of 100 items ({batches} batches):");
    row("limits off", &batch_off);
    row("limits on Redis (100 pipelined script calls)", &batch_on);
    diff("added by the Redis limiter", &batch_on, &batch_off);
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let iterations = if bench { 5_000 } else { 50 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(iterations));
}
