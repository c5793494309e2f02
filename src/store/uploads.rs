//! The `multipart_uploads` table: each multipart upload presignd started, bound to its owner.
//!
//! Every lookup on behalf of a caller is one query whose `WHERE` names the upload id, the
//! owner (issuer and subject) and the access point: a row of another principal is never read,
//! so "not yours" and "does not exist" are the same answer. Times are Unix seconds.

use super::{Store, StoreError, numbered};

/// An upload as stored (see the migration for the meaning of each column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    pub upload_id: String,
    pub access_point: String,
    /// What the SDK was given as the bucket (a name or an access point ARN).
    pub bucket: String,
    /// The key as the caller gave it (without the access point's prefix).
    pub request_key: String,
    /// The full object key in the bucket.
    pub object_key: String,
    pub issuer: String,
    pub subject: String,
    pub content_length: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub created_at: i64,
    pub last_activity_at: i64,
}

/// Who is asking about which upload: every field must match the row.
#[derive(Debug, Clone, Copy)]
pub struct UploadOwner<'a> {
    pub upload_id: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub access_point: &'a str,
}

/// What S3 is being asked to do with a claimed upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadClaim {
    Completing,
    Aborting,
}

impl UploadClaim {
    fn as_str(self) -> &'static str {
        match self {
            UploadClaim::Completing => "completing",
            UploadClaim::Aborting => "aborting",
        }
    }
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i32,
    i64,
    i64,
);

const COLUMNS: &str = "upload_id, access_point, bucket, request_key, object_key, issuer, \
                       subject, content_length, part_size, part_count, created_at, \
                       last_activity_at";

fn from_row(r: Row) -> StoredUpload {
    StoredUpload {
        upload_id: r.0,
        access_point: r.1,
        bucket: r.2,
        request_key: r.3,
        object_key: r.4,
        issuer: r.5,
        subject: r.6,
        // CHECK constraints keep these positive.
        content_length: u64::try_from(r.7).unwrap_or(0),
        part_size: u64::try_from(r.8).unwrap_or(0),
        part_count: u32::try_from(r.9).unwrap_or(0),
        created_at: r.10,
        last_activity_at: r.11,
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs one statement without rows on either backend; returns the rows affected.
macro_rules! execute {
    ($store:expr, $sql:expr, [$($bind:expr),* $(,)?]) => {{
        let sql: &str = $sql;
        match $store {
            Store::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
                $(.bind($bind))*
                .execute(pool)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(numbered(sql)))
                $(.bind($bind))*
                .execute(pool)
                .await?
                .rows_affected(),
        }
    }};
}

impl Store {
    /// Records a new upload (state `active`).
    pub async fn insert_upload(&self, u: &StoredUpload) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO multipart_uploads (upload_id, access_point, bucket, request_key, \
             object_key, issuer, subject, content_length, part_size, part_count, created_at, \
             last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                &u.upload_id,
                &u.access_point,
                &u.bucket,
                &u.request_key,
                &u.object_key,
                &u.issuer,
                &u.subject,
                i64_of(u.content_length),
                i64_of(u.part_size),
                i32::try_from(u.part_count).unwrap_or(i32::MAX),
                u.created_at,
                u.last_activity_at,
            ]
        );
        Ok(())
    }

    /// The caller's active upload, its last activity set to `now` (the sweeper measures
    /// abandonment from it). `None`: no such upload of this owner on this access point.
    pub async fn touch_upload(
        &self,
        owner: UploadOwner<'_>,
        now: i64,
    ) -> Result<Option<StoredUpload>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!(
                "UPDATE multipart_uploads SET last_activity_at = ? \
                 WHERE upload_id = ? AND issuer = ? AND subject = ? AND access_point = ? \
                 AND state = 'active' RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [
                now,
                owner.upload_id,
                owner.issuer,
                owner.subject,
                owner.access_point
            ]
        );
        Ok(row.map(from_row))
    }

    /// Claims the caller's active upload for completing or aborting until `claimed_until`; no
    /// other request or sweeper touches it meanwhile. `None`: no such upload of this owner
    /// (or another request holds it).
    pub async fn claim_upload(
        &self,
        owner: UploadOwner<'_>,
        claim: UploadClaim,
        claimed_until: i64,
    ) -> Result<Option<StoredUpload>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!(
                "UPDATE multipart_uploads SET state = ?, claimed_until = ? \
                 WHERE upload_id = ? AND issuer = ? AND subject = ? AND access_point = ? \
                 AND state = 'active' RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [
                claim.as_str(),
                claimed_until,
                owner.upload_id,
                owner.issuer,
                owner.subject,
                owner.access_point
            ]
        );
        Ok(row.map(from_row))
    }

    /// Returns a claimed upload to `active` (S3 refused; the caller may try again).
    pub async fn release_upload(&self, upload_id: &str, now: i64) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE multipart_uploads SET state = 'active', claimed_until = NULL, \
             last_activity_at = ? WHERE upload_id = ?",
            [now, upload_id]
        );
        Ok(())
    }

    /// Forgets an upload S3 has completed (its issuance stays, to be verified).
    pub async fn delete_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM multipart_uploads WHERE upload_id = ?",
            [upload_id]
        );
        Ok(())
    }

    /// Forgets an upload S3 has aborted, and its issuance: nothing is left to verify.
    pub async fn delete_aborted_upload(&self, upload_id: &str) -> Result<(), StoreError> {
        self.forget_upload_issuance(upload_id).await?;
        self.delete_upload(upload_id).await
    }

    /// Claims up to `limit` uploads for the sweeper to abort: active ones idle since before
    /// `idle_before`, and claims whose holder died (`claimed_until` passed). Safe with many
    /// instances: PostgreSQL skips rows another instance is claiming (`FOR UPDATE SKIP
    /// LOCKED`); SQLite has one writer, and the `UPDATE` is one statement.
    pub async fn claim_abandoned(
        &self,
        idle_before: i64,
        now: i64,
        claimed_until: i64,
        limit: u32,
    ) -> Result<Vec<StoredUpload>, StoreError> {
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let rows: Vec<Row> = fetch_rows!(
            self,
            Row,
            format!(
                "UPDATE multipart_uploads SET state = 'aborting', claimed_until = ? \
                 WHERE upload_id IN (SELECT upload_id FROM multipart_uploads \
                 WHERE (state = 'active' AND last_activity_at < ?) \
                 OR (state <> 'active' AND claimed_until < ?) \
                 ORDER BY last_activity_at LIMIT ?{lock}) RETURNING {COLUMNS}"
            ),
            fetch_all,
            [claimed_until, idle_before, now, i64::from(limit)]
        );
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Every stored upload (operators and tests).
    pub async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StoreError> {
        let rows: Vec<Row> = fetch_rows!(
            self,
            Row,
            format!("SELECT {COLUMNS} FROM multipart_uploads ORDER BY created_at, upload_id"),
            fetch_all,
            []
        );
        Ok(rows.into_iter().map(from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("UPDATE t SET a = ? WHERE b = ? AND c = ?"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
    }
}
