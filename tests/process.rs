//! The binary as an operator runs it: `--version`, `check-config` printing the effective
//! configuration with secrets redacted, and SIGTERM: stop accepting, finish the requests in
//! flight, ship the audit outbox, exit 0.

mod common;

use std::time::{Duration, Instant};

use common::app::{HS_SECRET, ISSUER};
use common::daemon::{self, Daemon, S3_SECRET_KEY, token};
use common::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[test]
fn version_flag_prints_the_crate_version() {
    let out = daemon::command().arg("--version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("presignd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    daemon::write_access_points(dir.path());
    let config = dir.path().join("presignd.toml");
    std::fs::write(
        &config,
        daemon::config(
            dir.path(),
            "[metrics]\nbearer_token = \"metrics-token-0123456789abcdef\"\n",
        ),
    )
    .expect("write");
    let out = daemon::command()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env("PRESIGND_SERVER__REQUEST_TIMEOUT_MS", "4321")
        .env(
            "PRESIGND_DATABASE__URL",
            "postgres://presignd:db-password-0123@db.internal/presignd",
        )
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration valid"), "{stdout}");
    let effective = stdout
        .split_once("# effective configuration (secrets redacted)")
        .expect("effective config printed")
        .1;
    let parsed: toml::Table = effective.parse().expect("the effective config is TOML");
    assert_eq!(
        parsed["server"]["request_timeout_ms"].as_integer(),
        Some(4321),
        "environment overrides are applied"
    );
    assert_eq!(parsed["database"]["url"].as_str(), Some("[redacted]"));
    assert_eq!(
        parsed["s3"]["secret_access_key"].as_str(),
        Some("[redacted]")
    );
    assert_eq!(
        parsed["metrics"]["bearer_token"].as_str(),
        Some("[redacted]")
    );
    for secret in [
        HS_SECRET,
        S3_SECRET_KEY,
        "metrics-token-0123456789abcdef",
        "db-password-0123",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed");
    }
}

/// Sends the headers and the first half of a presign request, leaving it in flight.
async fn start_slow_request(
    addr: std::net::SocketAddr,
    token: &str,
    key: &str,
) -> (TcpStream, Vec<u8>) {
    let body = format!(r#"{{"operation": "get", "key": "{key}"}}"#).into_bytes();
    let head = format!(
        "POST /v1/access-points/avatars/presign HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    let (first, rest) = body.split_at(body.len() / 2);
    tcp.write_all(first).await.expect("write half the body");
    tcp.flush().await.expect("flush");
    (tcp, rest.to_vec())
}

async fn finish_request(mut tcp: TcpStream, rest: Vec<u8>) -> String {
    tcp.write_all(&rest).await.expect("write the rest");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_flushes_the_audit_and_exits_zero() {
    let d = Daemon::start("", &[]);
    let addr = d.addr;
    let alice = token("alice", &["users"], 600);

    // Requests in flight: headers and half a body sent.
    let mut in_flight = Vec::new();
    for i in 0..4 {
        in_flight.push(start_slow_request(addr, &alice, &format!("alice/{i}.png")).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.sigterm();

    // The listener closes: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after SIGTERM");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The requests in flight complete normally.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let finished = in_flight
        .into_iter()
        .map(|(tcp, rest)| tokio::spawn(finish_request(tcp, rest)));
    let mut request_ids = Vec::new();
    for f in finished {
        let response = f.await.expect("join");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("X-Amz-Signature="), "{response}");
        let id = response
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .expect("x-request-id")
            .trim()
            .to_string();
        request_ids.push(id);
    }

    let (d, (status, lines)) = tokio::task::spawn_blocking(move || {
        let mut d = d;
        let waited = d.wait(Duration::from_secs(30));
        (d, waited)
    })
    .await
    .expect("join");
    assert_eq!(status.code(), Some(0), "exit 0:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("audit outbox flushed")),
        "the outbox is flushed at shutdown:\n{}",
        lines.join("\n")
    );
    // Every drained request's audit record reached the log sink before the exit.
    let records = daemon::audit_records(&d.audit_dir());
    for id in &request_ids {
        assert!(
            records
                .iter()
                .any(|r| r["request_id"] == id.as_str() && r["decision"] == "allow"),
            "audit record of {id} shipped; have {records:?}"
        );
    }
}

const PARTNER: &str = "https://partner.example/";
const PARTNER_SECRET: &str = "partner-idp-hs256-secret-0123456789abcdef";

fn partner_issuer() -> String {
    format!(
        "[[auth.issuers]]\nissuer = \"{PARTNER}\"\naudiences = [\"presignd\"]\nalgorithms = [\"HS256\"]\nhs256_secret = \"{PARTNER_SECRET}\"\n"
    )
}

fn partner_token(sub: &str, groups: &[&str]) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": PARTNER, "aud": "presignd", "sub": sub, "groups": groups,
        "iat": now, "nbf": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(PARTNER_SECRET.as_bytes()),
    )
    .expect("sign partner token")
}

/// Finding 2 of the hardening review, against the binary: with a second (partner) issuer, a
/// partner user in a group named `presignd-admins` used to administer presignd. Now two
/// issuers without `auth.admin_issuers` do not start, and with it only the named issuer's
/// admin group counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rights_come_only_from_the_admin_issuers() {
    let dir = tempfile::tempdir().expect("tempdir");
    daemon::write_access_points(dir.path());
    let config = dir.path().join("presignd.toml");
    std::fs::write(&config, daemon::config(dir.path(), &partner_issuer())).expect("write");
    let out = daemon::command()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "two issuers need admin_issuers");
    assert!(
        stderr.contains("auth.admin_issuers: is required when more than one issuer"),
        "{stderr}"
    );
    let admin_issuers = format!("[\"{ISSUER}\"]");
    let named = [("PRESIGND_AUTH__ADMIN_ISSUERS", admin_issuers.as_str())];
    let out = daemon::command()
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .envs(named)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "admin API: callers in group \"presignd-admins\" with a token from {ISSUER} (auth.admin_issuers)"
        )),
        "check-config explains who administers: {stdout}"
    );

    let d = Daemon::start(&partner_issuer(), &named);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let get = |path: &'static str, token: String| {
        let http = http.clone();
        let base = d.base();
        async move {
            let resp = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let outsider = partner_token("mallory", &["presignd-admins"]);
    let (s, b) = get("/v1/admin/access-points", outsider.clone()).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")), "{b}");
    let (s, b) = get("/v1/whoami", outsider).await;
    assert_eq!((s, b["admin"].as_bool()), (200, Some(false)), "{b}");
    let insider = token("root", &["presignd-admins"], 600);
    let (s, b) = get("/v1/admin/access-points", insider.clone()).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = get("/v1/whoami", insider).await;
    assert_eq!(b["admin"].as_bool(), Some(true), "{s} {b}");
}

