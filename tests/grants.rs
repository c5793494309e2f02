//! Download grants' storage against real SQLite and PostgreSQL: uses are counted exactly, a
//! grant serves no more once used up, expired or revoked, only its owner (or an admin, with
//! no owner given) revokes it, and two instances redeeming a single-use grant at once get
//! exactly one redemption between them.

mod common;

use common::app::Backend;
use common::postgres::{create_postgres_database, drop_postgres_database, with_database};
use presignd::grants::{self, Gone};
use presignd::store::{Redemption, Store, StoredGrant};

/// Two stores ("instances", each its own connection pool) on one fresh database.
struct Shared {
    a: Store,
    b: Store,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

async fn shared(backend: Backend) -> Shared {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, postgres) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("g.db").display()),
            None,
        ),
        Backend::Postgres => {
            let (admin, name) = create_postgres_database("presignd_grants").await;
            (with_database(&admin, &name), Some((admin, name)))
        }
    };
    let a = Store::connect(&url, 16).await.expect("connect a");
    a.migrate().await.expect("migrate");
    let b = Store::connect(&url, 16).await.expect("connect b");
    Shared {
        a,
        b,
        _dir: dir,
        postgres,
    }
}

impl Shared {
    async fn finish(self) {
        self.a.close().await;
        self.b.close().await;
        if let Some((admin, name)) = &self.postgres {
            drop_postgres_database(admin, name).await;
        }
    }
}

fn grant(id: &str, max_uses: u32, expires_at: i64) -> StoredGrant {
    StoredGrant {
        grant_id: id.into(),
        access_point: "downloads".into(),
        bucket: "files".into(),
        request_key: "report.pdf".into(),
        object_key: "files/report.pdf".into(),
        issuer: "https://idp.test/".into(),
        subject: "alice".into(),
        groups: vec!["premium".into()],
        mfa: true,
        response_content_disposition: Some("attachment; filename=\"report.pdf\"".into()),
        max_uses,
        uses: 0,
        created_at: 1_000,
        expires_at,
        revoked_at: None,
    }
}

async fn counts_expires_and_revokes(backend: Backend) {
    let s = shared(backend).await;
    let now = 2_000;
    let (token, digest) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g1", 2, 3_000), &digest)
        .await
        .expect("insert");

    // Two uses, from either instance, then gone; the stored row round-trips.
    let Redemption::Redeemed(first) = s.a.redeem_grant(&digest, now).await.expect("redeem") else {
        panic!("first use refused");
    };
    assert_eq!(
        first,
        StoredGrant {
            uses: 1,
            ..grant("g1", 2, 3_000)
        }
    );
    assert!(
        matches!(s.b.redeem_grant(&digest, now).await.expect("redeem"), Redemption::Redeemed(g) if g.uses == 2)
    );
    let Redemption::Gone(used) = s.a.redeem_grant(&digest, now).await.expect("redeem") else {
        panic!("a third use counted");
    };
    assert_eq!(
        (used.uses, grants::gone(&used, now)),
        (2, Some(Gone::UsedUp))
    );
    // A refund gives one use back (a redemption that issued nothing).
    s.a.refund_grant_use("g1").await.expect("refund");
    assert!(matches!(
        s.a.redeem_grant(&digest, now).await.expect("redeem"),
        Redemption::Redeemed(_)
    ));

    // Unknown tokens, expiry.
    assert_eq!(
        s.a.redeem_grant(&grants::token_sha256(&format!("{token}x")), now)
            .await
            .expect("redeem"),
        Redemption::Unknown
    );
    let (_, expiring) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g2", 5, 2_500), &expiring)
        .await
        .expect("insert");
    assert!(matches!(
        s.a.redeem_grant(&expiring, 2_499).await.expect("redeem"),
        Redemption::Redeemed(_)
    ));
    let Redemption::Gone(expired) = s.a.redeem_grant(&expiring, 2_500).await.expect("redeem")
    else {
        panic!("redeemed after expiry");
    };
    assert_eq!(grants::gone(&expired, 2_500), Some(Gone::Expired));

    // Revocation: not by another subject, by the owner, idempotent, then nothing redeems.
    let (_, revocable) = grants::new_token().expect("token");
    s.a.insert_grant(&grant("g3", 5, 9_000), &revocable)
        .await
        .expect("insert");
    assert_eq!(
        s.a.revoke_grant("g3", Some(("https://idp.test/", "mallory")), now)
            .await
            .expect("revoke"),
        None
    );
    assert_eq!(
        s.a.revoke_grant("g3", Some(("https://other.test/", "alice")), now)
            .await
            .expect("revoke"),
        None,
        "the same subject from another issuer is not the owner"
    );
    let revoked =
        s.b.revoke_grant("g3", Some(("https://idp.test/", "alice")), now)
            .await
            .expect("revoke");
    assert_eq!(revoked.and_then(|g| g.revoked_at), Some(now));
    let again =
        s.a.revoke_grant("g3", None, now + 10)
            .await
            .expect("revoke");
    assert_eq!(
        again.and_then(|g| g.revoked_at),
        Some(now),
        "the first revocation time stays"
    );
    let Redemption::Gone(g) = s.a.redeem_grant(&revocable, now).await.expect("redeem") else {
        panic!("redeemed after revocation");
    };
    assert_eq!(grants::gone(&g, now), Some(Gone::Revoked));
    assert_eq!(
        s.a.grant_by_token(&revocable)
            .await
            .expect("peek")
            .map(|g| g.uses),
        Some(0)
    );
    assert_eq!(
        s.a.revoke_grant("nope", None, now).await.expect("revoke"),
        None
    );
    s.finish().await;
}
on_both_backends!(grants_count_expire_and_revoke, counts_expires_and_revokes);

