//! Redis for tests: the shared server (`PRESIGND_TEST_REDIS_URL`, from `scripts/ensure-redis`)
//! with a fresh key prefix per test, or a throwaway `redis-server` on a free port that a test
//! may kill and restart (never the shared one).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The shared test server.
pub fn redis_url() -> String {
    std::env::var("PRESIGND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn key_prefix() -> String {
    format!("presignd-test-{}:", uuid::Uuid::new_v4().simple())
}

/// `[redis]` for a test config: the server at `url`, keys under `prefix`, quick reconnects.
pub fn redis_config(url: &str, prefix: &str) -> presignd::config::RedisConfig {
    presignd::config::RedisConfig {
        url: Some(url.to_string().into()),
        key_prefix: prefix.to_string(),
        retry_interval_ms: 100,
        ..presignd::config::RedisConfig::default()
    }
}

/// Keys under `prefix` on the server at `url`.
pub async fn keys(url: &str, prefix: &str) -> Vec<String> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS")
}

/// Clients connected to the server at `url`, this query's own connection excluded.
pub async fn clients(url: &str) -> usize {
    let client = redis::Client::open(url).expect("redis url");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    list.lines().count().saturating_sub(1)
}

async fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

/// A `redis-server` of this test's own: no persistence, on a port picked at start.
pub struct ThrowawayRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ThrowawayRedis {
    pub async fn start() -> ThrowawayRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = ThrowawayRedis {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let binary =
            std::env::var("PRESIGND_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (scripts/ensure-redis installs it): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers(&self.url()).await {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL, by its own child handle) and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while answers(&self.url()).await {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
