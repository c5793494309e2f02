//! The TypeScript client (`clients/typescript`, `@presignd/client`) and its Uppy adapter,
//! against a real presignd and a real S3 (Ceph RADOS Gateway):
//!
//! 1. Its types are what openapi-typescript generates from `openapi/openapi.yaml` today (no
//!    drift), and the package and the browser test page type-check under `strict`.
//! 2. Built with `tsc`, its Node tests (`clients/typescript/test/node/`, node:test) pass:
//!    presign, batch, typed problems, Retry-After retries, multipart helpers, abort on failure.
//!    The Uppy adapter is called there as Uppy calls it, for the POST form path too: radosgw
//!    answers a form upload without an `ETag` header, and Uppy 5 waits for one forever, so
//!    that path cannot go through a real Uppy against radosgw (AWS S3 sends it).
//! 3. In headless chromium, Uppy 5 (`@uppy/aws-s3`) configured by `presigndUppy()` uploads a
//!    12 MiB file in multipart and a small one with one PUT, straight to radosgw; the stored
//!    bytes are the page's, and every step is in the audit. presignd hands out one part URL
//!    at creation here, so the adapter must fetch the others.
//!
//! Needs Node.js, `npm ci` in `clients/typescript`, chromium, playwright-core and radosgw
//! (`scripts/ensure-test-tools` installs them); missing any fails the test, it is never skipped.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use common::app::{Backend, Options, S3Endpoint, TestApp, ap};
use common::browser::{browse_with, preconditions, responses_to, root, url_encode};
use common::rgw::Rgw;
use serde_json::json;
use sha2::{Digest, Sha256};

const BUCKET: &str = "ts-client";
const MIB: usize = 1024 * 1024;

fn package() -> PathBuf {
    root().join("clients/typescript")
}

