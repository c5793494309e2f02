//! The durable outbox (table `audit_outbox`) and its group-commit writer.
//!
//! `append` hands its records to one writer task and waits for the answer. The writer takes
//! the first waiting request, adds whatever else is already queued (up to
//! `commit_max_records`, collecting for at most `commit_max_wait`), writes all of it in one
//! transaction and then answers every waiter with the same result. It never waits for
//! company on a timer: when the queue is empty it lets the other ready tasks run once, then
//! commits, and the requests that arrive during that commit form the next group. Under load
//! the groups grow by themselves, so one fsync (SQLite) or one round trip and WAL flush
//! (PostgreSQL) serves many requests.
//!
//! The writer keeps one connection for itself (no pool checkout and liveness ping per commit)
//! and writes a group in a single statement when it fits, so a commit is one round trip.
//!
//! A row holds a run of records, not one: the group's NDJSON lines, split only where the hour
//! partition changes or the row would pass `ROW_BYTES`. Inserting, claiming, reading and
//! deleting rows cost per row, so a group of 20 costs the database about what one record did
//! (migration 0006 on SQLite, 0005 on PostgreSQL).
//!
//! If the transaction fails, every waiter gets the error, its request answers 503
//! `audit_unavailable`, and no URL is issued. A broken connection is replaced from the pool,
//! which reconnects on its own when the database comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row as _;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{AuditError, AuditRecord};
use crate::store::Store;

/// SQLite allows 32766 bound parameters per statement (999 before 3.32); 5 per row. A group
/// is a few rows (one per 12 KiB), so this is rarely reached.
const SQLITE_ROWS_PER_INSERT: usize = 128;
/// Bytes of NDJSON per row, at most (a single larger record gets a row of its own). Small
/// enough that a PostgreSQL statement stays within one socket write (see `PG_STATEMENT_BYTES`).
const ROW_BYTES: usize = 12 * 1024;
/// How long one group commit may take before its waiters are told it failed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests queued for the writer; beyond this, `append` waits for room (back-pressure).
const QUEUE: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct OutboxSettings {
    pub commit_max_records: usize,
    pub commit_max_wait: Duration,
}

/// One record ready for the outbox.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    id: String,
    /// Unix seconds (the hour partition) and RFC 3339, UTC.
    unix: i64,
    time: String,
    /// The NDJSON line, `\n` included.
    line: String,
}

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

struct Job {
    records: Vec<Encoded>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// The write side of the outbox.
pub struct Outbox {
    tx: mpsc::Sender<Job>,
    store: Store,
    commits: Arc<AtomicU64>,
}

impl Outbox {
    /// Starts the writer task, which writes in `turns` with the shipper.
    pub(crate) fn start(
        store: Store,
        settings: OutboxSettings,
        turns: WriteTurns,
    ) -> (Outbox, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_groups(
            store.clone(),
            rx,
            settings,
            turns,
            Arc::clone(&commits),
        ));
        (Outbox { tx, store, commits }, writer)
    }

    /// Transactions committed so far (records per commit = records / commits).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Returns once `records` are committed (all of them, or none and an error).
    pub async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { records, reply })
            .await
            .map_err(|_| AuditError::Stopped)?;
        answer
            .await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Database)
    }

    /// Whether the outbox's database answers.
    pub async fn check(&self) -> Result<(), AuditError> {
        self.store
            .ping()
            .await
            .map_err(|e| AuditError::Database(e.to_string()))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Per record, so that a record that cannot be stored fails its own request, not its group.
pub(crate) fn encode(r: &AuditRecord) -> Result<Encoded, AuditError> {
    let time = r
        .time
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| AuditError::Task(format!("record time: {e}")))?;
    let mut line = serde_json::to_string(r)?;
    line.push('\n');
    Ok(Encoded {
        id: r.id.clone(),
        unix: r.time.unix_timestamp(),
        time,
        line,
    })
}

