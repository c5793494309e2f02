//! Rate limits on one instance: per subject, per access point, the SSE-KMS budget; 429
//! `rate_limited` with `Retry-After`; batches; the in-process limiter without Redis; and with
//! Redis down, the local fallback or (configured) a fail-closed 503 — recovering by itself.

mod common;

use std::time::{Duration, Instant};

use common::app::{BUCKET, Backend, Options, TestApp, ap, avatars};
use common::redis::{ThrowawayRedis, key_prefix, keys, redis_config, redis_url};
use presignd::config::{LimitsConfig, OnRedisError};
use serde_json::{Value, json};

fn kms() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "kms",
        "bucket": BUCKET,
        "prefix": "kms/",
        "encryption": {"mode": "sse-kms", "kms_key_id": "alias/test"},
        "limits": {"sse_kms_per_second": 1, "sse_kms_burst": 3},
        "rules": [
            {"effect": "allow", "groups": ["users"], "operations": ["get", "put"]},
            {"effect": "allow", "groups": ["users"], "operations": ["delete"], "require_mfa": true}
        ]
    }))
}

fn busy() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "busy",
        "bucket": BUCKET,
        "prefix": "busy/",
        "limits": {"per_second": 1, "burst": 2},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get"]}]
    }))
}

async fn spawn(
    backend: Backend,
    redis: Option<&str>,
    limits: impl FnOnce(&mut LimitsConfig) + Send + 'static,
) -> (TestApp, String) {
    let prefix = key_prefix();
    let mut opts = Options::new(backend, vec![avatars(), kms(), busy()]);
    let redis = redis.map(|url| redis_config(url, &prefix));
    opts.config(move |c| {
        if let Some(redis) = redis {
            c.redis = redis;
        }
        limits(&mut c.limits);
    });
    (TestApp::spawn_with(opts).await, prefix)
}

/// `limits.on_redis_error` as the configuration file spells it.
fn on_error(mode: &str) -> OnRedisError {
    match mode {
        "deny" => OnRedisError::Deny,
        _ => OnRedisError::Local,
    }
}

async fn get(app: &TestApp, token: &str, ap: &str, key: &str) -> (u16, Value) {
    app.presign(token, ap, json!({"operation": "get", "key": key}))
        .await
}

/// `n` GETs in a row; the statuses.
async fn burst(app: &TestApp, token: &str, ap: &str, key: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(app, token, ap, key).await.0);
    }
    out
}

