//! A real browser against a real S3: headless Debian chromium (driven by playwright-core from
//! Node, `examples/web/test/browser.mjs`) runs the page `examples/web/` served from two
//! origins, against presignd and a Ceph RADOS Gateway whose bucket CORS is applied by
//! `presignd bucket-cors --apply` (the real binary).
//!
//! 1. Origin A (in the access point's `cors_origins`), before the bucket CORS is applied:
//!    presignd answers, the browser blocks the PUT to radosgw (its preflight gets no CORS).
//! 2. `presignd bucket-cors web -f … --apply` merges the rule into the bucket's CORS, keeping an
//!    unrelated rule.
//! 3. Origin A again: presign PUT, PUT straight to radosgw, presign GET, read back — the bytes
//!    match, the page read `x-request-id` (exposed by presignd) and `ETag` (exposed by the
//!    bucket rule), and the object is in the bucket. Then a presigned POST: the page posts a
//!    `FormData` form upload straight to radosgw (the bucket rule allows POST because the
//!    access point allows put), reads its 204, and the object is in the bucket.
//! 4. Origin B (not allowed): the browser blocks the presignd call at the preflight; the POST
//!    never reaches presignd (no audit record from B).
//!
//! 5. Origin A, the page's other flows: a PNG it draws, uploaded, read back and shown as an
//!    image; a multipart upload with the TypeScript client (`clients/typescript`, built here
//!    with tsc); client-side encryption (WebCrypto AES-GCM, the key never leaves the page) on
//!    an access point that requires the `cse-alg` marker: radosgw holds only IV + ciphertext,
//!    the page decrypts what it reads back.
//!
//! Settings go in the page URL's fragment, which never reaches a server (nor the token).
//! Screenshots: `target/browser-artifacts/{1-origin-a-no-bucket-cors,2-origin-a,3-origin-b,
//! 4-image,5-multipart,6-encrypted}.png`. Needs `/usr/bin/chromium`, `npm ci` in
//! `examples/web/test` and `clients/typescript`, and `scripts/radosgw install`
//! (`scripts/ensure-test-tools` does them); missing any of them fails the test, it is never
//! skipped.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use common::app::{Backend, Options, S3Endpoint, TestApp, ap};
use common::browser::{artifacts, browse, preconditions, responses_to, root, url_encode};
use common::rgw::Rgw;
use serde_json::{Value, json};
use sha2::Digest;

const BUCKET: &str = "web-uploads";

