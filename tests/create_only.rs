//! Create-only uploads (`upload.overwrite: false`) against the in-process S3 server, which
//! verifies signatures and honours `If-None-Match: *` on PutObject and
//! CompleteMultipartUpload: a presigned PUT signs the header (so dropping it breaks the
//! signature), a second PUT to a taken key is refused by S3 with 412, a multipart completion
//! onto a taken key answers `409 object_exists` (the upload is aborted), and a POST policy,
//! which cannot carry the condition, is refused.

mod common;

use common::app::{BUCKET, Backend, TestApp, ap, decode};
use common::s3::put_presigned;
use serde_json::{Value, json};

fn inbox() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "inbox", "bucket": BUCKET, "prefix": "inbox/",
        "upload": {"overwrite": false, "max_content_length": 10485760},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    }))
}

/// PUTs `body` with the issued URL and headers, leaving out the header named `skip`.
async fn put(app: &TestApp, issued: &Value, body: &'static [u8], skip: &str) -> u16 {
    let mut req = app.http.put(issued["url"].as_str().expect("url"));
    for (k, v) in issued["headers"].as_object().expect("headers") {
        if k != "content-length" && k != skip {
            req = req.header(k, v.as_str().expect("value"));
        }
    }
    req.body(body).send().await.expect("PUT").status().as_u16()
}

/// Starts a 4-byte multipart upload of `key` and uploads its one part: (upload id, ETag).
async fn one_part_upload(app: &TestApp, token: &str, key: &str) -> (String, Option<String>) {
    let (status, created) = app
        .post(
            token,
            "/v1/access-points/inbox/uploads",
            json!({"key": key, "content_length": 4}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let (status, etag) = put_presigned(&app.http, &created["parts"][0], b"part".to_vec()).await;
    assert_eq!(status, 200);
    (upload_id, etag)
}

async fn presign_put(app: &TestApp, token: &str, key: &str, len: usize) -> Value {
    let (status, issued) = app
        .presign(
            token,
            "inbox",
            json!({"operation": "put", "key": key, "content_length": len}),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_puts_never_replace_an_object() {
    let app = TestApp::spawn(Backend::Sqlite, vec![inbox()]).await;
    let alice = app.token("alice", &["users"], false);

    // The condition is a signed header, returned like every other.
    let first = presign_put(&app, &alice, "alice/a.txt", 5).await;
    assert_eq!(first["headers"]["if-none-match"], "*", "{first}");
    let signed = first["url"].as_str().expect("url");
    assert!(
        signed.contains("if-none-match"),
        "in X-Amz-SignedHeaders: {signed}"
    );
    // Without it the signature does not match: S3 refuses, and nothing is written.
    assert_eq!(put(&app, &first, b"first", "if-none-match").await, 403);
    assert_eq!(put(&app, &first, b"first", "").await, 200);

    // A second URL for the same key: S3 keeps the first object.
    let second = presign_put(&app, &alice, "alice/a.txt", 6).await;
    assert_eq!(put(&app, &second, b"second", "").await, 412);
    let stored = app
        .s3
        .sdk_client()
        .get_object()
        .bucket(BUCKET)
        .key("inbox/alice/a.txt")
        .send()
        .await
        .expect("object")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(stored.as_ref(), b"first");

    // A POST policy cannot pin the condition: refused before anything is signed.
    let (status, problem) = app
        .presign(
            &alice,
            "inbox",
            json!({"operation": "post", "key": "alice/b.txt"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("post_unsupported")),
        "{problem}"
    );

    // Multipart onto the taken key: completion answers 409 and the upload is aborted.
    let (upload_id, etag) = one_part_upload(&app, &alice, "alice/a.txt").await;
    let complete = format!("/v1/access-points/inbox/uploads/{upload_id}/complete");
    let body = json!({"parts": [{"part_number": 1, "etag": etag}]});
    let (status, problem) = app.post(&alice, &complete, body.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("object_exists")),
        "{problem}"
    );
    let (status, problem) = app.post(&alice, &complete, body).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload_not_found")),
        "aborted: {problem}"
    );

    // A free key completes as usual.
    let (upload_id, etag) = one_part_upload(&app, &alice, "alice/c.txt").await;
    let resp = app
        .http
        .post(format!(
            "{}/v1/access-points/inbox/uploads/{upload_id}/complete",
            app.base
        ))
        .bearer_auth(&alice)
        .json(&json!({"parts": [{"part_number": 1, "etag": etag}]}))
        .send()
        .await
        .expect("complete");
    let (status, done) = decode(resp).await;
    assert_eq!(status, 200, "{done}");
    app.finish().await;
}
