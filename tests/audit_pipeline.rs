//! The audit pipeline end to end (docs/audit.md): the durable outbox in real SQLite and real
//! PostgreSQL, the shipper, and the log bucket on the in-process S3 server (s3s-fs, verifying
//! SigV4). Records are read back from the bucket the way Athena would: gzip NDJSON objects
//! under `dt=…/hour=…/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::app::{
    BUCKET, Backend, Options, TestApp, avatars, create_postgres_database, decode,
    drop_postgres_database, mint_hs256, ndjson_gz, with_database,
};
use common::s3::TestS3;
use serde_json::{Value, json};
use sha2::Digest;

const LOG_BUCKET: &str = "presignd-logs";
const FIELDS: [&str; 20] = [
    "id",
    "time",
    "request_id",
    "decision",
    "reason",
    "operation",
    "access_point",
    "bucket",
    "key",
    "expires_at",
    "subject",
    "issuer",
    "groups",
    "source_ip",
    "user_agent",
    "origin",
    "tls",
    "sse",
    "signature_sha256",
    "instance",
];

/// A presignd shipping to `s3://presignd-logs/audit/` on its test S3 server.
async fn app_with_log_bucket(
    backend: Backend,
    audit: impl FnOnce(&mut presignd::config::AuditConfig) + Send + 'static,
) -> TestApp {
    let mut opts = Options::new(backend, vec![avatars()]);
    opts.config(|c| {
        c.audit.sink = format!("s3://{LOG_BUCKET}/audit/");
        audit(&mut c.audit);
    });
    let app = TestApp::spawn_with(opts).await;
    app.s3.create_bucket(LOG_BUCKET).await;
    app
}

/// One object of the log bucket: its key, raw bytes and NDJSON lines.
struct Object {
    key: String,
    raw: Vec<u8>,
    lines: Vec<String>,
}

