//! Verified completion against Ceph RADOS Gateway: presignd HEADs the uploaded object with its
//! own credentials and holds it to what the issuance signed.
//!
//! - A PUT uploaded as issued verifies (radosgw 16.2 keeps no SHA-256, so presignd hashes
//!   the bytes); verifying again, even concurrently, answers the same with one audit record.
//! - An object replaced by another writer is rejected with each mismatch named (size, type,
//!   checksum, metadata); a URL never used is rejected as missing. `on_mismatch` keeps,
//!   deletes or quarantines the object.
//! - A starts-with POST is verified under the key the browser completed.
//! - Only the uploader or an admin may verify; anyone else gets the same 404 as an unknown id.
//! - A multipart completion verifies by itself.
//!
//! One test function: radosgw takes ~15 s to start.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::app::{Backend, Options, S3Endpoint, TestApp, ap};
use common::form::{fields_of, upload};
use common::rgw::Rgw;
use common::s3::put_presigned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "verify-bucket";

fn access_point(name: &str, upload: Value) -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": name, "bucket": BUCKET, "prefix": format!("{name}/"), "upload": upload,
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    }))
}

fn sha256(bytes: &[u8]) -> String {
    B64.encode(Sha256::digest(bytes))
}

async fn verify(app: &TestApp, token: &str, name: &str, body: Value) -> (u16, Value) {
    app.post(
        token,
        &format!("/v1/access-points/{name}/uploads/verify"),
        body,
    )
    .await
}

