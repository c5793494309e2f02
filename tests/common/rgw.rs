//! A real Ceph RADOS Gateway on loopback for the tests that need what the in-process `s3s`
//! server does not do: bucket CORS (preflight included) and SSE-C, both behind real SigV4
//! signature and expiry checks.
//!
//! `scripts/radosgw` unpacks Debian's packages once per machine (`scripts/radosgw install`, CI
//! runs it) and starts mon + osd + rgw in a temp state dir in ~15 s. Start it once per test
//! binary: each `tests/rgw_*.rs` / `tests/browser.rs` file is one test function that runs its
//! scenarios in sequence. Dropping [`Rgw`] stops the daemons by their pid files.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use super::tls::{self, TestCert};

pub const ACCESS_KEY: &str = "AKRGWPRESIGND";
pub const SECRET_KEY: &str = "SKRGWPRESIGND0123456789";
/// radosgw does not check the region; SigV4 scopes just need one.
pub const REGION: &str = "us-east-1";

pub struct Rgw {
    /// `http://127.0.0.1:PORT` (path-style).
    pub endpoint: String,
    /// `https://127.0.0.1:PORT+2`, when started with TLS.
    pub https_endpoint: Option<String>,
    /// The throwaway CA and the server certificate radosgw serves (with TLS).
    pub cert: Option<TestCert>,
    pub access_key: String,
    pub secret_key: String,
    state: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/radosgw")
}

/// A port P such that P, P+1 (the monitor) and P+2 (HTTPS) are free on 127.0.0.1 right now.
fn free_port_triple() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let p = l.local_addr().expect("local_addr").port();
        if p > 65000 {
            continue;
        }
        let others: Vec<_> = [p + 1, p + 2]
            .iter()
            .map(|q| TcpListener::bind((Ipv4Addr::LOCALHOST, *q)))
            .collect();
        if others.iter().all(Result::is_ok) {
            return p;
        }
    }
    panic!("no three consecutive free loopback ports");
}

impl Rgw {
    /// Starts radosgw (blocking, ~15 s); with `tls` it also serves HTTPS on PORT+2 with a
    /// certificate for 127.0.0.1/localhost from a fresh throwaway CA.
    pub fn start(tls: bool) -> Rgw {
        let state = tempfile::Builder::new()
            .prefix("rgw")
            .tempdir()
            .expect("tempdir");
        let cert = tls.then(|| tls::issue(state.path(), "rgw"));
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port_triple();
            let dir = state.path().join(format!("s{port}"));
            let mut cmd = Command::new("bash");
            cmd.arg(script())
                .arg("start")
                .arg(&dir)
                .arg(port.to_string())
                .arg(ACCESS_KEY)
                .arg(SECRET_KEY);
            if let Some(c) = &cert {
                cmd.env("RGW_TLS_CERT", &c.cert).env("RGW_TLS_KEY", &c.key);
            }
            let out = cmd.output().expect("run scripts/radosgw start");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && stdout.contains(&format!("http://127.0.0.1:{port}")) {
                return Rgw {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    https_endpoint: tls.then(|| format!("https://127.0.0.1:{}", port + 2)),
                    cert,
                    access_key: ACCESS_KEY.into(),
                    secret_key: SECRET_KEY.into(),
                    state,
                };
            }
            // A port taken between the probe and the start, or (rarely, under heavy load) an OSD
            // that fails its first registration with the monitor: stop what did start, retry.
            stop(&dir);
            last = format!(
                "status {:?}\nstdout: {stdout}\nstderr: {}\nmon log tail: {}\nosd log tail: {}\nrgw log tail: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                log_tail(&dir.join("log/mon.a.log")),
                log_tail(&dir.join("log/osd.0.log")),
                log_tail(&dir.join("log/client.rgw.a.log")),
            );
        }
        // Dropping `state` stops nothing more: every attempt was stopped above.
        panic!("radosgw did not start (is it installed? `scripts/radosgw install`):\n{last}");
    }

    /// An SDK client with the gateway user's keys over plain HTTP, path-style.
    pub fn sdk_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                self.access_key.clone(),
                self.secret_key.clone(),
                None,
                None,
                "presignd-rgw-tests",
            ))
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            // Ceph Pacific predates the SDK's default CRC32 checksums (and their aws-chunked
            // trailers): send checksums only where the operation requires one.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub async fn create_bucket(&self, name: &str) {
        self.sdk_client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "create bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }

    /// `[s3]` TOML for a presignd config that signs for this gateway at `endpoint`.
    pub fn s3_toml(&self, endpoint: &str) -> String {
        format!(
            "[s3]\nregion = \"{REGION}\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\n\
             allow_insecure_endpoint = {}\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            endpoint.starts_with("http://"),
            self.access_key,
            self.secret_key
        )
    }

    fn dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state.path())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn stop(dir: &Path) {
    let _ = Command::new("bash")
        .arg(script())
        .arg("stop")
        .arg(dir)
        .status();
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for Rgw {
    fn drop(&mut self) {
        for dir in self.dirs() {
            stop(&dir);
        }
    }
}