/// Packs records (in append order) into rows: a new row where the hour partition changes or
/// the row would pass `ROW_BYTES`.
pub(crate) fn pack<'a>(records: impl IntoIterator<Item = &'a Encoded>) -> Vec<NewRow> {
    let mut rows: Vec<NewRow> = Vec::new();
    let mut row_hour = None;
    for r in records {
        let hour = r.unix.div_euclid(3600);
        match rows.last_mut() {
            Some(row) if row_hour == Some(hour) && row.lines.len() + r.line.len() <= ROW_BYTES => {
                row.lines.push_str(&r.line);
                row.records += 1;
                row.last_id.clone_from(&r.id);
            }
            _ => {
                let mut lines = String::with_capacity(ROW_BYTES.min(r.line.len() * 32));
                lines.push_str(&r.line);
                rows.push(NewRow {
                    id: r.id.clone(),
                    time: r.time.clone(),
                    last_id: r.id.clone(),
                    records: 1,
                    lines,
                });
                row_hour = Some(hour);
            }
        }
    }
    rows
}

async fn write_groups(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    settings: OutboxSettings,
    turns: WriteTurns,
    commits: Arc<AtomicU64>,
) {
    let mut writer = Writer { store, conn: None };
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(first) = rx.recv().await {
        let started = Instant::now();
        let mut count = first.records.len();
        jobs.push(first);
        // When the queue runs dry, let the other ready tasks run once (requests about to
        // append join this group) — no timer, no waiting when nothing else is ready.
        let mut yielded = false;
        while count < settings.commit_max_records && started.elapsed() < settings.commit_max_wait {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.records.len();
                    jobs.push(job);
                }
                Err(mpsc::error::TryRecvError::Empty) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        let commit = async {
            let rows = pack(jobs.iter().flat_map(|j| j.records.iter()));
            let rows: Vec<&NewRow> = rows.iter().collect();
            let _turn = turns.take(&writer.store).await;
            writer.commit(&rows).await.map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be mid-statement: never reuse it.
                writer.conn = None;
                Err(format!("commit took longer than {COMMIT_TIMEOUT:?}"))
            }
        };
        if result.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = &result {
            tracing::error!(%error, records = count, "audit outbox commit failed; nothing issued");
        }
        for job in jobs.drain(..) {
            // A waiter that went away (client disconnected) needs no answer.
            let _ = job.reply.send(result.clone());
        }
    }
}

/// A writer keeps one connection: no pool checkout (and its liveness ping) per commit.
struct Writer {
    store: Store,
    conn: Option<Conn>,
}

enum Conn {
    Sqlite(PoolConnection<sqlx::Sqlite>),
    Postgres(PoolConnection<sqlx::Postgres>),
}

impl Writer {
    /// Writes `rows` atomically. A connection that broke since the last commit (database
    /// restarted, idle connection closed) is replaced once before the group fails.
    async fn commit(&mut self, rows: &[&NewRow]) -> Result<(), sqlx::Error> {
        let mut retried = false;
        loop {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => match &self.store {
                    Store::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
                    Store::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
                },
            };
            let result = match &mut conn {
                Conn::Sqlite(c) => insert_sqlite(c, rows).await,
                Conn::Postgres(c) => insert_postgres(c, rows).await,
            };
            match result {
                Ok(()) => {
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) if is_broken_connection(&e) => {
                    drop(conn);
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
                Err(e) => {
                    self.conn = Some(conn);
                    return Err(e);
                }
            }
        }
    }
}

fn is_broken_connection(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolClosed
    ) || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// Rows in one statement when they fit (atomic by itself), else in one transaction.
