//! The `download_grants` table: revocable, N-use download links (see the migration).
//!
//! A redemption is one conditional `UPDATE … SET uses = uses + 1 … WHERE uses < max_uses AND
//! revoked_at IS NULL AND expires_at > now RETURNING …`: PostgreSQL locks the row and SQLite
//! has one writer, so however many instances redeem at once, `max_uses` redemptions succeed
//! and no more. Times are Unix seconds.

use super::{Store, StoreError, numbered};

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub grant_id: String,
    pub access_point: String,
    /// The access point's target at creation (a bucket name or ARN).
    pub bucket: String,
    /// The key as the creator gave it (without the access point's prefix).
    pub request_key: String,
    /// The full object key in the bucket.
    pub object_key: String,
    pub issuer: String,
    pub subject: String,
    /// The creator's groups and MFA, for the rules at redemption.
    pub groups: Vec<String>,
    pub mfa: bool,
    pub response_content_disposition: Option<String>,
    pub max_uses: u32,
    pub uses: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a redemption found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// One use counted; `uses` includes it.
    Redeemed(StoredGrant),
    /// The grant exists but is used up, expired or revoked (nothing counted).
    Gone(StoredGrant),
    /// No grant has this token.
    Unknown,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i32,
    Option<String>,
    i32,
    i32,
    i64,
    i64,
    Option<i64>,
);

const COLUMNS: &str = "grant_id, access_point, bucket, request_key, object_key, issuer, \
                       subject, groups, mfa, response_content_disposition, max_uses, uses, \
                       created_at, expires_at, revoked_at";

