//! The contract cannot drift: `openapi/openapi.yaml` and the served router must name the same
//! routes and methods, and the real responses of typical calls (each status the suite can
//! provoke) must be documented for their operation, with their content type, and validate
//! against the documented JSON Schema.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::app::{Backend, Options, TestApp, ap, avatars, avatars_of, mint_hs256};
use serde_json::{Value, json};

/// Methods probed on every route. HEAD (answered wherever GET is) and OPTIONS (CORS
/// preflight) are not operations of the contract.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Contract {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0");
        Contract { doc }
    }

    /// `(METHOD, path)` of every operation.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .filter(|k| METHODS.contains(&k.to_ascii_uppercase().as_str()))
                    .map(move |m| (m.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }

    /// Follows local `$ref`s (`#/components/...`).
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.strip_prefix('#').expect("local $ref");
            v = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
        }
        v
    }

    /// Asserts that `status` with `content_type` is documented for the operation and that
    /// `body` validates against its schema.
    fn check(&self, method: &str, path: &str, resp: &Response) {
        let op = &self.doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the contract");
        let responses = &op["responses"];
        let status = resp.status.to_string();
        let class = format!("{}XX", resp.status / 100);
        let documented = [status.as_str(), class.as_str(), "default"]
            .into_iter()
            .find_map(|s| responses.get(s))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path}: status {status} is not documented (body {})",
                    resp.body
                )
            });
        let documented = self.resolve(documented);
        let content = documented["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} {status}: no content documented"));
        let media = content.get(&resp.content_type).unwrap_or_else(|| {
            panic!(
                "{method} {path} {status}: content type {} not documented (have {:?})",
                resp.content_type,
                content.keys().collect::<Vec<_>>()
            )
        });
        if let Some(headers) = documented["headers"].as_object() {
            for (name, header) in headers {
                let header = self.resolve(header);
                if header["required"] == true {
                    assert!(
                        resp.headers.contains_key(&name.to_ascii_lowercase()),
                        "{method} {path} {status}: required header {name} missing"
                    );
                }
            }
        }
        self.validate(
            &media["schema"],
            &resp.body,
            &format!("{method} {path} {status}"),
        );
    }

    /// Validates `instance` against `schema` (which may `$ref` the components).
    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: response does not match the contract:\n  {}\nbody: {instance:#}",
            errors.join("\n  ")
        );
    }

    /// Whether `instance` matches `schema`, without failing the test.
    fn admits(&self, schema: &Value, instance: &Value) -> bool {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft202012::options()
            .build(&root)
            .expect("the schema compiles")
            .is_valid(instance)
    }

    fn schema(&self, name: &str) -> Value {
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

struct Response {
    status: u16,
    content_type: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.expect("request")).await
}

/// A response as the contract checks it (its body parsed when it is JSON).
async fn read(resp: reqwest::Response) -> Response {
    let status = resp.status().as_u16();
    let headers: BTreeMap<String, String> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let content_type = headers
        .get("content-type")
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let text = resp.text().await.expect("body");
    let body = if content_type.ends_with("json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: bad JSON {e}: {text}"))
    } else {
        Value::String(text)
    };
    let id = headers.get("x-request-id").expect("x-request-id");
    assert!(
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "x-request-id {id:?}"
    );
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{status}: {body}");
    }
    Response {
        status,
        content_type,
        headers,
        body,
    }
}

/// The route templates the routers register: every `.route("…"` in `src/http/`.
fn router_paths() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("read src/http").flatten() {
        let source = std::fs::read_to_string(entry.path()).expect("read source");
        for (i, m) in source.match_indices(".route(") {
            let rest = source[i + m.len()..].trim_start();
            let literal = rest.strip_prefix('"').unwrap_or_else(|| {
                panic!(
                    "{}: route path is not a literal: {}",
                    entry.path().display(),
                    &rest[..rest.len().min(40)]
                )
            });
            paths.insert(literal[..literal.find('"').expect("closing quote")].to_string());
        }
    }
    paths
}

fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "probe" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_contract_name_the_same_routes_and_methods() {
    let contract = Contract::load();
    let documented = contract.operations();
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    let routed = router_paths();
    assert_eq!(
        routed, documented_paths,
        "src/http/mod.rs routes (left) and openapi.yaml paths (right) differ"
    );

    // Which methods the live router really serves on each path.
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let mut served = BTreeSet::new();
    for path in &routed {
        for method in METHODS {
            let resp = call(&app, method, &concrete(path), None, None).await;
            let no_route = resp.status == 404 && resp.body["detail"] == "no route for this path";
            match resp.status {
                405 => assert_eq!(resp.body["code"], "method_not_allowed"),
                _ if no_route => panic!("{method} {path}: the router does not match this path"),
                _ => {
                    served.insert((method.to_string(), path.clone()));
                }
            }
        }
    }
    assert_eq!(
        served, documented,
        "methods served by the router (left) and documented (right) differ"
    );
    app.finish().await;
}

/// An access point for encryption and discovery shapes.
fn reports() -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": "reports",
        "bucket": common::app::BUCKET,
        "prefix": "reports/",
        "default_expires_in": 60,
        "max_expires_in": 600,
        "encryption": {"mode": "sse-s3"},
        "upload": {"require_checksum": true, "required_metadata": ["cse-alg"]},
        "rules": [
            {"effect": "allow", "groups": ["finance"], "operations": ["get", "put"], "keys": ["*"]}
        ]
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_documented_schemas() {
    let contract = Contract::load();
    // Two issuers: the per-user folders name whose subjects own them.
    let folders_of_both = avatars_of(&[common::app::ISSUER, "https://down.example/"]);
    let mut opts = Options::new(Backend::Sqlite, vec![folders_of_both, reports()]);
    // An issuer whose JWKS cannot be fetched: its tokens answer 503, and /readyz is not ready.
    let mut down = common::jwt::issuer_config("https://down.example/");
    down.algorithms = vec![presignd::config::Algorithm::RS256];
    down.jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
    opts.config(|c| c.auth.issuers.push(down));
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users", "finance"], false);
    let moderator = app.token("mod", &["moderators"], false);
    let admin = app.token("root", &["presignd-admins"], false);
    let expired = mint_hs256("alice", &["users"], false, -3600);
    let presign = "/v1/access-points/{name}/presign";
    let on = |name: &str| format!("/v1/access-points/{name}/presign");

    let cases: Vec<(&str, Option<&str>, Value, u16)> = vec![
        (
            "avatars",
            Some(&alice),
            json!({"operation": "put", "key": "alice/a.png", "content_type": "image/png",
                   "content_length": 100, "metadata": {"cse-alg": "AES-GCM"}, "expires_in": 60}),
            200,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "alice/a.png",
                   "response_content_disposition": "attachment; filename=\"a.png\"",
                   "response_content_type": "image/png"}),
            200,
        ),
        (
            "reports",
            Some(&alice),
            json!({"operation": "put", "key": "q1.pdf", "content_type": "application/pdf",
                   "checksum_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                   "metadata": {"cse-alg": "AES-GCM"}}),
            200,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "/abs"}),
            400,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "alice/a", "bogus": 1}),
            400,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "alice/a", "expires_in": 99999}),
            400,
        ),
        (
            "reports",
            Some(&alice),
            json!({"operation": "put", "key": "q2.pdf", "metadata": {"cse-alg": "x"}}),
            400,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "alice/a",
                   "response_content_type": "text/html"}),
            400,
        ),
        (
            "avatars",
            None,
            json!({"operation": "get", "key": "alice/a"}),
            401,
        ),
        (
            "avatars",
            Some(&expired),
            json!({"operation": "get", "key": "alice/a"}),
            401,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "bob/a"}),
            403,
        ),
        (
            "avatars",
            Some(&moderator),
            json!({"operation": "delete", "key": "bob/a"}),
            403,
        ),
        (
            "nope",
            Some(&alice),
            json!({"operation": "get", "key": "a"}),
            404,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"operation": "put", "key": "alice/big.png", "content_type": "image/png",
                   "content_length": 999_999_999u64}),
            413,
        ),
        (
            // A presigned POST: `fields` instead of headers.
            "avatars",
            Some(&alice),
            json!({"operation": "post", "key": "alice/inbox/", "key_starts_with": true,
                   "content_type": "image/png", "metadata": {"k": "v"}}),
            200,
        ),
        (
            // Optional fields sent as null are the same as absent ones.
            "avatars",
            Some(&alice),
            json!({"operation": "get", "key": "alice/a.png", "expires_in": null,
                   "content_type": null, "content_length": null, "checksum_sha256": null,
                   "response_content_type": null, "response_content_disposition": null}),
            200,
        ),
    ];
    for (name, token, body, expected) in cases {
        let resp = call(&app, "POST", &on(name), token, Some(body.clone())).await;
        assert_eq!(resp.status, expected, "{body}: {}", resp.body);
        contract.check("POST", presign, &resp);
        if expected == 200 {
            // What the server accepts, the contract admits.
            contract.validate(&contract.schema("PresignRequest"), &body, "request body");
        }
        if resp.status == 401 {
            assert!(resp.headers.contains_key("www-authenticate"));
        }
    }

    // 415: not JSON.
    let resp = app
        .http
        .post(format!("{}{}", app.base, on("avatars")))
        .bearer_auth(&alice)
        .header("content-type", "text/plain")
        .body("operation=get")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 415);
    let (_, body) = common::app::decode(resp).await;
    contract.validate(&contract.schema("Problem"), &body, "415");

    // 503: the token's issuer has no keys yet.
    let mut claims = common::jwt::claims("https://down.example/", "zed");
    claims["groups"] = json!(["users"]);
    let down = common::jwt::RSA1.sign(&claims);
    let resp = call(
        &app,
        "POST",
        &on("avatars"),
        Some(&down),
        Some(json!({"operation": "get", "key": "zed/a"})),
    )
    .await;
    assert_eq!(
        (resp.status, &resp.body["code"]),
        (503, &json!("unavailable"))
    );
    contract.check("POST", presign, &resp);

    // Batch: mixed results; an empty batch.
    let resp = call(
        &app,
        "POST",
        "/v1/presign/batch",
        Some(&alice),
        Some(json!({"items": [
            {"access_point": "avatars", "operation": "get", "key": "alice/1.png"},
            {"access_point": "avatars", "operation": "post", "key": "alice/2.png", "content_type": "image/png"},
            {"access_point": "avatars", "operation": "get", "key": "bob/1.png"},
            {"access_point": "nope", "operation": "get", "key": "x"},
            {"access_point": "avatars", "operation": "get"},
            "not an object"
        ]})),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    contract.check("POST", "/v1/presign/batch", &resp);
    let posted = &resp.body["results"][1]["presigned"];
    assert_eq!(
        (posted["method"].as_str(), posted["fields"]["key"].as_str()),
        (Some("POST"), Some("avatars/alice/2.png")),
        "a batch item can be a presigned POST: {}",
        resp.body
    );
    for items in [json!([]), json!("x")] {
        let resp = call(
            &app,
            "POST",
            "/v1/presign/batch",
            Some(&alice),
            Some(json!({ "items": items })),
        )
        .await;
        assert_eq!(resp.status, 400);
        contract.check("POST", "/v1/presign/batch", &resp);
    }
    let resp = call(&app, "POST", "/v1/presign/batch", None, Some(json!({}))).await;
    assert_eq!(resp.status, 401);
    contract.check("POST", "/v1/presign/batch", &resp);

    // Discovery.
    for token in [&alice, &moderator, &admin] {
        let resp = call(&app, "GET", "/v1/access-points", Some(token), None).await;
        assert_eq!(resp.status, 200);
        contract.check("GET", "/v1/access-points", &resp);
        let resp = call(&app, "GET", "/v1/whoami", Some(token), None).await;
        assert_eq!(resp.status, 200);
        contract.check("GET", "/v1/whoami", &resp);
    }
    let resp = call(&app, "GET", "/v1/access-points", Some(&alice), None).await;
    let names: Vec<_> = resp.body["access_points"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| (a["name"].clone(), a["encryption"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("avatars"), json!("none")),
            (json!("reports"), json!("sse-s3"))
        ]
    );
    let resp = call(&app, "GET", "/v1/whoami", None, None).await;
    contract.check("GET", "/v1/whoami", &resp);

    // Explain: an allowed and a refused request, a simulated principal and a token.
    let explain = "/v1/admin/explain";
    for body in [
        json!({"principal": {"sub": "alice", "groups": ["users"]}, "access_point": "avatars",
               "request": {"operation": "put", "key": "alice/a.png", "content_type": "image/png", "content_length": 3}}),
        json!({"principal": {"token": moderator.clone()}, "access_point": "reports",
               "request": {"operation": "get", "key": "q3.pdf"}, "client": {"ip": "192.0.2.1", "tls": false}}),
    ] {
        contract.validate(&contract.schema("ExplainRequest"), &body, "request body");
        let resp = call(&app, "POST", explain, Some(&admin), Some(body)).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        contract.check("POST", explain, &resp);
    }
    let resp = call(&app, "POST", explain, Some(&alice), Some(json!({}))).await;
    assert_eq!(resp.status, 404);
    contract.check("POST", explain, &resp);

    // Operations: health, readiness (not ready: one issuer has no keys), this document,
    // metrics.
    let resp = call(&app, "GET", "/healthz", None, None).await;
    contract.check("GET", "/healthz", &resp);
    let resp = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.body["checks"]["jwks"], "unavailable");
    contract.check("GET", "/readyz", &resp);
    let resp = call(&app, "GET", "/openapi.json", None, None).await;
    contract.check("GET", "/openapi.json", &resp);
    assert_eq!(
        resp.body, contract.doc,
        "the served document is the committed file"
    );
    let resp = call(&app, "GET", "/metrics", None, None).await;
    contract.check("GET", "/metrics", &resp);

    // Outside any operation: no route, wrong method.
    for (method, path, status) in [("GET", "/nope", 404), ("DELETE", "/healthz", 405)] {
        let resp = call(&app, method, path, None, None).await;
        assert_eq!(resp.status, status);
        contract.validate(&contract.schema("Problem"), &resp.body, path);
    }
    app.finish().await;

    // A ready instance.
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let resp = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    contract.check("GET", "/readyz", &resp);
    app.finish().await;
}

