//! Load benchmark: a release `presignd serve` on 127.0.0.1 under `wrk`, measuring in one run
//! the empty JSON endpoint (`GET /healthz`, the ceiling) and the presign paths with the
//! durable audit outbox on SQLite and on PostgreSQL.
//!
//!   cargo bench --bench load
//!
//! Needs `wrk` (`apt-get install -y wrk`) and PostgreSQL at `$PRESIGND_TEST_DATABASE_URL`
//! (default postgres://postgres@127.0.0.1:5432/postgres; a role that may CREATE DATABASE;
//! `BENCH_SKIP_POSTGRES=1` skips it). `BENCH_SECS` (10) sets each measurement, `BENCH_WARMUP_SECS`
//! (2) the warm-up before it, `BENCH_THREADS` (2) / `BENCH_CONNECTIONS` (64) the load. Results are
//! printed and written to docs/benchmarks.md (`BENCH_NO_WRITE=1` only prints). `BENCH_PRESIGND`
//! runs another `presignd` binary than the one Cargo built alongside. `BENCH_HOLD=1` measures
//! nothing: it starts the SQLite server, prints its address, PID and the wrk scripts, and keeps
//! them until Enter, for profiling one case by hand (`perf`, `/proc/<pid>/stat`).
//!
//! Without `--bench` (as under `cargo test --all-targets` in CI) it exits at once: CI compiles
//! benchmarks but never runs them.

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

#[path = "load/open_loop.rs"]
mod open_loop;

use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PRESIGND_BUILT: &str = env!("CARGO_BIN_EXE_presignd");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const HS_ISSUER: &str = "https://hs.idp.bench/";
const RS_ISSUER: &str = "https://rs.idp.bench/";
const HS_SECRET: &str = "load-bench-secret-0123456789abcdef0123456789";
const USERS: usize = 1_000;
const BATCH_ITEMS: usize = 20;

type Result<T, E = String> = std::result::Result<T, E>;

/// The binary under test: the one this bench was built with, or `BENCH_PRESIGND`.
fn presignd() -> String {
    std::env::var("BENCH_PRESIGND").unwrap_or_else(|_| PRESIGND_BUILT.to_string())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "load: skipped (a benchmark; run it with `cargo bench --bench load`, never in CI)"
        );
        return;
    }
    if let Err(e) = run() {
        eprintln!("load benchmark failed: {e}");
        std::process::exit(1);
    }
}

