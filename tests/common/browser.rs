//! Headless Debian chromium, driven by playwright-core from Node
//! (`examples/web/test/browser.mjs`), for the browser tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn artifacts() -> PathBuf {
    root().join("target/browser-artifacts")
}

/// Chromium and playwright-core are there (`scripts/ensure-test-tools`); a browser test is
/// never skipped.
pub fn preconditions() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y chromium (scripts/test installs it: scripts/ensure-test-tools)"
    );
    assert!(
        root()
            .join("examples/web/test/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: (cd examples/web/test && npm ci) (scripts/test does it: scripts/ensure-test-tools)"
    );
    std::fs::create_dir_all(artifacts()).expect("artifacts dir");
}

/// Runs the page once per `(name, url)` in a fresh chromium; returns each run's log.
pub fn browse(runs: &[(&str, String)]) -> Vec<Value> {
    browse_with(runs, json!({}))
}

/// [`browse`] with more of browser.mjs's options (`args`, `ignore_https_errors`).
pub fn browse_with(runs: &[(&str, String)], options: Value) -> Vec<Value> {
    let mut spec = json!({
        "chromium": CHROMIUM,
        "timeout_ms": 30000,
        "runs": runs.iter().map(|(name, url)| json!({
            "name": name, "url": url,
            "screenshot": artifacts().join(format!("{name}.png")),
        })).collect::<Vec<_>>(),
    });
    if let (Some(spec), Some(options)) = (spec.as_object_mut(), options.as_object()) {
        spec.extend(options.clone());
    }
    let out = Command::new("node")
        .arg(root().join("examples/web/test/browser.mjs"))
        .arg(spec.to_string())
        .current_dir(root())
        .output()
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("browser.mjs prints JSON");
    let runs = doc["runs"].as_array().expect("runs").clone();
    for r in &runs {
        std::fs::write(
            artifacts().join(format!("{}.json", r["name"].as_str().expect("name"))),
            serde_json::to_vec_pretty(r).expect("json"),
        )
        .expect("write run log");
    }
    runs
}

/// `(method, status)` of every response a run's page got from URLs starting with `prefix`
/// (e.g. radosgw's endpoint: what the browser sent straight to S3).
pub fn responses_to(run: &Value, prefix: &str) -> Vec<(String, u64)> {
    run["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .filter(|x| x["url"].as_str().is_some_and(|u| u.starts_with(prefix)))
        .map(|x| {
            (
                x["method"].as_str().expect("method").to_string(),
                x["status"].as_u64().expect("status"),
            )
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (a page URL's settings).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
