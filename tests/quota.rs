//! Per-subject upload quotas (`upload.quota`): every PUT, POST and multipart issuance reserves
//! its largest size atomically, so concurrent presigns by one user — on one instance over
//! SQLite, or on two instances sharing PostgreSQL — never exceed the quota; verification turns
//! a reservation into the object's size, an abort or an expired URL releases it, and
//! `GET …/quota` shows the numbers a refusal carries.

mod common;

use std::collections::BTreeMap;

use common::app::{BUCKET, Backend, Options, S3Endpoint, TestApp, ap};
use common::s3::put_presigned;
use serde_json::{Value, json};

fn limited(quota: Value) -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "inbox", "bucket": BUCKET, "prefix": "inbox/",
        "upload": {"quota": quota, "on_mismatch": "delete"},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    }))
}

async fn put_of(app: &TestApp, token: &str, key: &str, len: u64, expires_in: u64) -> (u16, Value) {
    app.presign(
        token,
        "inbox",
        json!({"operation": "put", "key": key, "content_length": len, "expires_in": expires_in}),
    )
    .await
}

async fn usage(app: &TestApp, token: &str) -> Value {
    let (s, q) = app.get(Some(token), "/v1/access-points/inbox/quota").await;
    assert_eq!(s, 200, "{q}");
    q
}

/// 50 presigns at once, alternating between `apps`, of 100 bytes each against 1000 bytes:
/// the statuses counted.
async fn fifty_at_once(apps: &[&TestApp], token: &str) -> BTreeMap<u16, usize> {
    let answers = futures_util::future::join_all((0..50).map(|i| {
        let app = apps[i % apps.len()];
        async move { put_of(app, token, &format!("alice/{i}.bin"), 100, 300).await }
    }))
    .await;
    let mut statuses = BTreeMap::new();
    for (s, body) in &answers {
        if *s == 403 {
            assert_eq!(body["code"], "quota_exceeded", "{body}");
            assert_eq!(body["quota"]["bytes_per_subject"], 1000, "{body}");
            assert_eq!(body["quota"]["requested_bytes"], 100, "{body}");
            let counted = body["quota"]["used_bytes"].as_u64().unwrap_or(0)
                + body["quota"]["reserved_bytes"].as_u64().unwrap_or(0);
            assert!(counted > 900, "the refusal shows why: {body}");
        }
        *statuses.entry(*s).or_insert(0) += 1;
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_presigns_get_exactly_the_ten_that_fit_sqlite() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        vec![limited(json!({"bytes_per_subject": 1000}))],
    )
    .await;
    let alice = app.token("alice", &["users"], false);
    let statuses = fifty_at_once(&[&app], &alice).await;
    assert_eq!(statuses, BTreeMap::from([(200, 10), (403, 40)]));
    let q = usage(&app, &alice).await;
    assert_eq!(
        (q["reserved_bytes"].as_u64(), q["objects"].as_u64()),
        (Some(1000), Some(10)),
        "{q}"
    );
    assert_eq!(q["window"], "total");
    // Refusals are recorded with their reason.
    let refused = app
        .audit_records()
        .into_iter()
        .filter(|r| r["reason"] == "quota_exceeded")
        .count();
    assert!(
        refused >= 1,
        "at least the first refusal in the limiter's window is recorded"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_share_the_quota() {
    let a = TestApp::spawn(
        Backend::Postgres,
        vec![limited(json!({"bytes_per_subject": "1000"}))],
    )
    .await;
    let mut opts = Options::new(
        Backend::Postgres,
        vec![limited(json!({"bytes_per_subject": "1000"}))],
    );
    opts.shared_database = Some(a.db_url.clone());
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: a.s3.endpoint.clone(),
        access_key: a.s3.access_key.clone(),
        secret_key: a.s3.secret_key.clone(),
    });
    let b = TestApp::spawn_with(opts).await;
    let alice = a.token("alice", &["users"], false);
    let statuses = fifty_at_once(&[&a, &b], &alice).await;
    assert_eq!(statuses, BTreeMap::from([(200, 10), (403, 40)]));
    assert_eq!(usage(&b, &alice).await["reserved_bytes"], 1000);
    // Another subject has a quota of its own.
    let bob = a.token("bob", &["users"], false);
    assert_eq!(put_of(&b, &bob, "bob/1.bin", 1000, 300).await.0, 200);
    b.finish().await;
    a.finish().await;
}

