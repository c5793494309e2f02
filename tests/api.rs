//! End-to-end: presignd issues URLs over HTTP, a real S3-compatible server (s3s, verifying
//! SigV4 signatures, signed headers and expiry) accepts or refuses them. Every test runs on
//! SQLite and on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::app::{BUCKET, Options, TestApp, ap, avatars, avatars_of, decode, mint_hs256};
use common::jwt;
use presignd::config::Algorithm;
use serde_json::{Value, json};

fn url_with(url: &str, param: &str, f: impl Fn(&str) -> String) -> String {
    let (base, query) = url.split_once('?').expect("presigned URL has a query");
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == param => format!("{k}={}", f(v)),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

async fn put(app: &TestApp, issued: &Value, body: &'static [u8]) -> u16 {
    let mut req = app.http.put(issued["url"].as_str().expect("url"));
    for (k, v) in issued["headers"].as_object().expect("headers") {
        if k == "content-length" {
            continue; // reqwest sets it from the body
        }
        req = req.header(k, v.as_str().expect("header value"));
    }
    req.body(body)
        .send()
        .await
        .expect("PUT to S3")
        .status()
        .as_u16()
}

/// Finding 8 of the hardening review: `content_types: ["image/*"]` signed a PUT of
/// `image/svg+xml` (active content on the bucket's origin), while the same type was refused
/// as a GET's `response_content_type`. Wildcards skip active types; listing one exactly
/// allows it.
async fn active_content(backend: common::app::Backend) {
    let mut svg = avatars();
    svg.name = "drawings".into();
    svg.upload.content_types = vec!["image/*".into(), "image/svg+xml".into()];
    let app = TestApp::spawn(backend, vec![avatars(), svg]).await;
    let alice = app.token("alice", &["users"], false);
    let put = |ct: &str| json!({"operation": "put", "key": "alice/x", "content_type": ct, "content_length": 3});
    for ct in ["image/svg+xml", "text/html", "image/svg+xml; charset=utf-8"] {
        let (status, problem) = app.presign(&alice, "avatars", put(ct)).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("content_type_not_allowed")),
            "{ct}: {problem}"
        );
    }
    let (status, issued) = app.presign(&alice, "drawings", put("image/svg+xml")).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["headers"]["content-type"], "image/svg+xml");
    let (status, issued) = app.presign(&alice, "avatars", put("image/webp")).await;
    assert_eq!(status, 200, "{issued}");
    app.finish().await;
}
on_both_backends!(wildcard_types_never_sign_active_content, active_content);

/// Finding 10 of the hardening review: a subject holding `/` widened `${jwt:sub}/*` into
/// another user's folder (`bob/public` reached `bob/public/…` inside `bob/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_with_a_slash_gets_no_folder() {
    let app = TestApp::spawn(common::app::Backend::Sqlite, vec![avatars()]).await;
    let sneaky = app.token("bob/public", &["users"], false);
    for key in ["bob/public/x.png", "bob/x.png"] {
        let (status, problem) = app
            .presign(&sneaky, "avatars", json!({"operation": "get", "key": key}))
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("forbidden")),
            "{key}: {problem}"
        );
    }
    let bob = app.token("bob", &["users"], false);
    let (status, _) = app
        .presign(
            &bob,
            "avatars",
            json!({"operation": "get", "key": "bob/public/x.png"}),
        )
        .await;
    assert_eq!(status, 200, "bob's own folder, subfolders included");
    app.finish().await;
}