/// Requests from `next()` until one is refused (at most `max`); the successes before it and
/// the refusal's problem.
async fn until_refused<F, Fut>(max: usize, mut next: F) -> (usize, Duration, Value)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let started = Instant::now();
    for passed in 0..max {
        let (status, body) = next().await;
        match status {
            200 => {}
            429 => return (passed, started.elapsed(), body),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    panic!("no refusal in {max} requests");
}

async fn per_subject(redis: Option<String>) {
    // One per minute, three at once: nothing refills during the test.
    let (app, prefix) = spawn(Backend::Sqlite, redis.as_deref(), |l| {
        l.per_subject_per_minute = 1;
        l.per_subject_burst = 3;
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    assert_eq!(
        burst(&app, &alice, "avatars", "alice/a.png", 3).await,
        [200, 200, 200]
    );
    let resp = app
        .http
        .post(format!("{}/v1/access-points/avatars/presign", app.base))
        .bearer_auth(&alice)
        .json(&json!({"operation": "get", "key": "alice/a.png"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((50..=60).contains(&retry_after), "{retry_after}");
    let (_, problem) = common::app::decode(resp).await;
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["retry_after"], retry_after);

    // Another subject has a bucket of its own; denied requests are not charged.
    let bob = app.token("bob", &["users"], false);
    assert_eq!(get(&app, &bob, "avatars", "alice/x.png").await.0, 403);
    assert_eq!(
        burst(&app, &bob, "avatars", "bob/a.png", 4).await,
        [200, 200, 200, 429]
    );

    // The refusal is audited like any other decision.
    let reasons: Vec<String> = app
        .audit_records()
        .into_iter()
        .filter(|r| r["subject"] == "alice")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["allowed", "allowed", "allowed", "rate_limited"],
        "{reasons:?}"
    );
    if let Some(url) = &redis {
        let k = keys(url, &prefix).await;
        assert!(
            k.iter().all(|k| k.starts_with(&format!("{prefix}rl:s:"))),
            "{k:?}"
        );
        assert!(
            !k.iter().any(|k| k.contains("alice")),
            "no identifiers in Redis keys"
        );
        assert_eq!(k.len(), 2, "one bucket per subject: {k:?}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subject_limit_on_redis() {
    per_subject(Some(redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subject_limit_in_process_without_redis() {
    per_subject(None).await;
}

async fn access_point_and_kms(backend: Backend) {
    let (app, _) = spawn(backend, Some(&redis_url()), |l| {
        l.per_subject_per_minute = 0
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let alice_mfa = app.token("alice", &["users"], true);

    // `busy`: 1/s with a burst of 2, shared by every caller (alice and bob take turns).
    let mut turn = 0;
    let (passed, took, problem) = until_refused(50, || {
        turn += 1;
        let token = if turn % 2 == 0 { &alice } else { &bob };
        get(&app, token, "busy", "k")
    })
    .await;
    assert!(
        passed >= 2 && passed as f64 <= 2.0 + took.as_secs_f64().ceil(),
        "{passed} passed in {took:?}"
    );
    assert_eq!(problem["code"], "rate_limited");
    // It refills at 1/s: poll until it admits again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&app, &alice, "busy", "k").await.0 != 200 {
        assert!(Instant::now() < deadline, "busy never refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `kms`: an SSE-KMS budget of 1/s, burst 3, over GET and PUT together.
    let mut turn = 0;
    let (passed, took, _) = until_refused(50, || {
        turn += 1;
        let body = if turn % 2 == 0 {
            json!({"operation": "get", "key": "x.bin"})
        } else {
            json!({"operation": "put", "key": "x.bin", "content_length": 3})
        };
        app.presign(&alice, "kms", body)
    })
    .await;
    assert!(
        passed >= 3 && passed as f64 <= 3.0 + took.as_secs_f64().ceil(),
        "{passed} passed in {took:?}"
    );
    // DELETE costs S3 no KMS call: not charged to the budget.
    let (status, _) = app
        .presign(
            &alice_mfa,
            "kms",
            json!({"operation": "delete", "key": "x.bin"}),
        )
        .await;
    assert_eq!(status, 200, "delete is not charged to the KMS budget");
    // Other access points are unaffected.
    assert_eq!(get(&app, &alice, "avatars", "alice/a.png").await.0, 200);

    // A batch: each item is charged; refused items carry their own 429 and retry_after.
    // `busy` admits at most 2 at once, so at least 2 of these 4 are refused.
    let items: Vec<Value> = (0..4)
        .map(|i| json!({"access_point": "busy", "operation": "get", "key": format!("k{i}")}))
        .chain([json!({"access_point": "avatars", "operation": "get", "key": "alice/b.png"})])
        .collect();
    let (status, batch) = app
        .post(&alice, "/v1/presign/batch", json!({"items": items}))
        .await;
    assert_eq!(status, 200, "{batch}");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results[4]["status"], 200, "{batch}");
    let refused: Vec<&Value> = results[..4].iter().filter(|r| r["status"] == 429).collect();
    assert!(refused.len() >= 2, "{batch}");
    for r in refused {
        assert_eq!(r["error"]["code"], "rate_limited");
        assert!(
            r["error"]["retry_after"].as_u64().is_some_and(|s| s >= 1),
            "{r}"
        );
    }
    app.finish().await;
}
on_both_backends!(access_point_and_sse_kms_limits, access_point_and_kms);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_share_one_budget_in_order() {
    let (app, _) = spawn(Backend::Sqlite, Some(&redis_url()), |l| {
        l.per_subject_per_minute = 1;
        l.per_subject_burst = 5;
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"access_point": "avatars", "operation": "get", "key": format!("alice/{i}.png")}))
        .collect();
    let (status, batch) = app
        .post(&alice, "/v1/presign/batch", json!({"items": items}))
        .await;
    assert_eq!(status, 200);
    let ok = batch["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == 200)
        .count();
    assert_eq!(ok, 5, "exactly the burst passes: {batch}");
    app.finish().await;
}

/// Redis dies under a running instance: with `local` the requests go on under the in-process
/// limiter; with `deny` they get 503. Either way, Redis coming back restores shared limits
/// without a restart.
async fn redis_outage(on_redis_error: &str) {
    let mut redis = ThrowawayRedis::start().await;
    let mode = on_error(on_redis_error);
    let (app, prefix) = spawn(Backend::Sqlite, Some(&redis.url()), move |l| {
        l.per_subject_per_minute = 600;
        l.per_subject_burst = 100;
        l.on_redis_error = mode;
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    assert_eq!(get(&app, &alice, "avatars", "alice/a.png").await.0, 200);
    assert_eq!(
        keys(&redis.url(), &prefix).await.len(),
        1,
        "charged in Redis"
    );
    let fallbacks = || app.state.metrics().ratelimit_fallback_total.get();
    assert_eq!(fallbacks(), 0);

    redis.kill().await;
    let statuses = burst(&app, &alice, "avatars", "alice/a.png", 5).await;
    match on_redis_error {
        "local" => {
            assert_eq!(statuses, [200; 5], "the local limiter decides");
            assert_eq!(fallbacks(), 5, "every local decision is counted");
        }
        _ => {
            assert_eq!(statuses, [503; 5], "fail closed");
            let (_, problem) = get(&app, &alice, "avatars", "alice/a.png").await;
            assert_eq!(problem["code"], "unavailable");
        }
    }
    assert_eq!(
        app.state
            .metrics()
            .dependency_up
            .with_label_values(&["redis"])
            .get(),
        0
    );

    redis.restart().await;
    // Poll (bounded) until requests are charged in Redis again: the background task
    // reconnects every redis.retry_interval_ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get(&app, &alice, "avatars", "alice/a.png").await;
        if status == 200 && !keys(&redis.url(), &prefix).await.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shared limits did not resume (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = fallbacks();
    assert_eq!(get(&app, &alice, "avatars", "alice/a.png").await.0, 200);
    assert_eq!(fallbacks(), before, "decided by Redis again");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_the_local_limiter_and_recovers() {
    redis_outage("local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_when_configured_and_recovers() {
    redis_outage("deny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_at_startup_is_not_fatal() {
    let redis = ThrowawayRedis::start().await;
    let url = redis.url();
    drop(redis); // killed: nothing listens there now
    let (app, _) = spawn(Backend::Sqlite, Some(&url), |l| {
        l.per_subject_per_minute = 600
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    assert_eq!(get(&app, &alice, "avatars", "alice/a.png").await.0, 200);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_redis_and_fails_only_when_closed() {
    for (mode, ready_while_down) in [("local", true), ("deny", false)] {
        let mut redis = ThrowawayRedis::start().await;
        let on_redis_error = on_error(mode);
        let (app, _) = spawn(Backend::Sqlite, Some(&redis.url()), move |l| {
            l.on_redis_error = on_redis_error
        })
        .await;
        let (status, body) = app.get(None, "/readyz").await;
        assert_eq!(
            (status, &body["checks"]["redis"]),
            (200, &json!("ok")),
            "{body}"
        );
        redis.kill().await;
        let (status, body) = app.get(None, "/readyz").await;
        assert_eq!(body["checks"]["redis"], "unavailable", "{body}");
        assert_eq!(status == 200, ready_while_down, "{mode}: {body}");
        redis.restart().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.get(None, "/readyz").await.1["checks"]["redis"] != "ok" {
            assert!(
                Instant::now() < deadline,
                "{mode}: Redis never reported back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        app.finish().await;
    }
    // Without Redis configured there is nothing to report.
    let (app, _) = spawn(Backend::Sqlite, None, |_| {}).await;
    let (status, body) = app.get(None, "/readyz").await;
    assert_eq!(status, 200);
    assert!(body["checks"].get("redis").is_none(), "{body}");
    app.finish().await;
}

/// Finding 6 of the hardening review: refused callers were unlimited — 100 anonymous
/// requests wrote 100 durable records, 5 batches of 100 denied items wrote 500 in 40 ms —
/// while allowed requests were already limited. Past `limits.refusals_burst`, refusals are
/// answered 429 and counted into one summary record per caller instead of one record each;
/// every refusal is still accounted for, and the caller's allowed requests still go through.
async fn refused_callers(backend: Backend) {
    let (app, _) = spawn(backend, None, |l| {
        l.refusals_per_minute = 60;
        l.refusals_burst = 10;
        l.refusal_summary_interval_seconds = 3600;
    })
    .await;
    // Anonymous: no token at all, from one address.
    let mut anonymous = Vec::new();
    for _ in 0..30 {
        let resp = app
            .http
            .post(format!("{}/v1/access-points/avatars/presign", app.base))
            .json(&json!({"operation": "get", "key": "alice/a.png"}))
            .send()
            .await
            .expect("request");
        anonymous.push(resp.status().as_u16());
    }
    assert_eq!(&anonymous[..10], [401; 10]);
    assert_eq!(&anonymous[10..], [429; 20], "{anonymous:?}");

    // Authenticated: two batches of 20 items denied by the rules (another user's folder).
    let mallory = app.token("mallory", &["users"], false);
    let denied: Vec<Value> = (0..20)
        .map(|i| json!({"access_point": "avatars", "operation": "get", "key": format!("alice/{i}.png")}))
        .collect();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let (status, body) = app
            .post(&mallory, "/v1/presign/batch", json!({"items": denied}))
            .await;
        assert_eq!(status, 200, "{body}");
        statuses.extend(
            body["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["status"].as_u64().unwrap_or(0)),
        );
    }
    assert_eq!(&statuses[..10], [403; 10]);
    assert_eq!(&statuses[10..], [429; 30], "{statuses:?}");
    // What mallory may do is still issued (and recorded).
    let (status, body) = get(&app, &mallory, "avatars", "mallory/me.png").await;
    assert_eq!(status, 200, "{body}");

    let written = presignd::http::write_refusal_summaries(&app.state)
        .await
        .expect("summaries written");
    assert_eq!(written, 2, "one summary per caller");
    let records = app.audit_records();
    let denies: Vec<&Value> = records.iter().filter(|r| r["decision"] == "deny").collect();
    let accounted = |who: &dyn Fn(&Value) -> bool| -> u64 {
        denies
            .iter()
            .filter(|r| who(r))
            .map(|r| r["count"].as_u64().unwrap_or(1))
            .sum()
    };
    assert_eq!(
        accounted(&|r| r["subject"].is_null()),
        30,
        "every anonymous refusal is accounted for"
    );
    assert_eq!(
        accounted(&|r| r["subject"] == "mallory"),
        40,
        "every denied item is accounted for"
    );
    assert!(
        denies.len() <= 2 * (10 + 1 + 1),
        "at most burst + opening + summary records per caller, not one per refusal: {}",
        denies.len()
    );
    let summaries: Vec<&&Value> = denies
        .iter()
        .filter(|r| r["operation"] == "refusals")
        .collect();
    assert_eq!(summaries.len(), 2);
    for s in &summaries {
        assert!(
            s["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("refusals_summarized (")),
            "{s}"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "allow" && r["subject"] == "mallory"),
        "the allowed request is recorded"
    );
    app.finish().await;
}
on_both_backends!(refused_callers_are_limited_and_counted, refused_callers);
