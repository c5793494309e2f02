//! The `upload_issuances` table: what each upload presignd issued allowed, and, once verified,
//! the verification's answer (see the migration).
//!
//! A verification claims its row first (`state = 'verifying'` until `claimed_until`, one
//! conditional `UPDATE`), so however many instances and callers verify at once, one does the
//! work and writes one audit record; the others read its answer. Times are Unix seconds.

use std::collections::BTreeMap;

use super::webhooks::{self, NewDelivery, insert_deliveries};
use super::{Store, StoreError, numbered};
use crate::policy::{Encryption, MAX_SINGLE_PUT_BYTES, UploadQuota, Usage};

/// An upload issuance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIssuance {
    /// The issuing audit record's id (`x-presignd-id`).
    pub issuance_id: String,
    pub kind: IssuanceKind,
    pub access_point: String,
    /// The access point's target at issuance (a bucket name or ARN).
    pub bucket: String,
    /// The full object key, or the prefix a starts-with POST let the browser complete.
    pub object_key: String,
    pub key_is_prefix: bool,
    pub issuer: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub min_length: u64,
    pub max_length: Option<u64>,
    pub content_type: Option<String>,
    pub checksum_sha256: Option<String>,
    pub encryption: Encryption,
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
    /// When the URL (or policy) expires.
    pub expires_at: i64,
    pub keep_until: i64,
    pub state: IssuanceState,
    /// The verification's answer (JSON), once verified or rejected.
    pub outcome: Option<String>,
    /// A multipart upload's S3 upload id.
    pub upload_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceKind {
    Put,
    Post,
    Multipart,
}

impl IssuanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuanceKind::Put => "put",
            IssuanceKind::Post => "post",
            IssuanceKind::Multipart => "multipart",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuanceState {
    Issued,
    Verifying,
    Verified,
    Rejected,
}

impl IssuanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuanceState::Issued => "issued",
            IssuanceState::Verifying => "verifying",
            IssuanceState::Verified => "verified",
            IssuanceState::Rejected => "rejected",
        }
    }

    /// Verified or rejected: the answer is final.
    pub fn is_final(self) -> bool {
        matches!(self, IssuanceState::Verified | IssuanceState::Rejected)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    issuance_id: String,
    kind: String,
    access_point: String,
    bucket: String,
    object_key: String,
    key_is_prefix: i32,
    issuer: String,
    subject: String,
    groups: String,
    min_length: i64,
    max_length: Option<i64>,
    content_type: Option<String>,
    checksum_sha256: Option<String>,
    sse: String,
    metadata: String,
    created_at: i64,
    expires_at: i64,
    keep_until: i64,
    state: String,
    outcome: Option<String>,
    upload_id: Option<String>,
}

const COLUMNS: &str = "issuance_id, kind, access_point, bucket, object_key, key_is_prefix, \
                       issuer, subject, groups, min_length, max_length, content_type, \
                       checksum_sha256, sse, metadata, created_at, expires_at, keep_until, \
                       state, outcome, upload_id";

