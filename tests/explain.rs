//! `POST /v1/admin/explain` and the library function behind `presignd explain`, against the
//! real request path: the same decision and code on the policy property tests' cases; admin
//! only; audited; never signs; never charges a rate limit.

mod common;

use std::sync::Arc;

use common::app::{BUCKET, Options, TestApp, avatars, mint_hs256};
use common::policy_gen::{KEYS, OLAP, access_point_strategy, principal_strategy};
use presignd::explain::{self, Question};
use presignd::http::error::ApiError;
use presignd::policy::{CompiledAccessPoint, PresignOperation, PresignRequest};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};

const ADMIN_GROUP: &str = "presignd-admins";

async fn explain_call(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/admin/explain", app.base))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    common::app::decode(req.send().await.expect("request")).await
}

/// (status, code) of a real presign request, or of an explanation.
fn answer(status: u16, body: &Value) -> (u16, Option<String>) {
    let code = body["code"].as_str().map(str::to_string);
    (status, if status == 200 { None } else { code })
}

#[derive(Debug, Clone)]
struct Case {
    spec: presignd::policy::AccessPointSpec,
    sub: &'static str,
    groups: Vec<String>,
    mfa: bool,
    op: PresignOperation,
    key: &'static str,
    starts_with: bool,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        access_point_strategy(),
        principal_strategy(),
        select(
            &[
                PresignOperation::Get,
                PresignOperation::Put,
                PresignOperation::Delete,
                PresignOperation::Post,
            ][..],
        ),
        select(KEYS),
        any::<bool>(),
    )
        .prop_map(|(mut spec, p, op, key, starts_with)| {
            if spec.bucket != OLAP {
                spec.bucket = BUCKET.into();
            }
            Case {
                spec,
                sub: common::policy_gen::SUBS
                    .iter()
                    .find(|s| **s == p.sub)
                    .copied()
                    .unwrap_or("alice"),
                groups: p.groups,
                mfa: p.mfa,
                op,
                key,
                starts_with: starts_with && op == PresignOperation::Post,
            }
        })
}