struct Settings {
    secs: u64,
    warmup: u64,
    threads: u32,
    connections: u32,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One measured row.
struct Row {
    backend: &'static str,
    case: &'static str,
    wrk: WrkResult,
    ceiling: f64,
    rss_peak_kib: u64,
}

fn run() -> Result<()> {
    // `cargo bench --bench load -- open-loop`: the fixed-rate tail-latency run (no wrk).
    let open_loop = std::env::args().any(|a| a == "open-loop");
    let wrk_version = if open_loop {
        String::new()
    } else {
        wrk_version()?
    };
    let settings = Settings {
        secs: env_num("BENCH_SECS", 10),
        warmup: env_num("BENCH_WARMUP_SECS", 2),
        threads: env_num("BENCH_THREADS", 2) as u32,
        connections: env_num("BENCH_CONNECTIONS", 64) as u32,
    };
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let fixture = |name: &str| {
        Path::new(MANIFEST_DIR)
            .join("tests/fixtures/jwt")
            .join(name)
    };
    let rsa_private = std::fs::read(fixture("rsa1.pem")).map_err(|e| format!("rsa key: {e}"))?;

    // Tokens for 1 000 distinct users per issuer, and the Lua scripts that rotate them.
    let now = unix_now();
    let hs_key = jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes());
    let rs_key = jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_private)
        .map_err(|e| format!("rsa key: {e}"))?;
    let mint = |alg, key: &jsonwebtoken::EncodingKey, iss: &str| -> Result<Vec<String>> {
        (0..USERS)
            .map(|i| {
                let claims = serde_json::json!({"iss": iss, "aud": "presignd",
                    "sub": format!("user-{i}"), "groups": ["users"],
                    "iat": now, "nbf": now, "exp": now + 3_600});
                jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key)
                    .map_err(|e| format!("token: {e}"))
            })
            .collect()
    };
    let hs_tokens = mint(jsonwebtoken::Algorithm::HS256, &hs_key, HS_ISSUER)?;
    let rs_tokens = mint(jsonwebtoken::Algorithm::RS256, &rs_key, RS_ISSUER)?;
    let scripts = Scripts::write(dir.path(), &hs_tokens, &rs_tokens)?;
    if std::env::var("BENCH_HOLD").is_ok() {
        return hold(dir.path(), &scripts);
    }
    if open_loop {
        return open_loop_bench(dir.path(), &rs_tokens);
    }

    let machine = machine();
    println!("load benchmark: {machine}");
    println!(
        "wrk -t{} -c{} -d{}s (after {}s warm-up), presignd {}",
        settings.threads,
        settings.connections,
        settings.secs,
        settings.warmup,
        presignd()
    );

    // Start to ready: fresh SQLite databases (migrations run), embedded defaults otherwise.
    let mut starts = Vec::new();
    for i in 0..5 {
        let db = format!(
            "sqlite://{}",
            dir.path().join(format!("start-{i}.db")).display()
        );
        let server = Server::start(dir.path(), &format!("start-{i}"), &db)?;
        starts.push(server.ready_after);
        server.stop();
    }
    starts.sort();
    println!(
        "start to ready (fresh SQLite, migrations): {:?}",
        starts.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );

    let mut rows = Vec::new();
    let mut backends: Vec<(&'static str, String, Option<PgDb>)> = vec![(
        "SQLite",
        format!("sqlite://{}", dir.path().join("load.db").display()),
        None,
    )];
    if std::env::var("BENCH_SKIP_POSTGRES").is_err() {
        let pg = PgDb::create()?;
        backends.push(("PostgreSQL", pg.url.clone(), Some(pg)));
    }
    // PostgreSQL's start to ready and its version/settings line.
    let mut pg_info: Option<(Duration, String)> = None;
    let mut hwm = Vec::new();
    for (backend, db_url, pg) in backends {
        let server = Server::start(dir.path(), backend, &db_url)?;
        if let Some(pg) = &pg {
            pg_info = Some((server.ready_after, pg.server.clone()));
        }
        let base = format!("http://{}", server.addr);
        let ceiling = measure(&settings, &server, &base, &scripts.healthz)?;
        println!(
            "{backend:<10} {:<32} {}",
            "GET /healthz (ceiling)",
            ceiling.0.line()
        );
        let ceiling_rps = ceiling.0.rps;
        rows.push(Row {
            backend,
            case: "GET /healthz (empty JSON, ceiling)",
            ceiling: ceiling_rps,
            rss_peak_kib: ceiling.1,
            wrk: ceiling.0,
        });
        for (case, script) in [
            ("presign, HS256, 1 000 users", &scripts.hs256),
            ("presign, RS256, 1 000 users", &scripts.rs256),
            ("batch of 20, RS256, 1 000 users", &scripts.batch),
        ] {
            let (wrk, rss) = measure(&settings, &server, &base, script)?;
            println!(
                "{backend:<10} {case:<32} {}  {:.2}x",
                wrk.line(),
                wrk.rps / ceiling_rps
            );
            rows.push(Row {
                backend,
                case,
                wrk,
                ceiling: ceiling_rps,
                rss_peak_kib: rss,
            });
        }
        let status = proc_status(server.pid());
        hwm.push((backend, status.hwm_kib));
        let metrics = http_get(server.addr, "/metrics").unwrap_or_default();
        let verified = metric(
            &metrics,
            "presignd_jwt_cache_lookups_total{result=\"miss\"}",
        );
        let hits = metric(&metrics, "presignd_jwt_cache_lookups_total{result=\"hit\"}");
        println!(
            "{backend:<10} token cache: {hits} hits, {verified} misses; VmHWM {} KiB",
            status.hwm_kib
        );
        server.stop();
        if let Some(pg) = pg {
            pg.drop_db();
        }
    }

    let report = report(
        &settings,
        &machine,
        &wrk_version,
        &rows,
        &starts,
        pg_info.as_ref().map(|(d, s)| (*d, s.as_str())),
        &hwm,
    );
    println!("\n{report}");
    if std::env::var("BENCH_NO_WRITE").is_err() {
        write_report(&report)?;
        println!("written to docs/benchmarks.md");
    }
    Ok(())
}

/// `BENCH_HOLD`: one SQLite server and the scripts, kept until Enter.
fn hold(dir: &Path, scripts: &Scripts) -> Result<()> {
    let db = format!("sqlite://{}", dir.join("hold.db").display());
    let server = Server::start(dir, "hold", &db)?;
    println!("presignd http://{} pid {}", server.addr, server.pid());
    for script in [
        &scripts.healthz,
        &scripts.hs256,
        &scripts.rs256,
        &scripts.batch,
    ] {
        println!("  {}", script.display());
    }
    println!("tokens expire in 1 h; press Enter to stop");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    server.stop();
    Ok(())
}

