//! Verified completion on both databases, against the in-process S3 server (radosgw's own
//! behaviour is `rgw_verify.rs`): a batch's uploads each get an issuance; a verification is
//! claimed once, so many requests across two instances sharing one PostgreSQL database give
//! one answer and one audit record.

mod common;

use std::collections::BTreeSet;

use common::app::{Backend, Options, S3Endpoint, TestApp, ap, audit_records_in};
use common::s3::put_presigned;
use serde_json::{Value, json};

fn inbox() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "inbox", "bucket": common::app::BUCKET, "prefix": "inbox/",
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    }))
}

async fn verify(app: &TestApp, token: &str, id: &Value) -> (u16, Value) {
    app.post(
        token,
        "/v1/access-points/inbox/uploads/verify",
        json!({"issuance_id": id}),
    )
    .await
}

/// A batch: two PUTs get issuances, the GET none; each upload verifies on its own.
async fn batch_uploads_verify(backend: Backend) {
    let app = TestApp::spawn(backend, vec![inbox()]).await;
    let alice = app.token("alice", &["users"], false);
    let (s, batch) = app
        .post(
            &alice,
            "/v1/presign/batch",
            json!({"items": [
                {"access_point": "inbox", "operation": "put", "key": "alice/1.txt", "content_length": 3, "content_type": "text/plain"},
                {"access_point": "inbox", "operation": "get", "key": "alice/1.txt"},
                {"access_point": "inbox", "operation": "put", "key": "alice/2.txt", "content_length": 4}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{batch}");
    let item = |i: usize| batch["results"][i]["presigned"].clone();
    assert!(
        item(1).get("issuance_id").is_none(),
        "a GET uploads nothing"
    );
    assert_eq!(
        put_presigned(&app.http, &item(0), b"one".to_vec()).await.0,
        200
    );
    assert_eq!(
        put_presigned(&app.http, &item(2), b"four".to_vec()).await.0,
        200
    );
    let (s, one) = verify(&app, &alice, &item(0)["issuance_id"]).await;
    assert_eq!(
        (s, one["status"].as_str()),
        (200, Some("verified")),
        "{one}"
    );
    assert_eq!(one["content_length"], 3);
    // The second item was declared 4 bytes: replaced by 5, it is rejected.
    app.s3
        .sdk_client()
        .put_object()
        .bucket(common::app::BUCKET)
        .key("inbox/alice/2.txt")
        .body(b"five!".to_vec().into())
        .send()
        .await
        .expect("PutObject");
    let (s, two) = verify(&app, &alice, &item(2)["issuance_id"]).await;
    assert_eq!(
        (s, two["status"].as_str()),
        (200, Some("rejected")),
        "{two}"
    );
    assert_eq!(
        two["mismatches"],
        json!([{"field": "content_length", "expected": "4", "actual": "5"}])
    );
    // An aborted multipart upload leaves nothing to verify.
    let (s, created) = app
        .post(
            &alice,
            "/v1/access-points/inbox/uploads",
            json!({"key": "alice/m.bin", "content_length": 4}),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let (s, open) = verify(&app, &alice, &created["issuance_id"]).await;
    assert_eq!(
        (s, open["code"].as_str()),
        (409, Some("conflict")),
        "not complete yet: {open}"
    );
    let upload_id = created["upload_id"].as_str().expect("upload_id");
    let (s, _) = app
        .delete(
            &alice,
            &format!("/v1/access-points/inbox/uploads/{upload_id}"),
        )
        .await;
    assert_eq!(s, 204, "aborted");
    let (s, gone) = verify(&app, &alice, &created["issuance_id"]).await;
    assert_eq!(s, 404, "{gone}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_uploads_verify_sqlite() {
    batch_uploads_verify(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_uploads_verify_postgres() {
    batch_uploads_verify(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_verify_an_upload_once() {
    let a = TestApp::spawn(Backend::Postgres, vec![inbox()]).await;
    let mut opts = Options::new(Backend::Postgres, vec![inbox()]);
    opts.shared_database = Some(a.db_url.clone());
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: a.s3.endpoint.clone(),
        access_key: a.s3.access_key.clone(),
        secret_key: a.s3.secret_key.clone(),
    });
    let b = TestApp::spawn_with(opts).await;
    let alice = a.token("alice", &["users"], false);
    let (s, issued) = a
        .presign(
            &alice,
            "inbox",
            json!({"operation": "put", "key": "alice/once.txt", "content_length": 4}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(
        put_presigned(&a.http, &issued, b"once".to_vec()).await.0,
        200
    );
    let id = issued["issuance_id"].clone();
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let (app, alice, id) = (if i % 2 == 0 { &a } else { &b }, &alice, &id);
        async move { verify(app, alice, id).await }
    }))
    .await;
    let mut times = BTreeSet::new();
    for (s, v) in &answers {
        match s {
            200 => {
                assert_eq!(v["status"], "verified", "{v}");
                times.insert(v["verified_at"].to_string());
            }
            409 => assert_eq!(v["code"], "conflict", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    // Those that lost the claim while it was held answered 409; every answer is the one.
    let (s, last) = verify(&b, &alice, &id).await;
    assert_eq!(s, 200, "{last}");
    times.insert(last["verified_at"].to_string());
    assert_eq!(times.len(), 1, "one verification: {times:?}");
    a.flush_audit().await;
    b.flush_audit().await;
    let recorded = [&a, &b]
        .iter()
        .flat_map(|app| audit_records_in(&app.audit_dir))
        .filter(|r| r["operation"] == "upload_verified")
        .count();
    assert_eq!(recorded, 1);
    b.finish().await;
    a.finish().await;
}

/// `on_mismatch: delete` removes an object only for a caller who could replace it now: the
/// same uploader, no longer in the group that may write, gets the rejection but the object
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_object_is_removed_only_for_a_caller_who_may_write_it() {
    let strict = ap(json!({
        "name": "inbox", "bucket": common::app::BUCKET, "prefix": "inbox/",
        "upload": {"on_mismatch": "delete"},
        "rules": [
            {"effect": "allow", "groups": ["users"], "operations": ["get"], "keys": ["${jwt:sub}/*"]},
            {"effect": "allow", "groups": ["uploaders"], "operations": ["put"], "keys": ["${jwt:sub}/*"]}
        ]
    }));
    let app = TestApp::spawn(Backend::Sqlite, vec![strict]).await;
    let uploader = app.token("alice", &["users", "uploaders"], false);
    let demoted = app.token("alice", &["users"], false);
    let s3 = app.s3.sdk_client();
    let mut ids = Vec::new();
    for key in ["alice/a.txt", "alice/b.txt"] {
        let (s, issued) = app
            .presign(
                &uploader,
                "inbox",
                json!({"operation": "put", "key": key, "content_length": 2}),
            )
            .await;
        assert_eq!(s, 200, "{issued}");
        assert_eq!(
            put_presigned(&app.http, &issued, b"ok".to_vec()).await.0,
            200
        );
        s3.put_object()
            .bucket(common::app::BUCKET)
            .key(format!("inbox/{key}"))
            .body(b"not ok".to_vec().into())
            .send()
            .await
            .expect("PutObject");
        ids.push(issued["issuance_id"].clone());
    }
    let exists = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket(common::app::BUCKET)
                .key(key)
                .send()
                .await
                .is_ok()
        }
    };
    let (s, v) = verify(&app, &demoted, &ids[0]).await;
    assert_eq!(s, 200, "the uploader may still verify: {v}");
    assert_eq!(
        (v["status"].as_str(), v["action"].as_str()),
        (Some("rejected"), Some("kept")),
        "{v}"
    );
    assert!(exists("inbox/alice/a.txt").await);
    let (s, v) = verify(&app, &uploader, &ids[1]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"], "deleted", "{v}");
    assert!(!exists("inbox/alice/b.txt").await);
    app.finish().await;
}

/// A second issuer's user with the same `sub` (and even the admin group) is another
/// principal: she can neither verify alice's upload nor does alice's quota count hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_issuers_same_subject_is_someone_else() {
    use presignd::config::Algorithm;
    const PARTNER: &str = "https://partner.example/";
    const PARTNER_SECRET: &str = "partner-secret-partner-secret-0123456789";
    let shared = ap(json!({
        "name": "inbox", "bucket": common::app::BUCKET, "prefix": "inbox/",
        "upload": {"quota": {"bytes_per_subject": 100}},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["*"]}]
    }));
    let mut opts = Options::new(Backend::Sqlite, vec![shared]);
    let mut partner = common::jwt::issuer_config(PARTNER);
    partner.algorithms = vec![Algorithm::HS256];
    partner.hs256_secret = Some(PARTNER_SECRET.to_string().into());
    opts.config(|c| c.auth.issuers.push(partner));
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let mut claims = common::jwt::claims(PARTNER, "alice");
    claims["groups"] = json!(["users", "presignd-admins"]);
    let partner_alice = common::jwt::hs256(PARTNER_SECRET.as_bytes(), &claims);

    let (s, issued) = app
        .presign(
            &alice,
            "inbox",
            json!({"operation": "put", "key": "a.txt", "content_length": 60}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(put_presigned(&app.http, &issued, vec![1; 60]).await.0, 200);
    let (s, p) = verify(&app, &partner_alice, &issued["issuance_id"]).await;
    assert_eq!((s, p["code"].as_str()), (404, Some("not_found")), "{p}");
    // Her quota is her own: alice's 60 bytes leave her the whole 100.
    let (s, q) = app
        .get(Some(&partner_alice), "/v1/access-points/inbox/quota")
        .await;
    assert_eq!((s, q["reserved_bytes"].as_u64()), (200, Some(0)), "{q}");
    let (s, _) = app
        .presign(
            &partner_alice,
            "inbox",
            json!({"operation": "put", "key": "b.txt", "content_length": 100}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, p) = app
        .presign(
            &alice,
            "inbox",
            json!({"operation": "put", "key": "c.txt", "content_length": 41}),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{p}"
    );
    let (s, v) = verify(&app, &alice, &issued["issuance_id"]).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("verified")), "{v}");
    app.finish().await;
}
