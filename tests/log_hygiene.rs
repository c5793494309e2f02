//! Logs never carry a credential. The real binary runs with JSON logs at debug level
//! (`RUST_LOG=debug`, every crate) through a realistic session — URLs issued and refused,
//! good, expired, forged and garbage tokens, a batch, discovery, tokens where they do not
//! belong (query string, path) — and then its whole stdout and stderr are searched for every
//! token, every `X-Amz-Signature` value, the HS256 secret and the S3 secret key. Every line
//! must be JSON, and requests must be logged inside a span with the request id and the
//! matched route (not the raw path).

mod common;

use std::time::Duration;

use common::app::{HS_SECRET, ISSUER};
use common::daemon::{Daemon, S3_SECRET_KEY, token};
use serde_json::{Value, json};

fn signature_of(url: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
        .expect("URL has X-Amz-Signature")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_signature_or_secret_is_ever_logged() {
    let metrics_token = "metrics-bearer-token-0123456789abcdef";
    let d = Daemon::start(
        &format!("[metrics]\nbearer_token = \"{metrics_token}\"\n"),
        &[("RUST_LOG", "debug")],
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = d.base();

    let alice = token("alice", &["users"], 600);
    let bob = token("bob", &["users", "suspended"], 600);
    let expired = token("alice", &["users"], -3600);
    // alice's claims, signed with another key.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": ISSUER, "aud": "presignd", "sub": "alice",
                "groups": ["users"], "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-0123456789abcdef"),
    )
    .expect("sign");
    let garbage = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWdhcmJhZ2U";
    let tokens = [&alice, &bob, &expired, &forged, &garbage.to_string()];

    let mut signatures = Vec::new();
    let presign = |tok: &str, ap: &str, body: Value| {
        let req = http
            .post(format!("{base}/v1/access-points/{ap}/presign"))
            .bearer_auth(tok)
            .json(&body);
        async move {
            let resp = req.send().await.expect("presign");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };

    // Issued URLs.
    for body in [
        json!({"operation": "put", "key": "alice/a.png", "content_type": "image/png",
               "content_length": 10, "metadata": {"k": "v"}}),
        json!({"operation": "get", "key": "alice/a.png",
               "response_content_disposition": "attachment; filename=\"a.png\""}),
    ] {
        let (s, b) = presign(&alice, "avatars", body).await;
        assert_eq!(s, 200, "{b}");
        signatures.push(signature_of(b["url"].as_str().expect("url")));
    }
    // Refused: rules, explicit deny, unknown access point, bad key, bad tokens.
    for (tok, ap, key, status) in [
        (&alice, "avatars", "bob/a.png", 403),
        (&bob, "avatars", "bob/a.png", 403),
        (&alice, "nope", "alice/a.png", 404),
        (&alice, "avatars", "alice/../x", 400),
        (&expired, "avatars", "alice/a.png", 401),
        (&forged, "avatars", "alice/a.png", 401),
        (&garbage.to_string(), "avatars", "alice/a.png", 401),
    ] {
        let (s, b) = presign(tok, ap, json!({"operation": "get", "key": key})).await;
        assert_eq!(s, status, "{b}");
    }
    // A batch with issued and refused items.
    let resp = http
        .post(format!("{base}/v1/presign/batch"))
        .bearer_auth(&alice)
        .json(&json!({"items": [
            {"access_point": "avatars", "operation": "get", "key": "alice/1.png"},
            {"access_point": "avatars", "operation": "put", "key": "alice/2.txt",
             "content_type": "text/plain", "content_length": 3},
            {"access_point": "avatars", "operation": "get", "key": "carol/1.png"},
        ]}))
        .send()
        .await
        .expect("batch");
    assert_eq!(resp.status().as_u16(), 200);
    let batch: Value = resp.json().await.expect("JSON");
    for r in batch["results"].as_array().expect("results") {
        if let Some(url) = r["presigned"]["url"].as_str() {
            signatures.push(signature_of(url));
        }
    }
    assert_eq!(signatures.len(), 4);
    // Discovery, with good and bad tokens; tokens in places they do not belong.
    for tok in tokens {
        for path in ["/v1/whoami", "/v1/access-points"] {
            http.get(format!("{base}{path}"))
                .bearer_auth(tok)
                .send()
                .await
                .expect("GET");
        }
        http.get(format!("{base}/v1/whoami?access_token={tok}"))
            .send()
            .await
            .expect("GET");
        http.get(format!("{base}/v1/{tok}"))
            .header("origin", "https://not-allowed.example")
            .send()
            .await
            .expect("GET");
    }
    // Metrics, with a wrong and the right bearer token.
    for t in ["wrong-metrics-token-0123456789", metrics_token] {
        http.get(format!("{base}/metrics"))
            .bearer_auth(t)
            .send()
            .await
            .expect("GET");
    }

    d.sigterm();
    let (_d, (status, lines)) = tokio::task::spawn_blocking(move || {
        let mut d = d;
        let waited = d.wait(Duration::from_secs(30));
        (d, waited)
    })
    .await
    .expect("join");
    assert!(status.success(), "clean exit: {status}");

    let text = lines.join("\n");
    let mut secrets: Vec<(&str, String)> = vec![
        ("HS256 secret", HS_SECRET.to_string()),
        ("S3 secret key", S3_SECRET_KEY.to_string()),
        ("metrics bearer token", metrics_token.to_string()),
    ];
    for t in tokens {
        secrets.push(("token", t.to_string()));
        // Any of its parts: the signature alone is a credential, the payload names the user.
        for part in t.split('.') {
            secrets.push(("token part", part.to_string()));
        }
    }
    for s in &signatures {
        secrets.push(("URL signature", s.clone()));
    }
    for (what, secret) in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret.as_str()),
            "a {what} appears in the logs: {}",
            lines
                .iter()
                .find(|l| l.contains(secret.as_str()))
                .expect("line")
        );
    }
    assert!(!text.contains("X-Amz-Signature"), "no URL is ever logged");

    // Every line is JSON; request lines carry the span fields.
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = parsed
        .iter()
        .filter(|v| v["fields"]["message"] == "request" && v["span"]["name"] == "request")
        .collect();
    assert!(requests.len() >= 30, "one line per request");
    for r in &requests {
        assert!(r["span"]["request_id"].is_string(), "{r}");
        assert!(r["span"]["route"].is_string(), "{r}");
        assert!(r["fields"]["status"].is_u64(), "{r}");
        assert!(r["fields"]["latency_us"].is_u64(), "{r}");
    }
    let issued = requests
        .iter()
        .find(|r| {
            r["span"]["route"] == "/v1/access-points/{name}/presign" && r["fields"]["status"] == 200
        })
        .expect("a logged presign");
    assert_eq!(issued["span"]["access_point"], "avatars");
    assert_eq!(issued["span"]["decision"], "allow");
    assert_eq!(issued["span"]["reason"], "allowed");
    let refused = requests
        .iter()
        .find(|r| r["fields"]["status"] == 403)
        .expect("a logged refusal");
    assert_eq!(refused["span"]["decision"], "deny");
    assert!(
        requests
            .iter()
            .any(|r| r["span"]["route"] == "unmatched" && r["fields"]["status"] == 404),
        "unmatched routes are logged as such, not by their path"
    );
    assert!(
        parsed.iter().any(|v| v["level"] == "DEBUG"),
        "debug level was on"
    );
}
