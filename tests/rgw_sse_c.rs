//! SSE-C end to end against a real S3 implementation (Ceph RADOS Gateway) over HTTPS.
//!
//! presignd serves its API with native TLS and signs for radosgw's HTTPS endpoint, both with
//! certificates from one throwaway CA. The client uploads with the presigned SSE-C PUT URL plus
//! its own key headers (presignd never sees the key); radosgw then refuses to return the object
//! to anyone without the key, the bucket owner's own credentials included, and returns the
//! bytes to the presigned SSE-C GET with the key. presignd refuses to issue SSE-C URLs over a
//! plain-HTTP API request or for a plain-HTTP S3 endpoint (also covered against the in-process
//! server by `tests/api.rs`, `https_network_and_sse_c_rules`).
//!
//! One test function: radosgw takes ~15 s to start, so every scenario shares one gateway.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::app::{Backend, Options, S3Endpoint, TestApp, ap, decode};
use common::rgw::Rgw;
use md5::Digest as _;
use serde_json::{Value, json};

const BUCKET: &str = "vault-bucket";

fn vault() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "vault", "bucket": BUCKET, "prefix": "vault/",
        "encryption": {"mode": "sse-c"},
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"], "keys": ["${jwt:sub}/*"]}]
    }))
}

/// A presignd instance with native TLS (the same CA as radosgw) signing for `endpoint`.
async fn presignd(rgw: &Rgw, endpoint: &str) -> TestApp {
    let cert = rgw.cert.as_ref().expect("radosgw runs with TLS");
    let mut opts = Options::new(Backend::Sqlite, vec![vault()]);
    let (cert_file, key_file) = (cert.cert.clone(), cert.key.clone());
    opts.config(|c| {
        c.server.require_https = true;
        c.server.tls_cert = Some(cert_file);
        c.server.tls_key = Some(key_file);
    });
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: endpoint.into(),
        access_key: rgw.access_key.clone(),
        secret_key: rgw.secret_key.clone(),
    });
    TestApp::spawn_with(opts).await
}

/// The customer's key headers (RFC: base64 key, base64 MD5 of the raw key).
fn key_headers(key: &[u8; 32]) -> [(&'static str, String); 2] {
    [
        ("x-amz-server-side-encryption-customer-key", B64.encode(key)),
        (
            "x-amz-server-side-encryption-customer-key-md5",
            B64.encode(md5::Md5::digest(key)),
        ),
    ]
}

/// Sends a presigned request with the signed headers presignd returned, plus `extra`.
async fn send(
    http: &reqwest::Client,
    issued: &Value,
    extra: &[(&'static str, String)],
    body: Option<&'static [u8]>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let method: reqwest::Method = issued["method"]
        .as_str()
        .expect("method")
        .parse()
        .expect("m");
    let mut req = http.request(method, issued["url"].as_str().expect("url"));
    for (k, v) in issued["headers"].as_object().expect("headers") {
        if k != "content-length" {
            req = req.header(k, v.as_str().expect("header value"));
        }
    }
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request to radosgw");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body").to_vec();
    (status, headers, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_round_trip_through_radosgw_over_https() {
    let rgw = tokio::task::spawn_blocking(|| Rgw::start(true))
        .await
        .expect("start radosgw");
    rgw.create_bucket(BUCKET).await;
    let https_endpoint = rgw.https_endpoint.clone().expect("https endpoint");
    let cert = rgw.cert.as_ref().expect("cert");
    // Trusts only the throwaway CA: both presignd's API and radosgw's HTTPS port.
    let https = common::tls::client(&cert.ca_pem);

    let app = presignd(&rgw, &https_endpoint).await;
    let api = format!(
        "https://127.0.0.1:{}/v1/access-points/vault/presign",
        app.addr.port()
    );
    let alice = app.token("alice", &["users"], false);
    let presign = |body: Value| {
        let req = https.post(&api).bearer_auth(&alice).json(&body);
        async move { decode(req.send().await.expect("presign over TLS")).await }
    };

    let plaintext: &'static [u8] = b"quarterly numbers, customer-key encrypted at rest";
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let mut wrong = key;
    wrong[0] ^= 0xff;

    // 1. Presigned SSE-C PUT over TLS: an https URL on radosgw's TLS port, the algorithm
    //    header signed, the key headers left to the client.
    let (s, put) = presign(json!({
        "operation": "put", "key": "alice/q3.txt", "content_type": "text/plain",
        "content_length": plaintext.len()
    }))
    .await;
    assert_eq!(s, 200, "{put}");
    let url = put["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("{https_endpoint}/{BUCKET}/vault/alice/q3.txt?")),
        "{url}"
    );
    assert_eq!(
        put["headers"]["x-amz-server-side-encryption-customer-algorithm"],
        "AES256"
    );
    let signed: Vec<&String> = put["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    assert!(
        signed.iter().all(|h| !h.contains("customer-key")),
        "presignd never handles the customer key: {signed:?}"
    );

    // Without the key headers radosgw refuses the upload (S3: SSE-C needs the key).
    let (s, _, body) = send(&https, &put, &[], Some(plaintext)).await;
    assert_eq!(
        (s, refusal(&body)),
        (400, "InvalidArgument".into()),
        "PUT without the key refused"
    );

    let (s, headers, body) = send(&https, &put, &key_headers(&key), Some(plaintext)).await;
    assert_eq!(s, 200, "SSE-C PUT: {}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers["x-amz-server-side-encryption-customer-algorithm"],
        "AES256"
    );
    assert_eq!(
        headers["x-amz-server-side-encryption-customer-key-md5"]
            .to_str()
            .expect("md5"),
        key_headers(&key)[1].1,
        "radosgw encrypted with the client's key"
    );

    // 2. Reading back: presigned SSE-C GET.
    let (s, get) = presign(json!({"operation": "get", "key": "alice/q3.txt"})).await;
    assert_eq!(s, 200, "{get}");
    assert_eq!(
        get["headers"]["x-amz-server-side-encryption-customer-algorithm"],
        "AES256"
    );

    let (s, _, body) = send(&https, &get, &[], None).await;
    assert_eq!(
        (s, refusal(&body)),
        (400, "InvalidArgument".into()),
        "GET without the key refused by radosgw"
    );
    assert!(!contains(&body, plaintext));

    // (AWS S3 answers 403 here; radosgw 400 "did not match".)
    let (s, _, body) = send(&https, &get, &key_headers(&wrong), None).await;
    assert_eq!(
        (s, refusal(&body)),
        (400, "InvalidArgument".into()),
        "GET with a wrong key refused"
    );
    assert!(!contains(&body, plaintext));

    // Not even the bucket owner's own credentials read it without the key.
    let owner = rgw
        .sdk_client()
        .get_object()
        .bucket(BUCKET)
        .key("vault/alice/q3.txt")
        .send()
        .await;
    let err = owner.expect_err("the owner cannot read SSE-C data without the key");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidArgument")
    );

    let (s, headers, body) = send(&https, &get, &key_headers(&key), None).await;
    assert_eq!(
        s,
        200,
        "SSE-C GET with the key: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, plaintext, "the bytes come back decrypted");
    assert_eq!(
        headers["x-amz-server-side-encryption-customer-algorithm"],
        "AES256"
    );

    // The presigned GET stays bound to its signature: another key path is refused.
    let tampered = json!({
        "method": "GET",
        "url": get["url"].as_str().expect("url").replace("q3.txt", "q4.txt"),
        "headers": get["headers"],
    });
    let (s, _, body) = send(&https, &tampered, &key_headers(&key), None).await;
    assert_eq!(
        (s, refusal(&body)),
        (403, "SignatureDoesNotMatch".into()),
        "a tampered SSE-C URL is refused by radosgw's SigV4 check"
    );

    // 3. The same request over plain HTTP (same port, no TLS): refused before any signing.
    let (s, b) = app
        .presign(
            &alice,
            "vault",
            json!({"operation": "get", "key": "alice/q3.txt"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "{b}"
    );
    app.finish().await;

    // 4. SSE-C for a plain-http S3 endpoint: refused even though the API request is TLS.
    let plain = presignd(&rgw, &rgw.endpoint).await;
    let resp = https
        .post(format!(
            "https://127.0.0.1:{}/v1/access-points/vault/presign",
            plain.addr.port()
        ))
        .bearer_auth(&alice)
        .json(&json!({"operation": "put", "key": "alice/q3.txt"}))
        .send()
        .await
        .expect("presign over TLS");
    let (s, b) = decode(resp).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "{b}"
    );
    plain.finish().await;

    drop(rgw);
}

/// The `<Code>` of an S3 error body.
fn refusal(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_else(|| format!("no S3 error code in {text:?}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