/// Serves, on a fresh loopback port (one origin), as the repository root would be served: the
/// top-level files of `examples/web/` under `/examples/web/`, and the TypeScript client built
/// into `client_dist` under `/clients/typescript/dist/`.
async fn static_origin(client_dist: PathBuf) -> String {
    async fn file(dir: PathBuf, name: String) -> axum::response::Response {
        let name = if name.is_empty() {
            "index.html".into()
        } else {
            name
        };
        if name.contains('/') || name.contains("..") {
            return StatusCode::NOT_FOUND.into_response();
        }
        let content_type = match name.rsplit_once('.').map(|(_, e)| e) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        match tokio::fs::read(dir.join(&name)).await {
            Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let web = root().join("examples/web");
    let router = axum::Router::new()
        .route(
            "/examples/web/",
            axum::routing::get({
                let web = web.clone();
                move || file(web.clone(), String::new())
            }),
        )
        .route(
            "/examples/web/{name}",
            axum::routing::get(move |UrlPath(n): UrlPath<String>| file(web.clone(), n)),
        )
        .route(
            "/clients/typescript/dist/{name}",
            axum::routing::get(move |UrlPath(n): UrlPath<String>| file(client_dist.clone(), n)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// The page with its settings in the fragment (`flow`: basic, multipart, encrypted; `extra`:
/// more `&name=value`).
fn page_url(
    origin: &str,
    app: &TestApp,
    token: &str,
    key: &str,
    text: &str,
    flow: &str,
    extra: &str,
) -> String {
    let q = url_encode;
    format!(
        "{origin}/examples/web/#autorun={flow}&api={}&ap=web&multipart_ap=web-big&cse_ap=web-vault&token={}&key={}&text={}{extra}",
        q(&app.base),
        q(token),
        q(key),
        q(text)
    )
}

/// `presignd bucket-cors web -f aps.yaml --apply` with a config that signs for radosgw.
fn apply_bucket_cors(rgw: &Rgw, dir: &Path, web: &Value) -> String {
    let config = format!(
        r#"[server]
require_https = false
[database]
url = "sqlite://{db}"
{issuer}
[audit]
sink = "file://{audit}"
{s3}"#,
        db = dir.join("cli.db").display(),
        audit = dir.join("cli-audit").display(),
        s3 = rgw.s3_toml(&rgw.endpoint),
        issuer = common::app::issuer_toml(),
    );
    std::fs::write(dir.join("presignd.toml"), config).expect("write config");
    // JSON is YAML: the apply-file format.
    std::fs::write(
        dir.join("access-points.yaml"),
        json!({ "access_points": [web] }).to_string(),
    )
    .expect("write access points");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_presignd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESIGND_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .args([
            "--config",
            "presignd.toml",
            "bucket-cors",
            "web",
            "-f",
            "access-points.yaml",
            "--apply",
        ])
        .output()
        .expect("run presignd bucket-cors");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bucket-cors --apply failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uploads_from_an_allowed_origin_and_is_blocked_from_another() {
    preconditions();
    std::fs::create_dir_all(artifacts()).expect("artifacts dir");
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let s3 = rgw.sdk_client();
    // Someone else's rule on the bucket: `--apply` must keep it.
    s3.put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .id("reporting-dashboard")
                        .allowed_origins("https://reports.example")
                        .allowed_methods("GET")
                        .build()
                        .expect("rule"),
                )
                .build()
                .expect("cors"),
        )
        .send()
        .await
        .expect("put unrelated bucket CORS");

    // The TypeScript client, built as a user builds it, for the page's multipart flow.
    let client_build = tempfile::tempdir().expect("tempdir");
    let client_dist = client_build.path().join("dist");
    let tsc = Command::new("node")
        .args([
            "node_modules/typescript/bin/tsc",
            "-p",
            "tsconfig.json",
            "--outDir",
        ])
        .arg(&client_dist)
        .current_dir(root().join("clients/typescript"))
        .output()
        .expect("run node (is Node.js installed?)");
    assert!(
        tsc.status.success(),
        "tsc (clients/typescript; npm ci there first): {}{}",
        String::from_utf8_lossy(&tsc.stdout),
        String::from_utf8_lossy(&tsc.stderr)
    );
    let origin_a = static_origin(client_dist.clone()).await;
    let origin_b = static_origin(client_dist).await;
    assert_ne!(origin_a, origin_b);

    let web = json!({
        "name": "web", "bucket": BUCKET, "prefix": "web/",
        "cors_origins": [origin_a],
        "upload": {"max_content_length": 1048576, "content_types": ["text/plain", "image/png"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    });
    // The multipart and encryption flows' access points (the bucket rule is bucket-wide).
    let big = json!({
        "name": "web-big", "bucket": BUCKET, "prefix": "web-big/",
        "cors_origins": [origin_a],
        "upload": {"max_content_length": 16 * 1048576, "content_types": ["application/octet-stream"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    });
    let vault = json!({
        "name": "web-vault", "bucket": BUCKET, "prefix": "web-vault/",
        "cors_origins": [origin_a],
        "upload": {"max_content_length": 1048576, "content_types": ["application/octet-stream"],
                   "required_metadata": ["cse-alg"]},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]}]
    });
    let mut opts = Options::new(Backend::Sqlite, vec![ap(web.clone()), ap(big), ap(vault)]);
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    let app = TestApp::spawn_with(opts).await;
    let token = app.token("alice", &["users"], false);
    let text = "Hello from headless chromium, via presignd, straight to radosgw!";

    // 1. Allowed origin, but the bucket has no CORS rule for it yet: the S3 leg is blocked.
    let runs = tokio::task::block_in_place(|| {
        browse(&[(
            "1-origin-a-no-bucket-cors",
            page_url(
                &origin_a,
                &app,
                &token,
                "alice/first.txt",
                text,
                "basic",
                "",
            ),
        )])
    });
    let r = &runs[0]["result"];
    assert_eq!(r["state"], "error", "{}", runs[0]);
    assert_eq!(
        r["step"], "upload",
        "presignd answered, the PUT to S3 was blocked: {}",
        runs[0]
    );
    assert!(
        r["put_request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "x-request-id is exposed to the allowed origin: {r}"
    );
    assert!(
        runs[0]["failed"]
            .as_array()
            .expect("failed")
            .iter()
            .any(|f| f["url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&rgw.endpoint))),
        "the browser failed the request to radosgw: {}",
        runs[0]
    );
    assert!(
        runs[0]["console"]
            .as_array()
            .expect("console")
            .iter()
            .any(|m| m
                .as_str()
                .is_some_and(|m| m.contains("CORS policy") && m.contains(rgw.endpoint.as_str()))),
        "chromium reports the bucket's CORS block: {}",
        runs[0]
    );

    // 2. presignd bucket-cors --apply (the real binary).
    let dir = tempfile::tempdir().expect("tempdir");
    let printed = tokio::task::block_in_place(|| apply_bucket_cors(&rgw, dir.path(), &web));
    assert!(
        printed.contains("\"presignd-web\"") && printed.contains(&origin_a),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("applied to bucket {BUCKET}")),
        "{printed}"
    );
    let rules = s3
        .get_bucket_cors()
        .bucket(BUCKET)
        .send()
        .await
        .expect("get bucket CORS")
        .cors_rules
        .unwrap_or_default();
    let ids: Vec<&str> = rules.iter().filter_map(|r| r.id()).collect();
    assert_eq!(
        ids,
        ["reporting-dashboard", "presignd-web"],
        "merged, unrelated rule kept"
    );
    let ours = rules
        .iter()
        .find(|r| r.id() == Some("presignd-web"))
        .expect("our rule");
    assert_eq!(ours.allowed_origins(), std::slice::from_ref(&origin_a));
    let mut methods = ours.allowed_methods().to_vec();
    methods.sort();
    assert_eq!(
        methods,
        ["GET", "HEAD", "POST", "PUT"],
        "radosgw keeps its own order"
    );

    // 3 + 4. Allowed origin: the whole flow works. Other origin: blocked at presignd.
    let runs = tokio::task::block_in_place(|| {
        browse(&[
            (
                "2-origin-a",
                page_url(
                    &origin_a,
                    &app,
                    &token,
                    "alice/hello.txt",
                    text,
                    "basic",
                    "",
                ),
            ),
            (
                "3-origin-b",
                page_url(
                    &origin_b,
                    &app,
                    &token,
                    "alice/evil.txt",
                    "not allowed",
                    "basic",
                    "",
                ),
            ),
        ])
    });
    let (a, b) = (&runs[0], &runs[1]);
    let r = &a["result"];
    assert_eq!(r["state"], "done", "{a}");
    assert_eq!(r["origin"], origin_a.as_str());
    assert_eq!(r["matches"], true);
    assert_eq!(r["read_back_text"], text);
    assert_eq!(r["preview"], json!({"kind": "text", "text": text}), "shown");
    assert_eq!(r["upload_status"], 200);
    assert!(
        r["etag"].as_str().is_some_and(|e| e.len() > 2),
        "ETag exposed by the bucket rule: {r}"
    );
    assert!(r["put_request_id"].is_string() && r["get_request_id"].is_string());
    assert_eq!(
        r["put_url_host"],
        rgw.endpoint.trim_start_matches("http://"),
        "the bytes went straight to radosgw"
    );
    let to_rgw = responses_to(a, &rgw.endpoint);
    assert!(
        to_rgw.contains(&("PUT".into(), 200))
            && to_rgw.contains(&("GET".into(), 200))
            && to_rgw.contains(&("POST".into(), 204)),
        "the browser PUT, GET and POST radosgw directly: {to_rgw:?}"
    );
    // The form upload: the page read S3's 204 (bucket CORS allows POST) and the object is in
    // the bucket, stored with the content type the policy pinned.
    assert_eq!(r["post_status"], 204, "{r}");
    assert_eq!(r["post_key"], "web/alice/hello-form.txt");
    assert!(
        r["post_fields"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("policy")) && f.contains(&json!("x-amz-signature"))),
        "{r}"
    );
    let form_object = s3
        .get_object()
        .bucket(BUCKET)
        .key("web/alice/hello-form.txt")
        .send()
        .await
        .expect("the form-uploaded object exists");
    assert_eq!(form_object.content_type(), Some("text/plain"));
    let stored = form_object.body.collect().await.expect("body").into_bytes();
    assert_eq!(stored.as_ref(), text.as_bytes(), "form upload bytes");
    let object = s3
        .get_object()
        .bucket(BUCKET)
        .key("web/alice/hello.txt")
        .send()
        .await
        .expect("uploaded object exists");
    assert_eq!(object.content_type(), Some("text/plain"));
    let stored = object.body.collect().await.expect("body").into_bytes();
    assert_eq!(stored.as_ref(), text.as_bytes());

    let r = &b["result"];
    assert_eq!(r["state"], "error", "{b}");
    assert_eq!(r["origin"], origin_b.as_str());
    assert_eq!(
        r["step"], "presign-put",
        "blocked at the presignd call: {b}"
    );
    assert!(
        b["console"]
            .as_array()
            .expect("console")
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains("CORS policy"))),
        "chromium reports the CORS block: {b}"
    );
    assert!(
        !b["responses"]
            .as_array()
            .expect("responses")
            .iter()
            .any(|x| x["url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&rgw.endpoint))),
        "nothing reached S3 from origin B"
    );

    // The audit trail: origin A's four presigns, nothing from origin B (the preflight failed,
    // the POST was never sent).
    let records = app.audit_records();
    let origins: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["origin"].as_str().unwrap_or(""),
                r["operation"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            (origin_a.as_str(), "put"),
            (origin_a.as_str(), "put"),
            (origin_a.as_str(), "get"),
            (origin_a.as_str(), "post")
        ],
        "{records:?}"
    );
    // 5. The page's other flows, from origin A.
    let secret = "for my eyes only: the bucket holds ciphertext";
    let runs = tokio::task::block_in_place(|| {
        browse(&[
            (
                "4-image",
                page_url(
                    &origin_a,
                    &app,
                    &token,
                    "alice/pixel.png",
                    text,
                    "basic",
                    "&sample=image",
                ),
            ),
            (
                "5-multipart",
                page_url(&origin_a, &app, &token, "", text, "multipart", ""),
            ),
            (
                "6-encrypted",
                page_url(&origin_a, &app, &token, "", secret, "encrypted", ""),
            ),
        ])
    });
    let (image, multipart, encrypted) = (&runs[0], &runs[1], &runs[2]);

    // A PNG the page drew, uploaded, read back and decoded as an image in the page.
    let r = &image["result"];
    assert_eq!(r["state"], "done", "{image}");
    assert_eq!(r["content_type"], "image/png");
    assert_eq!(
        r["preview"],
        json!({"kind": "image", "width": 64, "height": 48}),
        "{image}"
    );
    let png = s3
        .get_object()
        .bucket(BUCKET)
        .key("web/alice/pixel.png")
        .send()
        .await
        .expect("the PNG is in the bucket");
    assert_eq!(png.content_type(), Some("image/png"));
    let png = png.body.collect().await.expect("body").into_bytes();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

    // The TypeScript client's multipart upload: two parts straight to radosgw, verified.
    let r = &multipart["result"];
    assert_eq!(r["state"], "done", "{multipart}");
    assert_eq!(r["verification"], "verified", "{multipart}");
    assert_eq!(r["matches"], true);
    let stored = s3
        .get_object()
        .bucket(BUCKET)
        .key("web-big/alice/multipart.bin")
        .send()
        .await
        .expect("the multipart object is in the bucket")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(stored.len(), 6 * 1048576 + 1);
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&stored)),
        r["sha256"].as_str().expect("sha256"),
        "radosgw holds the page's bytes"
    );
    let part_puts = multipart["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .filter(|x| {
            x["method"] == "PUT"
                && x["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&rgw.endpoint) && u.contains("partNumber="))
        })
        .count();
    assert_eq!(part_puts, 2, "{multipart}");

    // Client-side encryption: without the marker the access point refuses; with it, radosgw
    // stores IV + ciphertext + tag, and the page decrypts what it reads back.
    let r = &encrypted["result"];
    assert_eq!(r["state"], "done", "{encrypted}");
    assert!(
        r["unmarked"]
            .as_str()
            .is_some_and(|m| m.contains("400 metadata_required")),
        "{encrypted}"
    );
    assert!(
        r["signed_headers"]
            .as_array()
            .is_some_and(|h| h.contains(&json!("x-amz-meta-cse-alg"))),
        "{encrypted}"
    );
    assert_eq!(r["decrypted_text"], secret);
    let sealed = s3
        .get_object()
        .bucket(BUCKET)
        .key("web-vault/alice/secret.txt.enc")
        .send()
        .await
        .expect("the encrypted object is in the bucket");
    assert_eq!(
        sealed
            .metadata()
            .and_then(|m| m.get("cse-alg"))
            .map(String::as_str),
        Some("AES-GCM")
    );
    let sealed = sealed.body.collect().await.expect("body").into_bytes();
    assert_eq!(
        sealed.len(),
        12 + secret.len() + 16,
        "IV + ciphertext + tag"
    );
    assert!(
        !sealed
            .windows(8)
            .any(|w| secret.as_bytes().windows(8).any(|p| p == w)),
        "no 8 bytes of the plaintext in what S3 stores"
    );

    for name in [
        "1-origin-a-no-bucket-cors",
        "2-origin-a",
        "3-origin-b",
        "4-image",
        "5-multipart",
        "6-encrypted",
    ] {
        let png = artifacts().join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 1000),
            "screenshot {}",
            png.display()
        );
    }
    app.finish().await;
    drop(rgw);
}