/// The second review: `${jwt:sub}` is not tied to an issuer, so with a partner IdP configured,
/// its user `alice` got our alice's folder. With several issuers, a rule handing out per-user
/// folders must name the issuers that own them; then the partner's alice is refused (the
/// access point does not exist for her).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_folders_belong_to_named_issuers() {
    const PARTNER: &str = "https://partner.example/";
    const PARTNER_SECRET: &str = "partner-secret-partner-secret-0123456789";
    let mut opts = Options::new(
        common::app::Backend::Sqlite,
        vec![avatars_of(&[common::app::ISSUER])],
    );
    let mut partner = jwt::issuer_config(PARTNER);
    partner.algorithms = vec![Algorithm::HS256];
    partner.hs256_secret = Some(PARTNER_SECRET.to_string().into());
    opts.config(|c| c.auth.issuers.push(partner));
    let app = TestApp::spawn_with(opts).await;
    let mut claims = jwt::claims(PARTNER, "alice");
    claims["groups"] = json!(["users"]);
    let partner_alice = jwt::hs256(PARTNER_SECRET.as_bytes(), &claims);
    let get = json!({"operation": "get", "key": "alice/a.png"});
    let (status, problem) = app.presign(&partner_alice, "avatars", get.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("not_found")),
        "no rule is for the partner's users at all: {problem}"
    );
    let alice = app.token("alice", &["users"], false);
    let (status, _) = app.presign(&alice, "avatars", get).await;
    assert_eq!(status, 200);
    // An access point whose folders name no issuer is refused while two are configured.
    let admin = app.token("root", &["presignd-admins"], true);
    let resp = app
        .http
        .put(format!("{}/v1/admin/access-points/avatars", app.base))
        .bearer_auth(&admin)
        .json(&avatars())
        .send()
        .await
        .expect("request");
    let (status, problem) = decode(resp).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_request")),
        "{problem}"
    );
    assert_eq!(
        problem["errors"][0]["field"], "rules[0].issuers",
        "{problem}"
    );
    app.finish().await;
}

async fn put_upload(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let bytes: &'static [u8] = b"\x89PNG not really a png";

    let (status, issued) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "put", "key": "alice/me.png", "content_type": "image/png",
                   "content_length": bytes.len(), "expires_in": 120}),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["method"], "PUT");
    assert_eq!(issued["bucket"], BUCKET);
    assert_eq!(issued["key"], "avatars/alice/me.png");
    assert_eq!(issued["headers"]["content-type"], "image/png");
    assert_eq!(issued["headers"]["content-length"], bytes.len().to_string());
    assert!(
        issued["url"]
            .as_str()
            .expect("url")
            .contains("X-Amz-Signature=")
    );
    let expires_at = time::OffsetDateTime::parse(
        issued["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 expires_at");
    let left = expires_at - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::seconds(121) && left > time::Duration::seconds(60));

    assert_eq!(
        put(&app, &issued, bytes).await,
        200,
        "S3 accepts the presigned PUT"
    );

    let (status, got) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/me.png"}),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let body = app
        .http
        .get(got["url"].as_str().expect("url"))
        .send()
        .await
        .expect("GET from S3");
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(body.bytes().await.expect("bytes").as_ref(), bytes);
    app.finish().await;
}
on_both_backends!(put_then_get_returns_the_same_bytes, put_upload);

