//! Proves that the in-process S3 server (`common::s3::TestS3`) is a real check of presigned
//! URLs: it accepts what the AWS SDK signs and refuses every kind of tampering, expiry and
//! missing signed header — so tests built on it mean something.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use common::s3::TestS3;

const BUCKET: &str = "harness";

fn presigning(expires_in: Duration) -> PresigningConfig {
    PresigningConfig::expires_in(expires_in).expect("valid presigning config")
}

/// Sends a presigned request the way a browser or app would: URL plus the given headers.
async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&'static [u8]>,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(method, url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.expect("request reaches the test server");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("response body");
    (status, text)
}

/// Sends a presigned request with exactly the headers that were signed.
async fn send_presigned(p: &PresignedRequest, body: Option<&'static [u8]>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = p.headers().collect();
    send(p.method(), p.uri(), &headers, body).await
}

fn signed_headers(p: &PresignedRequest) -> String {
    let url = reqwest::Url::parse(p.uri()).expect("presigned URL parses");
    url.query_pairs()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .map(|(_, v)| v.into_owned())
        .expect("X-Amz-SignedHeaders in presigned URL")
}

/// Replaces the value of one query parameter, keeping everything else byte for byte.
fn replace_query_param(url: &str, name: &str, f: impl Fn(&str) -> String) -> String {
    let (base, query) = url.split_once('?').expect("presigned URL has a query");
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => format!("{k}={}", f(v)),
            _ => pair.to_owned(),
        })
        .collect();
    assert!(
        query.iter().any(|p| p.starts_with(&format!("{name}="))),
        "{name} not in {url}"
    );
    format!("{base}?{}", query.join("&"))
}

fn assert_denied((status, body): (u16, String), code: &str) {
    assert_eq!(status, 403, "expected 403 {code}, got {status}: {body}");
    assert!(
        body.contains(&format!("<Code>{code}</Code>")),
        "expected {code}: {body}"
    );
}

async fn server_with_object(key: &str, bytes: &'static [u8]) -> TestS3 {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET).await;
    s3.sdk_client()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from_static(bytes))
        .send()
        .await
        .expect("signed PutObject via the SDK");
    s3
}

async fn presigned_get(s3: &TestS3, key: &str, config: PresigningConfig) -> PresignedRequest {
    s3.sdk_client()
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .presigned(config)
        .await
        .expect("presign GET")
}

#[tokio::test]
async fn sdk_client_round_trips_and_unsigned_requests_are_denied() {
    let s3 = server_with_object("plain/obj.txt", b"via the sdk").await;
    let got = s3
        .sdk_client()
        .get_object()
        .bucket(BUCKET)
        .key("plain/obj.txt")
        .send()
        .await
        .expect("signed GetObject");
    let bytes = got.body.collect().await.expect("read body").into_bytes();
    assert_eq!(&bytes[..], b"via the sdk");

    let url = format!("{}/{BUCKET}/plain/obj.txt", s3.endpoint);
    assert_denied(send("GET", &url, &[], None).await, "AccessDenied");
}

#[tokio::test]
async fn presigned_put_then_get_returns_the_same_bytes() {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET).await;
    let client = s3.sdk_client();
    let data: &'static [u8] = b"\x00\x01binary \xff payload";

    let put = client
        .put_object()
        .bucket(BUCKET)
        .key("users/alice/avatar.png")
        .content_type("image/png")
        .presigned(presigning(Duration::from_secs(600)))
        .await
        .expect("presign PUT");
    assert_eq!(put.method(), "PUT");
    assert!(signed_headers(&put).split(';').any(|h| h == "content-type"));
    let (status, body) = send_presigned(&put, Some(data)).await;
    assert_eq!(status, 200, "presigned PUT: {body}");

    let get = presigned_get(
        &s3,
        "users/alice/avatar.png",
        presigning(Duration::from_secs(600)),
    )
    .await;
    let resp = reqwest::get(get.uri()).await.expect("presigned GET");
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.expect("body");
    assert_eq!(&bytes[..], data);
}

#[tokio::test]
async fn tampered_signature_is_denied() {
    let s3 = server_with_object("k.txt", b"secret").await;
    let get = presigned_get(&s3, "k.txt", presigning(Duration::from_secs(600))).await;
    assert_eq!(
        send_presigned(&get, None).await.0,
        200,
        "untampered URL works"
    );

    let tampered = replace_query_param(get.uri(), "X-Amz-Signature", |sig| {
        let (head, last) = sig.split_at(sig.len() - 1);
        format!("{head}{}", if last == "0" { "1" } else { "0" })
    });
    assert_denied(
        send("GET", &tampered, &[], None).await,
        "SignatureDoesNotMatch",
    );
}