/// Reservations end: verification counts what arrived (a deleted object nothing), an abort
/// and an expired URL release theirs; `objects_per_subject` counts objects.
async fn reservations_are_converted_and_released(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        vec![limited(
            json!({"bytes_per_subject": "1KiB", "objects_per_subject": 3, "window": "30d"}),
        )],
    )
    .await;
    let alice = app.token("alice", &["users"], false);
    // A PUT reserves its declared 600 bytes; verified, they are used.
    let (s, issued) = put_of(&app, &alice, "alice/a.bin", 600, 300).await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(put_presigned(&app.http, &issued, vec![7; 600]).await.0, 200);
    let q = usage(&app, &alice).await;
    assert_eq!(
        (q["used_bytes"].as_u64(), q["reserved_bytes"].as_u64()),
        (Some(0), Some(600)),
        "{q}"
    );
    let (s, v) = app
        .post(
            &alice,
            "/v1/access-points/inbox/uploads/verify",
            json!({"issuance_id": issued["issuance_id"]}),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("verified")), "{v}");
    let q = usage(&app, &alice).await;
    assert_eq!(
        (q["used_bytes"].as_u64(), q["reserved_bytes"].as_u64()),
        (Some(600), Some(0)),
        "{q}"
    );
    assert_eq!(q["window"], "30d");
    // 600 + 500 > 1024: refused, with the numbers.
    let (s, p) = put_of(&app, &alice, "alice/b.bin", 500, 300).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{p}"
    );
    assert_eq!(p["quota"]["used_bytes"], 600);
    // A multipart upload reserves its size; aborted, it gives it back.
    let (s, created) = app
        .post(
            &alice,
            "/v1/access-points/inbox/uploads",
            json!({"key": "alice/m.bin", "content_length": 400}),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(usage(&app, &alice).await["reserved_bytes"], 400);
    let (s, p) = app
        .post(
            &alice,
            "/v1/access-points/inbox/uploads",
            json!({"key": "alice/n.bin", "content_length": 400}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (403, Some("quota_exceeded")),
        "before S3 is asked: {p}"
    );
    let upload_id = created["upload_id"].as_str().expect("upload_id");
    let (s, _) = app
        .delete(
            &alice,
            &format!("/v1/access-points/inbox/uploads/{upload_id}"),
        )
        .await;
    assert_eq!(s, 204, "aborted");
    assert_eq!(usage(&app, &alice).await["reserved_bytes"], 0);
    // An unused URL keeps its reservation, even expired, until it is verified (an upload it
    // made would count); verifying too early spends nothing.
    let (s, issued) = put_of(&app, &alice, "alice/c.bin", 400, 1).await;
    assert_eq!(s, 200);
    let verify_c = json!({"issuance_id": issued["issuance_id"]});
    let (s, early) = app
        .post(
            &alice,
            "/v1/access-points/inbox/uploads/verify",
            verify_c.clone(),
        )
        .await;
    assert_eq!(
        (s, early["code"].as_str()),
        (409, Some("conflict")),
        "{early}"
    );
    assert_eq!(usage(&app, &alice).await["reserved_bytes"], 400);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(usage(&app, &alice).await["reserved_bytes"], 400);
    // Verified once expired: missing for good, nothing counted.
    let (s, v) = app
        .post(&alice, "/v1/access-points/inbox/uploads/verify", verify_c)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("rejected")),
        "missing: {v}"
    );
    let q = usage(&app, &alice).await;
    assert_eq!(
        (
            q["used_bytes"].as_u64(),
            q["reserved_bytes"].as_u64(),
            q["objects"].as_u64()
        ),
        (Some(600), Some(0), Some(1)),
        "{q}"
    );
    // Objects are counted too; POST cannot be counted, so it is refused here, and a PUT must
    // declare what it reserves.
    let (s, p) = app
        .presign(
            &alice,
            "inbox",
            json!({"operation": "post", "key": "alice/p.bin"}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("post_unsupported")),
        "{p}"
    );
    let (s, p) = app
        .presign(
            &alice,
            "inbox",
            json!({"operation": "put", "key": "alice/p.bin"}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("invalid_request")),
        "{p}"
    );
    assert_eq!(put_of(&app, &alice, "alice/e.bin", 1, 300).await.0, 200);
    assert_eq!(put_of(&app, &alice, "alice/f.bin", 1, 300).await.0, 200);
    let (s, p) = put_of(&app, &alice, "alice/g.bin", 1, 300).await;
    assert_eq!((s, p["quota"]["objects"].as_u64()), (403, Some(3)), "{p}");
    // No quota, no numbers; an access point the caller cannot see looks the same.
    let (s, _) = app.get(Some(&alice), "/v1/access-points/nope/quota").await;
    assert_eq!(s, 404);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_converted_and_released_sqlite() {
    reservations_are_converted_and_released(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_converted_and_released_postgres() {
    reservations_are_converted_and_released(Backend::Postgres).await;
}

/// An upload nobody verified still counts: once its URL has expired (plus the grace),
/// presignd verifies it as its uploader would, recorded like any verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unverified_uploads_are_verified_by_presignd() {
    let mut opts = Options::new(
        Backend::Sqlite,
        vec![limited(json!({"bytes_per_subject": 1000}))],
    );
    opts.config(|c| {
        c.uploads.sweep_interval_ms = 100;
        c.uploads.expired_verification_grace_seconds = 0;
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let (s, issued) = put_of(&app, &alice, "alice/quiet.bin", 300, 1).await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(put_presigned(&app.http, &issued, vec![1; 300]).await.0, 200);
    let mut q = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        q = usage(&app, &alice).await;
        if q["used_bytes"] == 300 {
            break;
        }
    }
    assert_eq!(
        (q["used_bytes"].as_u64(), q["reserved_bytes"].as_u64()),
        (Some(300), Some(0)),
        "{q}"
    );
    let records = app.audit_records();
    let by_sweeper = records
        .iter()
        .find(|r| r["operation"] == "upload_verified")
        .expect("the verification is recorded");
    assert_eq!(by_sweeper["subject"], "alice");
    assert_eq!(by_sweeper["issuance_id"], issued["issuance_id"]);
    assert!(
        by_sweeper["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("sweeper-")),
        "{by_sweeper}"
    );
    app.finish().await;
}