/// `node <args>` in `clients/typescript`; panics with its output unless it succeeds.
fn node(args: &[&str], env: &[(&str, &str)]) -> Output {
    let modules = package().join("node_modules");
    assert!(
        modules.join("typescript").exists() && modules.join("@uppy/aws-s3").exists(),
        "{} is missing: (cd clients/typescript && npm ci) (scripts/test does it: scripts/ensure-test-tools)",
        modules.display()
    );
    let mut cmd = Command::new("node");
    cmd.args(args).current_dir(package());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "node {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const TSC: &str = "node_modules/typescript/bin/tsc";

#[test]
fn types_are_generated_from_the_openapi_document_and_type_check_strictly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("schema.ts");
    node(
        &[
            "node_modules/openapi-typescript/bin/cli.js",
            "../../openapi/openapi.yaml",
            "--output",
            fresh.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    let fresh = std::fs::read_to_string(&fresh).expect("generated schema");
    let committed =
        std::fs::read_to_string(package().join("src/schema.ts")).expect("src/schema.ts");
    assert!(
        fresh == committed,
        "clients/typescript/src/schema.ts is not what openapi/openapi.yaml generates: \
         run (cd clients/typescript && npm run generate) and commit it"
    );
    // The package and the browser page (which passes presigndUppy() to Uppy 5's own types).
    node(&[TSC, "-p", "tsconfig.check.json"], &[]);
}

/// Serves `dir`'s `index.html` and `bundle.js` on a fresh loopback port: one origin.
async fn static_origin(dir: PathBuf) -> String {
    let router = axum::Router::new()
        .route(
            "/",
            axum::routing::get({
                let dir = dir.clone();
                move || file(dir.clone(), "index.html".into())
            }),
        )
        .route(
            "/{name}",
            axum::routing::get(move |UrlPath(name): UrlPath<String>| file(dir.clone(), name)),
        );
    async fn file(dir: PathBuf, name: String) -> axum::response::Response {
        let content_type = match name.as_str() {
            "index.html" => "text/html; charset=utf-8",
            "bundle.js" => "text/javascript; charset=utf-8",
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        match tokio::fs::read(dir.join(&name)).await {
            Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

async fn object(s3: &aws_sdk_s3::Client, key: &str) -> (Vec<u8>, Option<String>) {
    let got = s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} is not in the bucket: {e:?}"));
    let content_type = got.content_type().map(str::to_string);
    let bytes = got
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec();
    (bytes, content_type)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_its_uppy_adapter_upload_through_presignd_to_radosgw() {
    preconditions();
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(false))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let s3 = rgw.sdk_client();

    // The page's bundle and the origin that serves it (the access point's CORS origin).
    let page_dir = tempfile::tempdir().expect("tempdir");
    let page_path = page_dir.path().to_path_buf();
    tokio::task::block_in_place(|| {
        node(
            &[
                "test/browser/build.mjs",
                page_path.to_str().expect("utf-8 path"),
            ],
            &[],
        )
    });
    let origin = static_origin(page_path).await;

    let rule = json!({"effect": "allow", "groups": ["users"], "operations": ["put", "get"], "keys": ["${jwt:sub}/*"]});
    let files = json!({
        "name": "files", "bucket": BUCKET, "prefix": "files/",
        "cors_origins": [origin],
        "upload": {"max_content_length": 32 * MIB},
        "rules": [rule]
    });
    let slow = json!({
        "name": "slow", "bucket": BUCKET, "prefix": "files/",
        "limits": {"per_second": 1, "burst": 1},
        "rules": [rule]
    });
    let mut opts = Options::new(Backend::Sqlite, vec![ap(files), ap(slow)]);
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: rgw.endpoint.clone(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    // One part URL at creation: every other part URL is a `…/parts` call the clients make.
    opts.config(|c| c.uploads.initial_part_urls = 1);
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);

    // The bucket rule `presignd bucket-cors files` prints for this access point.
    s3.put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .id("presignd-files")
                        .allowed_origins(&origin)
                        .set_allowed_methods(Some(
                            ["GET", "HEAD", "PUT", "POST"].map(String::from).to_vec(),
                        ))
                        .set_allowed_headers(Some(
                            ["content-type", "x-amz-checksum-sha256", "x-amz-meta-*"]
                                .map(String::from)
                                .to_vec(),
                        ))
                        .expose_headers("ETag")
                        .max_age_seconds(3000)
                        .build()
                        .expect("rule"),
                )
                .build()
                .expect("cors"),
        )
        .send()
        .await
        .expect("put bucket CORS");

    // 2. The Node tests, against a fresh tsc build of the package.
    let build = tempfile::tempdir().expect("tempdir");
    let dist = build.path().join("dist");
    let tap = tokio::task::block_in_place(|| {
        node(
            &[
                TSC,
                "-p",
                "tsconfig.json",
                "--outDir",
                dist.to_str().expect("utf-8"),
            ],
            &[],
        );
        node(
            &["--test", "--test-reporter=tap", "test/node/"],
            &[
                (
                    "PRESIGND_CLIENT",
                    &format!("file://{}", dist.join("index.js").display()),
                ),
                ("PRESIGND_URL", &app.base),
                ("PRESIGND_TOKEN", &alice),
            ],
        )
    });
    let tap = String::from_utf8_lossy(&tap.stdout).into_owned();
    let count = |what: &str| {
        tap.lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `# {what}` line in the TAP output:\n{tap}"))
    };
    assert_eq!(count("fail"), 0, "{tap}");
    assert_eq!(count("pass"), 11, "every Node test ran and passed:\n{tap}");
    // What the Node tests uploaded is in the bucket.
    let (stored, _) = object(&s3, "files/alice/node/batch.txt").await;
    assert_eq!(stored, b"hello");
    let (stored, _) = object(&s3, "files/alice/node/multipart.bin").await;
    assert_eq!(stored.len(), 11 * MIB + 123);
    for (key, len) in [
        ("files/alice/adapter/posted.bin", 2000),
        ("files/alice/adapter/put.bin", 2000),
        ("files/alice/adapter/big.bin", 20 * MIB),
    ] {
        let (stored, content_type) = object(&s3, key).await;
        assert_eq!(stored.len(), len, "{key}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/octet-stream"),
            "{key}"
        );
    }

    // 3. Uppy in chromium.
    let size = 12 * MIB;
    let url = format!(
        "{origin}/#api={}&ap=files&token={}&prefix={}&size={size}",
        url_encode(&app.base),
        url_encode(&alice),
        url_encode("alice/uppy/"),
    );
    let runs = tokio::task::block_in_place(|| {
        browse_with(&[("ts-client-uppy", url)], json!({"timeout_ms": 90000}))
    });
    let run = &runs[0];
    let r = &run["result"];
    assert_eq!(r["state"], "done", "{run}");
    assert_eq!(r["successful"], json!(["big.bin", "small.bin"]), "{run}");
    // 12 MiB in presignd's default 8 MiB parts: two, both reported by Uppy.
    assert_eq!(r["parts_uploaded"], json!([1, 2]), "{run}");
    for (name, len) in [("big", size), ("small", 1000)] {
        let key = format!("files/{}", r[name]["key"].as_str().expect("key"));
        let (stored, content_type) = object(&s3, &key).await;
        assert_eq!(stored.len(), len, "{key}");
        assert_eq!(
            sha256_hex(&stored),
            r[name]["sha256"].as_str().expect("sha256"),
            "{key}: radosgw stores the page's bytes"
        );
        assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
    }
    let open = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads");
    assert!(open.uploads().is_empty(), "nothing left open: {open:?}");
    // Bytes went straight from the browser to radosgw: two part PUTs and one object PUT.
    let to_rgw = responses_to(run, &rgw.endpoint);
    assert_eq!(
        to_rgw,
        vec![("PUT".to_string(), 200); 3],
        "two parts and one PUT: {to_rgw:?}"
    );

    // The audit has each step from the page's origin.
    let records = app.audit_records();
    let from_page: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["origin"] == origin.as_str())
        .map(|r| {
            (
                r["operation"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for expected in [
        ("multipart_create", "files/alice/uppy/big.bin"),
        ("multipart_parts", "files/alice/uppy/big.bin"),
        ("multipart_complete", "files/alice/uppy/big.bin"),
        ("put", "files/alice/uppy/small.bin"),
    ] {
        assert!(
            from_page.contains(&expected),
            "{expected:?} audited from {origin}: {from_page:?}"
        );
    }
    app.finish().await;
}