/// "wrk 4.1.0 [epoll] Copyright …": name and version only.
fn wrk_version() -> Result<String> {
    let output = Command::new("wrk").arg("-v").output().map_err(|_| {
        "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`"
            .to_string()
    })?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

// ---- the server -------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    ready_after: Duration,
}

impl Server {
    /// Writes a config for `db_url` and starts `presignd serve`; returns once `/readyz` is 200.
    fn start(dir: &Path, name: &str, db_url: &str) -> Result<Server> {
        let work = dir.join(name.to_lowercase());
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let ap_file = work.join("access-points.json");
        std::fs::write(
            &ap_file,
            serde_json::json!({"access_points": [{
                "name": "bench", "bucket": "bench-bucket", "prefix": "p/",
                // One rule per issuer: a subject owns its folder only within its issuer.
                "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"],
                           "keys": ["${jwt:sub}/*"], "issuers": [HS_ISSUER]},
                          {"effect": "allow", "groups": ["users"], "operations": ["get", "put"],
                           "keys": ["${jwt:sub}/*"], "issuers": [RS_ISSUER]}]
            }]})
            .to_string(),
        )
        .map_err(|e| format!("access points: {e}"))?;
        let addr = free_port()?;
        let config = work.join("presignd.toml");
        let rsa_public = Path::new(MANIFEST_DIR).join("tests/fixtures/jwt/rsa1.pub.pem");
        std::fs::write(
            &config,
            format!(
                r#"# Written by benches/load.rs
[server]
listen = "{addr}"
require_https = false

[database]
url = "{db_url}"

[auth]
admin_issuers = ["{HS_ISSUER}"]

[[auth.issuers]]
issuer = "{HS_ISSUER}"
audiences = ["presignd"]
algorithms = ["HS256"]
hs256_secret = "{HS_SECRET}"

[[auth.issuers]]
issuer = "{RS_ISSUER}"
audiences = ["presignd"]
algorithms = ["RS256"]
public_key_file = "{rsa_public}"

[s3]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "AKLOADBENCH"
secret_access_key = "load-bench-secret-key"

[audit]
sink = "file://{audit}"
instance = "load-bench"
{audit_extra}

[access_points]
file = "{ap}"

[limits]
per_subject_per_minute = 0
sse_kms_per_second = 0

[log]
filter = "{log_filter}"
"#,
                log_filter = std::env::var("BENCH_LOG_FILTER").unwrap_or_else(|_| "warn".into()),
                // BENCH_AUDIT_TOML: more `[audit]` settings, for experiments (e.g.
                // `flush_interval_ms = 600000` keeps the shipper idle during a run).
                audit_extra = std::env::var("BENCH_AUDIT_TOML").unwrap_or_default(),
                rsa_public = rsa_public.display(),
                audit = work.join("audit").display(),
                ap = ap_file.display(),
            ),
        )
        .map_err(|e| format!("config: {e}"))?;
        // BENCH_LOG_DIR keeps the server's log (with BENCH_LOG_FILTER, for stall analysis).
        let log_path = match std::env::var_os("BENCH_LOG_DIR") {
            Some(d) => PathBuf::from(d).join(format!("{}.log", name.to_lowercase())),
            None => work.join("presignd.log"),
        };
        let log = std::fs::File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
        let err_log = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let started = Instant::now();
        let mut command = Command::new(presignd());
        // Only the written config counts: PRESIGND_* variables (PRESIGND_TEST_DATABASE_URL
        // included) would be read as configuration overrides.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PRESIGND_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(&work)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", presignd()))?;
        let deadline = started + Duration::from_secs(30);
        loop {
            if http_status(addr, "/readyz") == Some(200) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("presignd exited with {status}:\n{log}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("presignd not ready within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Server {
            ready_after: started.elapsed(),
            child,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (graceful shutdown), then waits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sample's value in a `/metrics` exposition (0 when absent).
fn metric(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener.local_addr().map_err(|e| format!("addr: {e}"))
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let response = http_get(addr, path)?;
    response.split(' ').nth(1)?.parse().ok()
}

// ---- PostgreSQL -------------------------------------------------------------------------

struct PgDb {
    admin: String,
    name: String,
    url: String,
    /// Version and the settings that move the numbers, for the report.
    server: String,
}

impl PgDb {
    fn runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))
    }

    fn create() -> Result<PgDb> {
        let (admin, name, server) = Self::runtime()?.block_on(async {
            let (admin, name) = postgres::try_create_postgres_database("presignd_load")
                .await
                .map_err(|e| format!("{e} (BENCH_SKIP_POSTGRES=1 skips)"))?;
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .map_err(|e| format!("PostgreSQL at {admin}: {e}"))?;
            // autovacuum off (as on test machines) lets the outbox's dead rows pile up;
            // ssl on means the outbox writer talks TLS (sslmode=prefer).
            let settings: (String, String, String) = sqlx::query_as(
                "SELECT current_setting('server_version'), current_setting('autovacuum'), \
                 current_setting('ssl')",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| format!("server settings: {e}"))?;
            pool.close().await;
            Ok::<_, String>((admin, name, settings))
        })?;
        let (version, autovacuum, ssl) = server;
        let url = postgres::with_database(&admin, &name);
        Ok(PgDb {
            admin,
            name,
            url,
            server: format!("PostgreSQL {version} (autovacuum {autovacuum}, ssl {ssl})"),
        })
    }

    fn drop_db(self) {
        let Ok(rt) = Self::runtime() else { return };
        rt.block_on(postgres::drop_postgres_database(&self.admin, &self.name));
    }
}

