//! `/metrics`: after a scripted set of requests (allowed, denied, rate limited, bad tokens,
//! a batch, a JWKS outage) the scraped exposition parses and holds exactly the expected
//! counter values; labels stay bounded; the bearer token, the separate listener and the
//! plain-HTTP exemption behave as configured.

mod common;

use std::collections::BTreeMap;

use common::app::{Backend, ISSUER, Options, TestApp, avatars, avatars_of, mint_hs256};
use common::jwt;
use presignd::config::Algorithm;
use serde_json::json;

/// One sample: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// A parsed text exposition (format 0.0.4). Panics on any line that does not parse, on a
/// sample whose family has no `# TYPE`, and on a duplicate series.
#[derive(Debug)]
struct Exposition {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.0.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(&series.0)
                .to_string();
            assert!(types.contains_key(&family), "no # TYPE for {line}");
            assert!(
                samples.insert(series, value).is_none(),
                "duplicate series: {line}"
            );
        }
        Exposition { samples, types }
    }

    /// The value of one series; 0 when it was never touched (absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every series of a metric, for exact comparisons of a whole family.
    fn family(&self, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels.clone().into_iter().collect(), *v))
            .collect()
    }
}

fn parse_sample(line: &str) -> (Series, f64) {
    let (name_and_labels, value) = line.rsplit_once(' ').expect("sample has a value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        None => (name_and_labels, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels end with }");
            (name, parse_labels(body, line))
        }
    };
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    ((name.to_string(), labels), value)
}

fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

async fn scrape(app: &TestApp) -> Exposition {
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        presignd::http::METRICS_CONTENT_TYPE
    );
    assert!(resp.headers().contains_key("x-request-id"));
    Exposition::parse(&resp.text().await.expect("body"))
}