async fn log_objects(s3: &TestS3, prefix: &str) -> Vec<Object> {
    let client = s3.sdk_client();
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(LOG_BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list the log bucket");
        for o in page.contents() {
            let key = o.key().expect("key").to_string();
            let raw = client
                .get_object()
                .bucket(LOG_BUCKET)
                .key(&key)
                .send()
                .await
                .expect("get audit object")
                .body
                .collect()
                .await
                .expect("read audit object")
                .into_bytes()
                .to_vec();
            let lines = ndjson_gz(&raw);
            out.push(Object { key, raw, lines });
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn records(objects: &[Object]) -> Vec<Value> {
    objects
        .iter()
        .flat_map(|o| o.lines.iter())
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// How often each record id occurs in the bucket.
fn id_counts(objects: &[Object]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records(objects) {
        *counts
            .entry(r["id"].as_str().expect("id").to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    url.split_once('?')?
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn record_id(url: &str) -> String {
    query_param(url, "x-presignd-id")
        .expect("every URL carries x-presignd-id")
        .to_string()
}

/// A presign request outside `TestApp` (for concurrent use).
async fn presign(http: &reqwest::Client, base: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/v1/access-points/avatars/presign"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    decode(resp).await
}

/// `n` presigns at once from several users; returns the issued URLs.
async fn presign_concurrently(app: &TestApp, n: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, base) = (app.http.clone(), app.base.clone());
        let user = format!("user{}", i % 7);
        tasks.spawn(async move {
            let token = mint_hs256(&user, &["users"], false, 600);
            let body = if i % 2 == 0 {
                json!({"operation": "get", "key": format!("{user}/{i}.png")})
            } else {
                json!({"operation": "put", "key": format!("{user}/{i}.png"), "content_type": "image/png", "content_length": 5})
            };
            let (s, b) = presign(&http, &base, &token, body).await;
            assert_eq!(s, 200, "{b}");
            b["url"].as_str().expect("url").to_string()
        });
    }
    let mut urls = Vec::new();
    while let Some(r) = tasks.join_next().await {
        urls.push(r.expect("presign task"));
    }
    urls
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    app.get(None, "/readyz").await
}

async fn concurrent_presigns_are_shipped_exactly_once(backend: Backend) {
    let app = app_with_log_bucket(backend, |_| {}).await;
    const N: usize = 60;
    let urls = presign_concurrently(&app, N).await;
    app.flush_audit().await;

    let objects = log_objects(&app.s3, "audit/").await;
    let all = records(&objects);
    let allows: Vec<&Value> = all.iter().filter(|r| r["decision"] == "allow").collect();
    assert_eq!(allows.len(), N, "exactly one allow record per URL");
    let shipped: BTreeSet<&str> = allows
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    let issued: BTreeSet<String> = urls.iter().map(|u| record_id(u)).collect();
    assert_eq!(
        shipped,
        issued.iter().map(String::as_str).collect(),
        "each URL's x-presignd-id names its record"
    );

    let by_id: BTreeMap<&str, &Value> = allows
        .iter()
        .map(|r| (r["id"].as_str().expect("id"), *r))
        .collect();
    for url in &urls {
        let r = by_id[record_id(url).as_str()];
        for field in FIELDS {
            assert!(r.get(field).is_some(), "record has {field}: {r}");
        }
        let signature = query_param(url, "X-Amz-Signature").expect("signature");
        assert_eq!(
            r["signature_sha256"],
            hex::encode(sha2::Sha256::digest(signature.as_bytes())),
            "signature_sha256 traces the URL"
        );
        assert_eq!(r["reason"], "allowed");
        assert_eq!(r["instance"], "test");
        assert_eq!(r["bucket"], BUCKET);
        assert!(url.contains(r["key"].as_str().expect("key")));
    }

    // Neither a URL nor a signature is anywhere in the bucket, compressed or not.
    for o in &objects {
        let text = o.lines.join("\n");
        for url in &urls {
            let signature = query_param(url, "X-Amz-Signature").expect("signature");
            assert!(
                !text.contains(signature),
                "a signature leaked into {}",
                o.key
            );
        }
        // (The issuer is a URL; the S3 endpoint, where every issued URL points, never appears.)
        for needle in ["X-Amz-", "x-presignd-id", app.s3.endpoint.as_str()] {
            assert!(!text.contains(needle), "{needle} in {}", o.key);
        }
        assert_ne!(o.raw.get(..2), Some(&b"{\""[..]), "objects are gzip");
        // Layout: audit/dt=YYYY-MM-DD/hour=HH/{instance}-{first_id}-{last_id}.ndjson.gz
        let first: Value = serde_json::from_str(&o.lines[0]).expect("json");
        let last: Value = serde_json::from_str(o.lines.last().expect("line")).expect("json");
        let time = first["time"].as_str().expect("time");
        let expected = format!(
            "audit/dt={}/hour={}/test-{}-{}.ndjson.gz",
            &time[..10],
            &time[11..13],
            first["id"].as_str().expect("id"),
            last["id"].as_str().expect("id")
        );
        assert_eq!(o.key, expected);
    }

    let m = app.state.metrics();
    assert_eq!(m.audit_shipped_total.get(), N as u64);
    assert!(m.audit_last_ship_timestamp_seconds.get() > 0.0);
    let (s, ready) = readyz(&app).await;
    assert_eq!(s, 200, "{ready}");
    assert_eq!(ready["checks"]["audit_outbox_pending"], 0, "{ready}");
    assert!(
        ready["checks"]["audit_last_shipped_at"].is_string(),
        "{ready}"
    );
    app.finish().await;
}
on_both_backends!(
    concurrent_presigns_ship_exactly_once,
    concurrent_presigns_are_shipped_exactly_once
);

/// A batch of 100 items is one append: all its records commit together (on PostgreSQL as
/// several statements of one transaction) and all reach the bucket.
async fn a_full_batch_is_one_durable_append(backend: Backend) {
    let app = app_with_log_bucket(backend, |_| {}).await;
    let alice = app.token("alice", &["users"], false);
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"access_point": "avatars", "operation": "get", "key": format!("alice/{i}.png")}))
        .collect();
    let (s, b) = app
        .post(&alice, "/v1/presign/batch", json!({ "items": items }))
        .await;
    assert_eq!(s, 200, "{b}");
    let urls: Vec<&str> = b["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["presigned"]["url"].as_str().expect("url"))
        .collect();
    assert_eq!(urls.len(), 100);
    app.flush_audit().await;
    let counts = id_counts(&log_objects(&app.s3, "audit/").await);
    assert_eq!(counts.len(), 100);
    for url in urls {
        assert_eq!(counts.get(&record_id(url)), Some(&1));
    }
    app.finish().await;
}
on_both_backends!(full_batch, a_full_batch_is_one_durable_append);

/// The record id is signed into the URL: S3 accepts the URL as issued and refuses it with
/// the id removed or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_id_is_signed_into_every_url() {
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let alice = app.token("alice", &["users"], false);
    let (s, put) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "put", "key": "alice/id.txt", "content_type": "text/plain", "content_length": 5}),
        )
        .await;
    assert_eq!(s, 200, "{put}");
    let url = put["url"].as_str().expect("url");
    let id = record_id(url);
    let without = url.replace(&format!("&x-presignd-id={id}"), "");
    let without = without.replace(&format!("x-presignd-id={id}&"), "");
    assert!(!without.contains("x-presignd-id"), "{without}");
    let other = url.replace(&id, &uuid::Uuid::now_v7().to_string());
    let send = |u: String| {
        app.http
            .put(u)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
    };
    assert_eq!(
        send(without).await.expect("PUT").status(),
        403,
        "id removed"
    );
    assert_eq!(send(other).await.expect("PUT").status(), 403, "id changed");
    assert_eq!(
        send(url.to_string()).await.expect("PUT").status(),
        200,
        "as issued"
    );

    let (s, get) = app
        .presign(
            &alice,
            "avatars",
            json!({"operation": "get", "key": "alice/id.txt"}),
        )
        .await;
    assert_eq!(s, 200);
    let got = app
        .http
        .get(get["url"].as_str().expect("url"))
        .send()
        .await
        .expect("GET");
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.expect("body"), "hello");

    let records = app.audit_records();
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            id.as_str(),
            record_id(get["url"].as_str().expect("url")).as_str()
        ]
    );
    app.finish().await;
}

