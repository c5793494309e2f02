//! Multipart uploads through presignd against the in-process S3 server (`s3s-fs`, which
//! verifies every SigV4 signature, the presigned expiry and the signed `Content-Length`).
//! `s3s-fs` implements CreateMultipartUpload, UploadPart, CompleteMultipartUpload and
//! AbortMultipartUpload but not ListMultipartUploads: here an upload's existence at S3 is its
//! `.upload-<id>.json` file in the server's root; `tests/rgw_multipart.rs` checks the same
//! against radosgw with ListMultipartUploads.

mod common;

use common::s3::put_presigned as put_part;

use std::time::Duration;

use common::app::{BUCKET, Backend, Options, TestApp, ap, decode};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// An access point for large uploads: 20 MiB at most, one content type, per-user keys.
fn big() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "big", "bucket": BUCKET, "prefix": "big/",
        "default_expires_in": 300, "max_expires_in": 3600,
        "upload": {"max_content_length": 20 * MIB, "content_types": ["application/octet-stream"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    }))
}

fn vault() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "vault", "bucket": BUCKET, "prefix": "vault/", "encryption": {"mode": "sse-c"},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["*"]}]
    }))
}

/// Deterministic pseudo-random bytes (xorshift), so a misplaced part changes the object.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The slice of `body` that is part `n` (1-based) of `part_size`.
fn slice(body: &[u8], n: u64, part_size: usize) -> Vec<u8> {
    let start = (n as usize - 1) * part_size;
    body[start..(start + part_size).min(body.len())].to_vec()
}

fn part(parts: &Value, n: u64) -> &Value {
    parts
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["part_number"] == n)
        .unwrap_or_else(|| panic!("part {n} in {parts}"))
}

/// Uploads that S3 currently holds (`s3s-fs` keeps one `.upload-<id>.json` per upload).
fn uploads_at_s3(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.s3.root())
        .expect("s3s-fs root")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(".upload-")
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect()
}

async fn download(app: &TestApp, key: &str) -> Vec<u8> {
    app.s3
        .sdk_client()
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("get object")
        .body
        .collect()
        .await
        .expect("object body")
        .into_bytes()
        .to_vec()
}

