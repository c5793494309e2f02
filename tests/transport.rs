//! Encryption in transit: native TLS (throwaway CA), plain HTTP on the TLS port refused with
//! `https_required`, forwarded headers honoured only from trusted proxies, HSTS, certificate
//! reload.

mod common;

use common::app::{Backend, Options, TestApp, avatars, decode};
use common::tls::TestCert;
use presignd::config::ForwardedHeader;
use serde_json::json;

async fn tls_app(trusted_proxies: &[&str]) -> (TestApp, TestCert, tempfile::TempDir) {
    tls_app_with(trusted_proxies, |_| {}).await
}

async fn tls_app_with(
    trusted_proxies: &[&str],
    server: impl FnOnce(&mut presignd::config::ServerConfig) + Send + 'static,
) -> (TestApp, TestCert, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = common::tls::issue(dir.path(), "server");
    let mut opts = Options::new(Backend::Sqlite, vec![avatars()]);
    let (cert_file, key_file) = (cert.cert.clone(), cert.key.clone());
    opts.behind_proxies(trusted_proxies).config(|c| {
        c.server.tls_cert = Some(cert_file);
        c.server.tls_key = Some(key_file);
        server(&mut c.server);
    });
    (TestApp::spawn_with(opts).await, cert, dir)
}

/// Whether a client trusting only `ca_pem` completes a TLS request to the app.
async fn trusted_by(app: &TestApp, ca_pem: &str) -> bool {
    common::tls::client(ca_pem)
        .get(format!("https://127.0.0.1:{}/healthz", app.addr.port()))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_changing_on_disk_are_picked_up_without_a_signal() {
    let (app, first, dir) = tls_app_with(&[], |s| s.tls_reload_interval_seconds = 1).await;
    assert!(trusted_by(&app, &first.ca_pem).await);

    // A renewal (new CA, so the two are told apart) written over the same files.
    let second = common::tls::issue(dir.path(), "server");
    let mut switched = false;
    for _ in 0..50 {
        if trusted_by(&app, &second.ca_pem).await {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(switched, "the renewed certificate is served within seconds");
    assert!(!trusted_by(&app, &first.ca_pem).await, "the old one is not");

    // A broken write (key garbage) keeps the current certificate in service.
    std::fs::write(&second.key, "not a key").expect("corrupt key");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(trusted_by(&app, &second.ca_pem).await);
    app.finish().await;
}

fn presign_body() -> serde_json::Value {
    json!({"operation": "get", "key": "alice/a.png"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tls_serves_the_api_and_plain_http_is_refused() {
    let (app, cert, _dir) = tls_app(&[]).await;
    let alice = app.token("alice", &["users"], false);
    let port = app.addr.port();

    let https = common::tls::client(&cert.ca_pem);
    let resp = https
        .post(format!(
            "https://127.0.0.1:{port}/v1/access-points/avatars/presign"
        ))
        .bearer_auth(&alice)
        .json(&presign_body())
        .send()
        .await
        .expect("TLS request");
    assert_eq!(resp.status().as_u16(), 200);
    let hsts = resp.headers()["strict-transport-security"]
        .to_str()
        .expect("hsts")
        .to_string();
    assert!(hsts.starts_with("max-age=31536000"), "{hsts}");
    let (_, body) = decode(resp).await;
    assert!(body["url"].is_string());

    // Plain HTTP on the same port: a clear problem, not a dropped connection.
    let (s, b) = app.presign(&alice, "avatars", presign_body()).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("https_required")));
    // A spoofed X-Forwarded-Proto from an untrusted peer changes nothing.
    let resp = app
        .http
        .post(format!("{}/v1/access-points/avatars/presign", app.base))
        .bearer_auth(&alice)
        .header("x-forwarded-proto", "https")
        .json(&presign_body())
        .send()
        .await
        .expect("request");
    assert!(!resp.headers().contains_key("strict-transport-security"));
    let (s, b) = decode(resp).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("https_required")));
    let (s, _) = app.get(None, "/healthz").await;
    assert_eq!(s, 200, "health probes work over plain HTTP");

    // A client that does not trust the test CA cannot connect.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    assert!(
        untrusting
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );

    let records = app.audit_records();
    let tls: Vec<bool> = records
        .iter()
        .map(|r| r["tls"].as_bool().expect("tls"))
        .collect();
    assert_eq!(
        tls,
        [true, false, false],
        "allowed over TLS, two plain refusals audited"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_proto_is_honoured_from_a_trusted_proxy() {
    let (app, _cert, _dir) = tls_app(&["127.0.0.0/8"]).await;
    let alice = app.token("alice", &["users"], false);
    let resp = app
        .http
        .post(format!("{}/v1/access-points/avatars/presign", app.base))
        .bearer_auth(&alice)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.4")
        .json(&presign_body())
        .send()
        .await
        .expect("request");
    let (s, b) = decode(resp).await;
    assert_eq!(s, 200, "{b}");
    let records = app.audit_records();
    assert_eq!(
        records.last().map(|r| r["source_ip"].clone()),
        Some(json!("198.51.100.4"))
    );
    app.finish().await;
}

/// Finding 1 of the hardening review, reproduced: behind a proxy that writes
/// `X-Forwarded-For` / `X-Forwarded-Proto` and passes `Forwarded` through (nginx, ALB), a
/// client-sent `Forwarded: for=10.1.2.3;proto=https` used to win, so `allowed_cidrs`,
/// `require_https` and the SSE-C HTTPS rule fell to a plain-HTTP caller from anywhere (200).
/// Only `server.forwarded_header` counts now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sent_forwarded_header_does_not_override_the_proxys_x_forwarded() {
    let mut internal = avatars();
    internal.network.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
    let mut opts = Options::new(Backend::Sqlite, vec![internal]);
    opts.behind_proxies(&["127.0.0.0/8"]);
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let send = |forwarded: &'static str, xff: &'static str, xfp: &'static str| {
        app.http
            .post(format!("{}/v1/access-points/avatars/presign", app.base))
            .bearer_auth(&alice)
            .header("forwarded", forwarded)
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", xfp)
            .json(&presign_body())
            .send()
    };
    // The proxy saw plain HTTP from the internet; the client claims TLS from inside.
    let (s, b) = decode(
        send("for=10.1.2.3;proto=https", "203.0.113.9", "http")
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "{b}"
    );
    // Over TLS at the proxy, but from outside the allowed network.
    let (s, b) = decode(
        send("for=10.1.2.3;proto=https", "203.0.113.9", "https")
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("network_denied")),
        "{b}"
    );
    // The real thing: the proxy says TLS from inside.
    let (s, b) = decode(
        send("for=203.0.113.9;proto=http", "10.1.2.3", "https")
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let sources: Vec<_> = app
        .audit_records()
        .iter()
        .map(|r| (r["source_ip"].clone(), r["tls"].clone()))
        .collect();
    assert_eq!(
        sources,
        [
            (json!("203.0.113.9"), json!(false)),
            (json!("203.0.113.9"), json!(true)),
            (json!("10.1.2.3"), json!(true)),
        ]
    );
    app.finish().await;
}

/// The same deployment with a proxy that writes RFC 7239 `Forwarded`
/// (`server.forwarded_header = "forwarded"`): `X-Forwarded-*` from the client are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forwarded_configured_client_sent_x_forwarded_headers_are_ignored() {
    let mut internal = avatars();
    internal.network.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
    let mut opts = Options::new(Backend::Sqlite, vec![internal]);
    opts.behind_proxies(&["127.0.0.0/8"])
        .config(|c| c.server.forwarded_header = ForwardedHeader::Forwarded);
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let send = |forwarded: &'static str| {
        app.http
            .post(format!("{}/v1/access-points/avatars/presign", app.base))
            .bearer_auth(&alice)
            .header("forwarded", forwarded)
            .header("x-forwarded-for", "10.1.2.3")
            .header("x-forwarded-proto", "https")
            .json(&presign_body())
            .send()
    };
    let (s, b) = decode(send("for=203.0.113.9;proto=http").await.expect("request")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("https_required")),
        "{b}"
    );
    let (s, b) = decode(send("for=203.0.113.9;proto=https").await.expect("request")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("network_denied")),
        "{b}"
    );
    let (s, b) = decode(send("for=10.1.2.3;proto=https").await.expect("request")).await;
    assert_eq!(s, 200, "{b}");
    app.finish().await;
}

