//! Signed webhooks (`[[webhooks]]`) checked by a receiver presignd's code has no part in: a
//! Node server verifying every delivery with the `standardwebhooks` library
//! (tests/webhook-receiver). Events are queued with the verification that causes them and
//! delivered at least once: after the receiver was down for 30 s, after presignd was killed
//! with SIGKILL, and once each by two instances sharing PostgreSQL. A destination that
//! resolves to loopback is refused unless allowed, and ends as a dead letter an admin can
//! list and retry.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{BUCKET, Backend, Options, S3Endpoint, TestApp, ap};
use common::daemon::Daemon;
use common::s3::{TestS3, put_presigned};
use serde_json::{Value, json};

/// 32 bytes, base64.
const SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUtd2ViaG9vay10ZXN0cy0wMTIz";

/// A port nothing listens on yet.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The Node receiver: every request verified with `standardwebhooks`, one JSON line each.
struct Receiver {
    child: Option<Child>,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// A receiver for `port`, not started.
    fn on(port: u16) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        Receiver {
            child: None,
            port,
            out: dir.path().join("received.ndjson"),
            _dir: dir,
        }
    }

    fn start(&mut self) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/webhook-receiver/receiver.mjs"
        );
        let mut child = Command::new("node")
            .args([script, &self.port.to_string(), SECRET])
            .arg(&self.out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (scripts/ensure-test-tools installs it)");
        // Wait for "listening on PORT".
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("receiver output");
        assert!(line.starts_with("listening"), "receiver: {line}");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Every request received so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Waits (up to `within`) until `n` verified deliveries arrived; returns them all.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            assert!(
                got.iter().all(|r| r["verified"] == true),
                "every delivery verifies with standardwebhooks: {got:?}"
            );
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn inbox(name: &str) -> presignd::policy::AccessPointSpec {
    ap(json!({
        "name": name, "bucket": BUCKET, "prefix": format!("{name}/"),
        "rules": [{"effect": "allow", "groups": ["users"], "operations": ["put"], "keys": ["${jwt:sub}/*"]}]
    }))
}

/// The webhook and fast retries, for the harness's configuration.
fn hooked(opts: &mut Options, url: String) {
    opts.config(move |c| {
        c.webhooks = vec![
            toml::from_str(&format!(
                r#"name = "app"
                   url = "{url}"
                   secret = "{SECRET}"
                   events = ["upload.verified", "upload.rejected"]
                   access_points = ["inbox"]
                   allow_private_network = true"#
            ))
            .expect("webhook config"),
        ];
        c.webhook_delivery.initial_backoff_ms = 200;
        c.webhook_delivery.max_backoff_ms = 2_000;
        c.webhook_delivery.poll_interval_ms = 50;
    });
}

/// Presigns, uploads and verifies `key` on `ap` (`body`, declared and sent); with `replace`,
/// another writer replaces the object before the verification. The answer.
async fn upload_and_verify(
    app: &TestApp,
    token: &str,
    ap: &str,
    key: &str,
    body: &[u8],
    replace: Option<&[u8]>,
) -> Value {
    let (s, issued) = app
        .presign(
            token,
            ap,
            json!({"operation": "put", "key": key, "content_length": body.len()}),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(
        put_presigned(&app.http, &issued, body.to_vec()).await.0,
        200
    );
    if let Some(other) = replace {
        app.s3
            .sdk_client()
            .put_object()
            .bucket(BUCKET)
            .key(format!("{ap}/{key}"))
            .body(other.to_vec().into())
            .send()
            .await
            .expect("PutObject");
    }
    let (s, v) = app
        .post(
            token,
            &format!("/v1/access-points/{ap}/uploads/verify"),
            json!({"issuance_id": issued["issuance_id"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

fn ids(received: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for r in received {
        *ids.entry(r["id"].as_str().expect("webhook-id").to_string())
            .or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_delivered_signed_and_retried_until_the_receiver_is_back() {
    let mut receiver = Receiver::on(free_port());
    let mut opts = Options::new(Backend::Sqlite, vec![inbox("inbox"), inbox("other")]);
    hooked(&mut opts, receiver.url());
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users", "staff"], false);

    // The receiver is down: the first verification's event waits, retried with backoff.
    let first = upload_and_verify(&app, &alice, "inbox", "alice/a.txt", b"hello", None).await;
    assert_eq!(first["status"], "verified");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let failed = app
        .state
        .metrics()
        .webhook_deliveries_total
        .with_label_values(&["app", "failed"])
        .get();
    assert!(failed >= 3, "retried while the receiver was down: {failed}");
    receiver.start();
    // A rejected upload, and one on an access point the webhook does not follow.
    let second = upload_and_verify(
        &app,
        &alice,
        "inbox",
        "alice/b.txt",
        b"hello",
        Some(b"hell"),
    )
    .await;
    assert_eq!(second["status"], "rejected", "{second}");
    upload_and_verify(&app, &alice, "other", "alice/c.txt", b"hello", None).await;

    receiver.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.received();
    assert_eq!(
        got.len(),
        2,
        "one delivery per event, none for `other`: {got:?}"
    );
    assert!(
        ids(&got).values().all(|n| *n == 1),
        "no duplicates: {got:?}"
    );
    let by_type: BTreeMap<&str, &Value> = got
        .iter()
        .map(|r| (r["type"].as_str().expect("type"), r))
        .collect();
    let verified = &by_type["upload.verified"]["data"];
    assert_eq!(verified["issuance_id"], first["issuance_id"]);
    assert_eq!(verified["key"], "inbox/alice/a.txt");
    assert_eq!(verified["bucket"], BUCKET);
    assert_eq!(verified["content_length"], 5);
    assert_eq!(verified["sub"], "alice");
    assert_eq!(verified["groups"], json!(["users", "staff"]));
    assert!(verified["iss"].as_str().is_some_and(|i| !i.is_empty()));
    let rejected = &by_type["upload.rejected"]["data"];
    assert_eq!(rejected["mismatches"][0]["field"], "content_length");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_queued_before_a_kill_9_is_delivered_after_the_restart() {
    let s3 = TestS3::start().await;
    s3.create_bucket(BUCKET).await;
    let mut receiver = Receiver::on(free_port());
    let db = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}/shared.db", db.path().display());
    let extra = format!(
        r#"
[[webhooks]]
name = "app"
url = "{url}"
secret = "{SECRET}"
events = ["upload.verified"]
allow_private_network = true

[webhook_delivery]
initial_backoff_ms = 200
max_backoff_ms = 1000
poll_interval_ms = 50
"#,
        url = receiver.url()
    );
    let env = [
        ("PRESIGND_DATABASE__URL", db_url.as_str()),
        ("PRESIGND_S3__ENDPOINT", s3.endpoint.as_str()),
        ("PRESIGND_S3__ACCESS_KEY_ID", s3.access_key.as_str()),
        ("PRESIGND_S3__SECRET_ACCESS_KEY", s3.secret_key.as_str()),
    ];
    let mut first = Daemon::start(&extra, &env);
    let http = reqwest::Client::new();
    let alice = common::daemon::token("alice", &["users"], 600);
    let issued: Value = http
        .post(format!("{}/v1/access-points/avatars/presign", first.base()))
        .bearer_auth(&alice)
        .json(&json!({"operation": "put", "key": "alice/k.txt", "content_length": 4, "content_type": "text/plain"}))
        .send()
        .await
        .expect("presign")
        .json()
        .await
        .expect("json");
    assert_eq!(put_presigned(&http, &issued, b"kill".to_vec()).await.0, 200);
    let verified = http
        .post(format!(
            "{}/v1/access-points/avatars/uploads/verify",
            first.base()
        ))
        .bearer_auth(&alice)
        .json(&json!({"issuance_id": issued["issuance_id"]}))
        .send()
        .await
        .expect("verify");
    assert_eq!(verified.status().as_u16(), 200);
    // Answered: the event is queued; the receiver is down, so it is not delivered yet.
    first.kill9();
    receiver.start();
    let second = Daemon::start(&extra, &env);
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["issuance_id"], issued["issuance_id"]);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_event_once() {
    let mut receiver = Receiver::on(free_port());
    receiver.start();
    let mut opts = Options::new(Backend::Postgres, vec![inbox("inbox")]);
    hooked(&mut opts, receiver.url());
    let a = TestApp::spawn_with(opts).await;
    let mut opts = Options::new(Backend::Postgres, vec![inbox("inbox")]);
    opts.shared_database = Some(a.db_url.clone());
    opts.s3_endpoint = Some(S3Endpoint {
        endpoint: a.s3.endpoint.clone(),
        access_key: a.s3.access_key.clone(),
        secret_key: a.s3.secret_key.clone(),
    });
    hooked(&mut opts, receiver.url());
    let b = TestApp::spawn_with(opts).await;
    let alice = a.token("alice", &["users"], false);
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        upload_and_verify(app, &alice, "inbox", &format!("alice/{i}.txt"), b"ok", None).await;
    }
    receiver.wait_for(20, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 20, "{got:?}");
    assert_eq!(ids(&got).len(), 20, "each event once");
    b.finish().await;
    a.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_are_refused_unless_allowed_and_end_as_dead_letters() {
    // A literal loopback address (over http, as a local receiver would be) is refused at
    // startup unless allowed.
    let mut config: presignd::config::Config = toml::from_str(&format!(
        r#"[[webhooks]]
           name = "app"
           url = "http://127.0.0.1:9/hooks"
           secret = "{SECRET}"
           events = ["upload.verified"]"#
    ))
    .expect("parses");
    let problems = config.validate().expect_err("refused").to_string();
    assert!(problems.contains("webhooks[0].url"), "{problems}");
    config.webhooks[0].allow_private_network = true;
    let rest = config
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!rest.contains("webhooks[0]"), "allowed: {rest}");

    // A name that resolves to loopback is refused at delivery, then dead-lettered.
    let mut receiver = Receiver::on(free_port());
    receiver.start();
    let url = format!("https://localhost:{}/hooks", receiver.port);
    let mut opts = Options::new(Backend::Sqlite, vec![inbox("inbox")]);
    opts.config(move |c| {
        c.webhooks = vec![
            toml::from_str(&format!(
                r#"name = "app"
                   url = "{url}"
                   secret = "{SECRET}"
                   events = ["upload.verified"]"#
            ))
            .expect("webhook config"),
        ];
        c.webhook_delivery.retry_for_seconds = 1;
        c.webhook_delivery.initial_backoff_ms = 100;
        c.webhook_delivery.max_backoff_ms = 200;
        c.webhook_delivery.poll_interval_ms = 50;
    });
    let app = TestApp::spawn_with(opts).await;
    let alice = app.token("alice", &["users"], false);
    upload_and_verify(&app, &alice, "inbox", "alice/x.txt", b"ok", None).await;
    let root = app.token("root", &["presignd-admins"], false);
    let mut dead = Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, d) = app
            .get(Some(&root), "/v1/admin/webhooks/dead-letters")
            .await;
        assert_eq!(s, 200, "{d}");
        if d["dead_letters"].as_array().is_some_and(|a| !a.is_empty()) {
            dead = d;
            break;
        }
    }
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["endpoint"], "app", "{dead}");
    assert!(
        letter["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no public address")),
        "{letter}"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    // Only admins see them (to others the admin API does not exist); a retry queues it
    // again (and it fails again the same way).
    let (s, _) = app
        .get(Some(&alice), "/v1/admin/webhooks/dead-letters")
        .await;
    assert_eq!(s, 404);
    let id = letter["delivery_id"].as_str().expect("delivery_id");
    let (s, _) = app
        .post(
            &root,
            &format!("/v1/admin/webhooks/dead-letters/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202);
    let (s, _) = app
        .post(
            &root,
            &format!("/v1/admin/webhooks/dead-letters/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404, "no longer dead");
    let records = app.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["operation"] == "admin.webhook_retry" && r["decision"] == "allow")
    );
    app.finish().await;
}
