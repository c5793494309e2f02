//! The `audit_outbox` table (and, on SQLite, `audit_outbox_batches`): inserting the group
//! commits' rows, and the shipper's claim, resume, complete and count. The algorithms that
//! drive them are in `crate::audit::outbox` (the group-commit writer) and
//! `crate::audit::shipper`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;

use super::Store;
use super::issuances::{self, StoredIssuance};

/// SQLite allows 32766 bound parameters per statement (999 before 3.32); 5 per row. A group
/// is a few rows (one per 12 KiB), so this is rarely reached.
const SQLITE_ROWS_PER_INSERT: usize = 128;
/// One outbox row: a run of records from one hour, in append order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewRow {
    /// The first record's id and time (RFC 3339, UTC).
    pub id: String,
    pub time: String,
    pub last_id: String,
    pub records: i64,
    /// The records' NDJSON lines, each ending with `\n`.
    pub lines: String,
}

/// Turns at writing the SQLite outbox, shared by the group-commit writer and the shipper.
///
/// SQLite has one writer at a time, and a connection that finds the write lock taken sleeps
/// in SQLite's busy handler (1, 2, 5, 10, … ms) before trying again: group commits stalled for
/// up to 100 ms whenever the shipper was claiming or deleting a batch. Taking turns here, the
/// next writer starts the moment the other is done. PostgreSQL locks rows, so its writers never
/// wait for each other and take no turn.
#[derive(Clone, Default)]
pub(crate) struct WriteTurns(Arc<tokio::sync::Mutex<()>>);

impl WriteTurns {
    pub(crate) async fn take(&self, store: &Store) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match store {
            Store::Sqlite(_) => Some(self.0.lock().await),
            Store::Postgres(_) => None,
        }
    }
}

/// Rows in one statement when they fit and nothing else is to be written (atomic by
/// itself), else rows and issuances in one transaction.
pub(crate) async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    rows: &[&NewRow],
    issuances: &[&StoredIssuance],
) -> Result<(), sqlx::Error> {
    if issuances.is_empty() && !rows.is_empty() && rows.len() <= SQLITE_ROWS_PER_INSERT {
        return sqlite_insert(&mut *conn, rows).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
        sqlite_insert(&mut *tx, chunk).await?;
    }
    issuances::insert_on_sqlite(&mut tx, issuances).await?;
    tx.commit().await
}

async fn sqlite_insert<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    rows: &[&NewRow],
) -> Result<(), sqlx::Error> {
    let mut sql = String::with_capacity(80 + rows.len() * 17);
    sql.push_str("INSERT INTO audit_outbox (id, time, last_id, records, lines) VALUES ");
    for i in 0..rows.len() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?)"
        });
    }
    // One cached statement per row count (almost always one row).
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(&r.id)
            .bind(&r.time)
            .bind(&r.last_id)
            .bind(r.records)
            .bind(&r.lines);
    }
    q.execute(executor).await?;
    Ok(())
}

