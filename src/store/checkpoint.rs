//! SQLite WAL checkpoints, off the commit path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1 000 pages: that
//! commit copies the WAL's pages into the database file and fsyncs it before it returns, and
//! every request waiting on that group commit waits for it too. presignd turns automatic
//! checkpoints off on every connection (`wal_autocheckpoint = 0`, in `Store::connect`) and
//! checkpoints here instead, from a pool connection, every `CHECKPOINT_EVERY`:
//!
//! 1. `PASSIVE`, without the writers' turn: it copies and fsyncs while the outbox writer
//!    keeps committing to the WAL (SQLite allows one checkpointer next to the writer).
//! 2. Once the WAL holds `REWIND_FRAMES`: a second pass without the turn, then `PASSIVE` once
//!    more under the writers' turn: it copies only the frames committed during the second
//!    pass, and nothing is appended until it is done, so the
//!    next commit finds the WAL fully copied and rewinds it to its start. A WAL is rewound
//!    only when a write transaction begins with every frame copied, which never happens while
//!    the writer commits without pause: without this step the WAL grew by ~40 MB/s at 4 000
//!    presigns/s, and every commit that extends the file costs the fsync a metadata update.

use std::time::{Duration, Instant};

use sqlx::SqlitePool;

use super::Store;
use super::outbox::WriteTurns;

/// How often the WAL is checkpointed: small enough that each checkpoint copies few pages.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL frames (pages) past which the WAL is rewound: ~40 MiB. The rewind's turn holds the
/// outbox writer for one small checkpoint (its fsync, ~4 ms on the benchmark machine): at
/// 1 000 frames that was 4–5 times a second under load, at 10 000 it is every few seconds.
const REWIND_FRAMES: i64 = 10_000;

/// `(busy, frames in the WAL, frames checkpointed)`, as `PRAGMA wal_checkpoint` answers.
async fn passive(pool: &SqlitePool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
}

/// Checkpoints until the pool closes (a SQLite store; returns at once for PostgreSQL).
pub(crate) async fn run(store: Store, turns: WriteTurns) {
    let Store::Sqlite(pool) = &store else { return };
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let result = checkpoint(pool, &store, &turns, REWIND_FRAMES).await;
        // Said once when checkpoints start failing (disk full, database gone) and once when
        // they work again, not five times a second.
        match (&result, failing) {
            (Err(e), false) => tracing::warn!(error = %e, "WAL checkpoints failing"),
            (Ok(()), true) => tracing::info!("WAL checkpoints work again"),
            _ => {}
        }
        failing = result.is_err();
    }
}

/// One round: a pass beside the writer, and when the WAL is long enough, the rewind.
async fn checkpoint(
    pool: &SqlitePool,
    store: &Store,
    turns: &WriteTurns,
    rewind_frames: i64,
) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    let (_, frames, copied) = passive(pool).await?;
    if frames < rewind_frames || copied < frames {
        // Short, or a reader still needs old frames: the next round.
        trace(started.elapsed(), Duration::ZERO, frames);
        return Ok(());
    }
    // Once more without the turn, so what is left for the turn is only what the writer
    // committed during this short pass (the first one also fsynced most dirty pages).
    passive(pool).await?;
    let unturned = started.elapsed();
    let turn = turns.take(store).await;
    let turned = Instant::now();
    let result = passive(pool).await;
    drop(turn);
    trace(unturned, turned.elapsed(), frames);
    result.map(|_| ())
}

/// Checkpoint timings, for stall analysis (`log.filter = "presignd::store=debug"`).
fn trace(unturned: Duration, turned: Duration, frames: i64) {
    if unturned + turned >= Duration::from_millis(2) {
        tracing::debug!(
            unturned_us = unturned.as_micros() as u64,
            turned_us = turned.as_micros() as u64,
            frames,
            "WAL checkpoint"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in the WAL now, by a checkpoint that copies nothing new (it reports the WAL's
    /// length).
    async fn wal_frames(pool: &SqlitePool) -> i64 {
        passive(pool).await.expect("checkpoint").1
    }

    async fn commit_rows(pool: &SqlitePool, n: usize) {
        for i in 0..n {
            sqlx::query("INSERT INTO t (v) VALUES (?)")
                .bind(format!("row {i} {}", "x".repeat(200)))
                .execute(pool)
                .await
                .expect("insert");
        }
    }

    #[tokio::test]
    async fn commits_never_checkpoint_and_a_round_rewinds_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = Store::connect(&url, 4).await.expect("connect");
        let Store::Sqlite(pool) = &store else {
            unreachable!("a sqlite URL")
        };
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .execute(pool)
            .await
            .expect("table");
        // SQLite's own checkpoint would have run inside a commit at 1 000 frames and the WAL
        // would start over; with it off the WAL only grows.
        commit_rows(pool, 1_200).await;
        let grown = wal_frames(pool).await;
        assert!(grown > 1_000, "the WAL holds {grown} frames");
        // One round past the threshold, then a commit: the WAL starts over from its beginning.
        checkpoint(pool, &store, &WriteTurns::default(), 1_000)
            .await
            .expect("round");
        commit_rows(pool, 1).await;
        let rewound = wal_frames(pool).await;
        assert!(
            rewound < 10,
            "after the rewind the WAL holds {rewound} frames"
        );
        // Everything is still there.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(n, 1_201);
    }
}