/// Done-means 1 of issue 21: on the policy property tests' cases, the real presign request,
/// the endpoint (with the same real token, and with simulated claims) and the library
/// function `presignd explain` runs give the same status and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_real_request_path() {
    let mut opts = Options::new(common::app::Backend::Sqlite, vec![]);
    opts.config(|c| {
        // No rate limit may answer for the rules.
        c.limits.per_subject_per_minute = 0;
        c.limits.refusals_per_minute = 0;
    });
    let app = Arc::new(TestApp::spawn_with(opts).await);
    let admin = app.token("root", &[ADMIN_GROUP], true);
    let cases: u32 = std::env::var("EXPLAIN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
    let handle = tokio::runtime::Handle::current();
    let (app2, admin2) = (Arc::clone(&app), admin.clone());
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let seen2 = Arc::clone(&seen);
    let result = tokio::task::spawn_blocking(move || {
        runner
            .run(&case_strategy(), |case| {
                let real = handle.block_on(check_case(&app2, &admin2, case))?;
                if let Ok(mut seen) = seen2.lock() {
                    *seen.entry(real).or_insert(0u32) += 1;
                }
                Ok(())
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("proptest runner");
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases reached every kind of answer, not one.
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    eprintln!("answers compared: {seen:?}");
    for wanted in [
        (200, None),
        (403, Some("forbidden".to_string())),
        (404, Some("not_found".to_string())),
    ] {
        assert!(
            seen.contains_key(&wanted),
            "{wanted:?} never came up: {seen:?}"
        );
    }
    match Arc::try_unwrap(app) {
        Ok(app) => app.finish().await,
        Err(_) => panic!("the app is still shared"),
    }
}

/// Compares the four answers of one case; the real one when they agree.
async fn check_case(
    app: &TestApp,
    admin: &str,
    case: Case,
) -> Result<(u16, Option<String>), TestCaseError> {
    let groups: Vec<&str> = case.groups.iter().map(String::as_str).collect();
    // The access point, stored as an admin would (an OLAP target this S3 setup cannot sign
    // for is refused: nothing to compare then).
    let put = app
        .http
        .put(format!("{}/v1/admin/access-points/ap", app.base))
        .bearer_auth(admin)
        .json(&case.spec)
        .send()
        .await
        .expect("request");
    let stored = put.status().as_u16();
    prop_assume!(stored == 200 || stored == 201, "not stored: {}", stored);

    let mut request = json!({"operation": case.op.as_str(), "key": case.key});
    if case.starts_with {
        request["key_starts_with"] = json!(true);
    }
    let token = mint_hs256(case.sub, &groups, case.mfa, 600);
    let (status, body) = app.presign(&token, "ap", request.clone()).await;
    let real = answer(status, &body);

    let (status, explained) = explain_call(
        app,
        Some(admin),
        json!({"principal": {"token": token}, "access_point": "ap", "request": request}),
    )
    .await;
    prop_assert_eq!(status, 200, "{}", explained);
    let with_token = (
        explained["status"].as_u64().unwrap_or(0) as u16,
        explained["code"].as_str().map(str::to_string),
    );
    prop_assert_eq!(&with_token, &real, "token: {}", explained);
    prop_assert_eq!(explained["simulated"].as_bool(), Some(false));

    let simulated = json!({"sub": case.sub, "groups": case.groups, "mfa": case.mfa});
    let (_, explained) = explain_call(
        app,
        Some(admin),
        json!({"principal": simulated, "access_point": "ap", "request": request}),
    )
    .await;
    let with_claims = (
        explained["status"].as_u64().unwrap_or(0) as u16,
        explained["code"].as_str().map(str::to_string),
    );
    prop_assert_eq!(&with_claims, &real, "claims: {}", explained);
    prop_assert_eq!(explained["simulated"].as_bool(), Some(true));
    prop_assert!(explained.get("url").is_none());

    // The library function the CLI calls.
    let config = app.state.config();
    let ap = CompiledAccessPoint::compile(case.spec.clone()).expect("stored, so valid");
    let principal = presignd::Principal {
        sub: case.sub.into(),
        iss: common::app::ISSUER.into(),
        groups: case.groups.clone(),
        mfa: case.mfa,
        issued_at: None,
        expires_at: 0,
        jti: None,
    };
    let mut req = PresignRequest::new(case.op, case.key);
    req.key_starts_with = case.starts_with.then_some(true);
    let offline = explain::explain(&Question {
        principal: Ok(&principal),
        access_point: Some(&ap),
        request: &req,
        client_ip: None,
        tls: true,
        require_https: config.server.require_https,
        limits: &config.limits,
        url_https: explain::url_https(config),
        insecure_allowed: config.s3.allow_insecure_endpoint,
    });
    let offline = match offline.outcome {
        Ok(()) => (200, None),
        Err(stop) => {
            let e = ApiError::from(stop);
            (e.problem().status, Some(e.code().to_string()))
        }
    };
    prop_assert_eq!(&offline, &real, "library");
    Ok(real)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_is_admin_only_audited_never_signs_and_charges_nothing() {
    let mut opts = Options::new(common::app::Backend::Sqlite, vec![avatars()]);
    opts.config(|c| {
        c.limits.per_subject_per_minute = 1;
        c.limits.per_subject_burst = 1;
    });
    let app = TestApp::spawn_with(opts).await;
    let body = json!({
        "principal": {"sub": "alice", "groups": ["users"]},
        "access_point": "avatars",
        "request": {"operation": "get", "key": "alice/a.png"}
    });
    // Not probing for anyone else: 401 without a token, 404 for a non-admin.
    let (status, _) = explain_call(&app, None, body.clone()).await;
    assert_eq!(status, 401);
    let alice = app.token("alice", &["users"], false);
    let (status, problem) = explain_call(&app, Some(&alice), body.clone()).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    let records_before = app.audit_records().len();

    let admin = app.token("root", &[ADMIN_GROUP], false);
    for _ in 0..3 {
        let (status, explained) = explain_call(&app, Some(&admin), body.clone()).await;
        assert_eq!(status, 200, "{explained}");
        assert_eq!(explained["decision"], "allow");
        assert_eq!(explained["key"], "avatars/alice/a.png");
        assert_eq!(explained["decided_by"], 0);
        assert!(explained.get("url").is_none(), "never signs: {explained}");
        let steps: Vec<(&str, &str)> = explained["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["check"].as_str().unwrap_or(""),
                    s["outcome"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("transport", "pass"),
                ("principal", "pass"),
                ("access_point", "pass"),
                ("network", "pass"),
                ("key", "pass"),
                ("rules", "pass"),
                ("request", "pass"),
                ("url", "pass")
            ]
        );
        assert_eq!(explained["rules"].as_array().map(Vec::len), Some(4));
        assert_eq!(explained["limits"][0]["scope"], "subject");
    }
    // Three explanations charged nothing: alice's one-request burst is still there.
    let (status, _) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/a.png"}),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate_limited"))
    );

    // Audited: who explained what, and no signature.
    let records = app.audit_records();
    let explains: Vec<&Value> = records[records_before..]
        .iter()
        .filter(|r| r["operation"] == "explain")
        .collect();
    assert_eq!(explains.len(), 3, "{records:#?}");
    assert_eq!(explains[0]["subject"], "root");
    assert_eq!(explains[0]["key"], "avatars/alice/a.png");
    assert!(explains[0]["signature_sha256"].is_null());
    assert_eq!(
        explains[0]["reason"],
        format!(
            "explained: \"alice\" of {} (simulated) get \"alice/a.png\" -> allow (rule 0)",
            common::app::ISSUER
        )
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_traces_denials_tokens_and_changes_before_they_are_applied() {
    let app = TestApp::spawn(common::app::Backend::Sqlite, vec![avatars()]).await;
    let admin = app.token("root", &[ADMIN_GROUP], false);
    // A suspended user: rule 3 decides; each rule's conditions are shown.
    let (_, explained) = explain_call(
        &app,
        Some(&admin),
        json!({
            "principal": {"sub": "alice", "groups": ["users", "suspended"]},
            "access_point": "avatars",
            "request": {"operation": "put", "key": "alice/a.png", "content_type": "image/png", "content_length": 10}
        }),
    )
    .await;
    assert_eq!(
        (
            explained["decision"].as_str(),
            explained["status"].as_u64(),
            explained["code"].as_str(),
            explained["decided_by"].as_u64()
        ),
        (Some("deny"), Some(403), Some("forbidden"), Some(3)),
        "{explained}"
    );
    let rule3 = &explained["rules"][3];
    assert_eq!(
        (
            rule3["effect"].as_str(),
            rule3["groups"].as_bool(),
            rule3["applies"].as_bool()
        ),
        (Some("deny"), Some(true), Some(true)),
        "{explained}"
    );
    assert_eq!(explained["steps"][5]["outcome"], "fail");
    assert_eq!(explained["steps"][6]["outcome"], "skipped");

    // A real token that fails verification: the principal step says why.
    let (_, explained) = explain_call(
        &app,
        Some(&admin),
        json!({
            "principal": {"token": "not-a-jwt"},
            "access_point": "avatars",
            "request": {"operation": "get", "key": "alice/a.png"}
        }),
    )
    .await;
    assert_eq!(
        (explained["status"].as_u64(), explained["code"].as_str()),
        (Some(401), Some("unauthenticated")),
        "{explained}"
    );
    assert_eq!(explained["steps"][1]["outcome"], "fail");

    // A simulated principal from an issuer that is not configured: refused like its token.
    let (_, explained) = explain_call(
        &app,
        Some(&admin),
        json!({
            "principal": {"sub": "alice", "groups": ["users"], "issuer": "https://elsewhere/"},
            "access_point": "avatars",
            "request": {"operation": "get", "key": "alice/a.png"}
        }),
    )
    .await;
    assert_eq!(explained["status"], 401, "{explained}");

    // A change tried before it is applied: avatars without rule 0 refuses alice; the stored
    // avatars still allows her.
    let mut changed = serde_json::to_value(avatars()).expect("json");
    if let Some(rules) = changed["rules"].as_array_mut() {
        rules.remove(0);
    }
    let ask = |ap: Value| {
        json!({
            "principal": {"sub": "alice", "groups": ["users"]},
            "access_point": ap,
            "request": {"operation": "get", "key": "alice/a.png"}
        })
    };
    let (_, explained) = explain_call(&app, Some(&admin), ask(changed)).await;
    assert_eq!(
        (explained["status"].as_u64(), explained["code"].as_str()),
        (Some(404), Some("not_found")),
        "{explained}"
    );
    let (_, explained) = explain_call(&app, Some(&admin), ask(json!("avatars"))).await;
    assert_eq!(explained["decision"], "allow", "{explained}");
    // An invalid document is a 400 naming the field, as the admin API's PUT.
    let mut invalid = serde_json::to_value(avatars()).expect("json");
    invalid["max_expires_in"] = json!(0);
    let (status, problem) = explain_call(&app, Some(&admin), ask(invalid)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_request")),
        "{problem}"
    );
    assert!(problem["errors"].is_array(), "{problem}");
    // Objects only, where the schema says object (serde would fill a struct from an array;
    // schemathesis found `"client": [null, null]` accepted).
    for (field, value) in [
        ("client", json!([null, null])),
        ("principal", json!([null, null, "alice", [], false])),
        ("request", json!(["get", "alice/a.png"])),
        ("access_point", json!(["avatars", "b"])),
    ] {
        let mut body = ask(json!("avatars"));
        body[field] = value;
        let (status, problem) = explain_call(&app, Some(&admin), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_request")),
            "{field}: {problem}"
        );
    }
    // Neither a token and claims together, nor neither.
    let (status, _) = explain_call(
        &app,
        Some(&admin),
        json!({"principal": {"token": "x", "sub": "alice"}, "access_point": "avatars", "request": {"operation": "get", "key": "k"}}),
    )
    .await;
    assert_eq!(status, 400);
    app.finish().await;
}