pub(crate) async fn insert_postgres(
    conn: &mut sqlx::PgConnection,
    rows: &[&NewRow],
    issuances: &[&StoredIssuance],
) -> Result<(), sqlx::Error> {
    let chunks = pg_chunks(rows);
    if let ([only], true) = (chunks.as_slice(), issuances.is_empty()) {
        return pg_insert(&mut *conn, only).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in &chunks {
        pg_insert(&mut *tx, chunk).await?;
    }
    issuances::insert_on_postgres(&mut tx, issuances).await?;
    tx.commit().await
}

/// Bytes of record data per PostgreSQL statement, at most (one row may exceed it alone).
///
/// sqlx 0.9.0 leaves Nagle's algorithm on (TCP_NODELAY was dropped: transact-rs/sqlx#4335,
/// fixed after that release). A statement that leaves in more than one write then waits with
/// its last bytes for the server's delayed ACK, 40 ms on Linux. Measured on loopback: a
/// 128-record group took 48 ms as one statement and 92 ms as two 32 KiB ones, but 4 ms as
/// 16 KiB statements in one transaction. Over TLS (sslmode=prefer, the default) each TLS record
/// (at most 16 KiB of plaintext) is its own write, so a statement must fit in one record with
/// its framing: at 16 KiB of data p99 under load was 48 ms, at 14 KiB 11–16 ms. sqlx 0.9.1
/// (which presignd requires) sets TCP_NODELAY again; the split stays as a bound on a
/// statement's size until a measurement says a larger one is better.
pub(crate) const PG_STATEMENT_BYTES: usize = 14 * 1024;

pub(crate) fn pg_chunks<'a>(rows: &[&'a NewRow]) -> Vec<Vec<&'a NewRow>> {
    let mut chunks: Vec<Vec<&NewRow>> = Vec::new();
    let mut size = 0;
    for &r in rows {
        // Each value's length prefix and array-element framing.
        let len = r.id.len() + r.time.len() + r.last_id.len() + r.lines.len() + 48;
        match chunks.last_mut() {
            Some(chunk) if size + len <= PG_STATEMENT_BYTES => {
                chunk.push(r);
                size += len;
            }
            _ => {
                chunks.push(vec![r]);
                size = len;
            }
        }
    }
    chunks
}

/// One multi-row insert: arrays instead of a parameter per value, so one statement text
/// whatever the count.
async fn pg_insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[&NewRow],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let times: Vec<&str> = rows.iter().map(|r| r.time.as_str()).collect();
    let last_ids: Vec<&str> = rows.iter().map(|r| r.last_id.as_str()).collect();
    let records: Vec<i64> = rows.iter().map(|r| r.records).collect();
    let lines: Vec<&str> = rows.iter().map(|r| r.lines.as_str()).collect();
    sqlx::query(
        "INSERT INTO audit_outbox (id, time, last_id, records, lines) \
         SELECT id, time::timestamptz, last_id, records, lines \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
           WITH ORDINALITY AS r(id, time, last_id, records, lines, n) \
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&times)
    .bind(&last_ids)
    .bind(&records)
    .bind(&lines)
    .execute(executor)
    .await?;
    Ok(())
}

/// A pending row as the shipper reads it: a run of records from one hour.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub seq: i64,
    /// The first and last record's ids.
    pub id: String,
    pub last_id: String,
    /// Unix seconds of the first record's time (the row's hour partition).
    pub unix: i64,
    pub records: i64,
    /// NDJSON lines, each ending with `\n`.
    pub lines: String,
}

/// A batch claimed by one shipper. The claim is durable: until `complete` deletes them, its
/// rows belong to this batch, and whoever ships it again (this instance after a crash, or
/// another one once the claim is older than the lease) ships the same rows under the same
/// `claimed_by`, so the same object keys.
///
/// On PostgreSQL the claim is a stamp on each row (rows picked `FOR UPDATE SKIP LOCKED`; commit
/// order there need not be `seq` order). On SQLite it is one row in `audit_outbox_batches`
/// naming a range of `seq` (migration 0005 says why that is exact).
#[derive(Debug)]
pub(crate) struct BatchClaim {
    /// In `seq` order.
    pub rows: Vec<Pending>,
    pub batch: String,
    /// The instance that first claimed the batch: its name is in the object keys.
    pub claimed_by: String,
    /// Whether this is a new batch (else: one resumed after a failure or a crash).
    pub fresh: bool,
    /// Objects already stored; only the deletes are left (SQLite: a crash between them).
    pub shipped: bool,
    /// SQLite: the batch's first and last `seq`.
    pub(crate) seqs: Option<(i64, i64)>,
}

impl BatchClaim {
    /// Records in the batch (rows hold several).
    pub fn records(&self) -> u64 {
        let n: i64 = self.rows.iter().map(|r| r.records).sum();
        u64::try_from(n).unwrap_or(0)
    }
}

