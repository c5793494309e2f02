//! The `presignd` binary's subcommands, run as a user would run them.

use std::path::Path;
use std::process::{Command, Output};

/// The binary with none of the test runner's `PRESIGND_*` variables (every one of them is a
/// configuration override to presignd).
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_presignd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESIGND_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).env("RUST_LOG", "warn");
    cmd
}

fn presignd(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("run presignd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HS_CONFIG: &str = r#"
[server]
require_https = false
[database]
url = "sqlite://state/presignd.db"
[[auth.issuers]]
issuer = "https://dev.example/"
audiences = ["presignd"]
algorithms = ["HS256"]
hs256_secret = "cli-test-secret-0123456789abcdef0123"
[s3]
access_key_id = "AK"
secret_access_key = "SK"
[audit]
sink = "file://state/audit"
"#;

const AP_FILE: &str = r#"
access_points:
  - name: avatars
    bucket: acme-user-content
    prefix: avatars/
    rules:
      - { effect: allow, groups: ["users"], operations: ["put", "get"], keys: ["${jwt:sub}/*"] }
  - name: reports
    bucket: acme-reports
    rules:
      - { effect: allow, groups: ["finance"], operations: ["get"] }
"#;

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = HS_CONFIG
        .replace("algorithms = [\"HS256\"]", "algorithms = [\"RS256\"]")
        .replace("[s3]", "[s3]\nendpoint = \"http://127.0.0.1:9000\"");
    std::fs::write(dir.path().join("bad.toml"), bad).expect("write");
    let out = presignd(dir.path(), &["--config", "bad.toml", "check-config"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("s3.endpoint"), "names s3.endpoint: {err}");
    assert!(err.contains("auth.issuers[0]"), "names the issuer: {err}");

    std::fs::write(dir.path().join("good.toml"), HS_CONFIG).expect("write");
    let out = presignd(dir.path(), &["--config", "good.toml", "check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = presignd(dir.path(), &["--config", "missing.toml", "check-config"]);
    assert!(
        !out.status.success(),
        "an explicitly named missing file is an error"
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), HS_CONFIG).expect("write");
    let out = command(dir.path())
        .args(["--config", "c.toml", "check-config"])
        .env("PRESIGND_S3__ENDPOINT", "ftp://nope")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("s3.endpoint"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn token_mints_a_verifiable_dev_token_and_refuses_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), HS_CONFIG).expect("write");
    let out = presignd(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "token",
            "--sub",
            "alice",
            "--groups",
            "users,admins",
            "--mfa",
            "--ttl",
            "10m",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["presignd"]);
    v.set_issuer(&["https://dev.example/"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(b"cli-test-secret-0123456789abcdef0123"),
        &v,
    )
    .expect("token verifies with the configured secret");
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(
        data.claims["groups"],
        serde_json::json!(["users", "admins"])
    );
    assert!(
        data.claims["amr"]
            .as_array()
            .expect("amr")
            .contains(&serde_json::json!("mfa"))
    );
    let ttl = data.claims["exp"].as_i64().expect("exp") - data.claims["iat"].as_i64().expect("iat");
    assert_eq!(ttl, 600);

    let jwks_only = HS_CONFIG
        .replace("algorithms = [\"HS256\"]", "algorithms = [\"RS256\"]")
        .replace(
            "hs256_secret = \"cli-test-secret-0123456789abcdef0123\"",
            "jwks_url = \"https://idp.example/jwks.json\"",
        );
    std::fs::write(dir.path().join("jwks.toml"), jwks_only).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "jwks.toml", "token", "--sub", "alice"],
    );
    assert!(!out.status.success(), "no local signing key: refused");
    assert!(
        text(&out.stderr).contains("signing key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn apply_is_idempotent_and_prunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), HS_CONFIG).expect("write");
    std::fs::write(dir.path().join("aps.yaml"), AP_FILE).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "aps.yaml"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(r#"created: ["avatars", "reports"]"#),
        "{}",
        text(&out.stdout)
    );

    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "aps.yaml"],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains(r#"unchanged: ["avatars", "reports"]"#),
        "second apply changes nothing: {}",
        text(&out.stdout)
    );

    let only_avatars: String = AP_FILE.lines().take(7).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("one.yaml"), only_avatars).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "one.yaml"],
    );
    assert!(
        text(&out.stdout).contains("deleted: []"),
        "no prune without --prune"
    );
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "one.yaml", "--prune"],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains(r#"deleted: ["reports"]"#),
        "{}",
        text(&out.stdout)
    );

    let invalid = AP_FILE.replace("acme-reports", "Not_A_Bucket");
    std::fs::write(dir.path().join("bad.yaml"), invalid).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "bad.yaml"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("reports") && text(&out.stderr).contains("bucket"),
        "{}",
        text(&out.stderr)
    );
}

/// Finding 3 of the hardening review, through `apply --prune`: an apply has no token to carry
/// a second factor, so it must say which MFA protection it weakens or moves.
#[test]
fn apply_says_what_it_does_to_mfa_protected_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), HS_CONFIG).expect("write");
    let guarded = r#"
access_points:
  - name: avatars
    bucket: acme-user-content
    prefix: avatars/
    rules:
      - { effect: allow, groups: ["moderators"], operations: ["delete"], require_mfa: true }
  - name: vault
    bucket: acme-vault
    rules:
      - { effect: allow, groups: ["ops"], operations: ["delete"], require_mfa: true }