/// Every problem `code` the server can send is in the contract's known codes, and the other
/// way round they hold no code the server never sends (except the documented `timeout`).
/// `Problem.code` itself is an open string (known codes, or any other), so that clients with
/// exhaustive switches keep working when a code is added.
#[test]
fn problem_codes_are_documented() {
    let contract = Contract::load();
    let code = &contract.doc["components"]["schemas"]["Problem"]["properties"]["code"];
    assert_eq!(
        code["anyOf"][0]["$ref"], "#/components/schemas/KnownProblemCode",
        "Problem.code: {code}"
    );
    assert_eq!(
        code["anyOf"][1]["type"], "string",
        "Problem.code is open: {code}"
    );
    let documented: BTreeSet<String> =
        contract.doc["components"]["schemas"]["KnownProblemCode"]["enum"]
            .as_array()
            .expect("code enum")
            .iter()
            .map(|c| c.as_str().expect("code").to_string())
            .collect();
    let errors_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md"))
        .expect("docs/errors.md");
    for code in &documented {
        assert!(
            errors_md.contains(&format!("`{code}`")),
            "docs/errors.md does not explain `{code}`"
        );
    }
    // The codes in the source: every `"…"` literal returned by `code()` in the error types.
    let mut sent = BTreeSet::new();
    for file in [
        "src/http/error.rs",
        "src/policy/request.rs",
        "src/auth/error.rs",
    ] {
        let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("read source");
        // `code()`, or the `(status, code)` table of `ApiError`: every literal there is a code.
        let bodies = source
            .split("fn code(&self) -> &'static str {")
            .skip(1)
            .chain(
                source
                    .split("fn status_and_code(&self) -> (StatusCode, &'static str) {")
                    .skip(1),
            );
        for body in bodies {
            let body = &body[..body.find("\n    }\n").expect("end of code()")];
            for piece in body.split('"').skip(1).step_by(2) {
                sent.insert(piece.to_string());
            }
        }
    }
    // Problems built outside `ApiError`: readiness and framework errors.
    sent.extend(["not_ready".to_string(), "timeout".to_string()]);
    assert_eq!(
        sent, documented,
        "codes the server sends (left) and the Problem.code enum (right) differ"
    );
}