async fn multipart_round_trip(backend: Backend) {
    let app = TestApp::spawn(backend, vec![big()]).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let body = data(11 * MIB);

    // Create: 11 MiB in 5 MiB parts; the first URLs live 2 s.
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/video.bin", "content_type": "application/octet-stream",
                   "content_length": body.len(), "part_size": 5 * MIB, "expires_in": 2,
                   "metadata": {"origin": "phone"}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["part_count"], 3);
    assert_eq!(created["part_size"], 5 * MIB);
    assert_eq!(created["key"], "big/alice/video.bin");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    assert_eq!(uploads_at_s3(&app), vec![upload_id.clone()]);
    let lengths: Vec<&Value> = created["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| &p["content_length"])
        .collect();
    assert_eq!(lengths, [5 * MIB, 5 * MIB, MIB]);
    assert_eq!(
        part(&created["parts"], 1)["headers"]["content-length"],
        "5242880"
    );

    // The last part first, with its original URL.
    let (status, etag3) = put_part(
        &app.http,
        part(&created["parts"], 3),
        slice(&body, 3, 5 * MIB),
    )
    .await;
    assert_eq!(status, 200);
    // A part of another length does not match the signed Content-Length.
    let (status, _) = put_part(&app.http, part(&created["parts"], 1), vec![0u8; 1024]).await;
    assert_eq!(status, 403, "the signed length is enforced by S3");

    // Resume: the first URLs have expired...
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = put_part(
        &app.http,
        part(&created["parts"], 1),
        slice(&body, 1, 5 * MIB),
    )
    .await;
    assert!(
        matches!(status, 403 | 0),
        "an expired part URL is refused by S3: {status}"
    );
    // ...new ones are issued for the same upload.
    let parts_path = format!("/v1/access-points/big/uploads/{upload_id}/parts");
    let (status, more) = app
        .post(&alice, &parts_path, json!({"part_numbers": [2, 1]}))
        .await;
    assert_eq!(status, 200, "{more}");
    assert_eq!(more["upload_id"], upload_id.as_str());
    assert_eq!(more["parts"][0]["part_number"], 2);

    // Parts 2 and 1 in parallel.
    let (one, two) = tokio::join!(
        put_part(&app.http, part(&more["parts"], 1), slice(&body, 1, 5 * MIB)),
        put_part(&app.http, part(&more["parts"], 2), slice(&body, 2, 5 * MIB)),
    );
    assert_eq!((one.0, two.0), (200, 200));

    // Bad part numbers.
    for bad in [
        json!([]),
        json!([0]),
        json!([4]),
        json!([1, 1]),
        json!([4294967297u64]),
    ] {
        let (status, problem) = app
            .post(&alice, &parts_path, json!({"part_numbers": bad}))
            .await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["code"], "invalid_part_numbers", "{bad}");
    }

    // Another principal can neither sign parts for, complete nor abort it: exactly the
    // answer for an upload that does not exist.
    let complete_path = format!("/v1/access-points/big/uploads/{upload_id}/complete");
    let etags = [one.1.clone(), two.1.clone(), etag3.clone()];
    let completion = json!({"parts": [
        {"part_number": 1, "etag": etags[0]},
        {"part_number": 2, "etag": etags[1]},
        {"part_number": 3, "etag": etags[2]},
    ]});
    let nobody = "/v1/access-points/big/uploads/no-such-upload";
    for (path, upload) in [
        (upload_id.as_str(), "bob's view"),
        ("no-such-upload", "none"),
    ] {
        let base = format!("/v1/access-points/big/uploads/{path}");
        let (s1, p1) = app
            .post(&bob, &format!("{base}/parts"), json!({"part_numbers": [1]}))
            .await;
        let (s2, p2) = app
            .post(&bob, &format!("{base}/complete"), completion.clone())
            .await;
        let (s3, p3) = app.delete(&bob, &base).await;
        for (s, p) in [(s1, &p1), (s2, &p2), (s3, &p3)] {
            assert_eq!(s, 404, "{upload}: {p}");
            assert_eq!(p["code"], "upload_not_found", "{upload}");
            assert_eq!(
                p["detail"], "no such multipart upload of the caller on this access point",
                "{upload}"
            );
        }
    }
    let _ = nobody;
    assert_eq!(
        uploads_at_s3(&app),
        vec![upload_id.clone()],
        "bob aborted nothing"
    );

    // A completion must list every part, in order.
    let (status, problem) = app
        .post(
            &alice,
            &complete_path,
            json!({"parts": [{"part_number": 1, "etag": etags[0]}, {"part_number": 3, "etag": etags[2]}]}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid_part_numbers");

    let (status, done) = app.post(&alice, &complete_path, completion.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["key"], "big/alice/video.bin");
    assert_eq!(done["content_length"], body.len());
    assert!(uploads_at_s3(&app).is_empty());
    let got = download(&app, "big/alice/video.bin").await;
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the object matches byte for byte");

    // Completed: the upload is gone for its owner too.
    let (status, problem) = app
        .post(&alice, &parts_path, json!({"part_numbers": [1]}))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload_not_found"))
    );
    assert!(
        app.state
            .store()
            .list_uploads()
            .await
            .expect("list")
            .is_empty()
    );

    // Abort: a second upload, aborted by its owner, is gone at S3.
    let (status, second) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/b.bin", "content_type": "application/octet-stream", "content_length": 6 * MIB}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["part_count"], 1, "default part size 8 MiB: one part");
    let second_id = second["upload_id"].as_str().expect("upload_id");
    let (status, _) = app
        .delete(
            &alice,
            &format!("/v1/access-points/big/uploads/{second_id}"),
        )
        .await;
    assert_eq!(status, 204);
    assert!(uploads_at_s3(&app).is_empty(), "aborted at S3");
    let (status, _) = app
        .delete(
            &alice,
            &format!("/v1/access-points/big/uploads/{second_id}"),
        )
        .await;
    assert_eq!(status, 404, "aborting twice finds nothing");

    // Every step is audited, allowed or refused.
    let records = app.audit_records();
    let count = |op: &str, decision: &str, reason: &str| {
        records
            .iter()
            .filter(|r| r["operation"] == op && r["decision"] == decision && r["reason"] == reason)
            .count()
    };
    assert_eq!(count("multipart_create", "allow", "allowed"), 2);
    assert_eq!(count("multipart_parts", "allow", "allowed"), 1);
    assert_eq!(count("multipart_parts", "deny", "invalid_part_numbers"), 5);
    assert_eq!(count("multipart_parts", "deny", "upload_not_found"), 3);
    assert_eq!(count("multipart_complete", "deny", "upload_not_found"), 2);
    assert_eq!(
        count("multipart_complete", "deny", "invalid_part_numbers"),
        1
    );
    assert_eq!(count("multipart_complete", "allow", "allowed"), 1);
    assert_eq!(count("multipart_abort", "deny", "upload_not_found"), 3);
    assert_eq!(count("multipart_abort", "allow", "allowed"), 1);
    let created_record = records
        .iter()
        .find(|r| r["operation"] == "multipart_create")
        .expect("create record");
    assert_eq!(created_record["subject"], "alice");
    assert_eq!(created_record["key"], "big/alice/video.bin");
    assert!(created_record["signature_sha256"].is_string());
    // The part URLs carry the record id.
    let id = created_record["id"].as_str().expect("id");
    assert!(
        part(&created["parts"], 1)["url"]
            .as_str()
            .expect("url")
            .contains(&format!("x-presignd-id={id}"))
    );
    app.finish().await;
}
on_both_backends!(multipart_round_trip, multipart_round_trip);