/// Reads until the server closes the connection (EOF or reset); `None` if it is still open
/// after `within`. Returns what was read.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(seen)
}

/// Finding 7 of the hardening review, against the binary with raw sockets: connections
/// sending partial headers were still open after 77 s, TLS handshakes had no timeout, and
/// there was no cap on connections. Now each is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_bounded() {
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = tls::issue(certs.path(), "server");
    let (cert_path, key_path) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let d = Daemon::start(
        "",
        &[
            ("PRESIGND_SERVER__HEADER_READ_TIMEOUT_MS", "600"),
            ("PRESIGND_SERVER__IDLE_TIMEOUT_MS", "900"),
            ("PRESIGND_SERVER__TLS_HANDSHAKE_TIMEOUT_MS", "600"),
            ("PRESIGND_SERVER__MAX_CONNECTIONS", "3"),
            ("PRESIGND_SERVER__TLS_CERT", &cert_path),
            ("PRESIGND_SERVER__TLS_KEY", &key_path),
        ],
    );
    let addr = d.addr;
    let limit = Duration::from_secs(10);

    // Slowloris: a partial request, then one more header byte every 100 ms. The headers are
    // due 600 ms after the accept, however the bytes trickle.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: presignd\r\nx-slow: ")
            .await
            .expect("write");
        slow.push(tcp);
    }
    let trickle = async {
        for _ in 0..100 {
            for tcp in slow.iter_mut() {
                if tcp.write_all(b"a").await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(limit, trickle).await;
    for tcp in slow.iter_mut() {
        let seen = closed_within(tcp, Duration::from_secs(2)).await;
        assert!(seen.is_some(), "a slow-header connection is closed");
    }

    // A TLS handshake that stalls after its first bytes.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    assert!(
        closed_within(&mut stalled, limit).await.is_some(),
        "a stalled TLS handshake is closed"
    );

    // A keep-alive connection is served, then closed once idle.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: presignd\r\n\r\n")
        .await
        .expect("write");
    let seen = closed_within(&mut idle, limit)
        .await
        .expect("an idle keep-alive connection is closed");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "served first: {seen}");

    // max_connections = 3: three silent connections hold every slot; a fourth client is
    // answered only once the server has closed one of them (header deadline).
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .get(format!("{}/healthz", d.base()))
        .timeout(limit)
        .send()
        .await
        .expect("the fourth client is served once a slot frees");
    assert_eq!(resp.status().as_u16(), 200);
    // Probed right away: a holder the server closed reads EOF at once.
    let mut closed = 0;
    for h in holders.iter_mut() {
        let mut probe = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(50), h.read(&mut probe)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "answered only after a held connection was closed ({closed} closed)"
    );
    let metrics = http
        .get(format!("{}/metrics", d.base()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for phase in ["header", "idle", "tls_handshake"] {
        let line = format!("presignd_http_connection_timeouts_total{{phase=\"{phase}\"}}");
        assert!(metrics.contains(&line), "{line} counted:\n{metrics}");
    }
}