async fn log_bucket_outage_keeps_issuing_and_drains_later(backend: Backend) {
    let mut app = app_with_log_bucket(backend, |a| {
        a.batch_max_records = 7;
        a.flush_interval_ms = 50;
    })
    .await;
    let before = presign_concurrently(&app, 5).await;
    app.flush_audit().await;

    app.s3.stop().await;
    const M: usize = 40;
    let during = presign_concurrently(&app, M).await;
    assert_eq!(
        during.len(),
        M,
        "URLs keep coming while the log bucket is down"
    );
    let (s, ready) = readyz(&app).await;
    assert_eq!(
        s, 200,
        "a log bucket outage does not stop issuance: {ready}"
    );
    let pending = ready["checks"]["audit_outbox_pending"]
        .as_u64()
        .expect("pending");
    assert!(
        pending >= M as u64,
        "the backlog holds the records: {ready}"
    );
    assert!(
        app.state
            .audit()
            .flush(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing can be shipped"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.state.metrics().audit_ship_failures_total.get() == 0 {
        assert!(Instant::now() < deadline, "shipping failures are counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.s3.restart().await;
    app.flush_audit().await;
    let counts = id_counts(&log_objects(&app.s3, "audit/").await);
    for url in before.iter().chain(&during) {
        assert_eq!(
            counts.get(&record_id(url)),
            Some(&1),
            "shipped exactly once"
        );
    }
    assert_eq!(counts.len(), M + 5, "nothing else, nothing twice");
    assert!(counts.values().all(|&n| n == 1), "no duplicate ids");
    let (_, ready) = readyz(&app).await;
    assert_eq!(ready["checks"]["audit_outbox_pending"], 0, "{ready}");
    app.finish().await;
}
on_both_backends!(
    log_bucket_outage,
    log_bucket_outage_keeps_issuing_and_drains_later
);

/// Makes the outbox unwritable; returns a guard that makes it writable again.
enum Outage {
    Postgres { admin: sqlx::PgPool, name: String },
    Sqlite(sqlx::SqliteConnection),
}

async fn take_database_away(app: &TestApp) -> Outage {
    use sqlx::Connection;
    match app.postgres_database() {
        Some((admin_url, name)) => {
            let admin = sqlx::PgPool::connect(&admin_url).await.expect("admin");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
            )))
            .execute(&admin)
            .await
            .expect("disallow connections");
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .execute(&admin)
            .await
            .expect("terminate backends");
            Outage::Postgres { admin, name }
        }
        None => {
            // Another process holding the write lock: the outbox cannot commit.
            let path = app.audit_dir.parent().expect("dir").join("presignd.db");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the database");
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut conn)
                .await
                .expect("lock");
            Outage::Sqlite(conn)
        }
    }
}