async fn refused_before_s3(backend: Backend) {
    let app = TestApp::spawn(backend, vec![big(), vault()]).await;
    let alice = app.token("alice", &["users"], false);
    let create = |body: Value, ap: &'static str| {
        let (app, alice) = (&app, &alice);
        async move {
            app.post(alice, &format!("/v1/access-points/{ap}/uploads"), body)
                .await
        }
    };
    let ok = json!({"key": "alice/x.bin", "content_type": "application/octet-stream", "content_length": 11 * MIB});
    let cases = [
        // Above the access point's max_content_length (20 MiB).
        (
            json!({"content_length": 20 * MIB + 1}),
            "big",
            413,
            "upload_too_large",
        ),
        (json!({"part_size": MIB}), "big", 400, "invalid_part_size"),
        (
            json!({"part_size": 6u64 << 30}),
            "big",
            400,
            "invalid_part_size",
        ),
        (json!({"content_length": 0}), "big", 400, "invalid_request"),
        (
            json!({"content_type": "image/png"}),
            "big",
            400,
            "content_type_not_allowed",
        ),
        (json!({"key": "bob/x.bin"}), "big", 403, "forbidden"),
        (json!({"key": "../x"}), "big", 400, "invalid_key"),
        (
            json!({"expires_in": 7200}),
            "big",
            400,
            "expires_in_out_of_range",
        ),
        (json!({}), "vault", 400, "invalid_request"),
        (json!({}), "nope", 404, "not_found"),
    ];
    for (patch, ap, status, code) in cases {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().expect("patch") {
            body[k] = v.clone();
        }
        let (s, problem) = create(body.clone(), ap).await;
        assert_eq!(
            (s, problem["code"].as_str()),
            (status, Some(code)),
            "{body}: {problem}"
        );
    }
    // Malformed bodies are 4xx problems too.
    for body in [
        json!({"key": "alice/x"}),
        json!({"content_length": -1, "key": "a"}),
        json!([]),
    ] {
        let (s, problem) = create(body.clone(), "big").await;
        assert!((400..500).contains(&s), "{body}: {s} {problem}");
    }
    let (s, problem) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads/x/complete",
            json!({"parts": [{"part_number": 1, "etag": ""}]}),
        )
        .await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (400, Some("invalid_request")),
        "{problem}"
    );
    // S3 was never asked to start anything, and nothing was recorded.
    assert!(
        uploads_at_s3(&app).is_empty(),
        "no CreateMultipartUpload reached S3"
    );
    assert!(
        app.state
            .store()
            .list_uploads()
            .await
            .expect("list")
            .is_empty()
    );
    // The refusals were audited.
    let records = app.audit_records();
    assert!(records.iter().any(|r| r["operation"] == "multipart_create"
        && r["decision"] == "deny"
        && r["reason"] == "upload_too_large"));
    // Within the limit, the same request starts an upload.
    let (s, created) = create(ok, "big").await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(uploads_at_s3(&app).len(), 1);
    app.finish().await;
}
on_both_backends!(refused_before_s3, refused_before_s3);