/// Rows deleted per statement when a SQLite batch completes: each delete is a write the group
/// commits wait behind, so it is kept short.
const SQLITE_DELETE_CHUNK: i64 = 16;
/// A batch spanning fewer `seq`s than this is deleted in one transaction (a batch of
/// `batch_max_records` = 512 at the usual ~20 records per row is ~25 rows).
pub(crate) const SQLITE_ONE_WRITE_ROWS: i64 = 64;

/// What a PostgreSQL claim or resume returns of its stamped rows, as `into_claim` reads it.
macro_rules! pg_stamped_rows {
    () => {
        "RETURNING o.seq, o.id, o.last_id, floor(extract(epoch FROM o.time))::bigint, \
                   o.records::bigint, o.lines, o.batch, o.claimed_by"
    };
}
/// A batch left unfinished: this instance's own (a failed PUT, or a crash before the delete),
/// or anyone's whose claim is older than `lease` (its instance is gone). Its claim is renewed.
pub(crate) async fn resume(
    store: &Store,
    turns: &WriteTurns,
    instance: &str,
    lease: Duration,
) -> Result<Option<BatchClaim>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    match store {
        Store::Sqlite(pool) => {
            let turn = turns.take(store).await;
            let picked: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
                "UPDATE audit_outbox_batches SET claimed_at = ?1 WHERE batch = ( \
                   SELECT batch FROM audit_outbox_batches \
                   WHERE claimed_by = ?2 OR claimed_at < ?1 - ?3 ORDER BY first_seq LIMIT 1) \
                 RETURNING batch, claimed_by, first_seq, last_seq, shipped",
            )
            .bind(unix_ms())
            .bind(instance)
            .bind(lease_ms)
            .fetch_optional(pool)
            .await?;
            drop(turn);
            let Some((batch, claimed_by, first, last, shipped)) = picked else {
                return Ok(None);
            };
            Ok(Some(BatchClaim {
                rows: sqlite_rows(pool, first, last).await?,
                batch,
                claimed_by,
                fresh: false,
                shipped: shipped != 0,
                seqs: Some((first, last)),
            }))
        }
        // No `ORDER BY`: the partial index on `batch` finds one without scanning a backlog.
        Store::Postgres(pool) => {
            let rows = sqlx::query(concat!(
                "WITH pick AS ( \
                   SELECT batch FROM audit_outbox \
                   WHERE batch IS NOT NULL \
                     AND (claimed_by = $1 OR claimed_at < now() - $2::bigint * interval '1 millisecond') \
                   LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE audit_outbox o SET claimed_at = now() FROM pick WHERE o.batch = pick.batch ",
                pg_stamped_rows!()
            ))
            .bind(instance)
            .bind(lease_ms)
            .fetch_all(pool)
            .await?;
            Ok(into_claim(&rows, false))
        }
    }
}