#[test]
fn certificate_reload_swaps_the_key_and_keeps_it_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = common::tls::issue(dir.path(), "server");
    let reloadable =
        presignd::serve::tls::ReloadableCert::load(&first.cert, &first.key).expect("load");
    let leaf = |r: &presignd::serve::tls::ReloadableCert| {
        r.current().end_entity_cert().expect("leaf").to_vec()
    };
    let before = leaf(&reloadable);

    // Renewed certificate written over the same files.
    let second = common::tls::issue(dir.path(), "server");
    assert_eq!(second.cert, first.cert);
    reloadable.reload().expect("reload");
    let after = leaf(&reloadable);
    assert_ne!(before, after, "the renewed certificate is served");

    std::fs::write(&first.key, "not a key").expect("corrupt");
    assert!(reloadable.reload().is_err());
    assert_eq!(
        leaf(&reloadable),
        after,
        "a bad renewal keeps the current one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_allowed_origins_only() {
    let mut ap = avatars();
    ap.cors_origins = vec!["https://avatars.example".into()];
    // The harness allows https://app.example.com on every route.
    let app = TestApp::spawn(Backend::Sqlite, vec![ap]).await;
    let presign_url = format!("{}/v1/access-points/avatars/presign", app.base);
    let whoami_url = format!("{}/v1/whoami", app.base);
    let preflight = |url: String, origin: &'static str| {
        let http = app.http.clone();
        async move {
            http.request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .expect("preflight")
        }
    };
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii").to_string())
    };

    let r = preflight(presign_url.clone(), "https://app.example.com").await;
    assert_eq!(
        allowed(&r).as_deref(),
        Some("https://app.example.com"),
        "global origin"
    );
    assert!(r.headers().get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("origin")
    }));
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .expect("methods")
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .expect("headers")
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "never credentials mode"
    );

    let r = preflight(presign_url.clone(), "https://avatars.example").await;
    assert_eq!(
        allowed(&r).as_deref(),
        Some("https://avatars.example"),
        "the access point's own origin"
    );
    let r = preflight(whoami_url.clone(), "https://avatars.example").await;
    assert_eq!(
        allowed(&r),
        None,
        "an access point's origin does not open other routes"
    );
    let r = preflight(presign_url.clone(), "https://evil.example").await;
    assert_eq!(allowed(&r), None, "unknown origin gets no CORS headers");

    // The actual request from an allowed origin exposes the request id.
    let alice = app.token("alice", &["users"], false);
    let r = app
        .http
        .post(&presign_url)
        .header("origin", "https://avatars.example")
        .bearer_auth(&alice)
        .json(&presign_body())
        .send()
        .await
        .expect("request");
    assert_eq!(allowed(&r).as_deref(), Some("https://avatars.example"));
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .expect("expose")
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let (s, _) = decode(r).await;
    assert_eq!(s, 200);
    app.finish().await;
}
