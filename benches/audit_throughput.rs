//! What the durable audit outbox costs: presign requests per second over HTTP on loopback,
//! with the outbox on SQLite and on PostgreSQL, next to the same endpoint with a no-op audit
//! sink, in one run on one machine.
//!
//!   cargo bench --bench audit_throughput
//!
//! PostgreSQL: `$PRESIGND_TEST_DATABASE_URL` (a role that may CREATE DATABASE; default
//! postgres://postgres@127.0.0.1:5432/postgres); skipped when unreachable. `BENCH_SECS`
//! (default 5) sets each measurement's length, `BENCH_CONCURRENCY` (default 64) the number of
//! clients.
//!
//! Each scenario is its own app (fresh database, shipper running to a `file://` log sink, as
//! in production) served on 127.0.0.1; clients are tokio tasks with a keep-alive reqwest
//! client, one JWT subject per request slot so that no rate limit interferes. Scenarios are
//! measured in two interleaved rounds and the better round is reported. Under `cargo test`
//! (no `--bench` argument) it runs a fraction of a second per scenario as a smoke test.

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use presignd::App;
use presignd::audit::{Audit, AuditError, AuditRecord, AuditSink, BoxFuture};
use presignd::config::Config;
use presignd::state::AppState;
use tokio::task::JoinHandle;

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";
const SUBJECTS: usize = 2_000;

struct NoopSink;

impl AuditSink for NoopSink {
    fn append_with<'a>(
        &'a self,
        _: &'a [AuditRecord],
        _: Vec<presignd::store::StoredIssuance>,
    ) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async { Ok(()) })
    }
    fn check(&self) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Noop,
    Sqlite,
    Postgres,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Noop => "no-op sink (SQLite app)",
            Scenario::Sqlite => "durable outbox, SQLite",
            Scenario::Postgres => "durable outbox, PostgreSQL",
        }
    }
}

fn config(dir: &std::path::Path, db_url: &str) -> Config {
    let ap_file = dir.join("access-points.json");
    std::fs::write(
        &ap_file,
        serde_json::json!({"access_points": [{
            "name": "bench", "bucket": "bench-bucket", "prefix": "p/",
            "rules": [{"effect": "allow", "groups": ["users"], "operations": ["get", "put"], "keys": ["${jwt:sub}/*"]}]
        }]})
        .to_string(),
    )
    .expect("write access points");
    Config::from_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
require_https = false
[database]
url = "{db_url}"
[[auth.issuers]]
issuer = "https://idp.bench/"
audiences = ["presignd"]
algorithms = ["HS256"]
hs256_secret = "{SECRET}"
[s3]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
force_path_style = true
allow_insecure_endpoint = true
access_key_id = "AKBENCH"
secret_access_key = "bench-secret-key"
[audit]
sink = "file://{audit}"
instance = "bench"
[access_points]
file = "{ap}"
[log]
filter = "error"
"#,
        audit = dir.join("audit").display(),
        ap = ap_file.display(),
    ))
    .expect("bench config")
}