async fn tampering(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    // Upload something to read back.
    let (_, issued) = app
        .presign(&alice, "avatars", json!({"operation": "put", "key": "alice/a.txt", "content_type": "text/plain", "content_length": 2}))
        .await;
    assert_eq!(put(&app, &issued, b"hi").await, 200);
    let (_, got) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.txt"}),
        )
        .await;
    let url = got["url"].as_str().expect("url").to_string();
    let status = |u: String| {
        let http = app.http.clone();
        async move { http.get(u).send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(status(url.clone()).await, 200, "untampered URL works");

    let flipped = url_with(&url, "X-Amz-Signature", |v| {
        let mut s: Vec<char> = v.chars().collect();
        s[0] = if s[0] == 'a' { 'b' } else { 'a' };
        s.into_iter().collect()
    });
    assert_eq!(status(flipped).await, 403, "tampered signature refused");

    let other_key = url.replace("/avatars/alice/a.txt?", "/avatars/bob/a.txt?");
    assert_ne!(other_key, url);
    assert_eq!(status(other_key).await, 403, "tampered key refused");

    let longer = url_with(&url, "X-Amz-Expires", |_| "604800".into());
    assert_eq!(status(longer).await, 403, "tampered X-Amz-Expires refused");
    app.finish().await;
}
on_both_backends!(tampered_urls_are_refused_by_s3, tampering);

async fn expiry(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let (_, issued) = app
        .presign(&alice, "avatars", json!({"operation": "put", "key": "alice/e.txt", "content_type": "text/plain", "content_length": 1}))
        .await;
    assert_eq!(put(&app, &issued, b"x").await, 200);
    let (status, got) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/e.txt", "expires_in": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let url = got["url"].as_str().expect("url").to_string();
    // Poll (no fixed sleep) until the one-second URL has expired; S3 must then refuse it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = app
            .http
            .get(&url)
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16();
        if s == 403 {
            break;
        }
        assert_eq!(s, 200, "before expiry the URL works");
        assert!(Instant::now() < deadline, "URL never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.finish().await;
}
on_both_backends!(expired_urls_are_refused_by_s3, expiry);

async fn signed_headers(backend: common::app::Backend) {
    let mut sse = avatars();
    sse.name = "secure".into();
    sse.encryption = serde_json::from_value(json!({"mode": "sse-s3"})).expect("encryption");
    let app = TestApp::spawn(backend, vec![avatars(), sse]).await;
    let alice = app.token("alice", &["users"], false);

    let (_, issued) = app
        .presign(&alice, "avatars", json!({"operation": "put", "key": "alice/h.png", "content_type": "image/png", "content_length": 3}))
        .await;
    let url = issued["url"].as_str().expect("url");
    let no_ct = app
        .http
        .put(url)
        .body(&b"abc"[..])
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        no_ct.status().as_u16(),
        403,
        "omitting the signed content-type is refused"
    );
    let wrong_ct = app
        .http
        .put(url)
        .header("content-type", "text/html")
        .body(&b"abc"[..])
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        wrong_ct.status().as_u16(),
        403,
        "changing the signed content-type is refused"
    );
    let longer = app
        .http
        .put(url)
        .header("content-type", "image/png")
        .body(&b"abcdef"[..])
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        longer.status().as_u16(),
        403,
        "a body longer than the signed content-length is refused"
    );

    let (status, issued) = app
        .presign(&alice, "secure", json!({"operation": "put", "key": "alice/s.png", "content_type": "image/png", "content_length": 3}))
        .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["headers"]["x-amz-server-side-encryption"], "AES256");
    let url = issued["url"].as_str().expect("url");
    let no_sse = app
        .http
        .put(url)
        .header("content-type", "image/png")
        .body(&b"abc"[..])
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        no_sse.status().as_u16(),
        403,
        "omitting the signed SSE header is refused"
    );
    assert_eq!(
        put(&app, &issued, b"abc").await,
        200,
        "with every signed header it is accepted"
    );
    app.finish().await;
}
on_both_backends!(
    omitted_or_changed_signed_headers_are_refused,
    signed_headers
);

async fn rules(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let suspended = app.token("alice", &["users", "suspended"], false);
    let moderator = app.token("mod", &["moderators"], false);
    let moderator_mfa = app.token("mod", &["moderators"], true);
    let outsider = app.token("eve", &["others"], false);
    let get = |key: &str| json!({"operation": "get", "key": key});

    let (s, b) = app.presign(&alice, "avatars", get("alice/x.png")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.presign(&alice, "avatars", get("bob/x.png")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("forbidden")),
        "${{jwt:sub}} confines alice"
    );
    let (s, b) = app.presign(&alice, "avatars", get("alice2/x.png")).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")));
    let (s, b) = app.presign(&suspended, "avatars", get("alice/x.png")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("forbidden")),
        "deny beats allow"
    );
    let (s, b) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "delete", "key": "alice/x.png"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("forbidden")),
        "implicit deny"
    );
    let (s, b) = app
        .presign(
            &moderator,
            "avatars",
            json!({"operation": "delete", "key": "bob/x.png"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("mfa_required")));
    let (s, b) = app
        .presign(
            &moderator_mfa,
            "avatars",
            json!({"operation": "delete", "key": "bob/x.png"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["method"], "DELETE");
    let (s, b) = app.presign(&outsider, "avatars", get("eve/x.png")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("not_found")),
        "invisible access point is 404"
    );
    let (s, b) = app.presign(&alice, "nope", get("alice/x.png")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("not_found")),
        "unknown access point is 404"
    );

    let (s, b) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/x", "expires_in": 3601}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("expires_in_out_of_range"))
    );
    let (s, b) = app.presign(&alice, "avatars", json!({"operation": "put", "key": "alice/x", "content_type": "application/x-sh", "content_length": 10})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("content_type_not_allowed"))
    );
    let (s, b) = app.presign(&alice, "avatars", json!({"operation": "put", "key": "alice/x", "content_type": "image/png", "content_length": 5242881})).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));
    let (s, b) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "put", "key": "alice/x", "content_type": "image/png"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_request")),
        "size must be declared: {b}"
    );

    for bad in [
        "alice/../bob/x",
        "/alice/x",
        "alice//x",
        "alice/./x",
        "alice/\u{0}x",
        "alice/%2e%2e/x",
    ] {
        let (s, b) = app.presign(&alice, "avatars", get(bad)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_key")),
            "{bad:?}: {b}"
        );
    }
    let long = format!("alice/{}", "a".repeat(1020));
    let (s, b) = app.presign(&alice, "avatars", get(&long)).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_key")), "{b}");
    app.finish().await;
}
on_both_backends!(rules_and_constraints_give_the_right_codes, rules);

