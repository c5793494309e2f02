//! CloudFront delivery through the API: an access point with `delivery.cloudfront` answers
//! GETs with CloudFront signed URLs that a CloudFront-like verifier (`common::cloudfront`, the
//! documented rules, the distribution's public key) accepts and refuses as CloudFront would;
//! PUTs still go to S3; the records say what was signed without holding the signature.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;

use common::app::{BUCKET, Backend, Options, TestApp, ap};
use common::cloudfront::{Distribution, matches, p256_key};
use presignd::config::CloudFrontKeyConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY_ID: &str = "KTESTP256";
const DOMAIN: &str = "d111111abcdef8.cloudfront.net";

fn episodes() -> Value {
    json!({
        "name": "episodes",
        "bucket": BUCKET,
        "prefix": "video/",
        "max_expires_in": 86400,
        "cors_origins": ["https://app.example.com"],
        "grants": {"max_uses": 5},
        "delivery": {"cloudfront": {"domain": DOMAIN, "path_prefix": "/video/", "key_pair_id": KEY_ID}},
        "rules": [
            {"effect": "allow", "groups": ["premium"], "operations": ["get", "put"], "keys": ["*"]},
            {"effect": "deny", "groups": ["*"], "operations": ["get"], "keys": ["drafts/*"]},
            {"effect": "deny", "groups": ["*"], "operations": ["get"], "keys": ["show-2/bonus/*"]}
        ]
    })
}

/// The same distribution behind an alternate domain, with cookies for the parent domain.
fn premiere() -> Value {
    let mut ap = episodes();
    ap["name"] = json!("premiere");
    ap["delivery"]["cloudfront"]["domain"] = json!("media.example.com");
    ap["delivery"]["cloudfront"]["cookie_domain"] = json!("example.com");
    ap
}