fn token(sub: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"iss": "https://idp.bench/", "aud": "presignd", "sub": sub,
            "groups": ["users"], "iat": now, "nbf": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// A served app: its address, the stop signal and every task to end afterwards.
struct Served {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
    /// For the durable scenarios: the pipeline, whose commits are counted.
    audit: Option<Arc<Audit>>,
    pg_db: Option<(String, String)>,
}

async fn serve(scenario: Scenario, dir: &std::path::Path, pg_admin: &str) -> Served {
    let (db_url, pg_db) = match scenario {
        Scenario::Noop | Scenario::Sqlite => {
            (format!("sqlite://{}", dir.join("bench.db").display()), None)
        }
        Scenario::Postgres => {
            let (admin, name) = postgres::create_postgres_database("presignd_bench").await;
            debug_assert_eq!(admin, pg_admin);
            (postgres::with_database(&admin, &name), Some((admin, name)))
        }
    };
    let (state, mut tasks) = App::assemble(config(dir, &db_url))
        .await
        .expect("app assembles");
    let (state, audit): (AppState, _) = match scenario {
        Scenario::Noop => (state.with_audit(Arc::new(NoopSink)), None),
        Scenario::Sqlite | Scenario::Postgres => {
            // The pipeline `assemble` started, rebuilt here so its commits can be counted.
            let (audit, audit_tasks) = Audit::start(
                state.config(),
                state.store().clone(),
                state.signer().s3_client(),
                Arc::new(presignd::metrics::Metrics::new().expect("metrics")),
                "bench",
            )
            .expect("audit pipeline");
            tasks.extend(audit_tasks);
            (state.with_audit(audit.clone()), Some(audit))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits =
        presignd::serve::ConnectionLimits::from_config(&state.config().server, state.metrics_arc());
    let router = presignd::http::router(state);
    tasks.push(tokio::spawn(async move {
        let _ = presignd::serve::serve(
            listener,
            router,
            None,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(2),
            limits,
        )
        .await;
    }));
    Served {
        base,
        stop,
        tasks,
        audit,
        pg_db,
    }
}

async fn shut(served: Served) {
    let _ = served.stop.send(());
    for t in &served.tasks {
        t.abort();
    }
    if let Some((admin_url, name)) = served.pg_db {
        postgres::drop_postgres_database(&admin_url, &name).await;
    }
}

struct Measured {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    /// Successful requests including the warm-up (each committed one record).
    total_ok: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` clients presign in a loop: `warmup`, then `measure` counted.
async fn load(
    base: &str,
    tokens: &Arc<Vec<String>>,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Measured {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let counting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let total_ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..concurrency {
        let (http, tokens) = (http.clone(), Arc::clone(tokens));
        let (counting, done, ok, failed, total_ok) = (
            Arc::clone(&counting),
            Arc::clone(&done),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&total_ok),
        );
        let url = format!("{base}/v1/access-points/bench/presign");
        clients.push(tokio::spawn(async move {
            // Bounded: stops on `done`, and never runs more than this many requests.
            for i in 0..10_000_000usize {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let slot = (c + i * concurrency) % tokens.len();
                let resp = http
                    .post(&url)
                    .bearer_auth(&tokens[slot])
                    .json(
                        &serde_json::json!({"operation": "get", "key": format!("u{slot}/{i}.bin")}),
                    )
                    .send()
                    .await;
                let good = match resp {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if good {
                    total_ok.fetch_add(1, Ordering::Relaxed);
                }
                if counting.load(Ordering::Relaxed) {
                    if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(measure).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    Measured {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        total_ok: total_ok.load(Ordering::Relaxed),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {cpu}")
}

async fn run(bench: bool) {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (warmup, measure, rounds) = if bench {
        (Duration::from_secs(1), Duration::from_secs(secs), rounds)
    } else {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    };
    let pg_admin = postgres::postgres_admin_url();
    let pg_up = tokio::time::timeout(Duration::from_secs(3), sqlx::PgPool::connect(&pg_admin))
        .await
        .is_ok_and(|r| r.is_ok());
    let mut scenarios = vec![Scenario::Noop, Scenario::Sqlite];
    if pg_up {
        scenarios.push(Scenario::Postgres);
    } else {
        println!("PostgreSQL not reachable at {pg_admin}: its scenario is skipped");
    }
    // BENCH_ONLY=noop,sqlite,postgres picks scenarios (e.g. to profile one).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        scenarios.retain(|s| {
            only.split(',')
                .any(|o| format!("{s:?}").eq_ignore_ascii_case(o))
        });
    }
    let tokens: Arc<Vec<String>> =
        Arc::new((0..SUBJECTS).map(|i| token(&format!("u{i}"))).collect());

    println!(
        "audit_throughput: {} ({} build), {concurrency} clients, {} s per measurement, {rounds} round(s)",
        machine(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        measure.as_secs_f64()
    );
    let mut best: Vec<(Scenario, f64, f64)> = Vec::new();
    let mut all: Vec<(Scenario, f64)> = Vec::new();
    for round in 0..rounds {
        for &s in &scenarios {
            let dir = tempfile::tempdir().expect("tempdir");
            let served = serve(s, dir.path(), &pg_admin).await;
            let m = load(&served.base, &tokens, concurrency, warmup, measure).await;
            let per_commit = served
                .audit
                .as_ref()
                .map(|a| m.total_ok as f64 / a.outbox().commits().max(1) as f64);
            println!(
                "  round {} {:<30} {:>9.0} req/s  ({} ok, {} failed{})",
                round + 1,
                s.label(),
                m.rate(),
                m.ok,
                m.failed,
                per_commit.map_or(String::new(), |r| format!(", ~{r:.0} records/commit"))
            );
            all.push((s, m.rate()));
            match best.iter_mut().find(|(b, _, _)| *b == s) {
                Some(entry) => {
                    if m.rate() > entry.1 {
                        entry.1 = m.rate();
                        entry.2 = per_commit.unwrap_or(0.0);
                    }
                }
                None => best.push((s, m.rate(), per_commit.unwrap_or(0.0))),
            }
            shut(served).await;
            assert_eq!(m.failed, 0, "{}: every request must succeed", s.label());
        }
    }
    let noop = best
        .iter()
        .find(|(s, _, _)| *s == Scenario::Noop)
        .map_or(1.0, |b| b.1);
    let median = |s: Scenario| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|(a, _)| *a == s)
            .map(|(_, r)| *r)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let noop_median = median(Scenario::Noop).max(1.0);
    println!("best of {rounds} (and median):");
    for (s, rate, _) in &best {
        println!(
            "  {:<30} {:>9.0} req/s   {:.2}x no-op   (median {:>6.0} req/s, {:.2}x)",
            s.label(),
            rate,
            rate / noop,
            median(*s),
            median(*s) / noop_median
        );
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(bench));
}