async fn sweeper_aborts_abandoned_uploads(backend: Backend) {
    let mut opts = Options::new(backend, vec![big()]);
    opts.config(|c| {
        c.uploads.abandon_after_seconds = 2;
        c.uploads.sweep_interval_ms = 200;
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/left.bin", "content_type": "application/octet-stream", "content_length": 6 * MIB, "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let (status, _) = put_part(&app.http, part(&created["parts"], 1), data(5 * MIB)).await;
    assert_eq!(status, 200);
    assert_eq!(uploads_at_s3(&app), vec![upload_id.clone()]);

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !uploads_at_s3(&app).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper aborted nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Gone at S3 (its parts with it), forgotten by presignd, audited.
    let (status, _) = put_part(&app.http, part(&created["parts"], 2), data(MIB)).await;
    assert_eq!(
        status, 403,
        "S3 no longer takes parts for the aborted upload"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !app
        .state
        .store()
        .list_uploads()
        .await
        .expect("list")
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "the row stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, problem) = app
        .post(
            &alice,
            &format!("/v1/access-points/big/uploads/{upload_id}/parts"),
            json!({"part_numbers": [1]}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload_not_found"))
    );
    let records = app.audit_records();
    let swept = records
        .iter()
        .find(|r| r["operation"] == "multipart_abort" && r["reason"] == "abandoned")
        .expect("a sweeper record");
    assert_eq!(swept["decision"], "allow");
    assert_eq!(swept["subject"], "alice");
    assert_eq!(swept["key"], "big/alice/left.bin");
    app.finish().await;
}
on_both_backends!(
    sweeper_aborts_abandoned_uploads,
    sweeper_aborts_abandoned_uploads
);

/// Two instances on one PostgreSQL sweep the same abandoned uploads: each is aborted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweeps_claim_each_upload_once() {
    let app = TestApp::spawn(Backend::Postgres, vec![big()]).await;
    let alice = app.token("alice", &["users"], false);
    for i in 0..6 {
        let (status, created) = app
            .post(
                &alice,
                "/v1/access-points/big/uploads",
                json!({"key": format!("alice/{i}.bin"), "content_type": "application/octet-stream", "content_length": MIB}),
            )
            .await;
        assert_eq!(status, 200, "{created}");
    }
    let store = app.state.store();
    let now = presignd::uploads::unix(std::time::SystemTime::now());
    // Everything counts as abandoned: idle before now + 10 s.
    let (a, b) = tokio::join!(
        store.claim_abandoned(now + 10, now, now + 600, 100),
        store.claim_abandoned(now + 10, now, now + 600, 100),
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    let mut ids: Vec<_> = a.iter().chain(&b).map(|u| u.upload_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(a.len() + b.len(), 6, "every upload claimed once");
    assert_eq!(ids.len(), 6);
    // Claimed rows are not claimed again until their claim lapses.
    let again = store
        .claim_abandoned(now + 10, now, now + 600, 100)
        .await
        .expect("claim");
    assert!(again.is_empty());
    let lapsed = store
        .claim_abandoned(now + 10, now + 601, now + 1200, 100)
        .await
        .expect("claim");
    assert_eq!(lapsed.len(), 6, "a dead claim is taken over");
    app.finish().await;
}

/// Transport and network rules apply to uploads as to presign, and their refusals (and an
/// unauthenticated request's) are audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_network_and_authentication_refusals_are_audited() {
    let internal = ap(json!({
        "name": "internal", "bucket": BUCKET, "prefix": "internal/",
        "network": {"allowed_cidrs": ["10.0.0.0/8"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"]}]
    }));
    let mut opts = Options::new(Backend::Sqlite, vec![big(), internal]);
    opts.behind_proxies(&["127.0.0.0/8"]);
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let create = |ap: &str, token: Option<&str>, https: bool, xff: Option<&str>| {
        let mut req = app
            .http
            .post(format!("{}/v1/access-points/{ap}/uploads", app.base))
            .json(&json!({"key": "alice/x.bin", "content_type": "application/octet-stream", "content_length": 10}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if https {
            req = req.header("x-forwarded-proto", "https");
        }
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        async move { decode(req.send().await.expect("request")).await }
    };
    let (s, b) = create("big", Some(&alice), false, None).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("https_required")));
    let (s, b) = create("big", None, true, None).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")));
    let (s, b) = create("internal", Some(&alice), true, Some("192.0.2.7")).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("network_denied")));
    let (s, b) = create("internal", Some(&alice), true, Some("10.1.2.3")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = create("big", Some(&alice), true, None).await;
    assert_eq!(s, 200, "{b}");

    let records = app.audit_records();
    let refused = |reason: &str, ap: &str| {
        records
            .iter()
            .any(|r| r["decision"] == "deny" && r["reason"] == reason && r["access_point"] == ap)
    };
    assert!(refused("https_required", "big"), "{records:?}");
    assert!(refused("unauthenticated", "big"));
    assert!(refused("network_denied", "internal"));
    assert_eq!(
        records
            .iter()
            .filter(|r| r["operation"] == "multipart_create" && r["decision"] == "allow")
            .count(),
        2
    );
    app.finish().await;
}

/// Creating an upload and asking for part URLs are charged to the rate limits like a
/// presigned `put`; a refused creation never reaches S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_before_s3() {
    let mut limited = big();
    limited.limits.per_subject_per_minute = Some(2);
    limited.limits.per_subject_burst = Some(2);
    let app = TestApp::spawn(Backend::Sqlite, vec![limited]).await;
    let alice = app.token("alice", &["users"], false);
    let body = json!({"key": "alice/a.bin", "content_type": "application/octet-stream", "content_length": 10});
    let (s, created) = app
        .post(&alice, "/v1/access-points/big/uploads", body.clone())
        .await;
    assert_eq!(s, 200, "{created}");
    let id = created["upload_id"].as_str().expect("upload_id");
    let parts = format!("/v1/access-points/big/uploads/{id}/parts");
    let (s, b) = app.post(&alice, &parts, json!({"part_numbers": [1]})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.post(&alice, &parts, json!({"part_numbers": [1]})).await;
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")));
    let (s, b) = app
        .post(&alice, "/v1/access-points/big/uploads", body)
        .await;
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")));
    assert_eq!(
        uploads_at_s3(&app).len(),
        1,
        "the refused creation never reached S3"
    );
    app.finish().await;
}

/// `GET …/parts` (ListParts) is the owner's only and checks its query before S3 is asked
/// (the in-process server's ListParts has no ETags: `tests/rgw_multipart.rs` resumes an
/// upload from a listing against radosgw).
async fn list_parts_is_the_owners_and_checked(backend: Backend) {
    let app = TestApp::spawn(backend, vec![big()]).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/big/uploads",
            json!({"key": "alice/resume.bin", "content_type": "application/octet-stream",
                   "content_length": 11 * MIB, "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let upload_id = created["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let list = format!("/v1/access-points/big/uploads/{upload_id}/parts");
    let (status, listed) = app.get(Some(&alice), &list).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["upload_id"], upload_id.as_str());
    assert_eq!(listed["key"], "big/alice/resume.bin");
    let (status, problem) = app.get(Some(&bob), &list).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("upload_not_found"))
    );
    let (status, _) = app.get(None, &list).await;
    assert_eq!(status, 401);
    for bad in ["?max_parts=0", "?max_parts=1001", "?nope=1", "?max_parts=x"] {
        let (status, problem) = app.get(Some(&alice), &format!("{list}{bad}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {problem}"
        );
    }
    let listings = app
        .audit_records()
        .iter()
        .filter(|r| r["operation"] == "multipart_list_parts")
        .count();
    // Recorded: the listing, bob's, the anonymous one, both out-of-range max_parts; a query
    // that does not parse is refused before the decision, like a malformed body.
    assert_eq!(listings, 5);
    app.finish().await;
}
on_both_backends!(
    list_parts_is_the_owners_and_checked,
    list_parts_is_the_owners_and_checked
);
