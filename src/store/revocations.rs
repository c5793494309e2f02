//! The `revocations` table: durable token revocations, loaded by every instance into memory
//! (`crate::revocations`). Times are Unix seconds.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// Every token of a subject issued before `not_before`.
    Subject,
    /// One token, by its `jti`.
    Token,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Subject => "subject",
            RevocationKind::Token => "token",
        }
    }

    fn parse(s: &str) -> Option<RevocationKind> {
        match s {
            "subject" => Some(RevocationKind::Subject),
            "token" => Some(RevocationKind::Token),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevocation {
    pub kind: RevocationKind,
    /// The token issuer it applies to; empty: any issuer.
    pub issuer: String,
    /// The `sub` or the `jti`.
    pub value: String,
    pub not_before: i64,
    /// After this no token the entry covers can still be valid: the row may be purged.
    pub expires_at: i64,
    /// The admin who made it (`sub`).
    pub created_by: String,
}

type Row = (String, String, String, i64, i64, String);

fn from_row(
    (kind, issuer, value, not_before, expires_at, created_by): Row,
) -> Option<StoredRevocation> {
    Some(StoredRevocation {
        kind: RevocationKind::parse(&kind)?,
        issuer,
        value,
        not_before,
        expires_at,
        created_by,
    })
}

impl Store {
    /// Records a revocation. An existing entry for the same kind, issuer and value keeps the
    /// later `not_before` and `expires_at` (a revocation is never weakened by a repeat).
    /// Returns the entry as stored.
    pub async fn upsert_revocation(
        &self,
        r: &StoredRevocation,
    ) -> Result<StoredRevocation, StoreError> {
        let row: Row = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "INSERT INTO revocations \
                     (kind, issuer, value, not_before, expires_at, created_by) \
                     VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (kind, issuer, value) DO UPDATE SET \
                     not_before = max(revocations.not_before, excluded.not_before), \
                     expires_at = max(revocations.expires_at, excluded.expires_at), \
                     created_by = excluded.created_by, \
                     created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     RETURNING kind, issuer, value, not_before, expires_at, created_by",
                )
                .bind(r.kind.as_str())
                .bind(&r.issuer)
                .bind(&r.value)
                .bind(r.not_before)
                .bind(r.expires_at)
                .bind(&r.created_by)
                .fetch_one(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "INSERT INTO revocations \
                     (kind, issuer, value, not_before, expires_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (kind, issuer, value) DO UPDATE SET \
                     not_before = GREATEST(revocations.not_before, excluded.not_before), \
                     expires_at = GREATEST(revocations.expires_at, excluded.expires_at), \
                     created_by = excluded.created_by, created_at = now() \
                     RETURNING kind, issuer, value, not_before, expires_at, created_by",
                )
                .bind(r.kind.as_str())
                .bind(&r.issuer)
                .bind(&r.value)
                .bind(r.not_before)
                .bind(r.expires_at)
                .bind(&r.created_by)
                .fetch_one(pool)
                .await?
            }
        };
        from_row(row).ok_or_else(|| {
            StoreError::Sql(sqlx::Error::Protocol(
                "revocations.kind holds an unknown value".into(),
            ))
        })
    }

    /// Entries that may still matter at `now` (Unix seconds).
    pub async fn active_revocations(&self, now: i64) -> Result<Vec<StoredRevocation>, StoreError> {
        let rows: Vec<Row> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT kind, issuer, value, not_before, expires_at, created_by \
                     FROM revocations WHERE expires_at > ? ORDER BY created_at, value",
                )
                .bind(now)
                .fetch_all(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT kind, issuer, value, not_before, expires_at, created_by \
                     FROM revocations WHERE expires_at > $1 ORDER BY created_at, value",
                )
                .bind(now)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().filter_map(from_row).collect())
    }

    /// Deletes entries that expired at or before `now`; returns how many.
    pub async fn purge_revocations(&self, now: i64) -> Result<u64, StoreError> {
        let n = match self {
            Store::Sqlite(pool) => sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(n)
    }
}
