//! The admin API on one instance, on SQLite and PostgreSQL: who may use it, optimistic
//! concurrency (ETag / If-Match → 412), validation naming the field, MFA for MFA-sensitive
//! changes, an audit record per change, and revocations refusing tokens at once.

mod common;

use common::app::{BUCKET, Backend, Options, TestApp, avatars, decode};
use serde_json::{Value, json};

const ADMIN_GROUP: &str = "presignd-admins";

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    token: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let headers = resp.headers().clone();
    let (status, body) = decode(resp).await;
    (status, body, headers)
}

fn etag(h: &reqwest::header::HeaderMap) -> String {
    h.get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_string()
}

/// The version part of an ETag `"<version>-<incarnation>"`.
fn version(h: &reqwest::header::HeaderMap) -> String {
    let tag = etag(h);
    let (version, incarnation) = tag
        .trim_matches('"')
        .split_once('-')
        .expect("ETag is \"<version>-<incarnation>\"");
    assert_eq!(incarnation.len(), 16, "{tag}");
    version.to_string()
}

fn docs(max_expires_in: u32) -> Value {
    json!({
        "name": "docs",
        "bucket": BUCKET,
        "prefix": "docs/",
        "max_expires_in": max_expires_in,
        "rules": [{"effect": "allow", "groups": ["staff"], "operations": ["get", "put"]}]
    })
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn authorization(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let user = app.token("mallory", &["users"], true);
    use reqwest::Method;
    for (method, path, body) in [
        (Method::GET, "/v1/admin/access-points", None),
        (Method::GET, "/v1/admin/access-points/avatars", None),
        (
            Method::PUT,
            "/v1/admin/access-points/docs",
            Some(docs(3600)),
        ),
        (Method::DELETE, "/v1/admin/access-points/avatars", None),
        (Method::GET, "/v1/admin/revocations", None),
        (
            Method::POST,
            "/v1/admin/revocations",
            Some(json!({"sub": "alice"})),
        ),
    ] {
        let (status, problem, _) =
            send(&app, method.clone(), Some(&user), path, &[], body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path} is invisible to non-admins: {problem}"
        );
        let (status, _, headers) = send(&app, method.clone(), None, path, &[], body).await;
        assert_eq!(status, 401, "{method} {path} without a token");
        assert!(headers.contains_key("www-authenticate"));
    }
    // Nothing changed.
    let (status, _) = app
        .presign(
            &app.token("alice", &["users"], false),
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(status, 200);
    app.finish().await;
}
on_both_backends!(non_admins_get_404_and_anonymous_callers_401, authorization);

async fn lifecycle(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let staff = app.token("sam", &["staff"], false);
    use reqwest::Method;

    // Create: 201, ETag "1", served at once by this instance.
    let (status, created, h) = send(
        &app,
        Method::PUT,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-none-match", "*")],
        Some(docs(3600)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(version(&h), "1");
    let v1 = etag(&h);
    assert_eq!(created["name"], "docs");
    let (status, issued) = app
        .presign(&staff, "docs", json!({"operation": "get", "key": "a.txt"}))
        .await;
    assert_eq!(status, 200, "served right after the PUT: {issued}");

    // Create again with If-None-Match: * → 412.
    let (status, problem, _) = send(
        &app,
        Method::PUT,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-none-match", "*")],
        Some(docs(3600)),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (412, Some("precondition_failed"))
    );

    // GET returns the document and its version.
    let (status, got, h) = send(
        &app,
        Method::GET,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(etag(&h), v1);
    assert_eq!(got["max_expires_in"], 3600);

    // Update with the current ETag (name may be left out of the body).
    let mut body = docs(7200);
    body.as_object_mut().expect("object").remove("name");
    let (status, _, h) = send(
        &app,
        Method::PUT,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-match", &v1)],
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(version(&h), "2");
    let v2 = etag(&h);
    let (status, _) = app
        .presign(
            &staff,
            "docs",
            json!({"operation": "get", "key": "a.txt", "expires_in": 7000}),
        )
        .await;
    assert_eq!(status, 200, "the new maximum applies at once");

    // A writer still holding version 1 is refused, and nothing changes.
    let (status, problem, _) = send(
        &app,
        Method::PUT,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-match", &v1)],
        Some(docs(60)),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (412, Some("precondition_failed")),
        "{problem}"
    );
    let (_, got, h) = send(
        &app,
        Method::GET,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[],
        None,
    )
    .await;
    assert_eq!(
        (etag(&h), got["max_expires_in"].as_u64()),
        (v2.clone(), Some(7200))
    );

    // An identical PUT is not a change: same version.
    let (status, _, h) = send(
        &app,
        Method::PUT,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[],
        Some(docs(7200)),
    )
    .await;
    assert_eq!((status, etag(&h)), (200, v2.clone()));

    // The list shows both, with versions.
    let (status, list, _) = send(
        &app,
        Method::GET,
        Some(&admin),
        "/v1/admin/access-points",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<(&str, i64, bool)> = list["access_points"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or(""),
                a["version"].as_i64().unwrap_or(0),
                a["served"] == true,
            )
        })
        .collect();
    assert_eq!(names, [("avatars", 1, true), ("docs", 2, true)]);

    // Delete: stale If-Match refused, current accepted; then it is gone everywhere.
    let (status, _, _) = send(
        &app,
        Method::DELETE,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-match", &v1)],
        None,
    )
    .await;
    assert_eq!(status, 412);
    let (status, _, _) = send(
        &app,
        Method::DELETE,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[("if-match", &v2)],
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .presign(&staff, "docs", json!({"operation": "get", "key": "a.txt"}))
        .await;
    assert_eq!(status, 404, "no longer served");
    let (status, _, _) = send(
        &app,
        Method::GET,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = send(
        &app,
        Method::DELETE,
        Some(&admin),
        "/v1/admin/access-points/docs",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Every change is an audit record: who, what, before/after.
    let records = app.audit_records();
    let admin_records: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["operation"]
                .as_str()
                .is_some_and(|o| o.starts_with("admin."))
        })
        .collect();
    let summary: Vec<(&str, &str, &str)> = admin_records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
                r["subject"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("admin.put_access_point", "allow", "root"),
            ("admin.put_access_point", "allow", "root"),
            ("admin.delete_access_point", "allow", "root"),
        ],
        "one record per change, none for refused or no-op requests: {admin_records:#?}"
    );
    let reasons: Vec<&str> = admin_records
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons[0].starts_with("access_point created (v1)"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("(v1 -> v2)") && reasons[1].contains("max_expires_in: 3600 -> 7200"),
        "before/after: {}",
        reasons[1]
    );
    assert!(
        reasons[2].starts_with("access_point deleted (was v2)"),
        "{}",
        reasons[2]
    );
    assert!(admin_records.iter().all(|r| r["access_point"] == "docs"));
    app.finish().await;
}
on_both_backends!(create_update_delete_with_etags_and_audit, lifecycle);

/// Finding 4 of the hardening review (ETag ABA): versions restart at 1 after delete and
/// re-create, so an `If-Match` held from the deleted access point used to match the new one.
async fn etags_never_repeat(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let path = "/v1/admin/access-points/docs";
    let (status, _, h) = send(&app, Method::PUT, Some(&admin), path, &[], Some(docs(3600))).await;
    assert_eq!(status, 201);
    let stale = etag(&h);
    let (status, _, _) = send(
        &app,
        Method::DELETE,
        Some(&admin),
        path,
        &[("if-match", &stale)],
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, h) = send(&app, Method::PUT, Some(&admin), path, &[], Some(docs(600))).await;
    assert_eq!((status, version(&h)), (201, "1".into()));
    assert_ne!(etag(&h), stale, "a new incarnation, a new tag");
    for method in [Method::PUT, Method::DELETE] {
        let (status, problem, _) = send(
            &app,
            method.clone(),
            Some(&admin),
            path,
            &[("if-match", &stale)],
            (method == Method::PUT).then(|| docs(7)),
        )
        .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (412, Some("precondition_failed")),
            "{method}: {problem}"
        );
    }
    let (_, got, _) = send(&app, Method::GET, Some(&admin), path, &[], None).await;
    assert_eq!(got["max_expires_in"], 600, "nothing changed");
    app.finish().await;
}
on_both_backends!(
    etags_never_repeat_across_delete_and_recreate,
    etags_never_repeat
);

async fn validation(backend: Backend) {
    let log_bucket = "audit-logs";
    let mut opts = Options::new(backend, vec![avatars()]);
    let sink = format!("s3://{log_bucket}/presignd/");
    opts.config(|c| c.audit.sink = sink);
    let app = TestApp::spawn_with(opts).await;
    app.s3.create_bucket(log_bucket).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let put = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            send(
                app,
                reqwest::Method::PUT,
                Some(&admin),
                "/v1/admin/access-points/bad",
                &[],
                Some(body),
            )
            .await
        }
    };
    let base = || {
        json!({"name": "bad", "bucket": BUCKET, "prefix": "p/",
               "rules": [{"effect": "allow", "groups": ["g"], "operations": ["get"]}]})
    };
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    for (body, field) in [
        (
            with("bucket", json!("arn:aws:s3:us-east-1:12345:accesspoint/x")),
            "bucket",
        ),
        (with("prefix", json!("a/../b/")), "prefix"),
        (with("max_expires_in", json!(604_801)), "max_expires_in"),
        (with("encryption", json!({"mode": "sse-kms"})), "encryption"),
        (
            with("encryption", json!({"mode": "sse-kms", "kms_key_id": ""})),
            "encryption.kms_key_id",
        ),
        (with("bucket", json!(log_bucket)), "bucket"),
        (with("name", json!("other")), "name"),
        (
            with("limits", json!({"per_second": 10, "burst": 0})),
            "limits.burst",
        ),
        (
            with("limits", json!({"sse_kms_per_second": 10})),
            "limits.sse_kms_per_second",
        ),
        (
            with(
                "rules",
                json!([{"effect": "allow", "groups": ["g"], "operations": ["delete"]}]),
            ),
            "rules[0].operations[0]",
        ),
    ] {
        let (status, problem, _) = put(body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {problem}"
        );
        assert!(
            fields(&problem).iter().any(|f| f == field),
            "{body}: expected field {field} in {problem}"
        );
    }
    // Several problems at once, each named.
    let mut many = with("max_expires_in", json!(604_801));
    many["prefix"] = json!("/abs/");
    let (status, problem, _) = put(many).await;
    assert_eq!(status, 400);
    let f = fields(&problem);
    assert!(
        f.contains(&"prefix".to_string()) && f.contains(&"max_expires_in".to_string()),
        "{problem}"
    );
    // Not JSON at all, or not an object.
    let (status, problem, _) = put(json!([1, 2])).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // Nothing was created.
    let (status, _, _) = send(
        &app,
        reqwest::Method::GET,
        Some(&admin),
        "/v1/admin/access-points/bad",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
    app.finish().await;
}
on_both_backends!(
    invalid_access_points_are_refused_naming_the_field,
    validation
);

async fn mfa(backend: Backend) {
    let app = TestApp::spawn(backend, vec![]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let admin_mfa = app.token("root", &[ADMIN_GROUP], true);
    let read = json!({"effect": "allow", "groups": ["g"], "operations": ["get"]});
    let delete =
        json!({"effect": "allow", "groups": ["m"], "operations": ["delete"], "require_mfa": true});
    let spec = |rules: Value| json!({"name": "vault", "bucket": BUCKET, "rules": rules});
    let put = |token: String, body: Value| {
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::PUT,
                Some(&token),
                "/v1/admin/access-points/vault",
                &[],
                Some(body),
            )
            .await
        }
    };
    let (status, _, _) = put(admin.clone(), spec(json!([read]))).await;
    assert_eq!(status, 201);
    // Enabling delete needs a second factor.
    let (status, problem, _) = put(admin.clone(), spec(json!([read, delete]))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("mfa_required")),
        "{problem}"
    );
    let (status, _, h) = put(admin_mfa.clone(), spec(json!([read, delete]))).await;
    assert_eq!((status, version(&h)), (200, "2".into()));
    // So does dropping it (removing a rule with require_mfa).
    let (status, problem, _) = put(admin.clone(), spec(json!([read]))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("mfa_required"))
    );
    // Other changes do not.
    let other = json!({"effect": "allow", "groups": ["h"], "operations": ["put"]});
    let (status, _, _) = put(admin.clone(), spec(json!([read, delete, other]))).await;
    assert_eq!(status, 200);
    let (status, _, _) = put(admin_mfa, spec(json!([read]))).await;
    assert_eq!(status, 200);
    // The refusals are in the audit trail too.
    let refused: Vec<Value> = app
        .audit_records()
        .into_iter()
        .filter(|r| r["operation"] == "admin.put_access_point" && r["decision"] == "deny")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused.iter().all(|r| {
        r["reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("mfa_required"))
    }));
    app.finish().await;
}
on_both_backends!(enabling_delete_or_dropping_mfa_needs_an_mfa_token, mfa);