async fn auth_errors(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let url = format!("{}/v1/whoami", app.base);

    let resp = app.http.get(&url).send().await.expect("request");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (s, b) = decode(resp).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")));

    let expired = mint_hs256("alice", &["users"], false, -120);
    let resp = app
        .http
        .get(&url)
        .bearer_auth(&expired)
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let (s, b) = decode(resp).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("token_expired")));

    let resp = app
        .http
        .get(&url)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .expect("request");
    let (s, b) = decode(resp).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")));

    let good = app.token("alice", &["users"], true);
    let resp = app
        .http
        .get(&url)
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("request");
    let (s, b) = decode(resp).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("unauthenticated")),
        "duplicate Authorization"
    );

    let (s, b) = app.get(Some(&good), "/v1/whoami").await;
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({"sub": "alice", "iss": common::app::ISSUER, "groups": ["users"], "mfa": true, "admin": false})
    );
    app.finish().await;
}
on_both_backends!(authentication_failures_are_401_problems, auth_errors);

async fn batch(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let (s, b) = app
        .post(
            &alice,
            "/v1/presign/batch",
            json!({"items": [
                {"access_point": "avatars", "operation": "get", "key": "alice/1.png"},
                {"access_point": "avatars", "operation": "get", "key": "bob/1.png"},
                {"access_point": "missing", "operation": "get", "key": "alice/1.png"},
                {"access_point": "avatars", "operation": "get", "key": "../x"},
                {"access_point": "avatars", "operation": "fly", "key": "alice/1.png"},
                {"access_point": "avatars", "operation": "put", "key": "alice/2.png", "content_type": "image/png", "content_length": 3}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let r = b["results"].as_array().expect("results");
    let summary: Vec<(u64, Option<&str>)> = r
        .iter()
        .map(|x| {
            (
                x["status"].as_u64().expect("status"),
                x["error"]["code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (200, None),
            (403, Some("forbidden")),
            (404, Some("not_found")),
            (400, Some("invalid_key")),
            (400, Some("invalid_request")),
            (200, None)
        ]
    );
    assert!(r[0]["presigned"]["url"].is_string());
    let (s, b) = app
        .post(
            &alice,
            "/v1/presign/batch",
            json!({"items": vec![json!({}); 101]}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_request")));
    app.finish().await;
}
on_both_backends!(batch_gives_per_item_results, batch);

async fn audit(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let (s, issued) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "bob/a.png"}),
        )
        .await;
    assert_eq!(s, 403);

    let records = app.audit_records();
    assert_eq!(records.len(), 2, "one record per decision: {records:?}");
    let url = issued["url"].as_str().expect("url");
    let signature = url.split("X-Amz-Signature=").nth(1).expect("signature");
    let raw = serde_json::to_string(&records).expect("json");
    assert!(
        !raw.contains(signature),
        "the signature never reaches the audit log"
    );
    assert!(
        !raw.contains("X-Amz-"),
        "the URL never reaches the audit log"
    );

    let allow = &records[0];
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["reason"], "allowed");
    assert_eq!(allow["key"], "avatars/alice/a.png");
    assert_eq!(allow["subject"], "alice");
    assert_eq!(allow["request_id"], issued["request_id"]);
    use sha2::Digest;
    assert_eq!(
        allow["signature_sha256"],
        hex::encode(sha2::Sha256::digest(signature.as_bytes()))
    );
    for field in [
        "id",
        "time",
        "request_id",
        "decision",
        "reason",
        "operation",
        "access_point",
        "bucket",
        "key",
        "expires_at",
        "subject",
        "issuer",
        "groups",
        "source_ip",
        "user_agent",
        "origin",
        "tls",
        "sse",
        "signature_sha256",
        "instance",
    ] {
        assert!(allow.get(field).is_some(), "audit record has {field}");
    }
    let deny = &records[1];
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "implicit_deny");
    assert!(deny["signature_sha256"].is_null());
    // The rule that decided: the first allow rule granted; no rule matched the implicit deny.
    assert_eq!(allow["rule"], 0);
    assert!(deny.get("rule").is_none(), "{deny}");

    // Refusals before any access point is consulted are decisions too.
    let (s, _) = app
        .presign(
            "not-a-token",
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = app
        .post(
            &alice,
            "/v1/presign/batch",
            json!({"items": [{"access_point": "avatars", "operation": "fly"}]}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png", "response_content_type": "text/html"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("content_type_not_allowed")),
        "no stored XSS via overrides"
    );
    let records = app.audit_records();
    let reasons: Vec<&str> = records[2..]
        .iter()
        .map(|r| r["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "unauthenticated",
            "invalid_request",
            "content_type_not_allowed"
        ]
    );
    assert!(records[2]["subject"].is_null());
    assert_eq!(records[3]["operation"], "fly");

    // An explicit deny names the deny rule (avatars' rule 3, for suspended users), and a
    // missing second factor the rule that would grant with it (rule 2, the moderators' MFA
    // delete); the caller's 403 says nothing about either.
    let suspended = app.token("alice", &["users", "suspended"], false);
    let (s, b) = app
        .presign(
            &suspended,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")));
    assert!(b.get("rule").is_none(), "{b}");
    let moderator = app.token("mod", &["moderators"], false);
    let (s, _) = app
        .presign(
            &moderator,
            "avatars",
            json!({"operation": "delete", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(s, 403);
    let records = app.audit_records();
    let last: Vec<(&str, &Value)> = records[records.len() - 2..]
        .iter()
        .map(|r| (r["reason"].as_str().unwrap_or_default(), &r["rule"]))
        .collect();
    assert_eq!(
        last,
        [("explicit_deny", &json!(3)), ("mfa_required", &json!(2))]
    );
    app.finish().await;
}
on_both_backends!(every_decision_is_audited_without_the_url, audit);

async fn discovery(backend: common::app::Backend) {
    let reports = ap(json!({
        "name": "reports", "bucket": BUCKET, "prefix": "reports/",
        "rules": [{"effect": "allow", "groups": ["finance"], "operations": ["get"], "keys": ["*.pdf"]}]
    }));
    let app = TestApp::spawn(backend, vec![avatars(), reports]).await;
    let alice = app.token("alice", &["users"], false);
    let (s, b) = app.get(Some(&alice), "/v1/access-points").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["access_points"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["avatars"], "only what the caller may use");
    assert_eq!(b["access_points"][0]["operations"], json!(["get", "put"]));

    let (s, b) = app.get(None, "/healthz").await;
    assert_eq!((s, &b["status"]), (200, &json!("ok")));
    let (s, b) = app.get(None, "/readyz").await;
    assert_eq!(s, 200, "{b}");
    let (s, served) = app.get(None, "/openapi.json").await;
    assert_eq!(s, 200);
    let file: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string("openapi/openapi.yaml").expect("openapi file"),
    )
    .expect("yaml");
    assert_eq!(served, file, "/openapi.json serves openapi/openapi.yaml");
    let (s, b) = app.get(None, "/no/such/route").await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    app.finish().await;
}
on_both_backends!(discovery_health_and_contract, discovery);

async fn bad_bodies(backend: common::app::Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let url = format!("{}/v1/access-points/avatars/presign", app.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .body("{}")
                .header("content-type", "application/json"),
            400,
            "invalid_request",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .body("not json")
                .header("content-type", "application/json"),
            400,
            "invalid_request",
        ),
        // serde fills a struct from an array of its fields; the API takes objects only.
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .json(&json!(["get", "alice/x"])),
            400,
            "invalid_request",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .body(r#"{"operation":"get","key":"alice/x"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .json(&json!({"operation": "get", "key": "alice/x", "extra": 1})),
            400,
            "invalid_request",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .json(&json!({"operation": "get", "key": "alice/x", "content_type": "image/png"})),
            400,
            "invalid_request",
        ),
        (
            app.http
                .post(&url)
                .bearer_auth(&alice)
                .header("content-type", "application/json")
                .body(vec![b' '; 300 * 1024]),
            413,
            "payload_too_large",
        ),
        (
            app.http.get(&url).bearer_auth(&alice),
            405,
            "method_not_allowed",
        ),
    ];
    for (req, status, code) in cases {
        let (s, b) = decode(req.send().await.expect("request")).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{b}");
    }
    app.finish().await;
}
on_both_backends!(bad_bodies_are_4xx_problems, bad_bodies);

async fn transport_and_network(backend: common::app::Backend) {
    let internal = ap(json!({
        "name": "internal", "bucket": BUCKET, "prefix": "internal/",
        "network": {"allowed_cidrs": ["10.0.0.0/8", "fd00::/8"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get"]}]
    }));
    let sse_c = ap(json!({
        "name": "vault", "bucket": BUCKET, "prefix": "vault/", "encryption": {"mode": "sse-c"},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"]}]
    }));
    let mut opts = Options::new(backend, vec![avatars(), internal, sse_c]);
    opts.behind_proxies(&["127.0.0.0/8"]);
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let presign = |ap: &str, xff: Option<&str>, https: bool| {
        let mut req = app
            .http
            .post(format!("{}/v1/access-points/{ap}/presign", app.base))
            .bearer_auth(&alice)
            .json(&json!({"operation": "get", "key": "alice/x"}));
        if https {
            req = req.header("x-forwarded-proto", "https");
        }
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        async move { decode(req.send().await.expect("request")).await }
    };

    let (s, b) = presign("avatars", None, false).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "plain HTTP refused"
    );
    let (s, _) = app.get(None, "/healthz").await;
    assert_eq!(s, 200, "health stays reachable over plain HTTP");
    let (s, b) = presign("avatars", None, true).await;
    assert_eq!(s, 200, "TLS terminated by a trusted proxy: {b}");
    assert!(b["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    let (s, b) = presign("internal", Some("10.1.2.3"), true).await;
    assert_eq!(s, 200, "inside allowed_cidrs: {b}");
    let (s, b) = presign("internal", Some("fd12::1"), true).await;
    assert_eq!(s, 200, "IPv6 inside allowed_cidrs: {b}");
    let (s, b) = presign("internal", Some("192.0.2.7"), true).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("network_denied")));
    let (s, b) = presign("internal", Some("10.1.2.3, 192.0.2.7"), true).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("network_denied")),
        "a spoofed left-most hop does not help"
    );
    let (s, b) = presign("internal", None, true).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("network_denied")),
        "loopback peer is not in the CIDRs"
    );

    // SSE-C: the S3 endpoint here is plain http, so no SSE-C URL may be issued even over TLS.
    let (s, b) = presign("vault", None, true).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "{b}"
    );
    app.finish().await;
}
on_both_backends!(https_network_and_sse_c_rules, transport_and_network);

async fn jwks_issuer(backend: common::app::Backend) {
    let jwks =
        jwt::JwksServer::start(jwt::jwks(&[jwt::RSA1.jwk(), jwt::EC.jwk(), jwt::ED.jwk()])).await;
    // Two issuers: the per-user folders name whose subjects own them.
    let avatars = avatars_of(&[common::app::ISSUER, "https://login.example/"]);
    let mut opts = Options::new(backend, vec![avatars]);
    let mut issuer = jwt::issuer_config("https://login.example/");
    issuer.algorithms = vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    issuer.jwks_url = Some(jwks.url.clone());
    issuer.groups_claim = "realm_access.roles".into();
    issuer.jwks_min_refetch_seconds = 1;
    opts.config(|c| c.auth.issuers.push(issuer));
    let app = TestApp::spawn_with(opts).await;
    for key in [jwt::RSA1, jwt::EC, jwt::ED] {
        let mut claims = jwt::claims("https://login.example/", "carol");
        claims["realm_access"] = json!({"roles": ["users"]});
        let token = key.sign(&claims);
        let (s, b) = app
            .presign(
                &token,
                "avatars",
                json!({"operation": "get", "key": "carol/a.png"}),
            )
            .await;
        assert_eq!(s, 200, "{:?}: {b}", key.alg);
        let (s, b) = app
            .presign(
                &token,
                "avatars",
                json!({"operation": "get", "key": "alice/a.png"}),
            )
            .await;
        assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")));
    }
    // Key confusion: an HS256 token keyed with the RSA public key is refused.
    let mut confused = jwt::claims("https://login.example/", "carol");
    confused["realm_access"] = json!({"roles": ["users"]});
    let forged = jwt::hs256(jwt::RSA1.public_pem.as_bytes(), &confused);
    let (s, b) = app
        .presign(
            &forged,
            "avatars",
            json!({"operation": "get", "key": "carol/a.png"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (401, Some("unauthenticated")));
    app.finish().await;
}
on_both_backends!(tokens_from_a_jwks_issuer_work_end_to_end, jwks_issuer);