// ---- wrk ----------------------------------------------------------------------------------

struct Scripts {
    healthz: PathBuf,
    hs256: PathBuf,
    rs256: PathBuf,
    batch: PathBuf,
}

/// Shared by every script: prints one parseable line when the run ends.
const LUA_DONE: &str = r#"
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.errors.status, errors))
end
"#;

impl Scripts {
    fn write(dir: &Path, hs: &[String], rs: &[String]) -> Result<Scripts> {
        let write = |name: &str, body: String| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(|e| format!("{name}: {e}"))?;
            Ok(path)
        };
        let tokens_file = |name: &str, tokens: &[String]| -> Result<PathBuf> {
            write(name, tokens.join("\n") + "\n")
        };
        let hs_file = tokens_file("hs256.tokens", hs)?;
        let rs_file = tokens_file("rs256.tokens", rs)?;
        let healthz = write(
            "healthz.lua",
            format!("wrk.method = \"GET\"\nwrk.path = \"/healthz\"\n{LUA_DONE}"),
        )?;
        // Each thread pre-builds one request per user (token i goes with user-i's keys) and
        // cycles through them from its own offset.
        let rotating = |tokens: &Path, path: &str, body: &str| {
            format!(
                r#"
local requests = {{}}
local n = 0
local i = 0
-- Globals: `setup` (main state) numbers the threads; `thread_no` arrives through thread:set.
thread_no = 0
counter = 0

function setup(thread)
  thread:set("thread_no", counter)
  counter = counter + 1
end

function init(args)
  for token in io.lines("{tokens}") do
    local user = "user-" .. n
    n = n + 1
    local body = {body}
    requests[n] = wrk.format("POST", "{path}", {{
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }}, body)
  end
  i = (thread_no * 499) % n
end

function request()
  i = i % n + 1
  return requests[i]
end
{LUA_DONE}"#,
                tokens = tokens.display(),
            )
        };
        let one = r#"'{"operation":"put","key":"' .. user .. '/photo.jpg","content_type":"image/jpeg","content_length":1048576}'"#;
        let items: Vec<String> = (0..BATCH_ITEMS)
            .map(|k| {
                let op = if k % 2 == 0 { "get" } else { "put" };
                format!(
                    r#"{{"access_point":"bench","operation":"{op}","key":"' .. user .. '/file-{k}.bin"}}"#
                )
            })
            .collect();
        let batch_body = format!("'{{\"items\":[{}]}}'", items.join(","));
        Ok(Scripts {
            healthz,
            hs256: write(
                "hs256.lua",
                rotating(&hs_file, "/v1/access-points/bench/presign", one),
            )?,
            rs256: write(
                "rs256.lua",
                rotating(&rs_file, "/v1/access-points/bench/presign", one),
            )?,
            batch: write(
                "batch.lua",
                rotating(&rs_file, "/v1/presign/batch", &batch_body),
            )?,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct WrkResult {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

impl WrkResult {
    fn line(&self) -> String {
        format!(
            "{:>8.0} req/s  p50 {}  p99 {}  p99.9 {}",
            self.rps,
            fmt_us(self.p50_us),
            fmt_us(self.p99_us),
            fmt_us(self.p999_us)
        )
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

/// Warm-up run, then the measured run while a sampler records the server's peak VmRSS.
fn measure(s: &Settings, server: &Server, base: &str, script: &Path) -> Result<(WrkResult, u64)> {
    if s.warmup > 0 {
        wrk(s, s.warmup, base, script)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (Arc::clone(&stop), Arc::clone(&peak), server.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status(pid).rss_kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let result = wrk(s, s.secs, base, script);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    Ok((result?, peak.load(Ordering::Relaxed)))
}

fn wrk(s: &Settings, secs: u64, base: &str, script: &Path) -> Result<WrkResult> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", s.threads))
        .arg(format!("-c{}", s.connections))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(script)
        .arg(base)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    let (non2xx, errors) = (field("non2xx"), field("errors"));
    if non2xx > 0 || errors > 0 {
        return Err(format!(
            "{}: {non2xx} non-2xx responses, {errors} socket errors\n{stdout}",
            script.display()
        ));
    }
    let requests = field("requests");
    if requests == 0 {
        return Err(format!(
            "{}: no request completed\n{stdout}",
            script.display()
        ));
    }
    let duration = field("duration_us").max(1);
    Ok(WrkResult {
        rps: requests as f64 / (duration as f64 / 1e6),
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
        p999_us: field("p999_us"),
        max_us: field("max_us"),
    })
}

// ---- the machine and the process ----------------------------------------------------------

#[derive(Default)]
struct ProcStatus {
    rss_kib: u64,
    hwm_kib: u64,
}

fn proc_status(pid: u32) -> ProcStatus {
    let mut status = ProcStatus::default();
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/status")) else {
        return status;
    };
    for line in std::io::BufReader::new(file).lines().map_while(|l| l.ok()) {
        let kib = |prefix: &str| -> Option<u64> {
            line.strip_prefix(prefix)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        if let Some(v) = kib("VmRSS:") {
            status.rss_kib = v;
        }
        if let Some(v) = kib("VmHWM:") {
            status.hwm_kib = v;
        }
    }
    status
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpus = command_output("nproc", &[]);
    let lscpu = command_output("lscpu", &[]);
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    format!(
        "{cpus} CPUs ({}, hypervisor: {}), {mem_gib} RAM, Linux {}",
        field("Model name"),
        field("Hypervisor vendor"),
        command_output("uname", &["-r"]),
    )
}

// ---- the report -----------------------------------------------------------------------------

const START: &str = "<!-- load-benchmark:start (written by `cargo bench --bench load`) -->";
const END: &str = "<!-- load-benchmark:end -->";

fn report(
    s: &Settings,
    machine: &str,
    wrk_version: &str,
    rows: &[Row],
    starts: &[Duration],
    pg: Option<(Duration, &str)>,
    hwm: &[(&str, u64)],
) -> String {
    let mut out = String::new();
    let date = time::OffsetDateTime::now_utc();
    let _ = writeln!(out, "## Load benchmark (`load`)\n");
    let _ = writeln!(
        out,
        "**{}-{:02}-{:02}**, {machine}; {wrk_version}; {}; release build. The load \
         generator, presignd and PostgreSQL share the machine's cores.\n",
        date.year(),
        u8::from(date.month()),
        date.day(),
        pg.map_or("PostgreSQL skipped", |(_, server)| server),
    );
    let _ = writeln!(
        out,
        "```sh\ncargo bench --bench load   # needs wrk (apt-get install -y wrk) and PostgreSQL\n```\n"
    );
    let _ = writeln!(
        out,
        "What it does: starts the release `presignd serve` binary (plain HTTP on 127.0.0.1, \
         `require_https = false`, rate limits off, static S3 credentials so nothing leaves the \
         machine, `log.filter = \"warn\"`, the durable audit outbox with its shipper writing to a \
         `file://` sink in a temp dir, default outbox settings), once on a fresh SQLite file and \
         once on a fresh PostgreSQL database, and runs for each case \
         `wrk -t{t} -c{c} -d{d}s --timeout 10s -s <script> http://127.0.0.1:<port>` after a \
         {w} s warm-up with the same script. The Lua scripts rotate `Authorization` headers over \
         1 000 users (tokens for `user-0` … `user-999`, each asking for keys under its own \
         `${{jwt:sub}}/` prefix, so policy evaluation is real); the RS256 cases are measured \
         with the verified-token cache warm (the warm-up uses every token). Any non-2xx \
         response or socket error fails the run. RSS is the server's peak `VmRSS` sampled every \
         100 ms during the measured run.\n",
        t = s.threads,
        c = s.connections,
        d = s.secs,
        w = s.warmup,
    );
    let _ = writeln!(
        out,
        "| audit outbox | case | req/s | vs ceiling | p50 | p99 | p99.9 | max | peak RSS |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let per = if r.case.starts_with("batch") {
            format!(" ({:.0} URLs/s)", r.wrk.rps * BATCH_ITEMS as f64)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}{per} | {:.2}× | {} | {} | {} | {} | {:.1} MiB |",
            r.backend,
            r.case,
            r.wrk.rps,
            r.wrk.rps / r.ceiling,
            fmt_us(r.wrk.p50_us),
            fmt_us(r.wrk.p99_us),
            fmt_us(r.wrk.p999_us),
            fmt_us(r.wrk.max_us),
            r.rss_peak_kib as f64 / 1024.0,
        );
    }
    let _ = writeln!(out);
    let starts_ms: Vec<String> = starts.iter().map(|d| ms(*d)).collect();
    let _ = writeln!(
        out,
        "Start to ready (spawn → `/readyz` 200, embedded defaults, a fresh SQLite database so \
         the migrations run), five starts: {}{}.\n",
        starts_ms.join(", "),
        pg.map_or(String::new(), |(d, _)| format!(
            "; on a fresh PostgreSQL database: {}",
            ms(d)
        )),
    );
    // The issue's targets, met or not, from this run.
    let find = |backend: &str, case: &str| {
        rows.iter()
            .find(|r| r.backend == backend && r.case.starts_with(case))
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let _ = writeln!(out, "| target | measured | |\n| --- | --- | --- |");
    for (backend, floor) in [("SQLite", 0.5), ("PostgreSQL", 0.3)] {
        if let Some(r) = find(backend, "presign, RS256") {
            let ratio = r.wrk.rps / r.ceiling;
            let _ = writeln!(
                out,
                "| RS256 presign, {backend} outbox ≥ {floor}× ceiling | {ratio:.2}× | {} |",
                verdict(ratio >= floor)
            );
            let _ = writeln!(
                out,
                "| RS256 presign, {backend} outbox: p99 < 5 ms at {} connections | {} | {} |",
                s.connections,
                fmt_us(r.wrk.p99_us),
                verdict(r.wrk.p99_us < 5_000)
            );
        }
    }
    let peak_rss = rows.iter().map(|r| r.rss_peak_kib).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "| RSS under load < 64 MiB | {:.1} MiB | {} |",
        peak_rss as f64 / 1024.0,
        verdict(peak_rss < 64 * 1024)
    );
    // `starts` is sorted; the median, as one slow start on a shared machine is not the rule.
    let median = starts.get(starts.len() / 2).copied().unwrap_or_default();
    let slowest = starts.last().copied().unwrap_or_default();
    let _ = writeln!(
        out,
        "| start to ready < 200 ms (SQLite, embedded defaults) | median {} (slowest {} of {}) | {} |\n",
        ms(median),
        ms(slowest),
        starts.len(),
        verdict(median < Duration::from_millis(200))
    );
    let _ = writeln!(out, "{}", hwm_line(hwm));
    out
}

fn hwm_line(hwm: &[(&str, u64)]) -> String {
    let each: Vec<String> = hwm
        .iter()
        .map(|(b, k)| format!("{b} {:.1} MiB", *k as f64 / 1024.0))
        .collect();
    format!(
        "Peak RSS over each whole server run (`VmHWM`): {}.",
        each.join(", ")
    )
}

/// Replaces the load section of docs/benchmarks.md (between its markers, or right after the
/// introduction the first time), keeping every other section.
fn write_report(report: &str) -> Result<()> {
    write_section(START, END, report)
}

fn write_section(start: &str, end: &str, report: &str) -> Result<()> {
    let path = Path::new(MANIFEST_DIR).join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{start}\n{report}{end}\n\n");
    let new = match (old.find(start), old.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!(
                "{}{section}{}",
                &old[..a],
                old[b + end.len()..].trim_start_matches('\n')
            )
        }
        // New: before the other generated section (never inside its markers), else right
        // after the introduction.
        _ => match old.find(START).or_else(|| old.find("\n## ").map(|i| i + 1)) {
            Some(i) => format!("{}\n{section}{}", &old[..i], &old[i..]),
            None => format!("{old}\n{section}"),
        },
    };
    let new = new.replace("\n\n\n", "\n\n");
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))
}

// ---- open loop (`cargo bench --bench load -- open-loop`) ------------------------------------

const OPEN_START: &str =
    "<!-- load-open-loop:start (written by `cargo bench --bench load -- open-loop`) -->";
const OPEN_END: &str = "<!-- load-open-loop:end -->";
const OPEN_RATES: [f64; 4] = [1_000.0, 2_000.0, 4_000.0, 8_000.0];

struct OpenRow {
    backend: &'static str,
    case: &'static str,
    rate: f64,
    /// Whether the rate is at most half the case's closed-loop peak (where the target holds).
    in_target: bool,
    result: open_loop::OpenLoop,
}

/// The whole HTTP/1.1 requests the open-loop client sends, one per user for presign.
fn open_requests(rs_tokens: &[String], operation: Option<&str>) -> Arc<Vec<Vec<u8>>> {
    let Some(op) = operation else {
        return Arc::new(vec![
            b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec(),
        ]);
    };
    Arc::new(
        rs_tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let body = match op {
                    "put" => format!(
                        r#"{{"operation":"put","key":"user-{i}/photo.jpg","content_type":"image/jpeg","content_length":1048576}}"#
                    ),
                    _ => format!(r#"{{"operation":"get","key":"user-{i}/photo.jpg"}}"#),
                };
                format!(
                    "POST /v1/access-points/bench/presign HTTP/1.1\r\nHost: bench\r\n\
                     Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect(),
    )
}

fn open_loop_bench(dir: &Path, rs_tokens: &[String]) -> Result<()> {
    let secs = env_num("BENCH_SECS", 12) as f64;
    let connections = env_num("BENCH_CONNECTIONS", 64) as usize;
    let machine = machine();
    println!("open-loop load benchmark: {machine}");
    println!(
        "{connections} connections, {secs} s per rate, presignd {}",
        presignd()
    );
    let cases: [(&'static str, Option<&str>); 3] = [
        ("GET /healthz", None),
        ("presign get, RS256", Some("get")),
        ("presign put, RS256", Some("put")),
    ];
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut backends: Vec<(&'static str, String, Option<PgDb>)> = Vec::new();
    if only.is_empty() || only == "sqlite" {
        let db = format!("sqlite://{}", dir.join("open-loop.db").display());
        backends.push(("SQLite", db, None));
    }
    if (only.is_empty() || only == "postgres") && std::env::var("BENCH_SKIP_POSTGRES").is_err() {
        let pg = PgDb::create()?;
        backends.push(("PostgreSQL", pg.url.clone(), Some(pg)));
    }
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    let mut hwm = Vec::new();
    let mut pg_server = None;
    for (backend, db_url, pg) in backends {
        if let Some(pg) = &pg {
            pg_server = Some(pg.server.clone());
        }
        let server = Server::start(dir, &format!("open-{backend}"), &db_url)?;
        for (case, op) in cases {
            let requests = open_requests(rs_tokens, op);
            // The closed-loop peak (also the warm-up: every token is verified and cached).
            let peak = open_loop::peak(server.addr, Arc::clone(&requests), 5.0, connections)?;
            println!("{backend:<10} {case:<20} closed-loop peak {peak:>8.0} req/s");
            peaks.push((backend, case, peak));
            // A rate past the peak only measures a queue that grows for the whole run.
            let mut rates: Vec<f64> = OPEN_RATES
                .iter()
                .copied()
                .filter(|r| *r <= peak * 0.9)
                .collect();
            if op.is_some() {
                rates.push((peak / 2.0 / 100.0).floor() * 100.0);
            }
            rates.sort_by(f64::total_cmp);
            rates.dedup();
            for rate in rates {
                let result =
                    open_loop::run(server.addr, Arc::clone(&requests), rate, secs, connections)?;
                println!(
                    "{backend:<10} {case:<20} {rate:>6.0}/s  achieved {:>7.0}  p50 {}  p99 {}  p99.9 {}  max {}  late {}",
                    result.achieved,
                    fmt_us(result.p50_us),
                    fmt_us(result.p99_us),
                    fmt_us(result.p999_us),
                    fmt_us(result.max_us),
                    result.late,
                );
                rows.push(OpenRow {
                    backend,
                    case,
                    rate,
                    in_target: op.is_some() && rate <= peak / 2.0 + 1.0,
                    result,
                });
            }
        }
        hwm.push((backend, proc_status(server.pid()).hwm_kib));
        server.stop();
        if let Some(pg) = pg {
            pg.drop_db();
        }
    }
    let report = open_report(
        &machine,
        pg_server.as_deref(),
        secs,
        connections,
        &peaks,
        &rows,
        &hwm,
    );
    println!("\n{report}");
    if std::env::var("BENCH_NO_WRITE").is_err() {
        write_section(OPEN_START, OPEN_END, &report)?;
        println!("written to docs/benchmarks.md");
    }
    Ok(())
}

fn open_report(
    machine: &str,
    pg: Option<&str>,
    secs: f64,
    connections: usize,
    peaks: &[(&str, &str, f64)],
    rows: &[OpenRow],
    hwm: &[(&str, u64)],
) -> String {
    let mut out = String::new();
    let date = time::OffsetDateTime::now_utc();
    let _ = writeln!(
        out,
        "## Open-loop load benchmark: the tail at ordinary load\n"
    );
    let _ = writeln!(
        out,
        "**{}-{:02}-{:02}**, {machine}; {}; release build. The load generator, presignd and \
         PostgreSQL share the machine's cores.\n",
        date.year(),
        u8::from(date.month()),
        date.day(),
        pg.unwrap_or("PostgreSQL skipped"),
    );
    let _ = writeln!(
        out,
        "```sh\ncargo bench --bench load -- open-loop   # needs PostgreSQL (BENCH_ONLY=sqlite skips it)\n```\n"
    );
    let _ = writeln!(
        out,
        "What it does: the same server and configuration as the closed-loop run (durable audit \
         outbox, shipper to a `file://` sink, RS256 tokens for 1 000 users). For each case it \
         first runs closed-loop for 5 s over {connections} connections (the peak, and the \
         warm-up: every token verified and cached), then sends requests **at a fixed rate** for \
         {secs} s each at 1 000, 2 000, 4 000 and 8 000 req/s and at half the peak, over \
         {connections} keep-alive connections (`benches/load/open_loop.rs`). Request *i* is due \
         at *start + i/rate* whatever the server does; a request that could not leave on time \
         because every connection was still waiting counts from its due time (\"late\"), so a \
         stall is measured, not hidden. Every latency is kept: exact percentiles. `presign put` \
         also stores the upload's issuance.\n"
    );
    let _ = writeln!(
        out,
        "| audit outbox | case | closed-loop peak |\n| --- | --- | ---: |"
    );
    for (backend, case, peak) in peaks {
        let _ = writeln!(out, "| {backend} | {case} | {peak:.0} req/s |");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| audit outbox | case | rate | achieved | p50 | p99 | p99.9 | max | late |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let half = if r.in_target && !OPEN_RATES.contains(&r.rate) {
            " (½ peak)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}/s{half} | {:.0}/s | {} | {} | {} | {} | {} |",
            r.backend,
            r.case,
            r.rate,
            r.result.achieved,
            fmt_us(r.result.p50_us),
            fmt_us(r.result.p99_us),
            fmt_us(r.result.p999_us),
            fmt_us(r.result.max_us),
            r.result.late,
        );
    }
    let _ = writeln!(out);
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let _ = writeln!(out, "| target | measured | |\n| --- | --- | --- |");
    for backend in ["SQLite", "PostgreSQL"] {
        let in_target: Vec<&OpenRow> = rows
            .iter()
            .filter(|r| r.backend == backend && r.in_target)
            .collect();
        if let Some(worst) = in_target.iter().max_by_key(|r| r.result.p999_us) {
            let _ = writeln!(
                out,
                "| {backend}: presign p99.9 < 10 ms at every rate up to half the peak | worst {} ({}, {:.0}/s) | {} |",
                fmt_us(worst.result.p999_us),
                worst.case,
                worst.rate,
                verdict(in_target.iter().all(|r| r.result.p999_us < 10_000))
            );
        }
        let limit = if backend == "SQLite" { 2_000 } else { 3_000 };
        let at_1k: Vec<&OpenRow> = rows
            .iter()
            .filter(|r| r.backend == backend && r.in_target && r.rate == 1_000.0)
            .collect();
        if let Some(worst) = at_1k.iter().max_by_key(|r| r.result.p99_us) {
            let _ = writeln!(
                out,
                "| {backend}: presign p99 < {} ms at 1 000 req/s | worst {} ({}) | {} |",
                limit / 1_000,
                fmt_us(worst.result.p99_us),
                worst.case,
                verdict(at_1k.iter().all(|r| r.result.p99_us < limit))
            );
        }
    }
    let _ = writeln!(out, "\n{}", hwm_line(hwm));
    out
}
