//! Every access point example in `examples/` is accepted by the real binary, the way the
//! guides tell operators to check it: `presignd --config c.toml check-config` with
//! `[access_points] file` naming the example. New examples are picked up by name.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The issuer the examples pin in their `${jwt:sub}` rules (docs/guides/web-gallery.md).
const ISSUER: &str = "https://idp.example.com/";
/// A second identity provider: with two issuers, per-user rules must name theirs.
const PARTNER: &str = "https://partner.example.net/";

/// The binary with none of the test runner's `PRESIGND_*` variables (each would override
/// the configuration).
fn command(dir: &Path) -> Command {
    let mut cmd = common::daemon::command();
    cmd.current_dir(dir).env("RUST_LOG", "warn");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `examples/access-points.yaml` and every `examples/*.access-points.yaml` (not
/// `access-points.matrix.yaml`: expected decisions, not access points).
fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "access-points.yaml" || n.ends_with(".access-points.yaml"))
        })
        .collect();
    files.sort();
    files
}

/// What the test needs to know of an example, read independently of presignd's own parser.
struct Example {
    names: Vec<String>,
    /// `delivery.cloudfront.key_pair_id`s: each must be in `[[cloudfront.keys]]`.
    key_pair_ids: Vec<String>,
    /// Every allow rule using `${jwt:sub}` names its issuers, so the file must stay valid
    /// with several issuers configured.
    per_user_rules_pinned: bool,
}

fn read_example(path: &Path) -> Example {
    let text = std::fs::read_to_string(path).expect("read example");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("example is YAML");
    let aps = doc["access_points"]
        .as_sequence()
        .expect("a top-level access_points list");
    let mut ex = Example {
        names: Vec::new(),
        key_pair_ids: Vec::new(),
        per_user_rules_pinned: true,
    };
    for ap in aps {
        ex.names.push(
            ap["name"]
                .as_str()
                .expect("every access point has a name")
                .into(),
        );
        if let Some(id) = ap["delivery"]["cloudfront"]["key_pair_id"].as_str()
            && !ex.key_pair_ids.iter().any(|k| k == id)
        {
            ex.key_pair_ids.push(id.into());
        }
        for rule in ap["rules"].as_sequence().into_iter().flatten() {
            let per_user = rule["keys"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|k| k.as_str().is_some_and(|k| k.contains("${jwt:sub}")));
            let pinned = rule["issuers"].as_sequence().is_some_and(|i| !i.is_empty());
            if rule["effect"].as_str() == Some("allow") && per_user && !pinned {
                ex.per_user_rules_pinned = false;
            }
        }
    }
    ex
}

/// A minimal configuration (the shape of tests/cli.rs's) applying `example`, with one
/// `[[auth.issuers]]` per entry of `issuers` and a generated key for each CloudFront key id
/// the example names (premium-video's `K2JCJMDEHXQW5F`; without it the file is refused).
fn config(dir: &Path, example: &Path, ex: &Example, issuers: &[&str]) -> String {
    let mut toml = String::from("[server]\nrequire_https = false\n");
    toml += "[database]\nurl = \"sqlite://state/presignd.db\"\n";
    if issuers.len() > 1 {
        // Required with several issuers.
        toml += &format!("[auth]\nadmin_issuers = [\"{}\"]\n", issuers[0]);
    }
    for (i, issuer) in issuers.iter().enumerate() {
        toml += &format!(
            "[[auth.issuers]]\nissuer = \"{issuer}\"\naudiences = [\"presignd\"]\nalgorithms = [\"HS256\"]\nhs256_secret = \"examples-test-secret-{i}-0123456789abcdef\"\n"
        );
    }
    toml += "[s3]\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
    toml += "[audit]\nsink = \"file://state/audit\"\n";
    toml += &format!("[access_points]\nfile = \"{}\"\n", example.display());
    for id in &ex.key_pair_ids {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let key_file = dir.join(format!("{id}.pem"));
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        toml += &format!(
            "[[cloudfront.keys]]\nkey_pair_id = \"{id}\"\nprivate_key_file = \"{}\"\n",
            key_file.display()
        );
    }
    toml
}

fn presignd(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("run presignd")
}

/// Runs `check-config` and the per-name lookups; `Err` says what went wrong.
fn check(example: &Path, ex: &Example, issuers: &[&str]) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = config(dir.path(), example, ex, issuers);
    std::fs::write(dir.path().join("c.toml"), &toml).expect("write config");
    let out = presignd(dir.path(), &["--config", "c.toml", "check-config"]);
    let stdout = text(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "check-config failed with {issuers:?}:\n{}\n--- config ---\n{toml}",
            text(&out.stderr)
        ));
    }
    // check-config prints the count, not the names.
    let valid = format!(
        "{}: {} access points valid",
        example.display(),
        ex.names.len()
    );
    if !stdout.contains(&valid) {
        return Err(format!("check-config did not say {valid:?}:\n{stdout}"));
    }
    // Each name, as presignd reads it from the file ("no access point named …" otherwise).
    let file = example.to_str().expect("UTF-8 path");
    for name in &ex.names {
        let out = presignd(
            dir.path(),
            &[
                "--config",
                "c.toml",
                "bucket-policy",
                name.as_str(),
                "-f",
                file,
            ],
        );
        if !out.status.success() {
            return Err(format!(
                "access point {name} not found by presignd: {}",
                text(&out.stderr)
            ));
        }
    }
    Ok(())
}

#[test]
fn every_example_access_point_file_passes_check_config() {
    let files = example_files();
    // The glob must not silently match nothing.
    for expected in [
        "access-points.yaml",
        "premium-video.access-points.yaml",
        "web-gallery.access-points.yaml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "examples/{expected} not found among {files:?}"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        let ex = read_example(file);
        if ex.names.is_empty() {
            failures.push(format!("{}: no access points", file.display()));
            continue;
        }
        // One issuer, as in the dev configuration and the guides.
        if let Err(e) = check(file, &ex, &[ISSUER]) {
            failures.push(format!("{}: {e}", file.display()));
        }
        // The guides promise that a file pinning its per-user rules stays valid when a second
        // issuer is added. (examples/access-points.yaml is for the single dev issuer.)
        if ex.per_user_rules_pinned
            && let Err(e) = check(file, &ex, &[ISSUER, PARTNER])
        {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