"#;
    std::fs::write(dir.path().join("guarded.yaml"), guarded).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "guarded.yaml"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("weakens or moves MFA protection: avatars: grants delete"),
        "{stdout}"
    );
    // Move avatars to the bucket's root, drop vault.
    let moved = guarded
        .replace("prefix: avatars/", "prefix: \"\"")
        .split("  - name: vault")
        .next()
        .unwrap_or_default()
        .to_string();
    std::fs::write(dir.path().join("moved.yaml"), moved).expect("write");
    let out = presignd(
        dir.path(),
        &["--config", "c.toml", "apply", "-f", "moved.yaml", "--prune"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "weakens or moves MFA protection: avatars: moves rules with require_mfa to another bucket or prefix",
        "weakens or moves MFA protection: vault: deletes an access point with require_mfa rules",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
}

#[test]
fn bucket_policy_and_cors_are_derived_from_the_access_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), HS_CONFIG).expect("write");
    let file = AP_FILE
        .replace(
            "    prefix: avatars/\n",
            "    prefix: avatars/\n    encryption: { mode: sse-s3 }\n    cors_origins: [\"https://app.example.com\"]\n",
        );
    std::fs::write(dir.path().join("aps.yaml"), file).expect("write");

    let out = presignd(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "bucket-policy",
            "avatars",
            "-f",
            "aps.yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).expect("policy JSON");
    let statements = policy["Statement"].as_array().expect("statements");
    assert!(
        statements
            .iter()
            .any(|s| s["Condition"]["Bool"]["aws:SecureTransport"] == "false")
    );
    assert!(
        statements.iter().any(
            |s| s["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption"] == "AES256"
        )
    );

    let out = presignd(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "bucket-cors",
            "avatars",
            "-f",
            "aps.yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cors: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cors JSON");
    let rule = &cors["CORSRules"][0];
    assert_eq!(rule["ID"], "presignd-avatars");
    assert_eq!(
        rule["AllowedOrigins"],
        serde_json::json!(["https://app.example.com"])
    );
    assert_eq!(
        rule["AllowedMethods"],
        serde_json::json!(["GET", "HEAD", "PUT", "POST"])
    );
    assert!(
        rule["AllowedHeaders"]
            .as_array()
            .expect("headers")
            .contains(&serde_json::json!("x-amz-server-side-encryption"))
    );

    let out = presignd(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "bucket-cors",
            "reports",
            "-f",
            "aps.yaml",
        ],
    );
    assert!(!out.status.success(), "no cors_origins: nothing to derive");
    let out = presignd(
        dir.path(),
        &[
            "--config",
            "c.toml",
            "bucket-policy",
            "nope",
            "-f",
            "aps.yaml",
        ],
    );
    assert!(!out.status.success());
}

/// Issue 21: `presignd explain` offline against an apply file, exit 0 on allow and 1 on
/// deny, and `--matrix` over the examples (the documented example, run as users would).
#[test]
fn explain_decides_offline_and_checks_a_matrix() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("presignd.toml"), HS_CONFIG).expect("config");
    std::fs::write(dir.path().join("aps.yaml"), AP_FILE).expect("aps");
    let explain = |args: &[&str]| {
        let mut all = vec!["--config", "presignd.toml", "explain", "-f", "aps.yaml"];
        all.extend_from_slice(args);
        presignd(dir.path(), &all)
    };
    let out = explain(&[
        "--sub",
        "alice",
        "--groups",
        "users",
        "get",
        "avatars/alice/a.png",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("allow (rule 0)"), "{shown}");
    assert!(
        shown.contains("full key \"avatars/alice/a.png\""),
        "{shown}"
    );
    let out = explain(&[
        "--sub",
        "bob",
        "--groups",
        "users",
        "get",
        "avatars/alice/a.png",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("deny: 403 forbidden"),
        "{}",
        text(&out.stdout)
    );
    let out = explain(&[
        "--sub",
        "alice",
        "--groups",
        "users",
        "--json",
        "get",
        "reports/x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (json["status"].as_u64(), json["code"].as_str()),
        (Some(404), Some("not_found"))
    );

    // A matrix: all as expected, then one expectation that no longer holds, shown as a diff.
    let matrix = dir.path().join("m.yaml");
    std::fs::write(
        &matrix,
        "- {sub: alice, groups: [users], operation: get, access_point: avatars, key: alice/a.png, expect: allow}\n\
         - {sub: bob, groups: [users], operation: get, access_point: avatars, key: alice/a.png, expect: forbidden}\n",
    )
    .expect("matrix");
    let out = explain(&["--matrix", "m.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    std::fs::write(
        &matrix,
        "- {name: bob reads alice, sub: bob, groups: [users], operation: get, access_point: avatars, key: alice/a.png, expect: allow}\n",
    )
    .expect("matrix");
    let out = explain(&["--matrix", "m.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(
        diff.contains(
            "#0 bob reads alice\n  - expected: allow\n  + got:      forbidden (rules: implicit_deny"
        ),
        "{diff}"
    );

    // The documented example, run from the repository as its comment says: the example
    // matrix against the example access points (with -f, no database is opened).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = presignd(
        repo,
        &[
            "--config",
            "examples/presignd.toml",
            "explain",
            "-f",
            "examples/access-points.yaml",
            "--matrix",
            "examples/access-points.matrix.yaml",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("10 cases, all as expected"),
        "{}",
        text(&out.stdout)
    );
}