fn from_row(r: Row) -> Result<StoredIssuance, StoreError> {
    let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt {
        name: format!("upload issuance {} ({what})", r.issuance_id),
        source: e,
    };
    let kind = match r.kind.as_str() {
        "put" => IssuanceKind::Put,
        "post" => IssuanceKind::Post,
        _ => IssuanceKind::Multipart,
    };
    // CHECK constraints hold the state to these four.
    let state = match r.state.as_str() {
        "issued" => IssuanceState::Issued,
        "verifying" => IssuanceState::Verifying,
        "verified" => IssuanceState::Verified,
        _ => IssuanceState::Rejected,
    };
    Ok(StoredIssuance {
        kind,
        state,
        // Written from these types by `insert_issuances`; a row that does not read back is
        // refused rather than verified against the wrong expectations.
        groups: serde_json::from_str(&r.groups).map_err(|e| corrupt("groups", e))?,
        encryption: serde_json::from_str(&r.sse).map_err(|e| corrupt("sse", e))?,
        metadata: serde_json::from_str(&r.metadata).map_err(|e| corrupt("metadata", e))?,
        access_point: r.access_point,
        bucket: r.bucket,
        object_key: r.object_key,
        key_is_prefix: r.key_is_prefix == 1,
        issuer: r.issuer,
        subject: r.subject,
        min_length: u64::try_from(r.min_length).unwrap_or(0),
        max_length: r.max_length.map(|m| u64::try_from(m).unwrap_or(0)),
        content_type: r.content_type,
        checksum_sha256: r.checksum_sha256,
        created_at: r.created_at,
        expires_at: r.expires_at,
        keep_until: r.keep_until,
        outcome: r.outcome,
        upload_id: r.upload_id,
        issuance_id: r.issuance_id,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What an issuance reserves: its largest allowed size (S3's single-PUT limit if unbounded).
pub fn reservation(row: &StoredIssuance) -> u64 {
    row.max_length.unwrap_or(MAX_SINGLE_PUT_BYTES)
}

fn insert_sql(rows: usize) -> String {
    let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO upload_issuances ({COLUMNS}) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Used bytes, reserved bytes and objects of one subject on one access point (binds: access
/// point, issuer, subject, since). Verified or rejected rows count the size of what is still
/// there; issued or verifying rows their reservation until they are verified — by the
/// uploader, or by presignd once the URL has expired — whether or not the URL still lives, so
/// an upload nobody verified never stops counting.
fn usage_sql() -> String {
    format!(
        "SELECT \
         CAST(COALESCE(SUM(CASE WHEN state IN ('verified', 'rejected') THEN COALESCE(size, 0) ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state IN ('issued', 'verifying') THEN COALESCE(max_length, {MAX_SINGLE_PUT_BYTES}) ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state IN ('issued', 'verifying') OR COALESCE(size, 0) > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM upload_issuances WHERE access_point = ? AND issuer = ? AND subject = ? \
         AND created_at >= ?"
    )
}

/// Inserts `rows` with `sql` (from [`insert_sql`]) on an executor.
macro_rules! insert_rows {
    ($exec:expr, $sql:expr, $rows:expr) => {{
        let mut q = sqlx::query(sqlx::AssertSqlSafe($sql));
        for r in $rows {
            q = q
                .bind(&r.issuance_id)
                .bind(r.kind.as_str())
                .bind(&r.access_point)
                .bind(&r.bucket)
                .bind(&r.object_key)
                .bind(i32::from(r.key_is_prefix))
                .bind(&r.issuer)
                .bind(&r.subject)
                .bind(json(&r.groups))
                .bind(i64_of(r.min_length))
                .bind(r.max_length.map(i64_of))
                .bind(&r.content_type)
                .bind(&r.checksum_sha256)
                .bind(json(&r.encryption))
                .bind(json(&r.metadata))
                .bind(r.created_at)
                .bind(r.expires_at)
                .bind(r.keep_until)
                .bind(r.state.as_str())
                .bind(&r.outcome)
                .bind(&r.upload_id);
        }
        q.execute($exec).await?;
    }};
}

/// Runs [`usage_sql`] on an executor.
macro_rules! usage_of {
    ($exec:expr, $sql:expr, $ap:expr, $iss:expr, $sub:expr, $since:expr) => {{
        let (used, reserved, objects): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe($sql))
            .bind(&$ap)
            .bind(&$iss)
            .bind(&$sub)
            .bind($since)
            .fetch_one($exec)
            .await?;
        Usage {
            used_bytes: u64::try_from(used).unwrap_or(0),
            reserved_bytes: u64::try_from(reserved).unwrap_or(0),
            objects: u64::try_from(objects).unwrap_or(0),
        }
    }};
}

/// Issuances per insert statement: 21 parameters each stays under SQLite's 32 766 and
/// PostgreSQL's 65 535.
const ISSUANCES_PER_INSERT: usize = 500;

/// Inserts issuances on a SQLite connection or transaction (the outbox writer's group commit).
pub(crate) async fn insert_on_sqlite(
    conn: &mut sqlx::SqliteConnection,
    rows: &[&StoredIssuance],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ISSUANCES_PER_INSERT) {
        insert_rows!(&mut *conn, insert_sql(chunk.len()), chunk);
    }
    Ok(())
}

/// Inserts issuances on a PostgreSQL connection or transaction (the outbox writer's group
/// commit).
pub(crate) async fn insert_on_postgres(
    conn: &mut sqlx::PgConnection,
    rows: &[&StoredIssuance],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ISSUANCES_PER_INSERT) {
        insert_rows!(&mut *conn, numbered(&insert_sql(chunk.len())), chunk);
    }
    Ok(())
}

impl Store {
    /// Records issuances (one statement, however many: a batch's uploads).
    pub async fn insert_issuances(&self, rows: &[StoredIssuance]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<&StoredIssuance> = rows.iter().collect();
        match self {
            Store::Sqlite(pool) => insert_on_sqlite(&mut *pool.acquire().await?, &rows).await?,
            Store::Postgres(pool) => insert_on_postgres(&mut *pool.acquire().await?, &rows).await?,
        }
        Ok(())
    }

    /// Records an issuance under `quota` if it fits: the caller's usage is read and the row
    /// inserted in one transaction that no other reservation of the same subject on the same
    /// access point can interleave with — SQLite's `BEGIN IMMEDIATE` (one writer), a
    /// PostgreSQL transaction-scoped advisory lock on (access point, issuer, subject) — so
    /// however many instances reserve at once, the quota is never exceeded. `Err(usage)`:
    /// it does not fit (nothing recorded).
    pub async fn reserve_issuance(
        &self,
        row: &StoredIssuance,
        quota: &UploadQuota,
        now: i64,
    ) -> Result<Result<(), Usage>, StoreError> {
        let since = quota.window.start(now);
        let bytes = reservation(row);
        let usage_sql = usage_sql();
        let insert = insert_sql(1);
        let one = std::slice::from_ref(row);
        // The same read-check-insert on both; only how the transaction excludes others differs.
        macro_rules! reserve {
            ($tx:expr, $usage_sql:expr, $insert:expr) => {{
                let mut tx = $tx;
                let usage = usage_of!(
                    &mut *tx,
                    $usage_sql,
                    row.access_point,
                    row.issuer,
                    row.subject,
                    since
                );
                if !quota.admits(usage, bytes) {
                    tx.rollback().await?;
                    return Ok(Err(usage));
                }
                insert_rows!(&mut *tx, $insert, one);
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(pool) => {
                reserve!(pool.begin_with("BEGIN IMMEDIATE").await?, usage_sql, insert)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let lock = format!(
                    "quota\n{}\n{}\n{}",
                    row.access_point, row.issuer, row.subject
                );
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                reserve!(tx, numbered(&usage_sql), numbered(&insert))
            }
        }
        Ok(Ok(()))
    }

    /// A subject's usage of an access point's quota, counting issuances since `since`: bytes
    /// of verified objects still there, bytes reserved by issuances not verified yet, and
    /// those objects.
    pub async fn quota_usage(
        &self,
        access_point: &str,
        issuer: &str,
        subject: &str,
        since: i64,
    ) -> Result<Usage, StoreError> {
        let sql = usage_sql();
        Ok(match self {
            Store::Sqlite(pool) => usage_of!(pool, sql, access_point, issuer, subject, since),
            Store::Postgres(pool) => {
                usage_of!(pool, numbered(&sql), access_point, issuer, subject, since)
            }
        })
    }

    pub async fn issuance(&self, issuance_id: &str) -> Result<Option<StoredIssuance>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!("SELECT {COLUMNS} FROM upload_issuances WHERE issuance_id = ?"),
            fetch_optional,
            [issuance_id]
        );
        row.map(from_row).transpose()
    }

    /// Takes the issuance for verification until `until`: one not yet verified, or one whose
    /// previous claim lapsed (its instance died). `None`: another verification holds it or
    /// has finished it (read it with [`Store::issuance`]).
    pub async fn claim_issuance(
        &self,
        issuance_id: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<StoredIssuance>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!(
                "UPDATE upload_issuances SET state = 'verifying', claimed_until = ? \
                 WHERE issuance_id = ? AND (state = 'issued' \
                 OR (state = 'verifying' AND claimed_until < ?)) RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [until, issuance_id, now]
        );
        row.map(from_row).transpose()
    }

    /// Gives a claimed issuance back unverified (the verification could not finish).
    pub async fn release_issuance(&self, issuance_id: &str) -> Result<(), StoreError> {
        let _: Option<(String,)> = fetch_rows!(
            self,
            (String,),
            "UPDATE upload_issuances SET state = 'issued', claimed_until = NULL \
             WHERE issuance_id = ? AND state = 'verifying' RETURNING issuance_id"
                .to_string(),
            fetch_optional,
            [issuance_id]
        );
        Ok(())
    }

    /// Records a claimed issuance's final answer, kept until `keep_until`; `size`: the
    /// object's, if it is still there (else 0). The webhook deliveries the answer causes are
    /// queued in the same transaction: an answer is never kept without its events.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_issuance(
        &self,
        issuance_id: &str,
        state: IssuanceState,
        outcome: &str,
        size: u64,
        keep_until: i64,
        deliveries: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let sql = "UPDATE upload_issuances SET state = ?, outcome = ?, size = ?, keep_until = ?, \
                   claimed_until = NULL WHERE issuance_id = ? AND state = 'verifying'";
        macro_rules! run {
            ($pool:expr, $sql:expr, $insert:expr) => {{
                let mut tx = $pool.begin().await?;
                let done = sqlx::query(sqlx::AssertSqlSafe($sql))
                    .bind(state.as_str())
                    .bind(outcome)
                    .bind(i64_of(size))
                    .bind(keep_until)
                    .bind(issuance_id)
                    .execute(&mut *tx)
                    .await?;
                // Only the claim's holder finishes it (and queues its events).
                if done.rows_affected() == 1 && !deliveries.is_empty() {
                    insert_deliveries!(&mut *tx, $insert, deliveries);
                }
                tx.commit().await?;
            }};
        }
        let insert = webhooks::insert_sql(deliveries.len());
        match self {
            Store::Sqlite(pool) => run!(pool, sql.to_string(), insert),
            Store::Postgres(pool) => run!(pool, numbered(sql), numbered(&insert)),
        }
        Ok(())
    }

    /// The issuance of the multipart upload `upload_id`.
    pub async fn issuance_of_upload(
        &self,
        upload_id: &str,
    ) -> Result<Option<StoredIssuance>, StoreError> {
        let row: Option<Row> = fetch_rows!(
            self,
            Row,
            format!("SELECT {COLUMNS} FROM upload_issuances WHERE upload_id = ?"),
            fetch_optional,
            [upload_id]
        );
        row.map(from_row).transpose()
    }

    /// Issuances of the named access points whose URLs expired before `before` and that
    /// nobody verified (or whose verification's claim lapsed by `now`; single-key ones: a
    /// starts-with POST's key is not known), oldest first.
    pub async fn expired_unverified(
        &self,
        access_points: &[String],
        now: i64,
        before: i64,
        limit: u32,
    ) -> Result<Vec<StoredIssuance>, StoreError> {
        if access_points.is_empty() {
            return Ok(Vec::new());
        }
        let names = vec!["?"; access_points.len()].join(", ");
        let sql = format!(
            "SELECT {COLUMNS} FROM upload_issuances WHERE (state = 'issued' \
             OR (state = 'verifying' AND claimed_until < ?)) AND key_is_prefix = 0 \
             AND expires_at < ? AND access_point IN ({names}) ORDER BY expires_at LIMIT ?"
        );
        macro_rules! run {
            ($pool:expr, $sql:expr) => {{
                let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe($sql))
                    .bind(now)
                    .bind(before);
                for name in access_points {
                    q = q.bind(name);
                }
                q.bind(i64::from(limit)).fetch_all($pool).await?
            }};
        }
        let rows = match self {
            Store::Sqlite(pool) => run!(pool, sql),
            Store::Postgres(pool) => run!(pool, numbered(&sql)),
        };
        rows.into_iter().map(from_row).collect()
    }

    /// Forgets a multipart upload S3 has completed and closes its issuance in one
    /// transaction — its URLs are over at `now`, it is kept until `keep_until` — so no crash
    /// can leave an issuance open (unverifiable, reserving for good) for an upload gone.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        issuance_id: &str,
        now: i64,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        let forget = "DELETE FROM multipart_uploads WHERE upload_id = ?";
        let close = "UPDATE upload_issuances SET expires_at = ?, keep_until = ? \
                     WHERE issuance_id = ?";
        macro_rules! run {
            ($pool:expr, $forget:expr, $close:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query(sqlx::AssertSqlSafe($forget))
                    .bind(upload_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe($close))
                    .bind(now)
                    .bind(keep_until)
                    .bind(issuance_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(pool) => run!(pool, forget.to_string(), close.to_string()),
            Store::Postgres(pool) => run!(pool, numbered(forget), numbered(close)),
        }
        Ok(())
    }

    /// Forgets the issuance of a multipart upload that was aborted (never completed).
    pub async fn forget_upload_issuance(&self, upload_id: &str) -> Result<(), StoreError> {
        let _: Option<(String,)> = fetch_rows!(
            self,
            (String,),
            "DELETE FROM upload_issuances WHERE upload_id = ? AND state = 'issued' \
             RETURNING issuance_id"
                .to_string(),
            fetch_optional,
            [upload_id]
        );
        Ok(())
    }

    /// Forgets issuances kept long enough (none being verified). Returns how many.
    pub async fn forget_issuances(&self, now: i64) -> Result<u64, StoreError> {
        // A verification's claim that lapsed long ago counts as given up.
        let sql = "DELETE FROM upload_issuances WHERE keep_until < ? \
                   AND (state <> 'verifying' OR claimed_until < ?)";
        let done = match self {
            Store::Sqlite(pool) => sqlx::query(sql)
                .bind(now)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(numbered(sql)))
                .bind(now)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // These types (strings, maps of strings, a plain enum) always serialize.
    serde_json::to_string(v).unwrap_or_default()
}
