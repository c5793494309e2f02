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
//! The table's SQL (these inserts, and the shipper's claim and delete) is in
//! `crate::store::outbox`.
//!
//! If the transaction fails, every waiter gets the error, its request answers 503
//! `audit_unavailable`, and no URL is issued. A broken connection is replaced from the pool,
//! which reconnects on its own when the database comes back. If the database refused the
//! group's data (a constraint, a value it cannot store), each request's records and
//! issuances are committed again on their own: one request's bad data fails only that
//! request, not the others that shared its group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{AuditError, AuditRecord};
use crate::store::outbox::{NewRow, WriteTurns, insert_postgres, insert_sqlite};
use crate::store::{Store, StoredIssuance};

#[cfg(test)]
mod tests;

/// Bytes of NDJSON per row, at most (a single larger record gets a row of its own). Small
/// enough that a PostgreSQL statement stays within one socket write (see `PG_STATEMENT_BYTES`).
const ROW_BYTES: usize = 12 * 1024;
/// How long one group commit may take before its waiters are told it failed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// A commit at least this long is logged at debug level (stall analysis).
const SLOW_COMMIT: Duration = Duration::from_millis(5);
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

struct Job {
    records: Vec<Encoded>,
    issuances: Vec<StoredIssuance>,
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
    /// `timings` (`presignd_audit_commit_seconds`) observes each commit's phases.
    pub(crate) fn start(
        store: Store,
        settings: OutboxSettings,
        turns: WriteTurns,
        timings: Option<HistogramVec>,
    ) -> (Outbox, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_groups(
            store.clone(),
            rx,
            settings,
            turns,
            Arc::clone(&commits),
            timings,
        ));
        (Outbox { tx, store, commits }, writer)
    }

    /// Transactions committed so far (records per commit = records / commits).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Returns once `records` and `issuances` are committed (all of them, in the same
    /// transaction, or none and an error).
    pub async fn append(
        &self,
        records: &[AuditRecord],
        issuances: Vec<StoredIssuance>,
    ) -> Result<(), AuditError> {
        if records.is_empty() && issuances.is_empty() {
            return Ok(());
        }
        let records = records.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
                records,
                issuances,
                reply,
            })
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
    timings: Option<HistogramVec>,
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
        let result = commit_group(&mut writer, &turns, &jobs, timings.as_ref()).await;
        match result {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                answer(jobs.drain(..), &Ok(()));
            }
            // Rejected data (a constraint, a value the database refuses) is one request's
            // fault: each job is committed on its own, so it fails alone rather than taking
            // the requests that happened to share its group down with it.
            Err(e) if jobs.len() > 1 && matches!(e, sqlx::Error::Database(_)) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "audit group refused; committing its requests one by one");
                for job in jobs.drain(..) {
                    let alone = commit_group(&mut writer, &turns, std::slice::from_ref(&job), None)
                        .await
                        .map_err(|e| failed(&e, job.records.len()));
                    if alone.is_ok() {
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    answer(std::iter::once(job), &alone);
                }
            }
            Err(e) => {
                let error = failed(&e, count);
                answer(jobs.drain(..), &Err(error));
            }
        }
    }
}

/// Answers every waiter of `jobs` with `result`.
fn answer(jobs: impl Iterator<Item = Job>, result: &Result<(), String>) {
    for job in jobs {
        // A waiter that went away (client disconnected) needs no answer.
        let _ = job.reply.send(result.clone());
    }
}

fn failed(e: &sqlx::Error, records: usize) -> String {
    tracing::error!(error = %e, records, "audit outbox commit failed; nothing issued");
    e.to_string()
}

/// Writes the records and issuances of `jobs` in one transaction, within `COMMIT_TIMEOUT`.
async fn commit_group(
    writer: &mut Writer,
    turns: &WriteTurns,
    jobs: &[Job],
    timings: Option<&HistogramVec>,
) -> Result<(), sqlx::Error> {
    let commit = async {
        let rows = pack(jobs.iter().flat_map(|j| j.records.iter()));
        let rows: Vec<&NewRow> = rows.iter().collect();
        let issuances: Vec<&StoredIssuance> =
            jobs.iter().flat_map(|j| j.issuances.iter()).collect();
        let waited = Instant::now();
        let _turn = turns.take(&writer.store).await;
        let writing = Instant::now();
        let result = writer.commit(&rows, &issuances).await;
        let (turn, write) = (writing - waited, writing.elapsed());
        if let Some(t) = timings {
            t.with_label_values(&["turn"]).observe(turn.as_secs_f64());
            t.with_label_values(&["write"]).observe(write.as_secs_f64());
        }
        // For stall analysis (`log.filter = "presignd::audit=debug"`), with timestamps to set
        // next to slow requests.
        if turn + write >= SLOW_COMMIT {
            tracing::debug!(
                turn_us = turn.as_micros() as u64,
                write_us = write.as_micros() as u64,
                records = rows.iter().map(|r| r.records).sum::<i64>(),
                issuances = issuances.len(),
                "slow audit commit"
            );
        }
        result
    };
    match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
        Ok(result) => result,
        Err(_) => {
            // The connection may be mid-statement: never reuse it.
            writer.conn = None;
            Err(sqlx::Error::Protocol(format!(
                "commit took longer than {COMMIT_TIMEOUT:?}"
            )))
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
    /// Writes `rows` and `issuances` atomically. A connection that broke since the last
    /// commit (database restarted, idle connection closed) is replaced once before the group
    /// fails.
    async fn commit(
        &mut self,
        rows: &[&NewRow],
        issuances: &[&StoredIssuance],
    ) -> Result<(), sqlx::Error> {
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
                Conn::Sqlite(c) => insert_sqlite(c, rows, issuances).await,
                Conn::Postgres(c) => insert_postgres(c, rows, issuances).await,
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
