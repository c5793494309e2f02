//! The `webhook_deliveries` table: the durable outbox of signed webhooks (see the migration).
//!
//! Each instance's dispatcher claims due deliveries with one conditional `UPDATE … RETURNING`
//! (PostgreSQL skips rows another instance is claiming, `FOR UPDATE SKIP LOCKED`; SQLite has
//! one writer), so under normal operation each delivery is sent by one instance once; a
//! claim whose instance died is taken over after `claimed_until_ms` (at least once).

use super::{Store, StoreError};

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `msg_…`: the `webhook-id` header.
    pub delivery_id: String,
    pub endpoint: String,
    pub event_type: String,
    pub payload: String,
    pub created_at_ms: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct StoredDelivery {
    pub delivery_id: String,
    pub endpoint: String,
    pub event_type: String,
    #[serde(skip)]
    pub payload: String,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub attempts: i32,
    pub state: String,
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
}

const COLUMNS: &str = "delivery_id, endpoint, event_type, payload, created_at_ms, \
                       next_attempt_at_ms, attempts, state, last_error, last_status";

/// Inserts `rows` (pending, due at once) on an executor.
macro_rules! insert_deliveries {
    ($exec:expr, $sql:expr, $rows:expr) => {{
        let mut q = sqlx::query(sqlx::AssertSqlSafe($sql));
        for d in $rows {
            q = q
                .bind(&d.delivery_id)
                .bind(&d.endpoint)
                .bind(&d.event_type)
                .bind(&d.payload)
                .bind(d.created_at_ms)
                .bind(d.created_at_ms);
        }
        q.execute($exec).await?;
    }};
}

pub(super) fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO webhook_deliveries (delivery_id, endpoint, event_type, payload, \
         created_at_ms, next_attempt_at_ms) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

pub(super) use insert_deliveries;

impl Store {
    /// Claims up to `limit` deliveries due at `now_ms` (and claims whose holder died) until
    /// `claim_until_ms`.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let rows: Vec<StoredDelivery> = fetch_rows!(
            self,
            StoredDelivery,
            format!(
                "UPDATE webhook_deliveries SET state = 'delivering', claimed_until_ms = ? \
                 WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries \
                 WHERE (state = 'pending' AND next_attempt_at_ms <= ?) \
                 OR (state = 'delivering' AND claimed_until_ms < ?) \
                 ORDER BY next_attempt_at_ms LIMIT ?{lock}) RETURNING {COLUMNS}"
            ),
            fetch_all,
            [claim_until_ms, now_ms, now_ms, i64::from(limit)]
        );
        Ok(rows)
    }

    /// The endpoint took it: forgotten.
    pub async fn delivered(&self, delivery_id: &str) -> Result<(), StoreError> {
        let _: Option<(String,)> = fetch_rows!(
            self,
            (String,),
            "DELETE FROM webhook_deliveries WHERE delivery_id = ? RETURNING delivery_id"
                .to_string(),
            fetch_optional,
            [delivery_id]
        );
        Ok(())
    }

    /// A failed attempt: tried again at `next_attempt_at_ms`, or dead-lettered when `dead`.
    pub async fn attempt_failed(
        &self,
        delivery_id: &str,
        attempts: i32,
        next_attempt_at_ms: i64,
        dead: bool,
        error: &str,
        status: Option<i32>,
    ) -> Result<(), StoreError> {
        let state = if dead { "dead" } else { "pending" };
        let _: Option<(String,)> = fetch_rows!(
            self,
            (String,),
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at_ms = ?, \
             claimed_until_ms = NULL, last_error = ?, last_status = ? \
             WHERE delivery_id = ? RETURNING delivery_id"
                .to_string(),
            fetch_optional,
            [
                state,
                attempts,
                next_attempt_at_ms,
                error,
                status,
                delivery_id
            ]
        );
        Ok(())
    }

    /// Dead letters, oldest first, after `after` (a delivery id) if given.
    pub async fn dead_letters(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        let rows: Vec<StoredDelivery> = fetch_rows!(
            self,
            StoredDelivery,
            format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE state = 'dead' \
                 AND delivery_id > ? ORDER BY delivery_id LIMIT ?"
            ),
            fetch_all,
            [after.unwrap_or(""), i64::from(limit)]
        );
        Ok(rows)
    }

    pub async fn count_dead_letters(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = fetch_rows!(
            self,
            (i64,),
            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'".to_string(),
            fetch_one,
            []
        );
        Ok(n)
    }

    /// Puts a dead letter back in the queue, due now, with a fresh retry period. `false`: no
    /// such dead letter.
    pub async fn retry_dead_letter(
        &self,
        delivery_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let row: Option<(String,)> = fetch_rows!(
            self,
            (String,),
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
             next_attempt_at_ms = ?, created_at_ms = ? \
             WHERE delivery_id = ? AND state = 'dead' RETURNING delivery_id"
                .to_string(),
            fetch_optional,
            [now_ms, now_ms, delivery_id]
        );
        Ok(row.is_some())
    }
}
