//! Presigned POST (browser form uploads) against a real S3 implementation: Ceph RADOS Gateway,
//! because the in-process s3s server has no POST Object.
//!
//! presignd signs a POST policy; the tests post `multipart/form-data` bodies built by hand
//! (exactly what a browser's `<form enctype="multipart/form-data">` sends) straight to
//! radosgw, which checks the policy's signature and every condition: an upload inside the
//! size range is stored and reads back; one byte over the range, another key, another content
//! type, an added field and an expired policy are refused by radosgw itself. A key outside the
//! caller's rules is refused by presignd before anything is signed.
//!
//! The object uploaded first is then downloaded through a download grant: the link's redirect
//! target is a URL radosgw serves. And create-only PUTs (`upload.overwrite: false`): radosgw
//! verifies the signed `If-None-Match: *` and refuses to replace the object.
//!
//! One test function: radosgw takes ~15 s to start, so every scenario shares one gateway.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::app::{Backend, Options, S3Endpoint, TestApp, ap};
use common::form::{fields_of, upload};
use common::rgw::Rgw;
use serde_json::{Value, json};

const BUCKET: &str = "form-bucket";
/// The access point's `max_content_length`.
const MAX: usize = 64;

fn forms() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "forms", "bucket": BUCKET, "prefix": "forms/",
        "upload": {"max_content_length": MAX, "content_types": ["text/plain", "image/*"]},
        "grants": {"max_uses": 1},
        "rules": [
            {"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]},
            {"effect": "deny", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/locked/*"]}
        ]
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_post_conditions_are_enforced_by_radosgw() {
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let once = ap(json!({
        "name": "once", "bucket": BUCKET, "prefix": "once/", "upload": {"overwrite": false},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/*"]}]
    }));
    let mut opts = Options::new(Backend::Sqlite, vec![forms(), once]);
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    opts.config(|c| c.server.public_base_url = Some("http://links.test".into()));
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let http = reqwest::Client::new();
    let s3 = rgw.sdk_client();

    // 1. An exact-key policy: the form upload at the top of the range is stored as declared.
    let (s, issued) = app
        .presign(
            &alice,
            "forms",
            json!({"operation": "post", "key": "alice/note.txt", "content_type": "text/plain",
                   "metadata": {"purpose": "form-test"}}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(issued["method"], "POST");
    assert_eq!(issued["url"], format!("{}/{BUCKET}", rgw.endpoint));
    assert_eq!(issued["key"], "forms/alice/note.txt");
    assert_eq!(issued["headers"], json!({}));
    let fields = fields_of(&issued);
    assert_eq!(fields["key"], "forms/alice/note.txt");
    assert_eq!(fields["Content-Type"], "text/plain");
    assert_eq!(fields["x-amz-meta-purpose"], "form-test");
    assert!(fields.contains_key("x-presignd-id"));
    let exact = vec![b'x'; MAX];
    let (s, code) = upload(&http, &issued, &fields, "note.txt", &exact).await;
    assert_eq!(s, 204, "upload within the range: {code}");
    let got = s3
        .get_object()
        .bucket(BUCKET)
        .key("forms/alice/note.txt")
        .send()
        .await
        .expect("the object arrived");
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("purpose"))
            .map(String::as_str),
        Some("form-test")
    );
    let bytes = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(bytes.as_ref(), exact.as_slice(), "the bytes read back");

    // Create-only PUTs: radosgw (16.2 here) checks the signed If-None-Match: dropping the
    // header breaks the signature (403), the first PUT creates (200), a second one to the
    // same key is refused (412) and the first object stays.
    let mut create_only = Vec::new();
    for (body, skip) in [
        (&b"first"[..], "if-none-match"),
        (&b"first"[..], ""),
        (&b"again"[..], ""),
    ] {
        let (s, issued) = app
            .presign(
                &alice,
                "once",
                json!({"operation": "put", "key": "alice/o.txt"}),
            )
            .await;
        assert_eq!(s, 200, "{issued}");
        assert_eq!(issued["headers"]["if-none-match"], "*");
        let mut req = http.put(issued["url"].as_str().expect("url"));
        for (k, v) in issued["headers"].as_object().expect("headers") {
            if k != skip {
                req = req.header(k, v.as_str().expect("value"));
            }
        }
        create_only.push(req.body(body).send().await.expect("PUT").status().as_u16());
    }
    assert_eq!(create_only, [403, 200, 412]);
    let kept = s3
        .get_object()
        .bucket(BUCKET)
        .key("once/alice/o.txt")
        .send()
        .await
        .expect("the first object")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(kept.as_ref(), b"first");

    // A download grant for it: the link redirects to a URL radosgw serves (it checks the
    // signature), once.
    let (s, grant) = app
        .post(
            &alice,
            "/v1/access-points/forms/grants",
            json!({"key": "alice/note.txt", "max_uses": 1}),
        )
        .await;
    assert_eq!(s, 201, "{grant}");
    let link = grant["url"]
        .as_str()
        .expect("url")
        .replace("http://links.test", &app.base);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirect = no_redirects.get(&link).send().await.expect("redeem");
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(location.starts_with(&rgw.endpoint), "{location}");
    let download = http
        .get(&location)
        .send()
        .await
        .expect("download from radosgw");
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.bytes().await.expect("bytes").as_ref(),
        exact.as_slice()
    );
    assert_eq!(
        no_redirects
            .get(&link)
            .send()
            .await
            .expect("redeem")
            .status(),
        410
    );

    // 2. One byte over the access point's maximum: refused by radosgw.
    let over = vec![b'y'; MAX + 1];
    let (s, code) = upload(&http, &issued, &fields, "note.txt", &over).await;
    assert_eq!((s, code.as_str()), (400, "EntityTooLarge"), "one byte over");

    // A declared content_length narrows the range further.
    let (s, small) = app
        .presign(
            &alice,
            "forms",
            json!({"operation": "post", "key": "alice/small.txt", "content_type": "text/plain",
                   "content_length": 10}),
        )
        .await;
    assert_eq!(s, 200, "{small}");
    let small_fields = fields_of(&small);
    let (s, code) = upload(&http, &small, &small_fields, "s.txt", &[b'z'; 11]).await;
    assert_eq!(
        (s, code.as_str()),
        (400, "EntityTooLarge"),
        "over the declared length"
    );
    let (s, code) = upload(&http, &small, &small_fields, "s.txt", &[b'z'; 10]).await;
    assert_eq!(s, 204, "at the declared length: {code}");

    // 3. Another key, another content type, a field the policy does not list, a tampered
    //    policy: each refused by radosgw.
    let mut other_key = fields.clone();
    other_key.insert("key".into(), "forms/alice/other.txt".into());
    let (s, code) = upload(&http, &issued, &other_key, "n.txt", b"hi").await;
    assert_eq!((s, code.as_str()), (403, "AccessDenied"), "another key");
    let mut other_type = fields.clone();
    other_type.insert("Content-Type".into(), "text/html".into());
    let (s, code) = upload(&http, &issued, &other_type, "n.txt", b"hi").await;
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "another content type"
    );
    let mut other_meta = fields.clone();
    other_meta.insert("x-amz-meta-purpose".into(), "other".into());
    let (s, code) = upload(&http, &issued, &other_meta, "n.txt", b"hi").await;
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "changed metadata"
    );
    let mut added = fields.clone();
    added.insert("x-amz-meta-extra".into(), "not in the policy".into());
    let (s, code) = upload(&http, &issued, &added, "n.txt", b"hi").await;
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "a field the policy does not list"
    );
    // A policy re-encoded with a wider size range, with the original signature.
    let mut tampered = fields.clone();
    let mut doc: Value =
        serde_json::from_slice(&B64.decode(&fields["policy"]).expect("base64")).expect("json");
    for c in doc["conditions"].as_array_mut().expect("conditions") {
        if c[0] == "content-length-range" {
            c[2] = json!(1_000_000);
        }
    }
    tampered.insert("policy".into(), B64.encode(doc.to_string()));
    let (s, code) = upload(&http, &issued, &tampered, "n.txt", &over).await;
    // (AWS S3 answers SignatureDoesNotMatch; radosgw AccessDenied.)
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "a tampered policy"
    );
    let note = s3
        .head_object()
        .bucket(BUCKET)
        .key("forms/alice/note.txt")
        .send()
        .await
        .expect("head");
    assert_eq!(
        note.content_length(),
        Some(MAX as i64),
        "no refused upload replaced the object"
    );
    for objects in ["forms/alice/other.txt"] {
        assert!(
            s3.head_object()
                .bucket(BUCKET)
                .key(objects)
                .send()
                .await
                .is_err(),
            "nothing stored under {objects}"
        );
    }

    // 4. A starts-with policy: any key under the prefix, the file's own name by default.
    let (s, prefixed) = app
        .presign(
            &alice,
            "forms",
            json!({"operation": "post", "key": "alice/inbox/", "key_starts_with": true,
                   "content_type": "image/png"}),
        )
        .await;
    assert_eq!(s, 200, "{prefixed}");
    assert_eq!(prefixed["key"], "forms/alice/inbox/");
    let pf = fields_of(&prefixed);
    assert_eq!(pf["key"], "forms/alice/inbox/${filename}");
    let (s, code) = upload(&http, &prefixed, &pf, "cat.png", b"\x89PNG").await;
    assert_eq!(s, 204, "${{filename}} upload: {code}");
    s3.head_object()
        .bucket(BUCKET)
        .key("forms/alice/inbox/cat.png")
        .send()
        .await
        .expect("stored under the file's name");
    let mut chosen = pf.clone();
    chosen.insert("key".into(), "forms/alice/inbox/2026/dog.png".into());
    let (s, code) = upload(&http, &prefixed, &chosen, "x.png", b"\x89PNG").await;
    assert_eq!(s, 204, "a key the page chose under the prefix: {code}");
    let mut outside = pf.clone();
    outside.insert("key".into(), "forms/bob/inbox/dog.png".into());
    let (s, code) = upload(&http, &prefixed, &outside, "x.png", b"\x89PNG").await;
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "a key outside the prefix"
    );

    // 5. An expired policy: refused by radosgw.
    let (s, short) = app
        .presign(
            &alice,
            "forms",
            json!({"operation": "post", "key": "alice/late.txt", "content_type": "text/plain",
                   "expires_in": 1}),
        )
        .await;
    assert_eq!(s, 200, "{short}");
    let short_fields = fields_of(&short);
    // The point of this case is the clock: wait until the policy's expiration has passed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, code) = upload(&http, &short, &short_fields, "late.txt", b"late").await;
    assert_eq!(
        (s, code.as_str()),
        (403, "AccessDenied"),
        "an expired policy"
    );

    // 6. Refused by presignd, before any policy is signed: keys outside the caller's rules.
    for (body, code) in [
        (
            json!({"operation": "post", "key": "bob/x.txt", "content_type": "text/plain"}),
            "forbidden",
        ),
        // `alice` could complete to `alice2/...`: not every completion is alice's.
        (
            json!({"operation": "post", "key": "alice", "key_starts_with": true, "content_type": "text/plain"}),
            "forbidden",
        ),
        // A deny rule could match a completion of `alice/` (alice/locked/...).
        (
            json!({"operation": "post", "key": "alice/", "key_starts_with": true, "content_type": "text/plain"}),
            "forbidden",
        ),
        (
            json!({"operation": "post", "key": "alice/locked/x.txt", "content_type": "text/plain"}),
            "forbidden",
        ),
        (
            json!({"operation": "post", "key": "alice/x.txt", "content_type": "text/html"}),
            "content_type_not_allowed",
        ),
        (
            json!({"operation": "post", "key": "alice/x.txt", "content_type": "text/plain", "content_length": MAX + 1}),
            "payload_too_large",
        ),
        (
            json!({"operation": "post", "key": "alice/x.txt", "checksum_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}),
            "invalid_request",
        ),
        (
            json!({"operation": "get", "key": "alice/", "key_starts_with": true}),
            "invalid_request",
        ),
    ] {
        let (s, b) = app.presign(&alice, "forms", body.clone()).await;
        assert_eq!(b["code"], code, "{body}: {b}");
        assert!(s >= 400 && b.get("fields").is_none(), "{body}: {s} {b}");
    }

    // 7. Every decision is audited as operation `post`.
    let records = app.audit_records();
    let posts: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "post")
        .collect();
    let allowed: Vec<&&Value> = posts.iter().filter(|r| r["decision"] == "allow").collect();
    assert_eq!(allowed.len(), 4, "four policies issued: {posts:?}");
    let first = allowed
        .iter()
        .find(|r| r["key"] == "forms/alice/note.txt")
        .expect("record of the first policy");
    assert_eq!(first["id"].as_str(), Some(fields["x-presignd-id"].as_str()));
    assert!(first["signature_sha256"].is_string());
    assert!(first["expires_at"].is_string());
    let denied: Vec<&&Value> = posts.iter().filter(|r| r["decision"] == "deny").collect();
    assert_eq!(denied.len(), 7, "{denied:?}");
    assert!(
        denied
            .iter()
            .any(|r| r["key"] == "forms/bob/x.txt" && r["reason"] == "implicit_deny"),
        "{denied:?}"
    );
    app.finish().await;
    drop(rgw);
}