/// Claims the oldest unclaimed rows, up to the one that reaches `limit` records, as a new
/// batch of `instance`. On PostgreSQL rows being claimed by another instance at the same
/// moment are skipped.
pub(crate) async fn claim(
    store: &Store,
    turns: &WriteTurns,
    instance: &str,
    limit: usize,
) -> Result<Option<BatchClaim>, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let batch = uuid::Uuid::new_v4().simple().to_string();
    match store {
        Store::Sqlite(pool) => {
            // One short write under the turn; the rows are read after it, outside it (WAL
            // readers never block the writer).
            let turn = turns.take(store).await;
            // The oldest unclaimed rows while the records before each stay under the limit: a
            // batch closes with the row that reaches it, so a batch short of the limit means
            // the outbox ran out (the shipper's drain relies on that).
            let range: Option<(i64, i64)> = sqlx::query_as(
                "INSERT INTO audit_outbox_batches (batch, claimed_by, claimed_at, first_seq, last_seq) \
                 SELECT ?1, ?2, ?3, min(seq), max(seq) FROM ( \
                   SELECT seq, sum(records) OVER (ORDER BY seq) - records AS before FROM ( \
                     SELECT seq, records FROM audit_outbox \
                     WHERE seq > (SELECT coalesce(max(last_seq), 0) FROM audit_outbox_batches) \
                     ORDER BY seq LIMIT ?4)) \
                 WHERE before < ?4 \
                 HAVING count(*) > 0 \
                 RETURNING first_seq, last_seq",
            )
            .bind(&batch)
            .bind(instance)
            .bind(unix_ms())
            .bind(limit)
            .fetch_optional(pool)
            .await?;
            drop(turn);
            let Some((first, last)) = range else {
                return Ok(None);
            };
            Ok(Some(BatchClaim {
                rows: sqlite_rows(pool, first, last).await?,
                batch,
                claimed_by: instance.to_string(),
                fresh: true,
                shipped: false,
                seqs: Some((first, last)),
            }))
        }
        Store::Postgres(pool) => {
            // As on SQLite, the limit counts records. How many rows that takes is counted
            // first, without locks (`FOR UPDATE` allows no window); then that many rows are
            // locked, skipping rows another instance is claiming, and cut again. Each row lock
            // is a tuple write: a batch locks a few dozen rows, not `limit`.
            let rows = sqlx::query(concat!(
                "WITH need AS ( \
                   SELECT count(*) AS n FROM ( \
                     SELECT sum(records) OVER (ORDER BY seq) - records AS before FROM ( \
                       SELECT seq, records FROM audit_outbox WHERE batch IS NULL \
                       ORDER BY seq LIMIT $1) r) w \
                   WHERE before < $1), \
                 picked AS ( \
                   SELECT seq, records FROM audit_outbox WHERE batch IS NULL \
                   ORDER BY seq LIMIT (SELECT n FROM need) FOR UPDATE SKIP LOCKED), \
                 taken AS ( \
                   SELECT seq FROM ( \
                     SELECT seq, sum(records) OVER (ORDER BY seq) - records AS before FROM picked) w \
                   WHERE before < $1) \
                 UPDATE audit_outbox o SET batch = $2, claimed_by = $3, claimed_at = now() \
                 FROM taken WHERE o.seq = taken.seq ",
                pg_stamped_rows!()
            ))
            .bind(limit)
            .bind(&batch)
            .bind(instance)
            .fetch_all(pool)
            .await?;
            Ok(into_claim(&rows, true))
        }
    }
}

/// A SQLite batch's rows, in `seq` order.
async fn sqlite_rows(
    pool: &sqlx::SqlitePool,
    first: i64,
    last: i64,
) -> Result<Vec<Pending>, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT seq, id, last_id, CAST(strftime('%s', time) AS INTEGER), records, lines \
         FROM audit_outbox WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?
    .iter()
    .map(pending)
    .collect())
}

/// PostgreSQL: a claim from its stamped rows (`pg_stamped_rows!`).
fn into_claim(rows: &[sqlx::postgres::PgRow], fresh: bool) -> Option<BatchClaim> {
    let first = rows.first()?;
    let (batch, claimed_by) = (first.get(6), first.get(7));
    let mut rows: Vec<Pending> = rows
        .iter()
        .map(|r| Pending {
            seq: r.get(0),
            id: r.get(1),
            last_id: r.get(2),
            unix: r.get(3),
            records: r.get(4),
            lines: r.get(5),
        })
        .collect();
    // RETURNING has no order.
    rows.sort_by_key(|r| r.seq);
    Some(BatchClaim {
        rows,
        batch,
        claimed_by,
        fresh,
        shipped: false,
        seqs: None,
    })
}

fn unix_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now).unwrap_or(i64::MAX)
}

