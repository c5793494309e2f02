//! Multipart uploads through presignd against a real S3 implementation (Ceph RADOS Gateway),
//! observed with ListMultipartUploads (which the in-process `s3s-fs` server lacks): a declared
//! size above the access point's maximum never reaches S3; an upload exists at S3 while open,
//! survives another principal's abort, completes byte for byte from parts uploaded out of
//! order and in parallel, the client completing from a ListParts listing (as one that lost
//! its ETags does); radosgw enforces each part URL's signed length; a create-only completion
//! onto a taken key is refused (radosgw ignores the condition there; presignd looks first);
//! the sweeper aborts an abandoned upload.
//!
//! One test function: radosgw takes ~15 s to start, so every scenario shares one gateway.

mod common;

use common::s3::put_presigned as put_part;

use std::time::{Duration, Instant};

use common::app::{Backend, Options, S3Endpoint, TestApp, ap, decode};
use common::rgw::Rgw;
use serde_json::{Value, json};

const BUCKET: &str = "multipart-bucket";
const MIB: usize = 1024 * 1024;

fn big() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "big", "bucket": BUCKET, "prefix": "big/",
        "upload": {"max_content_length": 20 * MIB},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/*"]}]
    }))
}

async fn presignd(
    rgw: &Rgw,
    uploads: impl FnOnce(&mut presignd::config::UploadsConfig) + Send + 'static,
) -> TestApp {
    // The same folder, create-only.
    let once = ap(json!({
        "name": "once", "bucket": BUCKET, "prefix": "big/", "upload": {"overwrite": false},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/*"]}]
    }));
    let mut opts = Options::new(Backend::Sqlite, vec![big(), once]);
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    opts.config(|c| uploads(&mut c.uploads));
    TestApp::spawn_with(opts).await
}

/// The upload ids radosgw holds open in the bucket.
async fn open_uploads(s3: &aws_sdk_s3::Client) -> Vec<String> {
    s3.list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads")
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id().map(str::to_string))
        .collect()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_on_radosgw() {
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let s3 = rgw.sdk_client();
    let app = presignd(&rgw, |_| {}).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);

    // Above the access point's maximum: refused, and S3 never heard of it.
    let (status, problem) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/huge.bin", "content_length": 20 * MIB + 1}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("upload_too_large"))
    );
    assert!(
        open_uploads(&s3).await.is_empty(),
        "no CreateMultipartUpload reached S3"
    );

    // An upload of 11 MiB in 5 MiB parts.
    let body = data(11 * MIB);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/video.bin", "content_length": body.len(), "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    assert_eq!(open_uploads(&s3).await, vec![upload_id.clone()]);
    let base = format!("/v1/access-points/big/uploads/{upload_id}");

    // Another principal's abort finds nothing, and the upload stays.
    let resp = app
        .http
        .delete(format!("{}{base}", app.base))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("DELETE");
    let (status, problem) = decode(resp).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload_not_found"))
    );
    assert_eq!(open_uploads(&s3).await, vec![upload_id.clone()]);

    // radosgw enforces the signed part length.
    let parts = &created["parts"];
    let (status, _) = put_part(&app.http, &parts[0], vec![1u8; 1000]).await;
    assert!(
        matches!(status, 400 | 403 | 0),
        "a short part is refused: {status}"
    );

    // Parts out of order and in parallel.
    let slice = |n: usize| body[(n - 1) * 5 * MIB..(n * 5 * MIB).min(body.len())].to_vec();
    let (p3, p1, p2) = tokio::join!(
        put_part(&app.http, &parts[2], slice(3)),
        put_part(&app.http, &parts[0], slice(1)),
        put_part(&app.http, &parts[1], slice(2)),
    );
    assert_eq!((p1.0, p2.0, p3.0), (200, 200, 200));
    // The client forgets its ETags: it lists what radosgw holds (ListParts), two pages.
    let (status, page) = app
        .get(Some(&alice), &format!("{base}/parts?max_parts=2"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["next_part_number_marker"], 2, "{page}");
    let (status, rest) = app
        .get(Some(&alice), &format!("{base}/parts?part_number_marker=2"))
        .await;
    assert_eq!(status, 200, "{rest}");
    assert!(rest.get("next_part_number_marker").is_none(), "{rest}");
    let listed: Vec<Value> = [&page, &rest]
        .iter()
        .flat_map(|p| p["parts"].as_array().expect("parts").clone())
        .collect();
    let etags: Vec<Option<&str>> = listed.iter().map(|p| p["etag"].as_str()).collect();
    assert_eq!(
        etags,
        [p1.1.as_deref(), p2.1.as_deref(), p3.1.as_deref()],
        "{listed:?}"
    );
    assert_eq!(listed[2]["size"], MIB);
    let (status, _) = app.get(Some(&bob), &format!("{base}/parts")).await;
    assert_eq!(status, 404, "another principal lists nothing");
    let parts: Vec<Value> = listed
        .iter()
        .map(|p| json!({"part_number": p["part_number"], "etag": p["etag"]}))
        .collect();
    let (status, done) = app
        .post(&alice, &format!("{base}/complete"), json!({"parts": parts}))
        .await;
    assert_eq!(status, 200, "{done}");
    assert!(open_uploads(&s3).await.is_empty());
    let got = s3
        .get_object()
        .bucket(BUCKET)
        .key("big/alice/video.bin")
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.len(), body.len());
    assert!(
        got.as_ref() == body.as_slice(),
        "the object matches byte for byte"
    );

    // A wrong ETag is S3's refusal, and the upload stays open to complete properly.
    let (status, second) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/small.bin", "content_length": 10}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let second_id = second["upload_id"].as_str().expect("upload_id");
    let (status, etag) = put_part(&app.http, &second["parts"][0], vec![7u8; 10]).await;
    assert_eq!(status, 200);
    let complete = format!("/v1/access-points/big/uploads/{second_id}/complete");
    let (status, problem) = app
        .post(
            &alice,
            &complete,
            json!({"parts": [{"part_number": 1, "etag": "\"00000000000000000000000000000000\""}]}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_parts")),
        "{problem}"
    );
    let (status, done) = app
        .post(
            &alice,
            &complete,
            json!({"parts": [{"part_number": 1, "etag": etag}]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");

    // Create-only multipart onto that key.
    let (status, third) = app
        .post(
            &alice,
            "/v1/access-points/once/uploads",
            json!({"key": "alice/small.bin", "content_length": 10}),
        )
        .await;
    assert_eq!(status, 200, "{third}");
    let third_id = third["upload_id"].as_str().expect("upload_id");
    let (status, etag) = put_part(&app.http, &third["parts"][0], vec![9u8; 10]).await;
    assert_eq!(status, 200);
    let (status, problem) = app
        .post(
            &alice,
            &format!("/v1/access-points/once/uploads/{third_id}/complete"),
            json!({"parts": [{"part_number": 1, "etag": etag}]}),
        )
        .await;
    // radosgw 16.2 ignores If-None-Match on completion: presignd's HeadObject refuses it,
    // aborts the upload, and the object stays.
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("object_exists")),
        "{problem}"
    );
    assert!(
        !open_uploads(&s3).await.contains(&third_id.to_string()),
        "aborted"
    );
    let kept = s3
        .get_object()
        .bucket(BUCKET)
        .key("big/alice/small.bin")
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(kept.as_ref(), [7u8; 10].as_slice());
    app.finish().await;

    // The sweeper: an instance that considers 2 s of inactivity abandoned.
    let app = presignd(&rgw, |u| {
        u.abandon_after_seconds = 2;
        u.sweep_interval_ms = 200;
    })
    .await;
    let alice = app.token("alice", &["users"], false);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/left.bin", "content_length": 6 * MIB, "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let (status, _) = put_part(&app.http, &created["parts"][0], data(5 * MIB)).await;
    assert_eq!(status, 200);
    assert_eq!(open_uploads(&s3).await, vec![upload_id.clone()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !open_uploads(&s3).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not abort the upload"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let records = app.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["operation"] == "multipart_abort" && r["reason"] == "abandoned"),
        "the sweeper's abort is audited"
    );
    app.finish().await;
}
