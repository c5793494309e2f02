//! The shared limiter: one Lua script call (`gcra.lua`) per request on a multiplexed Redis
//! connection. Concurrent calls (the items of a batch, parallel requests) are pipelined on
//! that one connection by the client.
//!
//! The connection is dropped at the first failed or slow call; a background task reconnects
//! every `retry_interval_ms` and reloads the script. While there is no connection every call
//! returns `Unreachable` at once, so a dead Redis costs requests nothing but the fallback.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use super::gcra::Quota;

const SCRIPT: &str = include_str!("gcra.lua");

#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("not connected to Redis")]
    NotConnected,
    #[error("Redis call timed out after {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the limiter script: {0:?}")]
    Reply((i64, i64, i64)),
}

pub struct RedisLimiter {
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    script: redis::Script,
    timeout: Duration,
    retry: Duration,
    wake: Notify,
}

impl RedisLimiter {
    pub fn new(url: &str, timeout: Duration, retry: Duration) -> Result<RedisLimiter, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis.url: {e}"))?;
        Ok(RedisLimiter {
            client,
            conn: ArcSwapOption::empty(),
            script: redis::Script::new(SCRIPT),
            timeout,
            retry,
            wake: Notify::new(),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Connects and loads the script; on success later calls use this connection.
    pub async fn connect(&self) -> Result<(), Unreachable> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(self.timeout));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.script.prepare_invoke().load_async(&mut conn).await?;
        self.conn.store(Some(Arc::new(conn)));
        Ok(())
    }

    /// Admits one request against every bucket or none (see `gcra::admit_all`). The outer
    /// `Err` means Redis could not decide.
    pub async fn admit(
        &self,
        buckets: &[(&str, Quota)],
    ) -> Result<Result<(), (usize, u64)>, Unreachable> {
        let Some(shared) = self.conn.load_full() else {
            return Err(Unreachable::NotConnected);
        };
        let mut conn = (*shared).clone();
        let mut call = self.script.prepare_invoke();
        for (key, quota) in buckets {
            call.key(*key)
                .arg(quota.interval_us())
                .arg(quota.tolerance_us());
        }
        let reply = tokio::time::timeout(
            self.timeout,
            call.invoke_async::<(i64, i64, i64)>(&mut conn),
        )
        .await;
        let result = match reply {
            Ok(Ok((1, _, _))) => Ok(Ok(())),
            Ok(Ok((0, wait, index))) if index >= 1 => Ok(Err((
                usize::try_from(index - 1).unwrap_or_default(),
                u64::try_from(wait).unwrap_or_default(),
            ))),
            Ok(Ok(other)) => Err(Unreachable::Reply(other)),
            Ok(Err(e)) => Err(Unreachable::Redis(e)),
            Err(_) => Err(Unreachable::Timeout(self.timeout)),
        };
        if result.is_err() {
            self.drop_connection(shared);
        }
        result
    }

    /// PING on the current connection (for readiness); a failure drops it like a failed call.
    pub async fn ping(&self) -> Result<(), Unreachable> {
        let Some(shared) = self.conn.load_full() else {
            return Err(Unreachable::NotConnected);
        };
        let mut conn = (*shared).clone();
        let reply = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        let result = match reply {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Unreachable::Redis(e)),
            Err(_) => Err(Unreachable::Timeout(self.timeout)),
        };
        if result.is_err() {
            self.drop_connection(shared);
        }
        result
    }

    /// Drops a connection that failed (unless another call already replaced it) and lets the
    /// background task build a fresh one.
    fn drop_connection(&self, failed: Arc<MultiplexedConnection>) {
        let _ = self.conn.compare_and_swap(&Some(failed), None::<Arc<_>>);
        self.wake.notify_one();
    }

    /// Keeps a connection: reconnects whenever a call dropped it. `on_up` runs after each
    /// successful (re)connection. Runs until aborted.
    pub async fn maintain(self: Arc<Self>, on_up: impl Fn() + Send) {
        loop {
            if !self.is_connected() {
                match self.connect().await {
                    Ok(()) => on_up(),
                    Err(error) => {
                        tracing::debug!(%error, "Redis reconnect failed");
                        tokio::time::sleep(self.retry).await;
                        continue;
                    }
                }
            }
            self.wake.notified().await;
        }
    }
}