fn pending(r: &sqlx::sqlite::SqliteRow) -> Pending {
    Pending {
        seq: r.get(0),
        id: r.get(1),
        last_id: r.get(2),
        unix: r.get::<Option<i64>, _>(3).unwrap_or(0),
        records: r.get(4),
        lines: r.get(5),
    }
}

/// Deletes a shipped batch: call only after its objects are stored. Returns the records
/// deleted (none when another instance that took the batch over got there first).
pub(crate) async fn complete(
    store: &Store,
    turns: &WriteTurns,
    claim: &BatchClaim,
) -> Result<u64, sqlx::Error> {
    let mut deleted: i64 = 0;
    match (store, claim.seqs) {
        (Store::Sqlite(pool), Some((first, last))) if last - first < SQLITE_ONE_WRITE_ROWS => {
            // A usual batch (a few dozen rows): rows and batch go in one transaction, so there
            // is no partly deleted state to mark, and the group commits wait behind one write
            // instead of one per chunk plus the mark and the batch row.
            let _turn = turns.take(store).await;
            let mut tx = pool.begin().await?;
            let gone: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM audit_outbox WHERE seq BETWEEN ?1 AND ?2 RETURNING records",
            )
            .bind(first)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            delete_sqlite_batch_row(&mut *tx, &claim.batch).await?;
            tx.commit().await?;
            deleted = gone.iter().sum();
        }
        (Store::Sqlite(pool), Some((first, last))) => {
            // Marked first: a crash in the middle of the deletes must not ship the rest again
            // (its objects would replace the complete ones under the same keys).
            if !claim.shipped {
                let _turn = turns.take(store).await;
                sqlx::query("UPDATE audit_outbox_batches SET shipped = 1 WHERE batch = ?")
                    .bind(&claim.batch)
                    .execute(pool)
                    .await?;
            }
            loop {
                let _turn = turns.take(store).await;
                let chunk: Vec<i64> = sqlx::query_scalar(
                    "DELETE FROM audit_outbox WHERE seq IN ( \
                       SELECT seq FROM audit_outbox WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT ?3) \
                     RETURNING records",
                )
                .bind(first)
                .bind(last)
                .bind(SQLITE_DELETE_CHUNK)
                .fetch_all(pool)
                .await?;
                if chunk.is_empty() {
                    break;
                }
                deleted += chunk.iter().sum::<i64>();
            }
            let _turn = turns.take(store).await;
            delete_sqlite_batch_row(pool, &claim.batch).await?;
        }
        (Store::Sqlite(_), None) => {
            // Every SQLite claim is made with its range; this one was not made here.
            return Err(sqlx::Error::Protocol(format!(
                "audit batch {} has no seq range",
                claim.batch
            )));
        }
        (Store::Postgres(pool), _) => {
            deleted = sqlx::query_scalar(
                "WITH gone AS (DELETE FROM audit_outbox WHERE batch = $1 RETURNING records) \
                 SELECT coalesce(sum(records), 0)::bigint FROM gone",
            )
            .bind(&claim.batch)
            .fetch_one(pool)
            .await?;
        }
    }
    Ok(u64::try_from(deleted).unwrap_or(0))
}

/// The last step of completing a SQLite batch: its rows are gone.
async fn delete_sqlite_batch_row<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    batch: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM audit_outbox_batches WHERE batch = ?")
        .bind(batch)
        .execute(executor)
        .await?;
    Ok(())
}

/// Records not yet shipped.
pub(crate) async fn count(store: &Store) -> Result<u64, sqlx::Error> {
    let n: i64 = match store {
        Store::Sqlite(pool) => {
            sqlx::query_scalar("SELECT coalesce(sum(records), 0) FROM audit_outbox")
                .fetch_one(pool)
                .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT coalesce(sum(records), 0)::bigint FROM audit_outbox")
                .fetch_one(pool)
                .await?
        }
    };
    Ok(u64::try_from(n).unwrap_or(0))
}