async fn bring_database_back(outage: Outage) {
    match outage {
        Outage::Postgres { admin, name } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
            )))
            .execute(&admin)
            .await
            .expect("allow connections");
            admin.close().await;
        }
        Outage::Sqlite(mut conn) => {
            sqlx::query("ROLLBACK")
                .execute(&mut conn)
                .await
                .expect("unlock");
        }
    }
}

async fn database_outage_fails_closed_and_recovers(backend: Backend) {
    let app = app_with_log_bucket(backend, |_| {}).await;
    let alice = app.token("alice", &["users"], false);
    let body = json!({"operation": "get", "key": "alice/a.png"});
    let (s, _) = app.presign(&alice, "avatars", body.clone()).await;
    assert_eq!(s, 200);

    let outage = take_database_away(&app).await;
    let (s, refused) = app.presign(&alice, "avatars", body.clone()).await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{refused}"
    );
    assert!(
        refused.get("url").is_none(),
        "no URL without a durable record"
    );
    let (s, batch) = app
        .post(
            &alice,
            "/v1/presign/batch",
            json!({"items": [{"access_point": "avatars", "operation": "get", "key": "alice/b.png"}]}),
        )
        .await;
    assert_eq!(
        (s, batch["code"].as_str()),
        (503, Some("audit_unavailable"))
    );
    assert!(!batch.to_string().contains("X-Amz-"), "{batch}");
    if backend == Backend::Postgres {
        let (s, ready) = readyz(&app).await;
        assert_eq!(s, 503, "not ready without the database: {ready}");
    }

    bring_database_back(outage).await;
    // The same process recovers by itself: the pool reconnects.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let (s, b) = app.presign(&alice, "avatars", body.clone()).await;
        if s == 200 {
            break b;
        }
        assert_eq!(b["code"], "audit_unavailable", "{b}");
        assert!(Instant::now() < deadline, "no recovery: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.flush_audit().await;
    let counts = id_counts(&log_objects(&app.s3, "audit/").await);
    assert_eq!(
        counts.get(&record_id(recovered["url"].as_str().expect("url"))),
        Some(&1)
    );
    let (s, ready) = readyz(&app).await;
    assert_eq!(s, 200, "{ready}");
    app.finish().await;
}
on_both_backends!(database_outage, database_outage_fails_closed_and_recovers);