/// Presigns a PUT of `body` (length, type, checksum and metadata declared) on `name`.
async fn issue_put(app: &TestApp, token: &str, name: &str, key: &str, body: &[u8]) -> Value {
    let (s, issued) = app
        .presign(
            token,
            name,
            json!({"operation": "put", "key": key, "content_length": body.len(),
                   "content_type": "text/plain", "checksum_sha256": sha256(body),
                   "metadata": {"purpose": "verify-test"}}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    issued
}

/// Another writer replaces the object behind presignd's back.
async fn replace(s3: &aws_sdk_s3::Client, key: &str, body: &'static [u8]) {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("text/html")
        .body(body.to_vec().into())
        .send()
        .await
        .expect("PutObject");
}

async fn exists(s3: &aws_sdk_s3::Client, key: &str) -> bool {
    s3.head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .is_ok()
}

fn fields(verification: &Value) -> Vec<&str> {
    verification["mismatches"]
        .as_array()
        .expect("mismatches")
        .iter()
        .map(|m| m["field"].as_str().expect("field"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_verified_against_their_issuance_on_radosgw() {
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let mut opts = Options::new(
        Backend::Sqlite,
        vec![
            access_point("kept", json!({"max_content_length": 64})),
            access_point("checked", json!({"on_mismatch": "delete"})),
            access_point(
                "held",
                json!({"on_mismatch": "quarantine", "quarantine_prefix": "quarantine/"}),
            ),
        ],
    );
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let root = app.token("root", &["presignd-admins"], false);
    let s3 = rgw.sdk_client();
    let http = reqwest::Client::new();

    // 1. Uploaded as issued: verified. presignd hashed the bytes (radosgw keeps no SHA-256).
    let issued = issue_put(&app, &alice, "kept", "alice/ok.txt", b"hello").await;
    let id = issued["issuance_id"]
        .as_str()
        .expect("issuance_id")
        .to_string();
    assert!(
        issued["url"]
            .as_str()
            .expect("url")
            .contains(&format!("x-presignd-id={id}"))
    );
    assert_eq!(
        put_presigned(&http, &issued, b"hello".to_vec()).await.0,
        200
    );
    // Concurrent verifications: one does the work; the others answer the same or 409.
    let body = json!({"issuance_id": id});
    let answers =
        futures_util::future::join_all((0..4).map(|_| verify(&app, &alice, "kept", body.clone())))
            .await;
    let mut first = None;
    for (s, v) in &answers {
        match s {
            200 => {
                assert_eq!(v["status"], "verified", "{v}");
                assert_eq!(fields(v), Vec::<&str>::new());
                assert_eq!(v["content_length"], 5);
                assert_eq!(v["content_type"], "text/plain");
                assert_eq!(v["key"], "kept/alice/ok.txt");
                first.get_or_insert_with(|| v["verified_at"].clone());
            }
            409 => assert_eq!(v["code"], "conflict"),
            other => panic!("verify answered {other}: {v}"),
        }
    }
    let verified_at = first.expect("at least one verification answered");
    let (s, again) = verify(&app, &alice, "kept", body.clone()).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["verified_at"], verified_at, "the kept answer");
    assert_ne!(again["request_id"], answers[0].1["request_id"]);

    // 2. Only the uploader or an admin: bob gets what an unknown id gets.
    let (s, p) = verify(&app, &bob, "kept", body.clone()).await;
    assert_eq!((s, p["code"].as_str()), (404, Some("not_found")), "{p}");
    let (s, _) = verify(&app, &bob, "kept", json!({"issuance_id": "nope"})).await;
    assert_eq!(s, 404);
    let (s, p) = verify(&app, &alice, "checked", body.clone()).await;
    assert_eq!(s, 404, "another access point's issuance: {p}");
    let (s, by_admin) = verify(&app, &root, "kept", body.clone()).await;
    assert_eq!(s, 200, "{by_admin}");
    assert_eq!(by_admin["verified_at"], verified_at);
    let (s, p) = verify(&app, &alice, "kept", json!({"issuance_id": id, "extra": 1})).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("invalid_request")),
        "{p}"
    );

    // 3. Replaced by another writer: each difference named; `keep` leaves the object.
    let issued = issue_put(&app, &alice, "kept", "alice/swapped.txt", b"hello").await;
    assert_eq!(
        put_presigned(&http, &issued, b"hello".to_vec()).await.0,
        200
    );
    replace(&s3, "kept/alice/swapped.txt", b"<b>goodbye</b>").await;
    let (s, v) = verify(
        &app,
        &alice,
        "kept",
        json!({"issuance_id": issued["issuance_id"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "rejected");
    assert_eq!(
        fields(&v),
        // Of the wrong size, it is not hashed (step 5 shows the checksum of one that is).
        ["content_length", "content_type", "metadata.purpose"],
        "{v}"
    );
    assert_eq!(
        v["mismatches"][0],
        json!({"field": "content_length", "expected": "5", "actual": "14"})
    );
    assert_eq!(v["action"], "kept");
    assert!(exists(&s3, "kept/alice/swapped.txt").await);

    // 4. A URL never used: too early while it lives (409, nothing spent), missing once it
    //    expired.
    let (s, issued) = app
        .presign(
            &alice,
            "kept",
            json!({"operation": "put", "key": "alice/never.txt", "content_length": 5, "expires_in": 1}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    let never = json!({"issuance_id": issued["issuance_id"]});
    let (s, v) = verify(&app, &alice, "kept", never.clone()).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = verify(&app, &alice, "kept", never).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), fields(&v)),
        (Some("rejected"), vec!["object"])
    );

    // 5. `delete`: a rejected object is gone.
    let issued = issue_put(&app, &alice, "checked", "alice/bad.txt", b"hello").await;
    assert_eq!(
        put_presigned(&http, &issued, b"hello".to_vec()).await.0,
        200
    );
    replace(&s3, "checked/alice/bad.txt", b"hellO").await;
    let (s, v) = verify(
        &app,
        &alice,
        "checked",
        json!({"issuance_id": issued["issuance_id"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        fields(&v),
        ["content_type", "checksum_sha256", "metadata.purpose"]
    );
    assert_eq!(v["action"], "deleted");
    assert!(!exists(&s3, "checked/alice/bad.txt").await);

    // 6. `quarantine`: moved under the quarantine prefix, bytes intact.
    let issued = issue_put(&app, &alice, "held", "alice/odd.txt", b"hello").await;
    assert_eq!(
        put_presigned(&http, &issued, b"hello".to_vec()).await.0,
        200
    );
    replace(&s3, "held/alice/odd.txt", b"odd bytes").await;
    let (s, v) = verify(
        &app,
        &alice,
        "held",
        json!({"issuance_id": issued["issuance_id"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"], "quarantined");
    assert_eq!(v["quarantine_key"], "quarantine/held/alice/odd.txt");
    assert!(!exists(&s3, "held/alice/odd.txt").await);
    let moved = s3
        .get_object()
        .bucket(BUCKET)
        .key("quarantine/held/alice/odd.txt")
        .send()
        .await
        .expect("the quarantined object")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(moved.as_ref(), b"odd bytes");

    // 7. A starts-with POST is verified under the key the browser chose, within its range.
    let (s, issued) = app
        .presign(
            &alice,
            "kept",
            json!({"operation": "post", "key": "alice/form-", "key_starts_with": true,
                   "content_type": "text/plain"}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    let mut form = fields_of(&issued);
    form.insert("key".into(), "kept/alice/form-1.txt".into());
    let (s, code) = upload(&http, &issued, &form, "f.txt", &[b'x'; 64]).await;
    assert_eq!(s, 204, "{code}");
    let post_id = json!(issued["issuance_id"]);
    let (s, p) = verify(&app, &alice, "kept", json!({"issuance_id": post_id})).await;
    assert_eq!(s, 400, "the key is needed: {p}");
    let (s, p) = verify(
        &app,
        &alice,
        "kept",
        json!({"issuance_id": post_id, "key": "bob/form-1.txt"}),
    )
    .await;
    assert_eq!(s, 400, "outside the issued prefix: {p}");
    let (s, v) = verify(
        &app,
        &alice,
        "kept",
        json!({"issuance_id": post_id, "key": "alice/form-1.txt"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["content_length"].as_u64()),
        (Some("verified"), Some(64)),
        "{v}"
    );

    // 8. A multipart completion verifies by itself.
    let (s, created) = app
        .post(
            &alice,
            "/v1/access-points/kept/uploads",
            json!({"key": "alice/m.bin", "content_length": 4}),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let (s, etag) = put_presigned(&http, &created["parts"][0], b"part".to_vec()).await;
    assert_eq!(s, 200);
    let upload_id = created["upload_id"].as_str().expect("upload_id");
    let (s, done) = app
        .post(
            &alice,
            &format!("/v1/access-points/kept/uploads/{upload_id}/complete"),
            json!({"parts": [{"part_number": 1, "etag": etag.expect("etag")}]}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        done["issuance_id"], created["issuance_id"],
        "issued at creation"
    );
    assert_eq!(done["verification"]["status"], "verified", "{done}");
    assert_eq!(done["verification"]["content_length"], 4);
    let (s, v) = verify(
        &app,
        &alice,
        "kept",
        json!({"issuance_id": done["issuance_id"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verified_at"], done["verification"]["verified_at"]);

    // Every outcome recorded once, linked to its issuance; refusals recorded as such.
    let records = app.audit_records();
    let outcomes: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| {
            matches!(
                r["operation"].as_str(),
                Some("upload_verified" | "upload_rejected")
            )
        })
        .map(|r| {
            (
                r["operation"].as_str().expect("operation"),
                r["key"].as_str().expect("key"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("upload_verified", "kept/alice/ok.txt"),
            ("upload_rejected", "kept/alice/swapped.txt"),
            ("upload_rejected", "kept/alice/never.txt"),
            ("upload_rejected", "checked/alice/bad.txt"),
            ("upload_rejected", "held/alice/odd.txt"),
            ("upload_verified", "kept/alice/form-1.txt"),
            ("upload_verified", "kept/alice/m.bin"),
        ]
    );
    let first = records
        .iter()
        .find(|r| r["operation"] == "upload_verified")
        .expect("a verification record");
    assert_eq!(first["issuance_id"], id.as_str());
    assert_eq!(first["content_length"], 5);
    assert_eq!(first["subject"], "alice");
    let refused = records
        .iter()
        .filter(|r| r["operation"] == "upload_verify" && r["decision"] == "deny")
        .count();
    // Bob twice, the wrong access point, the POST without and with a foreign key (a body
    // that does not parse is answered before any decision, like every route's).
    assert_eq!(refused, 5);
    app.finish().await;
}