/// 50 concurrent redemptions of a single-use grant, half through each instance: exactly one
/// is counted. Then a grant of 7 uses under 50: exactly 7.
async fn concurrent_redemptions_count_exactly(backend: Backend) {
    let s = shared(backend).await;
    for (id, max_uses) in [("once", 1u32), ("seven", 7)] {
        let (_, digest) = grants::new_token().expect("token");
        s.a.insert_grant(&grant(id, max_uses, i64::MAX), &digest)
            .await
            .expect("insert");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let store = if i % 2 == 0 { s.a.clone() } else { s.b.clone() };
            let digest = digest.clone();
            tasks.spawn(async move { store.redeem_grant(&digest, 2_000).await.expect("redeem") });
        }
        let mut redeemed = 0;
        let mut gone = 0;
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Redemption::Redeemed(_) => redeemed += 1,
                Redemption::Gone(_) => gone += 1,
                Redemption::Unknown => panic!("the grant exists"),
            }
        }
        assert_eq!((redeemed, gone), (max_uses, 50 - max_uses), "{id}");
        let stored =
            s.b.grant_by_token(&digest)
                .await
                .expect("peek")
                .expect("grant");
        assert_eq!(stored.uses, max_uses);
    }
    s.finish().await;
}
on_both_backends!(
    single_use_grants_redeem_once_across_instances,
    concurrent_redemptions_count_exactly
);

// ---- The HTTP routes: create, redeem (302 to a URL S3 serves), HEAD, revoke, audit. ----

use common::app::{Options, TestApp, avatars};
use serde_json::{Value, json};

const LINKS: &str = "http://links.test";
const BODY: &[u8] = b"quarterly report, premium edition";

/// `avatars` with download grants: up to 10 uses, a day.
fn avatars_with_grants() -> presignd::policy::AccessPointSpec {
    let mut ap = avatars();
    ap.grants = Some(presignd::policy::GrantLimits {
        max_uses: 10,
        max_expires_in: 86_400,
    });
    ap
}