#[tokio::test]
async fn tampered_key_is_denied() {
    let s3 = server_with_object("users/alice/a.txt", b"alice").await;
    s3.sdk_client()
        .put_object()
        .bucket(BUCKET)
        .key("users/bob/a.txt")
        .body(ByteStream::from_static(b"bob"))
        .send()
        .await
        .expect("put bob's object");
    let get = presigned_get(
        &s3,
        "users/alice/a.txt",
        presigning(Duration::from_secs(600)),
    )
    .await;

    let tampered = get.uri().replacen("/users/alice/", "/users/bob/", 1);
    assert_ne!(tampered, get.uri());
    assert_denied(
        send("GET", &tampered, &[], None).await,
        "SignatureDoesNotMatch",
    );
}

#[tokio::test]
async fn tampered_expires_is_denied() {
    let s3 = server_with_object("k.txt", b"secret").await;
    let get = presigned_get(&s3, "k.txt", presigning(Duration::from_secs(60))).await;

    let tampered = replace_query_param(get.uri(), "X-Amz-Expires", |_| "604800".to_owned());
    assert_ne!(tampered, get.uri());
    assert_denied(
        send("GET", &tampered, &[], None).await,
        "SignatureDoesNotMatch",
    );
}

#[tokio::test]
async fn expired_url_is_denied() {
    let s3 = server_with_object("k.txt", b"secret").await;
    // Signed an hour ago, valid for a minute: expired 59 minutes ago.
    let config = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .expect("presigning config");
    let get = presigned_get(&s3, "k.txt", config).await;
    let (status, body) = send_presigned(&get, None).await;
    assert_denied((status, body.clone()), "AccessDenied");
    assert!(body.contains("expired"), "{body}");

    // The same age with a long enough validity still works: the expiry check is what denied it.
    let config = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(7200))
        .build()
        .expect("presigning config");
    let get = presigned_get(&s3, "k.txt", config).await;
    assert_eq!(send_presigned(&get, None).await.0, 200);
}

#[tokio::test]
async fn url_signed_far_in_the_future_is_denied() {
    let s3 = server_with_object("k.txt", b"secret").await;
    let config = PresigningConfig::builder()
        .start_time(SystemTime::now() + Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .expect("presigning config");
    let get = presigned_get(&s3, "k.txt", config).await;
    assert_denied(send_presigned(&get, None).await, "RequestTimeTooSkewed");
}

#[tokio::test]
async fn put_without_or_with_a_different_signed_content_type_is_denied() {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET).await;
    let put = s3
        .sdk_client()
        .put_object()
        .bucket(BUCKET)
        .key("img.png")
        .content_type("image/png")
        .presigned(presigning(Duration::from_secs(600)))
        .await
        .expect("presign PUT");
    let headers: Vec<(&str, &str)> = put.headers().collect();
    assert!(
        headers.contains(&("content-type", "image/png")),
        "{headers:?}"
    );

    let omitted: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(n, _)| *n != "content-type")
        .collect();
    assert_denied(
        send("PUT", put.uri(), &omitted, Some(b"x")).await,
        "SignatureDoesNotMatch",
    );

    let changed: Vec<(&str, &str)> = headers
        .iter()
        .map(|&(n, v)| {
            if n == "content-type" {
                (n, "text/html")
            } else {
                (n, v)
            }
        })
        .collect();
    assert_denied(
        send("PUT", put.uri(), &changed, Some(b"x")).await,
        "SignatureDoesNotMatch",
    );

    let (status, body) = send("PUT", put.uri(), &headers, Some(b"x")).await;
    assert_eq!(status, 200, "with the signed content-type: {body}");
}

#[tokio::test]
async fn put_without_the_signed_sse_header_is_denied() {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET).await;
    let put = s3
        .sdk_client()
        .put_object()
        .bucket(BUCKET)
        .key("enc.bin")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .presigned(presigning(Duration::from_secs(600)))
        .await
        .expect("presign PUT");
    let headers: Vec<(&str, &str)> = put.headers().collect();
    assert!(
        headers.contains(&("x-amz-server-side-encryption", "AES256")),
        "{headers:?}"
    );
    assert!(
        signed_headers(&put)
            .split(';')
            .any(|h| h == "x-amz-server-side-encryption")
    );

    let omitted: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(n, _)| *n != "x-amz-server-side-encryption")
        .collect();
    assert_denied(
        send("PUT", put.uri(), &omitted, Some(b"x")).await,
        "SignatureDoesNotMatch",
    );

    // s3s-fs accepts the SSE header (it stores plaintext and ignores it).
    let (status, body) = send("PUT", put.uri(), &headers, Some(b"x")).await;
    assert_eq!(status, 200, "with the signed SSE header: {body}");
}