const JWKS_ISSUER: &str = "https://login.example/";
const PRESIGN: &str = "/v1/access-points/{name}/presign";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_requests_give_exact_counters() {
    let jwks = jwt::JwksServer::start(jwt::jwks(&[jwt::RSA1.jwk()])).await;
    // Two issuers: the per-user folders name whose subjects own them.
    let avatars = avatars_of(&[ISSUER, JWKS_ISSUER]);
    let mut opts = Options::new(Backend::Sqlite, vec![avatars]);
    let mut issuer = jwt::issuer_config(JWKS_ISSUER);
    issuer.algorithms = vec![Algorithm::RS256];
    issuer.jwks_url = Some(jwks.url.clone());
    issuer.jwks_min_refetch_seconds = 1;
    opts.config(|c| {
        c.limits.per_subject_per_minute = 1;
        c.limits.per_subject_burst = 3;
        c.auth.issuers.push(issuer);
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users", "suspended"], false);
    let carol = app.token("carol", &["users"], false);
    let get = |key: &str| json!({"operation": "get", "key": key});

    // Allowed: alice's burst of 3 (2 put, 1 get).
    for key in ["alice/a.png", "alice/b.png"] {
        let body = json!({"operation": "put", "key": key, "content_type": "image/png",
                          "content_length": 10});
        let (s, b) = app.presign(&alice, "avatars", body).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = app.presign(&alice, "avatars", get("alice/a.png")).await;
    assert_eq!(s, 200, "{b}");
    // Denied by the rules (not charged to the rate limit).
    let (s, b) = app.presign(&alice, "avatars", get("bob/a.png")).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = app.presign(&bob, "avatars", get("bob/a.png")).await;
    assert_eq!(s, 403);
    // Rate limited: alice's burst is spent, and the rate is one per minute.
    let (s, b) = app.presign(&alice, "avatars", get("alice/c.png")).await;
    assert_eq!((s, b["code"].as_str()), (429, Some("rate_limited")), "{b}");
    // Unknown access point (label: unknown), invalid key.
    let (s, _) = app.presign(&alice, "no-such-ap", get("alice/a.png")).await;
    assert_eq!(s, 404);
    let (s, b) = app.presign(&alice, "avatars", get("alice/../x")).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_key")));
    // Bad tokens: garbage, wrong signature, expired.
    let forged = jwt::hs256(b"not-the-configured-secret-0123456789", &{
        let mut c = jwt::claims(ISSUER, "alice");
        c["groups"] = json!(["users"]);
        c
    });
    let expired = mint_hs256("alice", &["users"], false, -3600);
    for (token, code) in [
        ("garbage", "unauthenticated"),
        (forged.as_str(), "unauthenticated"),
        (expired.as_str(), "token_expired"),
    ] {
        let (s, b) = app.presign(token, "avatars", get("alice/a.png")).await;
        assert_eq!((s, b["code"].as_str()), (401, Some(code)));
    }
    // No token at all.
    let (s, _) = app.get(None, "/v1/whoami").await;
    assert_eq!(s, 401);
    // A batch: one allowed, one denied, one invalid item.
    let (s, b) = app
        .post(
            &carol,
            "/v1/presign/batch",
            json!({"items": [
                {"access_point": "avatars", "operation": "get", "key": "carol/1.png"},
                {"access_point": "avatars", "operation": "get", "key": "dave/1.png"},
                {"access_point": "avatars", "key": "carol/2.png"}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let statuses: Vec<_> = b["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [Some(200), Some(403), Some(400)]);
    // JWKS: the startup fetch succeeded; now the IdP fails and a token with an unknown kid
    // forces a refetch (throttled to one per second).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    jwks.set_failing(true);
    let mut claims = jwt::claims(JWKS_ISSUER, "erin");
    claims["groups"] = json!(["users"]);
    let (s, b) = app
        .presign(&jwt::RSA2.sign(&claims), "avatars", get("erin/a.png"))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (401, Some("unauthenticated")),
        "{b}"
    );
    // Unmatched route, health, readiness.
    let (s, _) = app.get(None, "/no/such/route").await;
    assert_eq!(s, 404);
    let (s, _) = app.get(None, "/healthz").await;
    assert_eq!(s, 200);
    let (s, _) = app.get(None, "/readyz").await;
    assert_eq!(s, 200);

    let m = scrape(&app).await;

    let decisions = m.family("presignd_presign_decisions_total");
    let decision = |ap: &str, op: &str, d: &str, reason: &str| {
        vec![
            ("access_point".to_string(), ap.to_string()),
            ("decision".to_string(), d.to_string()),
            ("operation".to_string(), op.to_string()),
            ("reason".to_string(), reason.to_string()),
        ]
    };
    let expected: BTreeMap<_, f64> = [
        (decision("avatars", "put", "allow", "allowed"), 2.0),
        (decision("avatars", "get", "allow", "allowed"), 2.0),
        (decision("avatars", "get", "deny", "implicit_deny"), 2.0),
        (decision("avatars", "get", "deny", "explicit_deny"), 1.0),
        (decision("avatars", "get", "deny", "rate_limited"), 1.0),
        (decision("unknown", "get", "deny", "not_found"), 1.0),
        (decision("avatars", "get", "deny", "invalid_key"), 1.0),
        // garbage, forged and the unknown-kid token
        (decision("avatars", "get", "deny", "unauthenticated"), 3.0),
        (decision("avatars", "get", "deny", "token_expired"), 1.0),
        (
            decision("avatars", "unknown", "deny", "invalid_request"),
            1.0,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(decisions, expected, "presign decisions");

    let jwt_family = m.family("presignd_jwt_verifications_total");
    let jwt = |issuer: &str, result: &str| {
        vec![
            ("issuer".to_string(), issuer.to_string()),
            ("result".to_string(), result.to_string()),
        ]
    };
    let expected: BTreeMap<_, f64> = [
        // alice 3 allowed + 1 forbidden + 1 limited + 1 not found + 1 invalid key, bob, carol
        (jwt(ISSUER, "ok"), 9.0),
        (jwt("unknown", "malformed"), 1.0),
        (jwt(ISSUER, "bad_signature"), 1.0),
        (jwt(ISSUER, "expired"), 1.0),
        (jwt("unknown", "missing"), 1.0),
        (jwt(JWKS_ISSUER, "unknown_key"), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(jwt_family, expected, "JWT verifications");

    let refresh = |result| {
        m.get(
            "presignd_jwks_refresh_total",
            &[("issuer", JWKS_ISSUER), ("result", result)],
        )
    };
    assert_eq!(
        (refresh("ok"), refresh("error")),
        (1.0, 1.0),
        "JWKS fetches"
    );

    assert_eq!(
        m.family("presignd_ratelimit_rejections_total"),
        [(vec![("scope".to_string(), "subject".to_string())], 1.0)]
            .into_iter()
            .collect(),
    );

    let http = |route: &str, method: &str, status: &str| {
        m.get(
            "presignd_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(http(PRESIGN, "POST", "200"), 3.0);
    assert_eq!(http(PRESIGN, "POST", "403"), 2.0);
    assert_eq!(http(PRESIGN, "POST", "429"), 1.0);
    assert_eq!(http(PRESIGN, "POST", "404"), 1.0);
    assert_eq!(http(PRESIGN, "POST", "400"), 1.0);
    assert_eq!(http(PRESIGN, "POST", "401"), 4.0);
    assert_eq!(http("/v1/presign/batch", "POST", "200"), 1.0);
    assert_eq!(http("/v1/whoami", "GET", "401"), 1.0);
    assert_eq!(http("unmatched", "GET", "404"), 1.0);
    assert_eq!(http("/healthz", "GET", "200"), 1.0);
    assert_eq!(http("/readyz", "GET", "200"), 1.0);
    assert_eq!(
        m.family("presignd_http_requests_total")
            .values()
            .sum::<f64>(),
        17.0,
        "every request counted once, the scrape itself not yet"
    );
    // Routes are templates: no access point name, key or raw path in any label.
    for (_, labels) in m.samples.keys() {
        for v in labels.values() {
            assert!(
                !v.contains("alice") && !v.contains("no-such-ap") && !v.contains("/no/such"),
                "unbounded label value {v}"
            );
        }
    }
    assert_eq!(
        m.types["presignd_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        m.get(
            "presignd_http_request_duration_seconds_count",
            &[("route", PRESIGN)]
        ),
        12.0
    );
    assert_eq!(
        m.get(
            "presignd_http_request_duration_seconds_bucket",
            &[("le", "+Inf"), ("route", PRESIGN)]
        ),
        12.0
    );

    for dependency in ["database", "audit", "jwks"] {
        assert_eq!(
            m.get("presignd_dependency_up", &[("dependency", dependency)]),
            1.0,
            "{dependency}"
        );
    }
    assert_eq!(
        m.get(
            "presignd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for family in [
        "presignd_audit_outbox_pending",
        "presignd_audit_shipped_total",
        "presignd_audit_ship_failures_total",
        "presignd_audit_last_ship_timestamp_seconds",
    ] {
        assert!(m.types.contains_key(family), "{family} is exposed");
    }
    #[cfg(target_os = "linux")]
    assert!(
        m.get("process_resident_memory_bytes", &[]) > 0.0,
        "process metrics are exposed"
    );

    // The scrape itself is counted by the next one.
    let again = scrape(&app).await;
    assert_eq!(
        again.get(
            "presignd_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_listener_with_bearer_token() {
    let mut opts = Options::new(Backend::Sqlite, vec![avatars()]);
    opts.behind_proxies(&["10.0.0.0/8"]).config(|c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().expect("address"));
        c.metrics.bearer_token = Some("scrape-token-0123456789".to_string().into());
        c.metrics.allow_plain_http = true;
    });
    let app = TestApp::spawn_with(opts).await;
    let metrics = format!("http://{}", app.metrics_addr.expect("metrics listener"));

    // The main port does not serve /metrics; it still refuses plain HTTP elsewhere.
    let (s, b) = app.get(None, "/metrics").await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let (s, b) = app.get(None, "/v1/whoami").await;
    assert_eq!((s, b["code"].as_str()), (403, Some("https_required")));

    let scrape = |token: Option<&'static str>| {
        let mut req = app.http.get(format!("{metrics}/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.expect("scrape") }
    };
    for (token, www) in [
        (None, "Bearer"),
        (
            Some("wrong-token-0123456789"),
            "Bearer error=\"invalid_token\"",
        ),
        (
            Some("scrape-token-012345678"),
            "Bearer error=\"invalid_token\"",
        ),
    ] {
        let resp = scrape(token).await;
        assert_eq!(resp.status().as_u16(), 401, "{token:?}");
        assert_eq!(resp.headers()["www-authenticate"], www);
        let (_, body) = common::app::decode(resp).await;
        assert_eq!(body["code"], "unauthenticated");
    }
    let resp = scrape(Some("scrape-token-0123456789")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let m = Exposition::parse(&resp.text().await.expect("body"));
    assert_eq!(
        m.get(
            "presignd_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ),
        3.0
    );
    assert_eq!(
        m.get(
            "presignd_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        1.0,
        "the main port's /metrics is an unmatched route"
    );
    // The metrics listener serves nothing else.
    let resp = app
        .http
        .get(format!("{metrics}/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 404);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_require_https_unless_exempted() {
    let mut opts = Options::new(Backend::Sqlite, vec![avatars()]);
    opts.behind_proxies(&["127.0.0.0/8"]);
    let app = TestApp::spawn_with(opts).await;
    let (s, b) = app.get(None, "/metrics").await;
    assert_eq!((s, b["code"].as_str()), (403, Some("https_required")));
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200, "over TLS via a trusted proxy");
    app.finish().await;
}