async fn grants_app(backend: Backend) -> TestApp {
    // `plain`: the same folders, no grants allowed.
    let mut plain = avatars();
    plain.name = "plain".into();
    let mut opts = Options::new(backend, vec![avatars_with_grants(), plain]);
    opts.config(|c| c.server.public_base_url = Some(LINKS.into()));
    let app = TestApp::spawn_with(opts).await;
    // alice's object, uploaded through a presigned PUT.
    let alice = app.token("alice", &["users"], false);
    let (status, put) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "put", "key": "alice/report.txt", "content_type": "text/plain",
                   "content_length": BODY.len()}),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let mut req = app.http.put(put["url"].as_str().expect("url")).body(BODY);
    for (k, v) in put["headers"].as_object().expect("headers") {
        if k != "content-length" {
            req = req.header(k, v.as_str().expect("value"));
        }
    }
    assert_eq!(req.send().await.expect("PUT").status(), 200);
    app
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET`s every URL at once (no redirects followed): how many answered each status.
async fn redeem_concurrently(urls: Vec<String>) -> std::collections::BTreeMap<u16, usize> {
    let http = no_redirects();
    let mut tasks = tokio::task::JoinSet::new();
    for url in urls {
        let http = http.clone();
        tasks.spawn(async move { http.get(url).send().await.expect("GET").status().as_u16() });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        *statuses.entry(status.expect("task")).or_insert(0) += 1;
    }
    statuses
}

/// The token of a grant link, as the app serves it.
fn link(app: &TestApp, created: &Value) -> String {
    let url = created["url"].as_str().expect("url");
    let token = url
        .strip_prefix(&format!("{LINKS}/g/"))
        .expect("a link on public_base_url");
    assert!(grants::is_token(token), "{url}");
    format!("{}/g/{token}", app.base)
}

async fn problem_code(resp: reqwest::Response) -> (u16, String) {
    let (status, body) = common::app::decode(resp).await;
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

async fn links_redirect_count_and_revoke(backend: Backend) {
    let app = grants_app(backend).await;
    let http = no_redirects();
    let alice = app.token("alice", &["users"], false);
    let bob = app.token("bob", &["users"], false);
    let root = app.token("root", &["presignd-admins"], false);
    let grants_path = "/v1/access-points/avatars/grants";

    let (status, created) = app
        .post(
            &alice,
            grants_path,
            json!({"key": "alice/report.txt", "max_uses": 2,
            "response_content_disposition": "attachment; filename=\"report.txt\""}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["max_uses"].as_u64(), created["key"].as_str()),
        (Some(2), Some("avatars/alice/report.txt"))
    );
    let grant_id = created["grant_id"].as_str().expect("grant_id").to_string();
    let url = link(&app, &created);

    // HEAD checks without spending a use; each GET spends one and redirects to a URL S3
    // serves (signature checked by the S3 server), with the requested disposition.
    for _ in 0..3 {
        assert_eq!(http.head(&url).send().await.expect("HEAD").status(), 204);
    }
    for _ in 0..2 {
        let resp = http.get(&url).send().await.expect("GET");
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let location = resp.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(location.contains("X-Amz-Signature="), "{location}");
        assert!(
            location.contains("X-Amz-Expires=60"),
            "grants.redirect_expires_in: {location}"
        );
        let download = app.http.get(&location).send().await.expect("download");
        assert_eq!(download.status(), 200);
        assert_eq!(
            download.headers()["content-disposition"],
            "attachment; filename=\"report.txt\""
        );
        assert_eq!(download.bytes().await.expect("bytes").as_ref(), BODY);
    }
    assert_eq!(
        problem_code(http.get(&url).send().await.expect("GET")).await,
        (410, "gone".into())
    );
    assert_eq!(http.head(&url).send().await.expect("HEAD").status(), 410);
    // Unknown and malformed tokens.
    let unknown = format!("{}/g/{}", app.base, "A".repeat(grants::TOKEN_CHARS));
    assert_eq!(
        problem_code(http.get(&unknown).send().await.expect("GET")).await,
        (404, "not_found".into())
    );
    assert_eq!(
        problem_code(
            http.get(format!("{}/g/short", app.base))
                .send()
                .await
                .expect("GET")
        )
        .await,
        (404, "not_found".into())
    );

    // Creation is authorized like a GET of the key; bad fields are 400s.
    for (token, body, want) in [
        (&bob, json!({"key": "alice/report.txt"}), (403, "forbidden")),
        (
            &alice,
            json!({"key": "alice/r.txt", "max_uses": 0}),
            (400, "invalid_request"),
        ),
        (
            &alice,
            json!({"key": "alice/r.txt", "expires_in": 99_999_999}),
            (400, "expires_in_out_of_range"),
        ),
        (&alice, json!({"key": "../x"}), (400, "invalid_key")),
        (
            &alice,
            json!({"key": "alice/r.txt", "uses": 1}),
            (400, "invalid_request"),
        ),
    ] {
        let (status, problem) = app.post(token, grants_path, body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str().expect("code")),
            want,
            "{body}: {problem}"
        );
    }

    // Revocation: not by another user (404), by the creator (204, twice), by an admin.
    let (_, second) = app
        .post(
            &alice,
            grants_path,
            json!({"key": "alice/report.txt", "max_uses": 5}),
        )
        .await;
    let second_id = second["grant_id"].as_str().expect("id").to_string();
    let delete = |token: &str, id: &str| {
        app.http
            .delete(format!("{}/v1/grants/{id}", app.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        delete(&bob, &second_id).await.expect("DELETE").status(),
        404
    );
    assert_eq!(
        http.head(link(&app, &second))
            .send()
            .await
            .expect("HEAD")
            .status(),
        204
    );
    assert_eq!(
        delete(&alice, &second_id).await.expect("DELETE").status(),
        204
    );
    assert_eq!(
        delete(&alice, &second_id).await.expect("DELETE").status(),
        204
    );
    let (status, problem) =
        common::app::decode(http.get(link(&app, &second)).send().await.expect("GET")).await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (410, Some("this download grant is revoked"))
    );
    let (_, third) = app
        .post(&alice, grants_path, json!({"key": "alice/report.txt"}))
        .await;
    assert_eq!(
        delete(&root, third["grant_id"].as_str().expect("id"))
            .await
            .expect("DELETE")
            .status(),
        204
    );
    assert_eq!(
        delete(&alice, "no-such-grant")
            .await
            .expect("DELETE")
            .status(),
        404
    );

    // Expiry.
    let (_, brief) = app
        .post(
            &alice,
            grants_path,
            json!({"key": "alice/report.txt", "expires_in": 1}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, problem) =
        common::app::decode(http.get(link(&app, &brief)).send().await.expect("GET")).await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (410, Some("this download grant is expired"))
    );

    // Every creation, redemption (allowed or refused) and revocation is a record with the
    // grant id; redemptions name no subject (the redeemer is anonymous).
    let records = app.audit_records();
    let of = |op: &str, decision: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| {
                r["operation"] == op
                    && r["decision"] == decision
                    && r["grant_id"] == grant_id.as_str()
            })
            .collect()
    };
    assert_eq!(of("grant_create", "allow").len(), 1);
    let redeemed = of("grant_redeem", "allow");
    assert_eq!(redeemed.len(), 2);
    for r in &redeemed {
        assert!(r["subject"].is_null(), "{r}");
        assert_eq!(r["key"], "avatars/alice/report.txt");
        assert!(r["signature_sha256"].is_string(), "{r}");
    }
    let refused = of("grant_redeem", "deny");
    assert_eq!(refused.len(), 1, "HEAD is not recorded, the third GET is");
    assert_eq!(refused[0]["reason"], "gone");
    let revokes: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "grant_revoke" && r["grant_id"] == second_id.as_str())
        .collect();
    assert_eq!(
        revokes.len(),
        3,
        "bob's refusal and alice's two revocations"
    );
    app.finish().await;
}
on_both_backends!(
    links_redirect_count_and_revoke,
    links_redirect_count_and_revoke
);

/// 50 concurrent redemptions of a single-use link over HTTP: one 302, 49 × 410.
async fn single_use_links_redirect_once(backend: Backend) {
    let app = grants_app(backend).await;
    let alice = app.token("alice", &["users"], false);
    let (status, created) = app
        .post(
            &alice,
            "/v1/access-points/avatars/grants",
            json!({"key": "alice/report.txt"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let url = link(&app, &created);
    let statuses = redeem_concurrently((0..50).map(|_| url.clone()).collect()).await;
    assert_eq!(
        statuses,
        [(302, 1), (410, 49)].into_iter().collect(),
        "{statuses:?}"
    );
    app.finish().await;
}
on_both_backends!(
    single_use_links_redirect_once_over_http,
    single_use_links_redirect_once
);

/// `POST /v1/admin/revocations` with `grants_of_key` or `grants_of_subject`: every live grant
/// of the key, or of the subject, answers 410 at once; audited; admins only.
async fn admins_revoke_grants_by_key_and_subject(backend: Backend) {
    let app = grants_app(backend).await;
    let http = no_redirects();
    let alice = app.token("alice", &["users"], false);
    let root = app.token("root", &["presignd-admins"], false);
    let grant = |key: &'static str| {
        let (app, alice) = (&app, &alice);
        async move {
            let (status, created) = app
                .post(
                    alice,
                    "/v1/access-points/avatars/grants",
                    json!({"key": key, "max_uses": 9}),
                )
                .await;
            assert_eq!(status, 201, "{created}");
            link(app, &created)
        }
    };
    let report = [
        grant("alice/report.txt").await,
        grant("alice/report.txt").await,
    ];
    let other = grant("alice/other.txt").await;
    let head = |url: String| {
        let http = http.clone();
        async move { http.head(url).send().await.expect("HEAD").status().as_u16() }
    };

    let revoke = "/v1/admin/revocations";
    let (status, _) = app
        .post(&alice, revoke, json!({"grants_of_subject": "alice"}))
        .await;
    assert_eq!(status, 404, "admins only");
    for bad in [
        json!({"grants_of_subject": "alice", "grants_of_key": {"key": "avatars/k"}}),
        json!({"grants_of_subject": "alice", "iss": "https://unknown.test/"}),
        json!({"grants_of_subject": ""}),
        json!({"grants_of_key": {"access_point": "avatars"}}),
        json!({"grants_of_key": {"key": "avatars/k"}, "iss": common::app::ISSUER}),
        json!({"grants_of_key": {"key": ""}}),
    ] {
        let (status, problem) = app.post(&root, revoke, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }

    let (status, revoked) = app
        .post(
            &root,
            revoke,
            json!({"grants_of_key": {"key": "avatars/alice/report.txt"}, "sub": null}),
        )
        .await;
    assert_eq!(
        (status, revoked["revoked_grants"].as_u64()),
        (200, Some(2)),
        "{revoked}"
    );
    for url in &report {
        assert_eq!(head(url.clone()).await, 410);
    }
    assert_eq!(
        head(other.clone()).await,
        204,
        "another key's grant still serves"
    );

    let (status, revoked) = app
        .post(
            &root,
            revoke,
            json!({"grants_of_subject": "alice", "iss": common::app::ISSUER}),
        )
        .await;
    assert_eq!(
        (status, revoked["revoked_grants"].as_u64()),
        (200, Some(1)),
        "{revoked}"
    );
    assert_eq!(head(other).await, 410);

    let records = app.audit_records();
    let reasons: Vec<&str> = records
        .iter()
        .filter(|r| r["operation"] == "admin.revoke_grants")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[1].contains("subject \"alice\""), "{reasons:?}");
    app.finish().await;
}
on_both_backends!(
    admins_revoke_grants_by_key_and_subject,
    admins_revoke_grants_by_key_and_subject
);

/// Two instances on one PostgreSQL database (as deployed), 50 concurrent redemptions of a
/// single-use link, half through each: exactly one 302 between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_redirect_a_single_use_link_once() {
    let a = grants_app(Backend::Postgres).await;
    let mut opts = Options::new(Backend::Postgres, vec![avatars_with_grants()]);
    opts.shared_database = Some(a.db_url.clone());
    opts.config(|c| c.server.public_base_url = Some(LINKS.into()));
    let b = TestApp::spawn_with(opts).await;
    let alice = a.token("alice", &["users"], false);
    let (status, created) = a
        .post(
            &alice,
            "/v1/access-points/avatars/grants",
            json!({"key": "alice/report.txt"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["url"]
        .as_str()
        .expect("url")
        .rsplit('/')
        .next()
        .expect("token")
        .to_string();
    let urls = (0..50)
        .map(|i| format!("{}/g/{token}", if i % 2 == 0 { &a.base } else { &b.base }))
        .collect();
    let statuses = redeem_concurrently(urls).await;
    assert_eq!(
        statuses,
        [(302, 1), (410, 49)].into_iter().collect(),
        "{statuses:?}"
    );
    b.finish().await;
    a.finish().await;
}