struct Setup {
    app: TestApp,
    cloudfront: Distribution,
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = p256_key();
    let key_file = dir.path().join("cf.pem");
    std::fs::write(&key_file, &key.pem).expect("write key");
    let mut opts = Options::new(
        Backend::Sqlite,
        vec![ap(episodes()), ap(premiere()), common::app::avatars()],
    );
    let file = key_file.clone();
    opts.config(move |c| {
        c.cloudfront.keys = vec![CloudFrontKeyConfig {
            key_pair_id: KEY_ID.into(),
            private_key_file: file,
        }];
        c.server.public_base_url = Some("http://links.test".into());
    });
    Setup {
        app: TestApp::spawn_with(opts).await,
        cloudfront: Distribution {
            key_pair_id: KEY_ID.into(),
            public: key.public,
        },
        key_file,
        _dir: dir,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_cloudfront_urls_that_cloudfront_accepts() {
    let Setup {
        app,
        cloudfront,
        _dir,
        ..
    } = setup().await;
    let alice = app.token("alice", &["premium"], false);
    let key = "show 1/ep-1/master.m3u8";
    let (status, issued) = app
        .presign(
            &alice,
            "episodes",
            json!({"operation": "get", "key": key, "expires_in": 600}),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["delivery"], "cloudfront");
    assert_eq!(issued["method"], "GET");
    assert_eq!(issued["bucket"], BUCKET);
    assert_eq!(issued["key"], "video/show 1/ep-1/master.m3u8");
    assert_eq!(issued["headers"], json!({}));
    let url = issued["url"].as_str().expect("url");
    let record_id = param(url, "x-presignd-id").expect("record id in the URL");
    assert!(
        url.starts_with(&format!(
            "https://{DOMAIN}/video/show%201/ep-1/master.m3u8?x-presignd-id={record_id}&Expires="
        )),
        "{url}"
    );
    assert_eq!(param(url, "Key-Pair-Id"), Some(KEY_ID));
    assert_eq!(param(url, "Hash-Algorithm"), Some("SHA256"));
    let expires: i64 = param(url, "Expires")
        .expect("canned")
        .parse()
        .expect("epoch");
    assert!(
        (expires - now() - 600).abs() <= 2,
        "expires in 600 s: {expires}"
    );
    let expires_at = time::OffsetDateTime::parse(
        issued["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert_eq!(expires_at.unix_timestamp(), expires);

    // CloudFront serves it now, from anywhere; not after it expires, not for another path,
    // not with another signature.
    cloudfront
        .check_url(url, now(), localhost())
        .expect("CloudFront accepts the URL");
    cloudfront
        .check_url(url, now(), IpAddr::from([203, 0, 113, 9]))
        .expect("a canned URL is not bound to an address");
    assert_eq!(
        cloudfront.check_url(url, expires, localhost()),
        Err("expired".into())
    );
    let other_path = url.replace("master.m3u8", "secret.m3u8");
    assert!(
        cloudfront
            .check_url(&other_path, now(), localhost())
            .is_err()
    );
    let other_id = url.replace(record_id, "00000000-0000-7000-8000-000000000000");
    assert!(cloudfront.check_url(&other_id, now(), localhost()).is_err());

    // The record says what was signed (resource, policy digest, signature digest), never the
    // signature itself.
    let records = app.audit_records();
    let record = records
        .iter()
        .find(|r| r["id"] == record_id)
        .expect("the URL's record");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["operation"], "get");
    let resource =
        format!("https://{DOMAIN}/video/show%201/ep-1/master.m3u8?x-presignd-id={record_id}");
    assert_eq!(record["resource"], resource);
    let policy = format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    );
    assert_eq!(
        record["policy_sha256"],
        hex::encode(Sha256::digest(policy.as_bytes()))
    );
    let signature = param(url, "Signature").expect("signature");
    assert_eq!(
        record["signature_sha256"],
        hex::encode(Sha256::digest(signature.as_bytes()))
    );
    assert!(
        !serde_json::to_string(&records)
            .expect("json")
            .contains(signature)
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_policies_bind_the_address_and_the_start() {
    let Setup {
        app,
        cloudfront,
        _dir,
        ..
    } = setup().await;
    let alice = app.token("alice", &["premium"], false);
    let start = now() + 60;
    let not_before = time::OffsetDateTime::from_unix_timestamp(start)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (status, issued) = app
        .presign(
            &alice,
            "episodes",
            json!({"operation": "get", "key": "a.mp4", "bind_client_ip": true, "not_before": not_before}),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let url = issued["url"].as_str().expect("url");
    assert!(
        param(url, "Policy").is_some() && param(url, "Expires").is_none(),
        "{url}"
    );
    // Pinned to the caller (127.0.0.1/32) and refused before `not_before`.
    cloudfront
        .check_url(url, start + 1, localhost())
        .expect("accepted from the caller");
    assert_eq!(
        cloudfront.check_url(url, start + 1, IpAddr::from([127, 0, 0, 2])),
        Err("127.0.0.2 is not in 127.0.0.1/32".into())
    );
    assert_eq!(
        cloudfront.check_url(url, now(), localhost()),
        Err("not valid yet".into())
    );

    // A start at or after the expiry is a 400, as are CloudFront fields on an S3 delivery
    // and S3 response overrides on a CloudFront one.
    let too_late = time::OffsetDateTime::from_unix_timestamp(now() + 4000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    for (body, said) in [
        (
            json!({"operation": "get", "key": "a.mp4", "expires_in": 3600, "not_before": too_late}),
            "not_before must be before",
        ),
        (
            json!({"operation": "get", "key": "a.mp4", "response_content_disposition": "attachment"}),
            "S3 parameters",
        ),
        (
            json!({"operation": "put", "key": "a.mp4", "bind_client_ip": true}),
            "CloudFront delivery only",
        ),
    ] {
        let (status, problem) = app.presign(&alice, "episodes", body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["code"], "invalid_request");
        assert!(
            problem["detail"].as_str().expect("detail").contains(said),
            "{problem}"
        );
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_still_decide_and_puts_still_go_to_s3() {
    let Setup { app, _dir, .. } = setup().await;
    let alice = app.token("alice", &["premium"], false);
    let bob = app.token("bob", &["free"], false);
    let (status, problem) = app
        .presign(
            &bob,
            "episodes",
            json!({"operation": "get", "key": "a.mp4"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("not_found")),
        "{problem}"
    );
    let (status, problem) = app
        .presign(
            &alice,
            "episodes",
            json!({"operation": "get", "key": "drafts/a.mp4"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("forbidden")),
        "{problem}"
    );

    // A PUT is an S3 URL to the origin bucket, and S3 takes the upload.
    let (status, issued) = app
        .presign(
            &alice,
            "episodes",
            json!({"operation": "put", "key": "a.mp4"}),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    assert!(issued.get("delivery").is_none(), "{issued}");
    let url = issued["url"].as_str().expect("url");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let put = app.http.put(url).body("segment").send().await.expect("PUT");
    assert_eq!(put.status(), 200);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_points_name_configured_keys_and_readyz_warns_about_lost_key_files() {
    let Setup {
        app,
        key_file,
        _dir,
        ..
    } = setup().await;
    let admin = app.token("root", &["presignd-admins"], false);
    let mut unknown = episodes();
    unknown["name"] = json!("other");
    unknown["delivery"]["cloudfront"]["key_pair_id"] = json!("KNOTCONFIGURED");
    let resp = app
        .http
        .put(format!("{}/v1/admin/access-points/other", app.base))
        .bearer_auth(&admin)
        .json(&unknown)
        .send()
        .await
        .expect("PUT");
    let (status, problem) = common::app::decode(resp).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"],
        "delivery.cloudfront.key_pair_id"
    );

    // (The in-process S3 server cannot answer GetBucketCors: those warnings are not ours.)
    let key_warnings = |ready: &Value| -> Vec<String> {
        let all = ready["warnings"].as_array().cloned().unwrap_or_default();
        all.iter()
            .filter_map(Value::as_str)
            .filter(|w| w.starts_with("cloudfront key"))
            .map(String::from)
            .collect()
    };
    let (status, ready) = app.get(None, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(key_warnings(&ready).is_empty(), "{ready}");
    std::fs::remove_file(&key_file).expect("remove key file");
    let (status, ready) = app.get(None, "/readyz").await;
    assert_eq!(status, 200, "still ready: the loaded key signs: {ready}");
    let warnings = key_warnings(&ready);
    assert_eq!(warnings.len(), 1, "{ready}");
    assert!(
        warnings[0].contains(KEY_ID) && warnings[0].contains("restart would fail"),
        "{warnings:?}"
    );
    let alice = app.token("alice", &["premium"], false);
    let (status, _) = app
        .presign(
            &alice,
            "episodes",
            json!({"operation": "get", "key": "a.mp4"}),
        )
        .await;
    assert_eq!(status, 200);
    app.finish().await;
}

#[test]
fn wildcards_match_as_cloudfront_documents() {
    assert!(matches(b"https://d/v/*", b"https://d/v/a/b.ts"));
    assert!(matches(b"https://d/v/*", b"https://d/v/"));
    assert!(!matches(b"https://d/v/*", b"https://d/w/a"));
    assert!(matches(b"https://d/v/?.ts", b"https://d/v/a.ts"));
    assert!(!matches(b"https://d/v/?.ts", b"https://d/v/ab.ts"));
}

async fn cookies(app: &TestApp, token: &str, ap: &str, body: Value) -> (u16, Value, Vec<String>) {
    let resp = app
        .http
        .post(format!("{}/v1/access-points/{ap}/cookies", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST cookies");
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    let (status, body) = common::app::decode(resp).await;
    (status, body, set_cookies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_grant_a_prefix_that_cloudfront_accepts() {
    let Setup {
        app,
        cloudfront,
        _dir,
        ..
    } = setup().await;
    let alice = app.token("alice", &["premium", "users"], false);
    let (status, issued, set_cookies) = cookies(
        &app,
        &alice,
        "episodes",
        json!({"prefix": "show-1/ep-1/", "expires_in": 600}),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        issued["resource"],
        format!("https://{DOMAIN}/video/show-1/ep-1/*")
    );
    assert_eq!(issued["domain"], DOMAIN);
    assert_eq!(issued["path"], "/video/show-1/ep-1/");
    assert_eq!(issued["prefix"], "video/show-1/ep-1/");
    let jar: std::collections::HashMap<String, String> = issued["cookies"]
        .as_object()
        .expect("cookies")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_string()))
        .collect();
    assert_eq!(jar.len(), 4, "{jar:?}");
    assert_eq!(jar["CloudFront-Key-Pair-Id"], KEY_ID);

    // The playlist and every segment under the prefix, nothing beside it, not after expiry.
    let url = |path: &str| format!("https://{DOMAIN}/video/{path}");
    for path in ["show-1/ep-1/master.m3u8", "show-1/ep-1/1080p/seg-00042.ts"] {
        cloudfront
            .check_cookies(&url(path), &jar, now(), localhost())
            .expect(path);
    }
    for path in [
        "show-1/ep-2/master.m3u8",
        "show-1/ep-10/master.m3u8",
        "other.mp4",
    ] {
        assert!(
            cloudfront
                .check_cookies(&url(path), &jar, now(), localhost())
                .is_err(),
            "{path}"
        );
    }
    assert_eq!(
        cloudfront.check_cookies(&url("show-1/ep-1/a.ts"), &jar, now() + 601, localhost()),
        Err("expired".into())
    );

    // The same cookies as Set-Cookie, for browsers: host-only here (no cookie_domain).
    assert_eq!(set_cookies.len(), 4, "{set_cookies:?}");
    for c in &set_cookies {
        let (pair, attributes) = c.split_once("; ").expect("attributes");
        let (name, value) = pair.split_once('=').expect("name=value");
        assert_eq!(jar[name], value);
        assert!(
            attributes.starts_with("Path=/video/show-1/ep-1/; Max-Age="),
            "{c}"
        );
        assert!(
            attributes.ends_with("; Secure; HttpOnly; SameSite=None"),
            "{c}"
        );
        assert!(!attributes.contains("Domain="), "{c}");
    }
    let (status, _, set_cookies) = cookies(&app, &alice, "premiere", json!({"prefix": "p/"})).await;
    assert_eq!(status, 200);
    assert!(
        set_cookies
            .iter()
            .all(|c| c.contains("; Domain=example.com;")),
        "{set_cookies:?}"
    );

    // The record: what the policy grants and its digest, never the signature.
    let records = app.audit_records();
    let record = records
        .iter()
        .find(|r| r["operation"] == "cookies" && r["access_point"] == "episodes")
        .expect("the cookies' record");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["key"], "video/show-1/ep-1/");
    assert_eq!(record["resource"], issued["resource"]);
    let policy = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        jar["CloudFront-Policy"]
            .replace('-', "+")
            .replace('_', "=")
            .replace('~', "/"),
    )
    .expect("policy");
    assert_eq!(
        record["policy_sha256"],
        hex::encode(Sha256::digest(&policy))
    );
    assert!(
        !serde_json::to_string(&records)
            .expect("json")
            .contains(&jar["CloudFront-Signature"])
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_refused_where_a_key_under_the_prefix_is() {
    let Setup { app, _dir, .. } = setup().await;
    let alice = app.token("alice", &["premium", "users"], false);
    let bob = app.token("bob", &["free"], false);
    for (token, ap, body, status, code) in [
        // Every key under the prefix must be allowed: a deny rule under it refuses the lot.
        (
            &alice,
            "episodes",
            json!({"prefix": "show-2/"}),
            403,
            "forbidden",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": "drafts/"}),
            403,
            "forbidden",
        ),
        (
            &bob,
            "episodes",
            json!({"prefix": "show-1/"}),
            404,
            "not_found",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": "show-1"}),
            400,
            "invalid_request",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": ""}),
            400,
            "invalid_request",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": "../"}),
            400,
            "invalid_key",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": "a/", "expires_in": 999999}),
            400,
            "expires_in_out_of_range",
        ),
        (
            &alice,
            "episodes",
            json!({"prefix": "a/", "extra": 1}),
            400,
            "invalid_request",
        ),
        // S3 delivery has no cookies.
        (
            &alice,
            "avatars",
            json!({"prefix": "alice/"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, problem, set_cookies) = cookies(&app, token, ap, body.clone()).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{body}: {problem}"
        );
        assert!(set_cookies.is_empty());
    }
    let anonymous = app
        .http
        .post(format!("{}/v1/access-points/episodes/cookies", app.base))
        .json(&json!({"prefix": "show-1/"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status(), 401);
    // Each refusal is recorded as a `cookies` decision.
    let denied = app
        .audit_records()
        .iter()
        .filter(|r| r["operation"] == "cookies" && r["decision"] == "deny")
        .count();
    assert!(denied >= 9, "{denied}");

    // Credentialed CORS (needed for Set-Cookie) on the cookies route only.
    for (path, credentials) in [("cookies", Some("true")), ("presign", None)] {
        let preflight = app
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/access-points/episodes/{path}", app.base),
            )
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await
            .expect("preflight");
        let h = preflight.headers();
        assert_eq!(
            h.get("access-control-allow-origin")
                .map(|v| v.to_str().expect("ascii")),
            Some("https://app.example.com")
        );
        assert_eq!(
            h.get("access-control-allow-credentials")
                .map(|v| v.to_str().expect("ascii")),
            credentials,
            "{path}"
        );
    }
    app.finish().await;
}

/// A download grant on a CloudFront access point redirects to a fresh CloudFront URL that
/// lives `grants.redirect_expires_in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_redirect_to_cloudfront_urls() {
    let Setup {
        app,
        cloudfront,
        _dir,
        ..
    } = setup().await;
    let alice = app.token("alice", &["premium"], false);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/episodes/grants",
            json!({"key": "a.mp4", "max_uses": 1}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["url"]
        .as_str()
        .expect("url")
        .rsplit('/')
        .next()
        .expect("token");
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http
        .get(format!("{}/g/{token}", app.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        location.starts_with(&format!("https://{DOMAIN}/video/a.mp4?x-presignd-id=")),
        "{location}"
    );
    let expires: i64 = param(&location, "Expires")
        .expect("canned")
        .parse()
        .expect("epoch");
    assert!(
        (expires - now() - 60).abs() <= 2,
        "grants.redirect_expires_in: {expires}"
    );
    cloudfront
        .check_url(&location, now(), localhost())
        .expect("CloudFront accepts it");
    let again = http
        .get(format!("{}/g/{token}", app.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status(), 410);
    app.finish().await;
}

/// The guide's example access point file is valid against a configuration holding its key,
/// and refused without it.
#[test]
fn the_guides_example_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("cf.pem");
    std::fs::write(&key_file, p256_key().pem).expect("write key");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/premium-video.access-points.yaml");
    let base = format!(
        "[server]\nrequire_https = false\n{}",
        common::app::issuer_toml()
    );
    let with_key = format!(
        "{base}\n[[cloudfront.keys]]\nkey_pair_id = \"K2JCJMDEHXQW5F\"\nprivate_key_file = \"{}\"\n",
        key_file.display()
    );
    let config = presignd::config::Config::from_toml(&with_key).expect("valid config");
    let specs = presignd::catalog::read_file(&example, &config).expect("the example is valid");
    assert_eq!(specs.len(), 1);
    assert!(specs[0].delivery.cloudfront.is_some());
    // check-config says which key signs.
    assert!(
        config
            .explain()
            .iter()
            .any(|n| n.starts_with("cloudfront: key K2JCJMDEHXQW5F (ECDSA P-256) from ")),
        "{:?}",
        config.explain()
    );
    let without = presignd::config::Config::from_toml(&base).expect("valid config");
    let err = presignd::catalog::read_file(&example, &without).expect_err("no key configured");
    assert!(
        err.to_string().contains("delivery.cloudfront.key_pair_id"),
        "{err}"
    );
}
