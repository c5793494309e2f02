//! CloudFront signed cookies in a real browser: headless chromium loads a page from
//! `https://app.presignd.test`, which gets cookies from presignd (`https://api.presignd.test`)
//! with a credentialed fetch, then fetches an HLS playlist and its segments from
//! `https://media.presignd.test`, the "distribution". There is no CloudFront on loopback, so
//! that origin is a small server here that checks each request's cookies as CloudFront does
//! (`common::cloudfront`: the signature against the public key, the resource, the expiry),
//! and answers 403 otherwise. Chromium maps `*.presignd.test` to 127.0.0.1 and accepts the
//! test certificates; nothing leaves loopback.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::app::{BUCKET, Backend, Options, TestApp, ap};
use common::browser::{browse_with, preconditions, root};
use common::cloudfront::{Distribution, p256_key};
use presignd::config::CloudFrontKeyConfig;
use serde_json::json;

const KEY_ID: &str = "KBROWSERP256";
const SEGMENTS: usize = 3;

#[derive(Clone)]
struct Origin {
    distribution: Arc<Distribution>,
    /// `https://media.presignd.test:PORT`, as the policy's resource names it.
    media: Arc<std::sync::OnceLock<String>>,
    app_origin: Arc<std::sync::OnceLock<String>>,
    served: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split("; "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The page (`/`) and the distribution (`/video/…`), on one TLS port.
async fn serve(
    State(origin): State<Origin>,
    path: Option<UrlPath<String>>,
    headers: HeaderMap,
) -> Response {
    let Some(UrlPath(path)) = path else {
        let page = std::fs::read_to_string(root().join("tests/cloudfront-player/index.html"))
            .expect("page");
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    };
    let media = origin.media.get().expect("media origin").clone();
    let url = format!("{media}/video/{path}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let verdict = origin
        .distribution
        .check_cookies(&url, &cookies(&headers), now, client);
    let mut response = match verdict {
        Ok(()) => {
            origin.served.fetch_add(1, Ordering::SeqCst);
            if path.ends_with(".m3u8") {
                let mut playlist =
                    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n".to_string();
                for i in 0..SEGMENTS {
                    playlist.push_str(&format!("#EXTINF:4.0,\nseg-{i:03}.ts\n"));
                }
                playlist.push_str("#EXT-X-ENDLIST\n");
                (
                    [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
                    playlist,
                )
                    .into_response()
            } else {
                (
                    [(header::CONTENT_TYPE, "video/mp2t")],
                    vec![0x47u8; 188 * 10],
                )
                    .into_response()
            }
        }
        Err(why) => {
            origin.refused.fetch_add(1, Ordering::SeqCst);
            (StatusCode::FORBIDDEN, why).into_response()
        }
    };
    // What the distribution's response headers policy adds for the page's credentialed fetches.
    let app_origin = origin.app_origin.get().expect("app origin");
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_str(app_origin).expect("origin"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    response
}

async fn start_origin(origin: Origin, cert: &common::tls::TestCert) -> SocketAddr {
    let router = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|s: State<Origin>, h: HeaderMap| serve(s, None, h)),
        )
        .route(
            "/video/{*path}",
            axum::routing::get(|s: State<Origin>, p: UrlPath<String>, h: HeaderMap| {
                serve(s, Some(p), h)
            }),
        )
        .with_state(origin);
    let reloadable =
        presignd::serve::tls::ReloadableCert::load(&cert.cert, &cert.key).expect("cert");
    let acceptor = presignd::serve::tls::acceptor(Arc::new(reloadable)).expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_plays_a_stream_with_signed_cookies() {
    preconditions();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = common::tls::issue(dir.path(), "server");
    let key = p256_key();
    let key_file = dir.path().join("cf.pem");
    std::fs::write(&key_file, &key.pem).expect("write key");

    let origin = Origin {
        distribution: Arc::new(Distribution {
            key_pair_id: KEY_ID.into(),
            public: key.public,
        }),
        media: Arc::default(),
        app_origin: Arc::default(),
        served: Arc::default(),
        refused: Arc::default(),
    };
    let origin_addr = start_origin(origin.clone(), &cert).await;
    let port = origin_addr.port();
    let (app_origin, media) = (
        format!("https://app.presignd.test:{port}"),
        format!("https://media.presignd.test:{port}"),
    );
    origin.app_origin.set(app_origin.clone()).expect("once");
    origin.media.set(media.clone()).expect("once");

    let episodes = ap(json!({
        "name": "episodes", "bucket": BUCKET, "prefix": "video/",
        "cors_origins": [app_origin],
        "delivery": {"cloudfront": {"domain": format!("media.presignd.test:{port}"), "path_prefix": "/video/",
                                     "key_pair_id": KEY_ID, "cookie_domain": "presignd.test"}},
        "rules": [{"effect": "allow", "groups": ["premium"], "operations": ["get"], "keys": ["*"]}]
    }));
    let mut opts = Options::new(Backend::Sqlite, vec![episodes]);
    let (cert_file, tls_key) = (cert.cert.clone(), cert.key.clone());
    opts.config(move |c| {
        c.server.tls_cert = Some(cert_file);
        c.server.tls_key = Some(tls_key);
        c.cloudfront.keys = vec![CloudFrontKeyConfig {
            key_pair_id: KEY_ID.into(),
            private_key_file: key_file,
        }];
    });
    let app = TestApp::spawn_with(opts).await;
    let api = format!("https://api.presignd.test:{}", app.addr.port());
    let token = app.token("alice", &["premium"], false);

    let page = format!("{app_origin}/?api={api}&media={media}&token={token}&prefix=show-1/ep-1/");
    let runs = browse_with(
        &[("cloudfront-cookies", page)],
        json!({
            "args": ["--host-resolver-rules=MAP *.presignd.test 127.0.0.1"],
            "ignore_https_errors": true,
        }),
    );
    let run = &runs[0];
    let result = &run["result"];
    assert_eq!(result["cookies_status"], 200, "{run:#}");
    assert_eq!(
        result["cookies_resource"],
        format!("{media}/video/show-1/ep-1/*")
    );
    assert_eq!(result["playlist_status"], 200, "{run:#}");
    let segments = result["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), SEGMENTS, "{run:#}");
    for s in segments {
        assert_eq!(
            (s["status"].as_u64(), s["bytes"].as_u64()),
            (Some(200), Some(1880)),
            "{s}"
        );
    }
    // HttpOnly: the page never saw the cookies; beside the prefix they grant nothing.
    assert!(
        !result["document_cookie"]
            .as_str()
            .unwrap_or_default()
            .contains("CloudFront"),
        "{result}"
    );
    assert_eq!(result["outside_status"], 403, "{run:#}");
    // The origin checked every request: playlist and segments served, the outside one refused.
    assert_eq!(origin.served.load(Ordering::SeqCst), 1 + SEGMENTS);
    assert_eq!(origin.refused.load(Ordering::SeqCst), 1);
    app.finish().await;
}