/// Finding 3 of the hardening review: removing `require_mfa` needed MFA, but deleting the
/// access point (and re-creating it without the rule) or moving its prefix or bucket did not
/// (a moderator deleted `reports/q3.pdf` through `avatars` after its prefix was set to `""`).
async fn mfa_moves(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let admin_mfa = app.token("root", &[ADMIN_GROUP], true);
    let path = "/v1/admin/access-points/avatars";
    let (_, current, _) = send(&app, Method::GET, Some(&admin), path, &[], None).await;
    let with = |field: &str, value: Value| {
        let mut doc = current.clone();
        doc[field] = value;
        doc
    };
    for (what, doc) in [
        ("prefix", with("prefix", json!(""))),
        ("bucket", with("bucket", json!("other-bucket"))),
    ] {
        let (status, problem, _) =
            send(&app, Method::PUT, Some(&admin), path, &[], Some(doc)).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("mfa_required")),
            "{what}: {problem}"
        );
    }
    let (status, problem, _) = send(&app, Method::DELETE, Some(&admin), path, &[], None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("mfa_required")),
        "delete: {problem}"
    );
    // Nothing moved: a moderator's delete URL still stays inside avatars/.
    let moderator = app.token("mod", &["moderators"], true);
    let (status, issued) = app
        .presign(
            &moderator,
            "avatars",
            json!({"operation": "delete", "key": "x.png"}),
        )
        .await;
    assert_eq!(
        (status, issued["key"].as_str()),
        (200, Some("avatars/x.png"))
    );
    // With a second factor both are allowed.
    let (status, _, _) = send(
        &app,
        Method::PUT,
        Some(&admin_mfa),
        path,
        &[],
        Some(with("prefix", json!("pics/"))),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = send(&app, Method::DELETE, Some(&admin_mfa), path, &[], None).await;
    assert_eq!(status, 204);
    let refused: Vec<String> = app
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["decision"] == "deny"
                && r["operation"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("admin."))
        })
        .map(|r| {
            format!(
                "{} {}",
                r["operation"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            "admin.put_access_point mfa_required: the change moves rules with require_mfa to another bucket or prefix",
            "admin.put_access_point mfa_required: the change moves rules with require_mfa to another bucket or prefix",
            "admin.delete_access_point mfa_required: the change deletes an access point with require_mfa rules",
        ]
    );
    app.finish().await;
}
on_both_backends!(
    deleting_or_moving_mfa_protected_rules_needs_an_mfa_token,
    mfa_moves
);

/// The second review of the MFA guard: an allow rule added beside an MFA-demanding one, or a
/// new access point over the same keys, widened access without a second factor.
async fn mfa_around(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::spawn(backend, vec![]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let admin_mfa = app.token("root", &[ADMIN_GROUP], true);
    let mfa_get =
        json!({"effect": "allow", "groups": ["hr"], "operations": ["get"], "require_mfa": true});
    let plain_get = json!({"effect": "allow", "groups": ["everyone"], "operations": ["get"]});
    let hr =
        |rules: Value| json!({"name": "hr", "bucket": BUCKET, "prefix": "hr/", "rules": rules});
    let path = "/v1/admin/access-points/hr";
    let (status, _, _) = send(
        &app,
        Method::PUT,
        Some(&admin_mfa),
        path,
        &[],
        Some(hr(json!([mfa_get]))),
    )
    .await;
    assert_eq!(status, 201);
    let beside = hr(json!([mfa_get, plain_get]));
    let (status, problem, _) = send(
        &app,
        Method::PUT,
        Some(&admin),
        path,
        &[],
        Some(beside.clone()),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("mfa_required")),
        "{problem}"
    );
    let mirror = |prefix: &str| json!({"name": "hr-mirror", "bucket": BUCKET, "prefix": prefix, "rules": [plain_get]});
    let mirror_path = "/v1/admin/access-points/hr-mirror";
    let (status, problem, _) = send(
        &app,
        Method::PUT,
        Some(&admin),
        mirror_path,
        &[],
        Some(mirror("hr/2026/")),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("mfa_required")),
        "{problem}"
    );
    // Elsewhere in the bucket it is an ordinary change; with MFA, both are allowed.
    let (status, _, _) = send(
        &app,
        Method::PUT,
        Some(&admin),
        mirror_path,
        &[],
        Some(mirror("public/")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, _) = send(&app, Method::PUT, Some(&admin_mfa), path, &[], Some(beside)).await;
    assert_eq!(status, 200);
    let reasons: Vec<String> = app
        .audit_records()
        .into_iter()
        .filter(|r| r["decision"] == "deny")
        .filter_map(|r| r["reason"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        reasons,
        [
            "mfa_required: the change adds an allow rule beside a rule with require_mfa",
            "mfa_required: the change reaches keys of access point \"hr\", which has require_mfa rules",
        ]
    );
    app.finish().await;
}
on_both_backends!(
    granting_beside_or_around_mfa_protected_rules_needs_an_mfa_token,
    mfa_around
);

async fn revocations(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let get = |token: String, who: &'static str| {
        let app = &app;
        async move {
            app.presign(
                &token,
                "avatars",
                json!({"operation": "get", "key": format!("{who}/a.png")}),
            )
            .await
            .0
        }
    };
    assert_eq!(get(alice.clone(), "alice").await, 200);

    let (status, created) = app
        .post(&admin, "/v1/admin/revocations", json!({"sub": "alice"}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "subject");
    assert_eq!(created["sub"], "alice");
    assert!(created["iss"].is_null(), "any issuer");
    assert_eq!(created["created_by"], "root");
    // Refused at once on this instance, with a clear 401.
    let (status, problem) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{problem}"
    );
    assert_eq!(
        get(bob.clone(), "bob").await,
        200,
        "other subjects are unaffected"
    );

    // By jti: one token only.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |jti: &str| {
        json!({"iss": common::app::ISSUER, "aud": common::app::AUDIENCE, "sub": "bob",
               "groups": ["users"], "iat": now, "exp": now + 600, "jti": jti})
    };
    let sign = |c: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(common::app::HS_SECRET.as_bytes()),
        )
        .expect("sign")
    };
    let (stolen, other) = (sign(claims("stolen-1")), sign(claims("other-1")));
    assert_eq!(get(stolen.clone(), "bob").await, 200);
    let (status, created) = app
        .post(
            &admin,
            "/v1/admin/revocations",
            json!({"jti": "stolen-1", "iss": common::app::ISSUER}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "token");
    assert_eq!(get(stolen, "bob").await, 401);
    assert_eq!(get(other, "bob").await, 200);

    // Invalid requests name the field.
    for (body, field) in [
        (json!({}), "sub"),
        (json!({"sub": "a", "jti": "b"}), "jti"),
        (
            json!({"sub": "a", "iss": "https://unknown.example/"}),
            "iss",
        ),
        (json!({"sub": "a", "not_before": "yesterday"}), "not_before"),
        (json!({"sub": "a", "surprise": 1}), ""),
    ] {
        let (status, problem) = app
            .post(&admin, "/v1/admin/revocations", body.clone())
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
        if !field.is_empty() {
            assert!(
                fields(&problem).iter().any(|f| f == field),
                "{body}: {problem}"
            );
        }
    }

    // The list shows the live entries; the audit trail has both changes.
    let (status, list) = app.get(Some(&admin), "/v1/admin/revocations").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["revocations"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    let revokes: Vec<String> = app
        .audit_records()
        .into_iter()
        .filter(|r| r["operation"] == "admin.revoke")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(revokes.len(), 2, "{revokes:?}");
    assert!(revokes[0].contains("subject \"alice\""), "{}", revokes[0]);
    assert!(revokes[1].contains("jti \"stolen-1\""), "{}", revokes[1]);
    app.finish().await;
}
on_both_backends!(revocations_refuse_tokens_at_once, revocations);

async fn lifetime(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    // Default auth.max_token_lifetime_seconds: one day.
    let long = common::app::mint_hs256("alice", &["users"], false, 2 * 86_400);
    let (status, problem) = app
        .presign(
            &long,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthenticated")),
        "{problem}"
    );
    app.finish().await;
}
on_both_backends!(tokens_outliving_revocations_are_refused, lifetime);

/// Finding 5 of the hardening review: `iat` was never validated and `exp - iat` was computed
/// unchecked. A token with `exp = now + 10y, iat = exp - 60` passed the lifetime bound and
/// outlived a subject revocation; `exp = 2^64 - 1, iat = -1` wrapped and was accepted.
async fn iat_games(backend: Backend) {
    let app = TestApp::spawn(backend, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mint = |iat: Value, exp: Value| {
        common::jwt::hs256(
            common::app::HS_SECRET.as_bytes(),
            &json!({"iss": common::app::ISSUER, "aud": common::app::AUDIENCE, "sub": "alice",
                "groups": ["users"], "iat": iat, "exp": exp}),
        )
    };
    let ten_years = now + 10 * 365 * 86_400;
    let future = mint(json!(ten_years - 60), json!(ten_years));
    let wrapped = mint(json!(-1), json!(u64::MAX));
    let not_a_number = mint(json!("yesterday"), json!(now + 60));
    let get = json!({"operation": "get", "key": "alice/a.png"});
    for (name, token) in [
        ("iat ten years ahead", &future),
        ("exp 2^64-1, iat -1", &wrapped),
        ("iat a string", &not_a_number),
    ] {
        let (status, problem) = app.presign(token, "avatars", get.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthenticated")),
            "{name}: {problem}"
        );
    }
    // A subject revocation covers every token of that subject presented after it: the
    // future-dated token stays refused, and so does an ordinary one issued before the cut.
    let ordinary = app.token("alice", &["users"], false);
    let (status, _) = app.presign(&ordinary, "avatars", get.clone()).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(&admin, "/v1/admin/revocations", json!({"sub": "alice"}))
        .await;
    assert_eq!(status, 201, "{body}");
    for token in [&ordinary, &future] {
        let (status, problem) = app.presign(token, "avatars", get.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthenticated"))
        );
    }
    app.finish().await;
}
on_both_backends!(
    iat_in_the_future_or_wrapping_lifetimes_are_refused,
    iat_games
);

/// Validates `instance` against `#/components/schemas/{schema}` of openapi/openapi.yaml.
fn matches_contract(schema: &str, instance: &Value) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml"))
            .expect("read openapi.yaml");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML");
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": format!("#/components/schemas/{schema}"),
    });
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema}: {errors:#?}\n{instance:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_responses_match_the_contract() {
    let mut kms = docs(3600);
    kms["name"] = json!("kms");
    kms["encryption"] = json!({"mode": "sse-kms", "kms_key_id": "alias/k"});
    kms["limits"] = json!({"per_second": 5, "sse_kms_per_second": 2});
    kms["upload"] = json!({"max_content_length": 10, "content_types": ["text/*"]});
    kms["network"] = json!({"allowed_cidrs": ["10.0.0.0/8"]});
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars(), common::app::ap(kms)]).await;
    let admin = app.token("root", &[ADMIN_GROUP], true);
    use reqwest::Method;
    let (status, list, _) = send(
        &app,
        Method::GET,
        Some(&admin),
        "/v1/admin/access-points",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    matches_contract("AdminAccessPointList", &list);
    for name in ["avatars", "kms"] {
        let (status, one, h) = send(
            &app,
            Method::GET,
            Some(&admin),
            &format!("/v1/admin/access-points/{name}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, 200);
        matches_contract("AccessPointSpec", &one);
        let v1 = etag(&h);
        assert_eq!(version(&h), "1");
        // What GET returns, PUT takes back unchanged.
        let (status, _, h) = send(
            &app,
            Method::PUT,
            Some(&admin),
            &format!("/v1/admin/access-points/{name}"),
            &[("if-match", &v1)],
            Some(one),
        )
        .await;
        assert_eq!((status, etag(&h)), (200, v1));
    }
    let (status, revoked) = app
        .post(&admin, "/v1/admin/revocations", json!({"sub": "x"}))
        .await;
    assert_eq!(status, 201);
    matches_contract("Revocation", &revoked);
    let (status, revoked) = app
        .post(
            &admin,
            "/v1/admin/revocations",
            json!({"jti": "j", "expires_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    matches_contract("Revocation", &revoked);
    let (_, list) = app.get(Some(&admin), "/v1/admin/revocations").await;
    matches_contract("RevocationList", &list);
    for (status, problem, _) in [
        send(
            &app,
            Method::PUT,
            Some(&admin),
            "/v1/admin/access-points/kms",
            &[("if-match", "\"7\"")],
            Some(docs(60)),
        )
        .await,
        send(
            &app,
            Method::PUT,
            Some(&admin),
            "/v1/admin/access-points/x",
            &[],
            Some(json!({"bucket": "B", "rules": []})),
        )
        .await,
    ] {
        assert!(status == 412 || status == 400);
        matches_contract("Problem", &problem);
    }
    app.finish().await;
}