/// A second presignd on the same PostgreSQL database and log bucket, named `second`.
struct Second {
    base: String,
    state: presignd::state::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Second {
    async fn start(first: &TestApp) -> Second {
        let mut config = first.state.config().clone();
        config.audit.instance = Some("second".into());
        let app = presignd::App::build(config).await.expect("second instance");
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        });
        Second {
            base,
            state,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Both instances ship what they can, at the same time.
async fn flush_both(first: &TestApp, second: &Second) {
    let within = Duration::from_secs(20);
    let (a, b) = tokio::join!(
        first.state.audit().flush(within),
        second.state.audit().flush(within)
    );
    a.expect("first instance ships");
    b.expect("second instance ships");
}

/// Polls the log bucket until it holds `n` distinct records.
async fn wait_for_records(s3: &TestS3, n: usize) -> Vec<Object> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let objects = log_objects(s3, "audit/").await;
        let have = id_counts(&objects).len();
        if have >= n {
            return objects;
        }
        assert!(Instant::now() < deadline, "{have} of {n} records shipped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_outbox_ship_every_record_once() {
    let mut app = app_with_log_bucket(Backend::Postgres, |a| {
        a.batch_max_records = 5;
        a.flush_interval_ms = 20;
    })
    .await;
    let second = Second::start(&app).await;

    // A backlog written through both instances while the log bucket is down …
    app.s3.stop().await;
    let mut urls = presign_concurrently(&app, 60).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (http, base) = (app.http.clone(), second.base.clone());
        tasks.spawn(async move {
            let token = mint_hs256("bob", &["users"], false, 600);
            let (s, b) = presign(
                &http,
                &base,
                &token,
                json!({"operation": "get", "key": format!("bob/{i}.png")}),
            )
            .await;
            assert_eq!(s, 200, "{b}");
            b["url"].as_str().expect("url").to_string()
        });
    }
    while let Some(r) = tasks.join_next().await {
        urls.push(r.expect("task"));
    }

    // … and a batch that a third instance has just claimed (it is in the middle of its PUT).
    let (admin_url, name) = app.postgres_database().expect("postgres");
    let db = sqlx::PgPool::connect(&with_database(&admin_url, &name))
        .await
        .expect("connect");
    // A row holds a run of records (one group commit's): the claim is of rows.
    let claimed = line_ids(
        sqlx::query_scalar(
            "UPDATE audit_outbox SET batch = 'third-batch', claimed_by = 'third', claimed_at = now() \
             WHERE seq IN (SELECT seq FROM audit_outbox WHERE batch IS NULL ORDER BY seq LIMIT 2 \
                           FOR UPDATE SKIP LOCKED) \
             RETURNING lines",
        )
        .fetch_all(&db)
        .await
        .expect("claim two rows"),
    );
    assert!(
        !claimed.is_empty() && claimed.len() < 120,
        "{}",
        claimed.len()
    );

    app.s3.restart().await;
    flush_both(&app, &second).await;
    let counts = id_counts(&wait_for_records(&app.s3, 120 - claimed.len()).await);
    for id in &claimed {
        assert!(
            !counts.contains_key(id),
            "another instance's live claim is left alone"
        );
    }
    assert_eq!(counts.len(), 120 - claimed.len());

    // The third instance dies for good: once its claim is stale, the batch ships anyway.
    sqlx::query("UPDATE audit_outbox SET claimed_at = now() - interval '1 hour'")
        .execute(&db)
        .await
        .expect("age the claim");
    db.close().await;
    flush_both(&app, &second).await;
    let objects = wait_for_records(&app.s3, 120).await;
    let counts = id_counts(&objects);
    assert_eq!(counts.len(), 120);
    assert!(
        counts.values().all(|&n| n == 1),
        "every record exactly once"
    );
    for url in &urls {
        assert!(counts.contains_key(&record_id(url)));
    }
    let shippers: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.rsplit('/').next()?.split('-').next())
        .collect();
    assert!(shippers.contains("third"), "{shippers:?}");
    eprintln!("objects by claiming instance: {shippers:?}");

    second.stop().await;
    app.finish().await;
}

/// The record ids in outbox rows' NDJSON `lines`.
fn line_ids(rows: Vec<String>) -> Vec<String> {
    rows.iter()
        .flat_map(|lines| lines.lines())
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect()
}

/// Migration 0005 turns each record of an existing PostgreSQL outbox into a run of one,
/// keeping claims (a batch in flight ships under the same stamp) and the record bytes.
#[tokio::test]
async fn postgres_outbox_rows_from_before_0005_become_runs_of_one() {
    let (admin_url, name) = create_postgres_database("presignd_test").await;
    let db = sqlx::PgPool::connect(&with_database(&admin_url, &name))
        .await
        .expect("connect");
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    let all = migrator.migrations.to_vec();
    let upto = all.iter().position(|m| m.version == 5).expect("0005");
    migrator.migrations = std::borrow::Cow::Owned(all[..upto].to_vec());
    migrator.run(&db).await.expect("migrate to 0004");
    // `json` keeps the text byte for byte, spacing included.
    sqlx::query(
        "INSERT INTO audit_outbox (id, time, record) VALUES \
         ('a', '2025-03-07T04:05:06Z', '{\"id\": \"a\"}'), ('b', '2025-03-07T04:05:07Z', '{\"id\":\"b\"}')",
    )
    .execute(&db)
    .await
    .expect("old rows");
    sqlx::query("UPDATE audit_outbox SET batch = 'x', claimed_by = 'web-a', claimed_at = now() WHERE id = 'a'")
        .execute(&db)
        .await
        .expect("claim");

    migrator.migrations = std::borrow::Cow::Owned(all);
    migrator.run(&db).await.expect("migrate");
    let rows: Vec<(String, String, i32, String, Option<String>)> =
        sqlx::query_as("SELECT id, last_id, records, lines, batch FROM audit_outbox ORDER BY seq")
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        [
            (
                "a".into(),
                "a".into(),
                1,
                "{\"id\": \"a\"}\n".into(),
                Some("x".into())
            ),
            ("b".into(), "b".into(), 1, "{\"id\":\"b\"}\n".into(), None),
        ]
    );
    let storage: String = sqlx::query_scalar(
        "SELECT attstorage::text FROM pg_attribute \
         WHERE attrelid = 'audit_outbox'::regclass AND attname = 'lines'",
    )
    .fetch_one(&db)
    .await
    .expect("storage");
    assert_eq!(storage, "e", "out of line, uncompressed");
    db.close().await;
    drop_postgres_database(&admin_url, &name).await;
}