async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    rows: &[&NewRow],
) -> Result<(), sqlx::Error> {
    if rows.len() <= SQLITE_ROWS_PER_INSERT {
        return sqlite_insert(&mut *conn, rows).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
        sqlite_insert(&mut *tx, chunk).await?;
    }
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

async fn insert_postgres(
    conn: &mut sqlx::PgConnection,
    rows: &[&NewRow],
) -> Result<(), sqlx::Error> {
    let chunks = pg_chunks(rows);
    if let [only] = chunks.as_slice() {
        return pg_insert(&mut *conn, only).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for chunk in &chunks {
        pg_insert(&mut *tx, chunk).await?;
    }
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
/// its framing: at 16 KiB of data p99 under load was 48 ms, at 14 KiB 11–16 ms. Remove the
/// split once sqlx sets TCP_NODELAY again.
const PG_STATEMENT_BYTES: usize = 14 * 1024;

fn pg_chunks<'a>(rows: &[&'a NewRow]) -> Vec<Vec<&'a NewRow>> {
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
pub(crate) struct Claim {
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
    seqs: Option<(i64, i64)>,
}

impl Claim {
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
const SQLITE_ONE_WRITE_ROWS: i64 = 64;

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
) -> Result<Option<Claim>, sqlx::Error> {
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
            Ok(Some(Claim {
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
) -> Result<Option<Claim>, sqlx::Error> {
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
            Ok(Some(Claim {
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
fn into_claim(rows: &[sqlx::postgres::PgRow], fresh: bool) -> Option<Claim> {
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
    Some(Claim {
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
    claim: &Claim,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;

    pub(crate) fn record(id: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: time::macros::datetime!(2025-03-07 04:05:06.123456789 UTC),
            request_id: "r".into(),
            decision: Decision::Allow,
            reason: "allowed".into(),
            operation: "get".into(),
            access_point: Some("avatars".into()),
            bucket: Some("b".into()),
            key: Some("k".into()),
            expires_at: None,
            subject: Some("alice".into()),
            issuer: None,
            groups: vec!["users".into()],
            source_ip: None,
            user_agent: None,
            origin: None,
            tls: false,
            sse: None,
            signature_sha256: None,
            instance: "t".into(),
            count: None,
        }
    }

    /// A group-commit writer that collects for at most 2 ms.
    fn start_writer(
        store: &Store,
        commit_max_records: usize,
        turns: &WriteTurns,
    ) -> (Outbox, JoinHandle<()>) {
        let settings = OutboxSettings {
            commit_max_records,
            commit_max_wait: Duration::from_millis(2),
        };
        Outbox::start(store.clone(), settings, turns.clone())
    }

    /// A new batch, which the test expects to find rows.
    async fn claimed(store: &Store, turns: &WriteTurns, instance: &str, limit: usize) -> Claim {
        claim(store, turns, instance, limit)
            .await
            .expect("claim")
            .expect("rows")
    }

    /// The ids of a claim's records, in order, read from its NDJSON lines.
    fn ids(claim: &Claim) -> Vec<String> {
        claim
            .rows
            .iter()
            .flat_map(|r| r.lines.lines())
            .map(|l| {
                let r: AuditRecord = serde_json::from_str(l).expect("a record per line");
                r.id
            })
            .collect()
    }

    /// One append per id, each awaited: one commit and one row per record.
    async fn append_singly(outbox: &Outbox, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            outbox.append(&[record(&id)]).await.expect("append");
        }
    }

    async fn batch_rows(pool: &sqlx::SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_outbox_batches")
            .fetch_one(pool)
            .await
            .expect("batches")
    }

    fn encoded(id: &str, unix: i64, bytes: usize) -> Encoded {
        let mut record = record(id);
        record.time = time::OffsetDateTime::from_unix_timestamp(unix).expect("time");
        Encoded {
            line: format!("{}\n", "x".repeat(bytes.saturating_sub(1))),
            ..encode(&record).expect("encode")
        }
    }

    #[test]
    fn records_pack_into_rows_by_hour_and_size() {
        let hour = 1_741_320_000;
        let rows = pack(&[
            encoded("a", hour, 100),
            encoded("b", hour + 1, 100),
            encoded("c", hour + 3600, 100),
            encoded("d", hour + 3601, ROW_BYTES),
            encoded("e", hour + 3602, 2 * ROW_BYTES),
            encoded("f", hour + 3599, 10),
        ]);
        let shape: Vec<(&str, &str, i64, usize)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.last_id.as_str(), r.records, r.lines.len()))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", "b", 2, 200),
                ("c", "c", 1, 100),
                ("d", "d", 1, ROW_BYTES),
                ("e", "e", 1, 2 * ROW_BYTES),
                ("f", "f", 1, 10)
            ],
            "a row per hour run, none over ROW_BYTES unless one record is"
        );
        assert_eq!(
            rows[0].time, "2025-03-07T04:00:00Z",
            "the first record's time"
        );
    }

    proptest::proptest! {
        #[test]
        fn packing_keeps_every_record_in_order(
            records in proptest::collection::vec((-7_200i64..7_200, 1usize..6_000), 0..60)
        ) {
            let records: Vec<Encoded> = records
                .iter()
                .enumerate()
                .map(|(i, &(t, bytes))| encoded(&format!("r{i}"), t, bytes))
                .collect();
            let rows = pack(&records);
            let all: String = records.iter().map(|r| r.line.as_str()).collect();
            let packed: String = rows.iter().map(|r| r.lines.as_str()).collect();
            proptest::prop_assert_eq!(packed, all);
            let mut next = 0;
            for row in &rows {
                let n = usize::try_from(row.records).expect("count");
                let run = &records[next..next + n];
                proptest::prop_assert_eq!(&row.id, &run[0].id);
                proptest::prop_assert_eq!(&row.last_id, &run[n - 1].id);
                let hour = |r: &Encoded| r.unix.div_euclid(3600);
                proptest::prop_assert!(run.iter().all(|r| hour(r) == hour(&run[0])));
                proptest::prop_assert!(n == 1 || row.lines.len() <= ROW_BYTES);
                next += n;
            }
            proptest::prop_assert_eq!(next, records.len());
        }
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("o.db").display());
        let store = Store::connect(&url, 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    #[test]
    fn large_postgres_groups_become_several_small_statements() {
        let row = |n: usize| NewRow {
            id: "i".into(),
            time: "t".into(),
            last_id: "l".into(),
            records: 1,
            lines: "x".repeat(n),
        };
        let small: Vec<NewRow> = (0..100).map(|_| row(1000)).collect();
        let refs: Vec<&NewRow> = small.iter().collect();
        let chunks = pg_chunks(&refs);
        assert_eq!(
            chunks.iter().map(Vec::len).sum::<usize>(),
            100,
            "every row, once"
        );
        assert!(chunks.len() >= 7, "{} chunks", chunks.len());
        for c in &chunks {
            let bytes: usize = c.iter().map(|r| r.lines.len() + 51).sum();
            assert!(bytes <= PG_STATEMENT_BYTES, "{bytes}");
        }
        let huge = [row(100_000)];
        let refs: Vec<&NewRow> = huge.iter().collect();
        assert_eq!(pg_chunks(&refs).len(), 1, "an oversized row goes alone");
    }

    #[tokio::test]
    async fn the_sqlite_outbox_is_fsynced_on_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Store::Sqlite(pool) = sqlite(&dir).await else {
            unreachable!()
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .expect("pragma");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&pool)
            .await
            .expect("pragma");
        assert_eq!(
            (mode.as_str(), sync),
            ("wal", 2),
            "WAL with synchronous=FULL"
        );
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_keep_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let (outbox, writer) = start_writer(&store, 64, &WriteTurns::default());
        let outbox = Arc::new(outbox);
        let mut tasks = Vec::new();
        for i in 0..300 {
            let outbox = Arc::clone(&outbox);
            tasks.push(tokio::spawn(async move {
                outbox.append(&[record(&format!("id-{i:03}"))]).await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("append");
        }
        assert!(
            outbox.commits() < 300,
            "requests share transactions: {} commits",
            outbox.commits()
        );
        // A batch of 300 records (more than one SQLite statement's worth) in one append.
        let many: Vec<AuditRecord> = (0..300).map(|i| record(&format!("b-{i:03}"))).collect();
        outbox.append(&many).await.expect("append batch");
        assert_eq!(count(&store).await.expect("count"), 600);

        let claim = claimed(&store, &WriteTurns::default(), "t", 1000).await;
        assert_eq!(claim.records(), 600);
        assert!(claim.rows.len() < 60, "{} rows", claim.rows.len());
        let first = &claim.rows[0];
        assert_eq!(
            first.unix, 1_741_320_306,
            "hour partition from the time column"
        );
        let line = first.lines.lines().next().expect("a line");
        let parsed: AuditRecord = serde_json::from_str(line).expect("record is JSON");
        assert_eq!(parsed.time, record("x").time, "the line is the record");
        let ids = ids(&claim);
        assert_eq!(ids.len(), 600);
        assert_eq!(
            ids[300..303],
            ["b-000", "b-001", "b-002"],
            "seq keeps append order"
        );
        let deleted = complete(&store, &WriteTurns::default(), &claim)
            .await
            .expect("delete");
        assert_eq!(deleted, 600, "records deleted, not rows");
        assert_eq!(count(&store).await.expect("count"), 0);
        writer.abort();
    }

    #[tokio::test]
    async fn an_unfinished_batch_is_resumed_with_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
        let first: Vec<AuditRecord> = (0..3).map(|i| record(&format!("a{i}"))).collect();
        outbox.append(&first).await.expect("append");
        let hour = Duration::from_secs(3600);
        let a = claimed(&store, &WriteTurns::default(), "web-a", 10).await;
        assert!(a.fresh);
        // Rows arriving later never join a claimed batch.
        outbox.append(&[record("late")]).await.expect("append");
        let again = resume(&store, &WriteTurns::default(), "web-a", hour)
            .await
            .expect("resume")
            .expect("own batch");
        assert_eq!(
            (ids(&again), &again.batch, again.fresh),
            (ids(&a), &a.batch, false)
        );
        assert!(
            resume(&store, &WriteTurns::default(), "web-b", hour)
                .await
                .expect("resume")
                .is_none(),
            "another instance's batch is left alone while its claim is fresh"
        );
        let b = claimed(&store, &WriteTurns::default(), "web-b", 10).await;
        assert_eq!(ids(&b), ["late"], "a new batch takes only unclaimed rows");
        complete(&store, &WriteTurns::default(), &b)
            .await
            .expect("delete");
        let taken = resume(&store, &WriteTurns::default(), "web-b", Duration::ZERO)
            .await
            .expect("resume")
            .expect("an expired claim is taken over");
        assert_eq!(
            taken.claimed_by, "web-a",
            "keys keep the first claimer's name"
        );
        assert_eq!(ids(&taken), ids(&a));
        complete(&store, &WriteTurns::default(), &a)
            .await
            .expect("delete");
        assert_eq!(count(&store).await.expect("count"), 0);
        writer.abort();
    }

    #[tokio::test]
    async fn sqlite_batches_complete_in_one_write_or_in_chunks_and_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let turns = WriteTurns::default();
        let (outbox, writer) = start_writer(&store, 512, &turns);
        // One append, one commit, one row each: batches of 5 rows (one write) and of
        // 2 · SQLITE_ONE_WRITE_ROWS rows (marked, then deleted chunk by chunk).
        let big = usize::try_from(2 * SQLITE_ONE_WRITE_ROWS).expect("rows");
        append_singly(&outbox, (0..5 + big).map(|i| format!("r{i:04}"))).await;
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        for (limit, first) in [(5, "r0000"), (big, "r0005")] {
            let claim = claimed(&store, &turns, "web-a", limit).await;
            assert_eq!((claim.rows.len(), ids(&claim)[0].as_str()), (limit, first));
            let before = count(&store).await.expect("count");
            let deleted = complete(&store, &turns, &claim).await.expect("complete");
            assert_eq!(
                deleted, limit as u64,
                "every record of the batch is counted once"
            );
            assert_eq!(count(&store).await.expect("count"), before - limit as u64);
            assert_eq!(
                batch_rows(pool).await,
                0,
                "the batch row goes with its rows"
            );
        }
        assert_eq!(count(&store).await.expect("count"), 0);
        writer.abort();
    }

    #[tokio::test]
    async fn a_sqlite_batch_interrupted_while_deleting_is_finished_not_shipped_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let turns = WriteTurns::default();
        let (outbox, writer) = start_writer(&store, 512, &turns);
        // One append, one commit, one row each.
        append_singly(&outbox, (0..20).map(|i| format!("r{i:03}"))).await;
        let a = claimed(&store, &turns, "web-a", 15).await;
        assert_eq!((a.rows.len(), a.records()), (15, 15));
        // The crash: objects stored and marked, only the first delete chunk done.
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        sqlx::query("UPDATE audit_outbox_batches SET shipped = 1")
            .execute(pool)
            .await
            .expect("mark");
        sqlx::query("DELETE FROM audit_outbox WHERE id < 'r006'")
            .execute(pool)
            .await
            .expect("partial delete");
        let again = resume(&store, &turns, "web-a", Duration::from_secs(3600))
            .await
            .expect("resume")
            .expect("the batch");
        assert!(again.shipped, "resumed as shipped: never put again");
        assert_eq!(
            (again.batch.as_str(), again.rows.len()),
            (a.batch.as_str(), 9)
        );
        let finished = complete(&store, &turns, &again).await.expect("finish");
        assert_eq!(finished, 9, "only what was left is counted");
        assert_eq!(count(&store).await.expect("count"), 5, "only its rows went");
        assert_eq!(batch_rows(pool).await, 0);
        let b = claimed(&store, &turns, "web-a", 512).await;
        let ids = ids(&b);
        assert_eq!(
            (ids.len(), ids[0].as_str()),
            (5, "r015"),
            "the next batch starts after it"
        );
        complete(&store, &turns, &b).await.expect("delete");
        assert_eq!(count(&store).await.expect("count"), 0);
        writer.abort();
    }

    #[tokio::test]
    async fn records_written_before_migration_0006_keep_their_rows_batches_and_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("o.db").display());
        let store = Store::connect(&url, 4).await.expect("connect");
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        let mut before = sqlx::migrate!("./migrations/sqlite");
        let upto = before
            .migrations
            .iter()
            .position(|m| m.version == 6)
            .expect("migration 0006");
        before.migrations = std::borrow::Cow::Owned(before.migrations[..upto].to_vec());
        before.run(pool).await.expect("migrate to 0005");
        // One record per row, then: seq 1-2 claimed by web-a, 3 pending, 4 deleted (shipped).
        for i in 1..=4 {
            let line = serde_json::to_string(&record(&format!("old{i}"))).expect("json");
            sqlx::query("INSERT INTO audit_outbox (id, time, record) VALUES (?, ?, ?)")
                .bind(format!("old{i}"))
                .bind("2025-03-07T04:05:06.123456789Z")
                .bind(line)
                .execute(pool)
                .await
                .expect("old row");
        }
        sqlx::query("DELETE FROM audit_outbox WHERE seq = 4")
            .execute(pool)
            .await
            .expect("delete");
        sqlx::query(
            "INSERT INTO audit_outbox_batches (batch, claimed_by, claimed_at, first_seq, last_seq) \
             VALUES ('old-batch', 'web-a', 0, 1, 2)",
        )
        .execute(pool)
        .await
        .expect("batch");

        store.migrate().await.expect("migrate");
        assert_eq!(count(&store).await.expect("count"), 3);
        let turns = WriteTurns::default();
        let (outbox, writer) = start_writer(&store, 512, &turns);
        outbox.append(&[record("new")]).await.expect("append");
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_outbox WHERE id = 'new'")
            .fetch_one(pool)
            .await
            .expect("seq");
        assert_eq!(seq, 5, "the sequence carries on past the deleted row");
        let old = resume(&store, &turns, "web-a", Duration::from_secs(3600))
            .await
            .expect("resume")
            .expect("the old batch");
        assert_eq!(
            (old.batch.as_str(), ids(&old)),
            ("old-batch", vec!["old1".to_string(), "old2".into()])
        );
        let line = old.rows[0].lines.strip_suffix('\n').expect("a whole line");
        let parsed: AuditRecord = serde_json::from_str(line).expect("the line is the record");
        assert_eq!(parsed, record("old1"));
        let next = claimed(&store, &turns, "web-a", 100).await;
        assert_eq!(ids(&next), ["old3", "new"]);
        writer.abort();
    }

    #[tokio::test]
    async fn a_claim_closes_with_the_row_that_reaches_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let turns = WriteTurns::default();
        let (outbox, writer) = start_writer(&store, 512, &turns);
        for run in 0..4 {
            let records: Vec<AuditRecord> = (0..3).map(|i| record(&format!("r{run}{i}"))).collect();
            outbox.append(&records).await.expect("append");
        }
        let a = claimed(&store, &turns, "web-a", 4).await;
        assert_eq!(
            (a.rows.len(), a.records()),
            (2, 6),
            "3 + 3: the second row reaches 4"
        );
        let b = claimed(&store, &turns, "web-a", 3).await;
        assert_eq!((b.rows.len(), b.records()), (1, 3));
        let c = claimed(&store, &turns, "web-a", 100).await;
        assert_eq!(
            (c.records(), ids(&c)[2].as_str()),
            (3, "r32"),
            "short of the limit: the outbox ran out"
        );
        writer.abort();
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_waiter_and_the_writer_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        let (outbox, writer) = start_writer(&store, 512, &WriteTurns::default());
        outbox.append(&[record("dup")]).await.expect("first");
        // A row starting with a duplicate id violates audit_outbox_id_key: the whole group
        // fails, nothing is kept.
        let err = outbox
            .append(&[record("dup"), record("fresh")])
            .await
            .expect_err("constraint");
        assert!(matches!(err, AuditError::Database(_)), "{err}");
        assert_eq!(count(&store).await.expect("count"), 1);
        outbox.append(&[record("later")]).await.expect("recovers");
        assert_eq!(count(&store).await.expect("count"), 2);
        writer.abort();
    }
}