fn from_row(r: Row) -> StoredGrant {
    StoredGrant {
        grant_id: r.0,
        access_point: r.1,
        bucket: r.2,
        request_key: r.3,
        object_key: r.4,
        issuer: r.5,
        subject: r.6,
        // Written by `insert_grant` from a Vec<String>; anything else reads as no groups,
        // which can only narrow what the rules grant.
        groups: serde_json::from_str(&r.7).unwrap_or_default(),
        mfa: r.8 == 1,
        response_content_disposition: r.9,
        // CHECK constraints keep these non-negative.
        max_uses: u32::try_from(r.10).unwrap_or(0),
        uses: u32::try_from(r.11).unwrap_or(u32::MAX),
        created_at: r.12,
        expires_at: r.13,
        revoked_at: r.14,
    }
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Store {
    /// Records a new grant (no uses yet) under the SHA-256 of its token.
    pub async fn insert_grant(
        &self,
        g: &StoredGrant,
        token_sha256: &str,
    ) -> Result<(), StoreError> {
        let groups = serde_json::to_string(&g.groups).unwrap_or_else(|_| "[]".into());
        let sql = "INSERT INTO download_grants (grant_id, token_sha256, access_point, bucket, \
                   request_key, object_key, issuer, subject, groups, mfa, \
                   response_content_disposition, max_uses, created_at, expires_at) \
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        macro_rules! run {
            ($pool:expr, $sql:expr) => {
                sqlx::query(sqlx::AssertSqlSafe($sql))
                    .bind(&g.grant_id)
                    .bind(token_sha256)
                    .bind(&g.access_point)
                    .bind(&g.bucket)
                    .bind(&g.request_key)
                    .bind(&g.object_key)
                    .bind(&g.issuer)
                    .bind(&g.subject)
                    .bind(&groups)
                    .bind(i32::from(g.mfa))
                    .bind(&g.response_content_disposition)
                    .bind(i32_of(g.max_uses))
                    .bind(g.created_at)
                    .bind(g.expires_at)
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        match self {
            Store::Sqlite(pool) => run!(pool, sql.to_string()),
            Store::Postgres(pool) => run!(pool, numbered(sql)),
        };
        Ok(())
    }

    /// Counts one use of the grant whose token hashes to `token_sha256`, if it is live at
    /// `now` and has uses left.
    pub async fn redeem_grant(
        &self,
        token_sha256: &str,
        now: i64,
    ) -> Result<Redemption, StoreError> {
        let counted: Option<Row> = fetch_rows!(
            self,
            Row,
            format!(
                "UPDATE download_grants SET uses = uses + 1 \
                 WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ? \
                 AND uses < max_uses RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [token_sha256, now]
        );
        if let Some(row) = counted {
            return Ok(Redemption::Redeemed(from_row(row)));
        }
        Ok(match self.grant_by_token(token_sha256).await? {
            Some(g) => Redemption::Gone(g),
            None => Redemption::Unknown,
        })
    }

    /// The grant whose token hashes to `token_sha256`, without counting a use (`HEAD`).
    pub async fn grant_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!("SELECT {COLUMNS} FROM download_grants WHERE token_sha256 = ?"),
            fetch_optional,
            [token_sha256]
        );
        Ok(row.map(from_row))
    }

    /// Gives back a use counted by a redemption that then issued nothing (its audit record
    /// could not be made durable).
    pub async fn refund_grant_use(&self, grant_id: &str) -> Result<(), StoreError> {
        let sql = "UPDATE download_grants SET uses = uses - 1 WHERE grant_id = ? AND uses > 0";
        match self {
            Store::Sqlite(pool) => {
                sqlx::query(sql).bind(grant_id).execute(pool).await?;
            }
            Store::Postgres(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(numbered(sql)))
                    .bind(grant_id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Revokes the grant at `now` (a second revocation keeps the first time). With `owner`
    /// (issuer, subject), only that principal's grant; `None`: any (an admin). `None` back:
    /// no such grant (of that owner).
    pub async fn revoke_grant(
        &self,
        grant_id: &str,
        owner: Option<(&str, &str)>,
        now: i64,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let set =
            "UPDATE download_grants SET revoked_at = COALESCE(revoked_at, ?) WHERE grant_id = ?";
        let row: Option<Row> = match owner {
            Some((issuer, subject)) => fetch_rows!(
                self,
                Row,
                format!("{set} AND issuer = ? AND subject = ? RETURNING {COLUMNS}"),
                fetch_optional,
                [now, grant_id, issuer, subject]
            ),
            None => fetch_rows!(
                self,
                Row,
                format!("{set} RETURNING {COLUMNS}"),
                fetch_optional,
                [now, grant_id]
            ),
        };
        Ok(row.map(from_row))
    }

    /// Revokes every live grant (not revoked, not expired at `now`) of `subject` (of
    /// `issuer`, or of any issuer); how many.
    pub async fn revoke_grants_of_subject(
        &self,
        issuer: Option<&str>,
        subject: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let sql = match issuer {
            Some(_) => {
                "UPDATE download_grants SET revoked_at = ? WHERE revoked_at IS NULL \
                        AND expires_at > ? AND subject = ? AND issuer = ?"
            }
            None => {
                "UPDATE download_grants SET revoked_at = ? WHERE revoked_at IS NULL \
                     AND expires_at > ? AND subject = ?"
            }
        };
        self.revoke_where(sql, now, subject, issuer).await
    }

    /// Revokes every live grant of the object `object_key` (the full key), through any access
    /// point or only through `access_point`; how many.
    pub async fn revoke_grants_of_object(
        &self,
        object_key: &str,
        access_point: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let sql = match access_point {
            Some(_) => {
                "UPDATE download_grants SET revoked_at = ? WHERE revoked_at IS NULL \
                        AND expires_at > ? AND object_key = ? AND access_point = ?"
            }
            None => {
                "UPDATE download_grants SET revoked_at = ? WHERE revoked_at IS NULL \
                     AND expires_at > ? AND object_key = ?"
            }
        };
        self.revoke_where(sql, now, object_key, access_point).await
    }

    /// Revokes every live grant made through `access_point` (when it is deleted); how many.
    pub async fn revoke_grants_of_access_point(
        &self,
        access_point: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let sql = "UPDATE download_grants SET revoked_at = ? WHERE revoked_at IS NULL \
                   AND expires_at > ? AND access_point = ?";
        self.revoke_where(sql, now, access_point, None).await
    }

    async fn revoke_where(
        &self,
        sql: &'static str,
        now: i64,
        first: &str,
        second: Option<&str>,
    ) -> Result<u64, StoreError> {
        macro_rules! run {
            ($pool:expr, $sql:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe($sql))
                    .bind(now)
                    .bind(now)
                    .bind(first);
                if let Some(second) = second {
                    q = q.bind(second);
                }
                q.execute($pool).await?.rows_affected()
            }};
        }
        Ok(match self {
            Store::Sqlite(pool) => run!(pool, sql.to_string()),
            Store::Postgres(pool) => run!(pool, numbered(sql)),
        })
    }
}