/// A batch claimed by an instance that died and never came back is shipped by another one
/// once the claim is stale, under the dead instance's name (the key the batch always had).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_batch_is_shipped_under_its_first_claimers_key() {
    let app = app_with_log_bucket(Backend::Postgres, |a| a.flush_interval_ms = 3_600_000).await;
    // After this round the shipper sleeps for an hour: only the flush below ships.
    app.flush_audit().await;
    let urls = presign_concurrently(&app, 4).await;
    let (admin_url, name) = app.postgres_database().expect("postgres");
    let db = sqlx::PgPool::connect(&with_database(&admin_url, &name))
        .await
        .expect("connect");
    // What a shipper named `ghost` leaves behind when it dies between claim and delete.
    let stamped: BTreeSet<String> = line_ids(
        sqlx::query_scalar(
            "UPDATE audit_outbox SET batch = 'ghost-batch', claimed_by = 'ghost', \
             claimed_at = now() - interval '1 hour' RETURNING lines",
        )
        .fetch_all(&db)
        .await
        .expect("stamp"),
    )
    .into_iter()
    .collect();
    db.close().await;
    assert!(!stamped.is_empty());
    app.flush_audit().await;
    let objects = log_objects(&app.s3, "audit/").await;
    let ghost: Vec<&Object> = objects
        .iter()
        .filter(|o| {
            o.key
                .rsplit('/')
                .next()
                .is_some_and(|k| k.starts_with("ghost-"))
        })
        .collect();
    assert_eq!(ghost.len(), 1, "one batch, one object");
    let in_ghost: BTreeSet<String> = ghost[0]
        .lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(in_ghost, stamped, "exactly the stamped rows");
    let counts = id_counts(&objects);
    for url in &urls {
        assert_eq!(counts.get(&record_id(url)), Some(&1));
    }
    app.finish().await;
}

/// Both shippers draining one backlog at once never ship a record twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shippers_draining_together_ship_each_record_once() {
    let mut app = app_with_log_bucket(Backend::Postgres, |a| {
        a.batch_max_records = 3;
        a.flush_interval_ms = 10;
    })
    .await;
    app.s3.stop().await;
    let urls = presign_concurrently(&app, 90).await;
    let second = Second::start(&app).await;
    app.s3.restart().await;
    // Both drain the backlog at once, three records per claim.
    flush_both(&app, &second).await;
    let objects = wait_for_records(&app.s3, urls.len()).await;
    let counts = id_counts(&objects);
    assert!(counts.values().all(|&n| n == 1), "no record shipped twice");
    assert_eq!(counts.len(), urls.len());
    for url in &urls {
        assert!(counts.contains_key(&record_id(url)));
    }
    second.stop().await;
    app.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Startup guards, through the binary as an operator meets them.

fn presignd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_presignd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESIGND_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).env("RUST_LOG", "warn");
    cmd
}

/// After the harness issuer (`common::app::issuer_toml`).
const GUARD_CONFIG: &str = r#"
[server]
require_https = false
[database]
url = "sqlite://state/presignd.db"
[s3]
region = "us-east-1"
access_key_id = "AK"
secret_access_key = "SK"
[access_points]
file = "access-points.yaml"
"#;

const GUARD_ACCESS_POINTS: &str = r#"
access_points:
  - name: reports
    bucket: acme-reports
    rules:
      - { effect: allow, groups: ["finance"], operations: ["get"] }
"#;