/// Which fields each presign operation takes is in the contract (`PresignFieldsByOperation`):
/// a request the server refuses for carrying another operation's field, the schema refuses
/// too, and the same request without it both accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presign_fields_are_typed_per_operation() {
    let contract = Contract::load();
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    // Delete is a moderator's, with MFA (else the rules refuse first, 403).
    let moderator = app.token("mo", &["moderators"], true);
    let presign = "/v1/access-points/avatars/presign";
    for (op, foreign) in [
        ("get", json!({"content_length": 3})),
        ("get", json!({"metadata": {"a": "b"}})),
        ("get", json!({"key_starts_with": true})),
        ("put", json!({"response_content_type": "image/png"})),
        ("put", json!({"not_before": "2026-01-01T00:00:00Z"})),
        (
            "post",
            json!({"checksum_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}),
        ),
        ("delete", json!({"content_type": "image/png"})),
    ] {
        let mut body = json!({"operation": op, "key": "alice/a.png"});
        if op != "delete" && op != "get" {
            body["content_type"] = json!("image/png");
        }
        let plain = body.clone();
        for (k, v) in foreign.as_object().expect("fields") {
            body[k] = v.clone();
        }
        let schema = contract.schema("PresignRequest");
        assert!(
            !contract.admits(&schema, &body),
            "the contract refuses {body}"
        );
        let token = if op == "delete" { &moderator } else { &alice };
        let resp = call(&app, "POST", presign, Some(token), Some(body.clone())).await;
        assert_eq!(resp.status, 400, "the server refuses {body}: {}", resp.body);
        assert!(
            contract.admits(&schema, &plain),
            "the contract takes {plain}"
        );
        let mut item = plain.clone();
        item["access_point"] = json!("avatars");
        assert!(
            contract.admits(&contract.schema("BatchItem"), &item),
            "{item}"
        );
    }
    app.finish().await;
}

/// The multipart upload routes: each status the suite can provoke, against the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_responses_match_the_documented_schemas() {
    let contract = Contract::load();
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let create = "/v1/access-points/{name}/uploads";
    let parts = "/v1/access-points/{name}/uploads/{upload_id}/parts";
    let complete = "/v1/access-points/{name}/uploads/{upload_id}/complete";
    let abort = "/v1/access-points/{name}/uploads/{upload_id}";
    let body = json!({"key": "alice/notes.txt", "content_type": "text/plain",
                      "content_length": 100, "metadata": {"origin": "test"}});
    contract.validate(
        &contract.schema("CreateUploadRequest"),
        &body,
        "request body",
    );

    let cases: Vec<(&str, Option<&str>, Value, u16)> = vec![
        (
            "avatars",
            Some(&alice),
            json!({"key": "alice/x.txt", "content_type": "text/plain", "content_length": 6 << 20}),
            413,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"key": "alice/x.txt", "content_type": "text/plain", "content_length": 10, "part_size": 1}),
            400,
        ),
        (
            "avatars",
            Some(&alice),
            json!({"key": "bob/x.txt", "content_type": "text/plain", "content_length": 10}),
            403,
        ),
        (
            "avatars",
            None,
            json!({"key": "alice/x.txt", "content_length": 10}),
            401,
        ),
        (
            "nope",
            Some(&alice),
            json!({"key": "alice/x.txt", "content_length": 10}),
            404,
        ),
    ];
    for (name, token, req, expected) in cases {
        let resp = call(
            &app,
            "POST",
            &format!("/v1/access-points/{name}/uploads"),
            token,
            Some(req.clone()),
        )
        .await;
        assert_eq!(resp.status, expected, "{req}: {}", resp.body);
        contract.check("POST", create, &resp);
    }

    let resp = call(
        &app,
        "POST",
        "/v1/access-points/avatars/uploads",
        Some(&alice),
        Some(body),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    contract.check("POST", create, &resp);
    let id = resp.body["upload_id"]
        .as_str()
        .expect("upload_id")
        .to_string();
    let base = format!("/v1/access-points/avatars/uploads/{id}");

    let req = json!({"part_numbers": [1], "expires_in": 60});
    contract.validate(&contract.schema("PartsRequest"), &req, "request body");
    let resp = call(
        &app,
        "POST",
        &format!("{base}/parts"),
        Some(&alice),
        Some(req),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    contract.check("POST", parts, &resp);
    let part = resp.body["parts"][0].clone();
    for (token, req, expected) in [
        (&bob, json!({"part_numbers": [1]}), 404),
        (&alice, json!({"part_numbers": [2]}), 400),
    ] {
        let resp = call(
            &app,
            "POST",
            &format!("{base}/parts"),
            Some(token),
            Some(req),
        )
        .await;
        assert_eq!(resp.status, expected, "{}", resp.body);
        contract.check("POST", parts, &resp);
    }

    // Upload the one part, then complete.
    let put = app
        .http
        .put(part["url"].as_str().expect("url"))
        .body(vec![b'x'; 100])
        .send()
        .await
        .expect("PUT part");
    assert_eq!(put.status().as_u16(), 200);
    let etag = put.headers()["etag"].to_str().expect("etag").to_string();
    let resp = call(
        &app,
        "POST",
        &format!("{base}/complete"),
        Some(&bob),
        Some(json!({"parts": [{"part_number": 1, "etag": etag}]})),
    )
    .await;
    assert_eq!(resp.status, 404);
    contract.check("POST", complete, &resp);
    let resp = call(
        &app,
        "POST",
        &format!("{base}/complete"),
        Some(&alice),
        Some(json!({"parts": []})),
    )
    .await;
    assert_eq!(resp.status, 400);
    contract.check("POST", complete, &resp);
    let req = json!({"parts": [{"part_number": 1, "etag": etag}]});
    contract.validate(&contract.schema("CompleteRequest"), &req, "request body");
    let resp = call(
        &app,
        "POST",
        &format!("{base}/complete"),
        Some(&alice),
        Some(req),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    contract.check("POST", complete, &resp);

    // Abort: 404 once completed; 204 for an open upload.
    let resp = call(&app, "DELETE", &base, Some(&alice), None).await;
    assert_eq!(resp.status, 404);
    contract.check("DELETE", abort, &resp);
    let resp = call(
        &app,
        "POST",
        "/v1/access-points/avatars/uploads",
        Some(&alice),
        Some(json!({"key": "alice/b.txt", "content_type": "text/plain", "content_length": 5})),
    )
    .await;
    let id = resp.body["upload_id"].as_str().expect("upload_id");
    let resp = call(
        &app,
        "DELETE",
        &format!("/v1/access-points/avatars/uploads/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(resp.status, 204);
    assert!(contract.doc["paths"][abort]["delete"]["responses"]["204"].is_object());
    app.finish().await;
}

/// CloudFront delivery: a presign `get` (canned and custom policy) and the cookies route,
/// each status the suite can provoke, against the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_responses_match_the_documented_schemas() {
    let contract = Contract::load();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("cf.pem");
    std::fs::write(&key_file, common::cloudfront::p256_key().pem).expect("write key");
    let episodes = ap(json!({
        "name": "episodes", "bucket": common::app::BUCKET, "prefix": "video/",
        "delivery": {"cloudfront": {"domain": "d1.cloudfront.net", "path_prefix": "/video/",
                                     "key_pair_id": "K1", "cookie_domain": "cloudfront.net"}},
        "rules": [{"effect": "allow", "groups": ["premium"], "operations": ["get"], "keys": ["*"]},
                  {"effect": "deny", "groups": ["*"], "operations": ["get"], "keys": ["drafts/*"]}]
    }));
    contract.validate(
        &contract.schema("AccessPointSpec"),
        &serde_json::to_value(&episodes).expect("json"),
        "access point",
    );
    let mut opts = Options::new(Backend::Sqlite, vec![episodes, avatars()]);
    opts.config(move |c| {
        c.cloudfront.keys = vec![presignd::config::CloudFrontKeyConfig {
            key_pair_id: "K1".into(),
            private_key_file: key_file,
        }];
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["premium", "users"], false);
    let presign = "/v1/access-points/{name}/presign";
    for (body, status) in [
        (json!({"operation": "get", "key": "a.mp4"}), 200),
        (
            json!({"operation": "get", "key": "a.mp4", "bind_client_ip": true,
                "not_before": "2026-01-01T00:00:00Z"}),
            200,
        ),
        (json!({"operation": "get", "key": "drafts/a.mp4"}), 403),
        (
            json!({"operation": "get", "key": "a.mp4", "response_content_type": "video/mp4"}),
            400,
        ),
    ] {
        contract.validate(&contract.schema("PresignRequest"), &body, "request body");
        let resp = call(
            &app,
            "POST",
            "/v1/access-points/episodes/presign",
            Some(&alice),
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        contract.check("POST", presign, &resp);
    }
    let cookies = "/v1/access-points/{name}/cookies";
    for (ap, body, status) in [
        (
            "episodes",
            json!({"prefix": "show-1/", "expires_in": 60}),
            200,
        ),
        (
            "episodes",
            json!({"prefix": "show-1/", "bind_client_ip": true}),
            200,
        ),
        ("episodes", json!({"prefix": "drafts/"}), 403),
        ("episodes", json!({"prefix": "show-1"}), 400),
        ("avatars", json!({"prefix": "alice/"}), 400),
        ("nope", json!({"prefix": "a/"}), 404),
    ] {
        let resp = call(
            &app,
            "POST",
            &format!("/v1/access-points/{ap}/cookies"),
            Some(&alice),
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        contract.check("POST", cookies, &resp);
    }
    let resp = call(
        &app,
        "POST",
        "/v1/access-points/episodes/cookies",
        None,
        Some(json!({"prefix": "a/"})),
    )
    .await;
    assert_eq!(resp.status, 401);
    contract.check("POST", cookies, &resp);
    app.finish().await;
}

/// Download grants: create, redeem (302 without following it), revoke; each status the
/// suite can provoke, against the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_responses_match_the_documented_schemas() {
    let contract = Contract::load();
    let mut with_grants = avatars();
    with_grants.grants = Some(presignd::policy::GrantLimits {
        max_uses: 5,
        max_expires_in: 3600,
    });
    contract.validate(
        &contract.schema("AccessPointSpec"),
        &serde_json::to_value(&with_grants).expect("json"),
        "access point",
    );
    let mut opts = Options::new(Backend::Sqlite, vec![with_grants]);
    opts.config(|c| c.server.public_base_url = Some("https://links.example.com".into()));
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    let create = "/v1/access-points/{name}/grants";
    let mut link = String::new();
    let mut grant_id = String::new();
    for (ap, body, status) in [
        (
            "avatars",
            json!({"key": "alice/a.png", "max_uses": 1, "expires_in": 600}),
            201,
        ),
        ("avatars", json!({"key": "alice/a.png", "max_uses": 0}), 400),
        ("avatars", json!({"key": "bob/a.png"}), 403),
        ("nope", json!({"key": "a.png"}), 404),
    ] {
        if status != 400 {
            contract.validate(&contract.schema("GrantRequest"), &body, "request body");
        }
        let resp = call(
            &app,
            "POST",
            &format!("/v1/access-points/{ap}/grants"),
            Some(&alice),
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        contract.check("POST", create, &resp);
        if status == 201 {
            link = resp.body["url"]
                .as_str()
                .expect("url")
                .replace("https://links.example.com", &app.base);
            grant_id = resp.body["grant_id"].as_str().expect("id").to_string();
        }
    }
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (url, status) in [
        (link.clone(), 302),
        (link.clone(), 410),
        (format!("{}/g/{}", app.base, "x".repeat(43)), 404),
    ] {
        let resp = read(no_redirects.get(&url).send().await.expect("GET")).await;
        assert_eq!(resp.status, status, "{url}: {}", resp.body);
        if status == 302 {
            // No content: only the documented headers.
            let doc = &contract.doc["paths"]["/g/{token}"]["get"]["responses"]["302"];
            assert!(doc["content"].is_null() && resp.headers.contains_key("location"));
        } else {
            contract.check("GET", "/g/{token}", &resp);
        }
    }
    let revoke = "/v1/grants/{grant_id}";
    let resp = call(
        &app,
        "DELETE",
        &format!("/v1/grants/{grant_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(resp.status, 204);
    let resp = call(&app, "DELETE", "/v1/grants/unknown", Some(&alice), None).await;
    assert_eq!(resp.status, 404);
    contract.check("DELETE", revoke, &resp);
    app.finish().await;
}
