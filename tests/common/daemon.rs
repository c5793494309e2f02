//! The `presignd` binary as operators run it: a config file in a temp dir (SQLite, a
//! `file://` audit sink, the harness's HS256 issuer, the harness's access points from a file,
//! a port chosen by the OS), JSON logs captured line by line, stopped with a real SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const S3_ACCESS_KEY: &str = "AKIADAEMONTEST000001";
pub const S3_SECRET_KEY: &str = "daemon-test-s3-secret-key/0123456789+abcdef";

/// Writes the harness's access points (`avatars`, its per-user folders owned by the harness
/// issuer's subjects, so that a test may add another issuer) as the daemon's
/// `access_points.file`.
pub fn write_access_points(dir: &Path) {
    let avatars = super::app::avatars_of(&[super::app::ISSUER]);
    let file = serde_json::json!({ "access_points": [avatars] });
    std::fs::write(
        dir.join("access-points.yaml"),
        serde_json::to_vec(&file).expect("serialize access points"),
    )
    .expect("write access points");
}

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The configuration file; `extra` is appended (more tables).
pub fn config(dir: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
require_https = false
shutdown_grace_ms = 10000

[database]
url = "sqlite://{dir}/presignd.db"

{issuer}
[s3]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "{S3_ACCESS_KEY}"
secret_access_key = "{S3_SECRET_KEY}"

[audit]
sink = "file://{dir}/audit"
instance = "daemon"
flush_interval_ms = 200

[access_points]
file = "{dir}/access-points.yaml"

[log]
format = "json"
filter = "debug"
{extra}
"#,
        dir = dir.display(),
        issuer = super::app::issuer_toml(),
    )
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_presignd")
}

/// `presignd` without any `PRESIGND_*` variable of the test environment: the test decides
/// every override the daemon sees.
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESIGND_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

impl Daemon {
    /// Starts `presignd serve` and waits (30 s at most) for its `presignd listening` line.
    pub fn start(extra_config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        write_access_points(dir.path());
        let config = dir.path().join("presignd.toml");
        std::fs::write(&config, self::config(dir.path(), extra_config)).expect("write config");
        let mut cmd = command();
        cmd.arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn presignd");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = Arc::clone(&lines);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(line) => lines.lock().expect("lock").push(line),
                        Err(_) => break,
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = lines.lock().expect("lock").iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "presignd listening")
                    .then(|| v["fields"]["addr"].as_str()?.parse().ok())?
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "presignd exited with {status} before listening:\n{}",
                    lines.lock().expect("lock").join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "presignd did not start:\n{}",
                lines.lock().expect("lock").join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Daemon {
            child,
            addr,
            dir,
            lines,
            readers,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, nothing flushed.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// A real SIGTERM, as an orchestrator sends it.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (fails the test after `within`) and returns its status
    /// and every line it wrote to stdout and stderr.
    pub fn wait(&mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "presignd did not exit within {within:?}:\n{}",
                    self.lines.lock().expect("lock").join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let lines = self.lines.lock().expect("lock").clone();
        (status, lines)
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HS256 token for the daemon's issuer (the harness's).
pub fn token(sub: &str, groups: &[&str], ttl_secs: i64) -> String {
    super::app::mint_hs256(sub, groups, false, ttl_secs)
}

/// Every audit record in a `file://` sink directory (gzip NDJSON objects), in key order.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    super::app::audit_records_in(dir)
}