fn check_config(dir: &Path, audit: &str) -> (bool, String) {
    std::fs::write(dir.join("access-points.yaml"), GUARD_ACCESS_POINTS).expect("write");
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "{GUARD_CONFIG}\n{}\n[audit]\n{audit}\n",
            common::app::issuer_toml()
        ),
    )
    .expect("write");
    let out = presignd(dir)
        .args(["--config", "c.toml", "check-config"])
        .output()
        .expect("run presignd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_bucket_is_refused_as_the_log_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err) = check_config(dir.path(), r#"sink = "s3://acme-reports/audit/""#);
    assert!(!ok, "check-config refuses a logging loop");
    assert!(
        err.contains("audit.sink") && err.contains("acme-reports") && err.contains("reports"),
        "names the key, the bucket and the access point: {err}"
    );
    let (ok, err) = check_config(dir.path(), r#"sink = "s3://acme-logs/audit/""#);
    assert!(ok, "{err}");

    // `serve` refuses too, also for an access point that only the database holds.
    let app = TestApp::spawn(Backend::Sqlite, vec![avatars()]).await;
    let mut config = app.state.config().clone();
    config.audit.sink = format!("s3://{BUCKET}/logs/");
    config.access_points.file = None;
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    let err = match presignd::App::build(config).await {
        Ok(_) => panic!("serve must refuse the served bucket as log bucket"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("audit.sink") && err.contains(BUCKET) && err.contains("avatars"),
        "{err}"
    );
    app.finish().await;
}

#[test]
fn a_log_bucket_in_another_region_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err) = check_config(
        dir.path(),
        "sink = \"s3://acme-logs/\"\nregion = \"eu-west-1\"",
    );
    assert!(!ok);
    assert!(
        err.contains("audit.region") && err.contains("eu-west-1") && err.contains("us-east-1"),
        "names the key and both regions: {err}"
    );
    let (ok, err) = check_config(
        dir.path(),
        "sink = \"s3://acme-logs/\"\nregion = \"eu-west-1\"\nallow_cross_region = true",
    );
    assert!(ok, "explicitly allowed: {err}");
    let (ok, err) = check_config(
        dir.path(),
        "sink = \"s3://acme-logs/\"\nregion = \"us-east-1\"",
    );
    assert!(ok, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Crash safety: the real binary, killed with SIGKILL under load.

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn write_crash_config(dir: &Path, port: u16, db_url: &str, s3: &TestS3, flush_ms: u64) -> String {
    let ap_file = dir.join("access-points.json");
    std::fs::write(
        &ap_file,
        serde_json::to_vec(&json!({ "access_points": [avatars()] })).expect("json"),
    )
    .expect("write");
    let path = dir.join(format!("presignd-{flush_ms}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
require_https = false
shutdown_grace_ms = 2000
[database]
url = "{db_url}"
{issuer}
[s3]
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "{ak}"
secret_access_key = "{sk}"
[audit]
sink = "s3://{LOG_BUCKET}/crash/"
instance = "crashy"
flush_interval_ms = {flush_ms}
shutdown_flush_ms = 10000
[access_points]
file = "{ap}"
"#,
            issuer = common::app::issuer_toml(),
            endpoint = s3.endpoint,
            ak = s3.access_key,
            sk = s3.secret_key,
            ap = ap_file.display(),
        ),
    )
    .expect("write config");
    path.display().to_string()
}

fn start_presignd(dir: &Path, config: &str, log: &str) -> Server {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    let child = presignd(dir)
        .env("RUST_LOG", "info")
        .args(["--config", config, "serve"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start presignd");
    Server { child }
}

/// Starts presignd (`flush_ms`, log `log`) on a free port and waits until it is ready;
/// returns it and its base URL. A port taken between choosing it and binding it (another test
/// binding port 0 meanwhile) is not the test's failure: another port is tried.
async fn start_ready(
    http: &reqwest::Client,
    dir: &Path,
    db_url: &str,
    s3: &TestS3,
    flush_ms: u64,
    log: &str,
) -> (Server, String) {
    for _ in 0..5 {
        let port = free_port();
        let config = write_crash_config(dir, port, db_url, s3, flush_ms);
        let mut child = start_presignd(dir, &config, log);
        let base = format!("http://127.0.0.1:{port}");
        match wait_ready(http, &base, &mut child).await {
            Ok(()) => return (child, base),
            Err(status) => {
                let output = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
                assert!(
                    output.contains("cannot bind"),
                    "presignd exited: {status}\n{output}"
                );
            }
        }
    }
    panic!("no free port for presignd in 5 tries");
}

async fn wait_ready(
    http: &reqwest::Client,
    base: &str,
    child: &mut Server,
) -> Result<(), std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            return Err(status);
        }
        assert!(Instant::now() < deadline, "presignd did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the log bucket until every id is there.
async fn wait_shipped(s3: &TestS3, ids: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = id_counts(&log_objects(s3, "crash/").await);
        let missing = ids.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} issued URLs have no record in the log bucket",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn kill_9_loses_no_issued_record(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = TestS3::start().await;
    s3.create_bucket(LOG_BUCKET).await;
    let (db_url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("presignd.db").display()),
            None,
        ),
        Backend::Postgres => {
            let (admin_url, name) = create_postgres_database("presignd_crash").await;
            (with_database(&admin_url, &name), Some((admin_url, name)))
        }
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // Under load, shipping every 100 ms, then SIGKILL mid-flight.
    let (mut child, base) = start_ready(&http, dir.path(), &db_url, &s3, 100, "run-1.log").await;
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let (http, base, issued) = (http.clone(), base.clone(), Arc::clone(&issued));
        load.spawn(async move {
            // Many subjects, so that no per-subject rate limit slows the load down.
            let tokens: Vec<(String, String)> = (0..50)
                .map(|u| {
                    let sub = format!("crash{worker}x{u}");
                    let token = mint_hs256(&sub, &["users"], false, 600);
                    (sub, token)
                })
                .collect();
            for i in 0..2_000 {
                let (sub, token) = &tokens[i % tokens.len()];
                let resp = http
                    .post(format!("{base}/v1/access-points/avatars/presign"))
                    .bearer_auth(token)
                    .json(&json!({"operation": "get", "key": format!("{sub}/{i}.png")}))
                    .send()
                    .await;
                // After the kill: connection errors, or a response cut short.
                let Ok(resp) = resp else { return };
                let Ok(body) = resp.json::<Value>().await else {
                    return;
                };
                if let Some(url) = body["url"].as_str() {
                    issued.lock().expect("lock").push(url.to_string());
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while issued.lock().expect("lock").len() < 300 {
        assert!(Instant::now() < deadline, "load did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.child.kill().expect("SIGKILL");
    child.child.wait().expect("reap");
    while load.join_next().await.is_some() {}
    let before_crash: BTreeSet<String> = issued
        .lock()
        .expect("lock")
        .iter()
        .map(|u| record_id(u))
        .collect();

    // Restarted (same instance name, same database): the backlog ships at once, even with a
    // flush interval of an hour.
    let (mut child, base) =
        start_ready(&http, dir.path(), &db_url, &s3, 3_600_000, "run-2.log").await;
    let counts = wait_shipped(&s3, &before_crash).await;
    // A batch cut off by the kill is shipped again with the same rows under the same key:
    // nothing lost, nothing twice (the count match is by record id).
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "records in two objects: {repeated:?}");
    eprintln!(
        "{} URLs issued before SIGKILL, each with exactly one record in the log bucket",
        before_crash.len()
    );

    // Graceful shutdown ships what is left (the interval is an hour: only the flush can).
    let token = mint_hs256("alice", &["users"], false, 600);
    let mut after = BTreeSet::new();
    for i in 0..10 {
        let resp = http
            .post(format!("{base}/v1/access-points/avatars/presign"))
            .bearer_auth(&token)
            .json(&json!({"operation": "get", "key": format!("alice/late-{i}.png")}))
            .send()
            .await
            .expect("presign");
        let body: Value = resp.json().await.expect("json");
        after.insert(record_id(body["url"].as_str().expect("url")));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "presignd did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status}");
    let counts = id_counts(&log_objects(&s3, "crash/").await);
    for id in &after {
        assert_eq!(counts.get(id), Some(&1), "flushed at shutdown");
    }
    assert!(counts.values().all(|&n| n == 1), "no record twice");

    if let Some((admin_url, name)) = pg {
        drop_postgres_database(&admin_url, &name).await;
    }
}
on_both_backends!(crash_safety, kill_9_loses_no_issued_record);
