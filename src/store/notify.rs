//! Change notifications: on PostgreSQL, triggers (migration 0003) `NOTIFY presignd_changes`
//! with the changed table's name whenever `access_points` or `revocations` change, delivered
//! when the writing transaction commits. Every instance listens and reloads that table.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::Store;

pub const CHANGES_CHANNEL: &str = "presignd_changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    AccessPoints,
    Revocations,
    /// Listening (re)started: notifications may have been missed, reload everything.
    Resync,
}

impl Store {
    /// Whether this backend delivers change notifications (PostgreSQL does, SQLite does not).
    pub fn notifies_changes(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Sends every change to `tx` until `tx`'s receiver is gone or the pool is closed; on
    /// SQLite returns at once. Reconnects (every `retry`) after losing the connection, and
    /// sends `Resync` each time listening starts, since notifications sent in between are
    /// lost.
    pub async fn watch_changes(&self, tx: mpsc::Sender<Change>, retry: Duration) {
        let Store::Postgres(pool) = self else {
            return;
        };
        let mut failing = false;
        loop {
            if pool.is_closed() {
                return;
            }
            let listening = async {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(CHANGES_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            }
            .await;
            let mut listener = match listening {
                Ok(l) => l,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot LISTEN for changes; relying on the periodic reload until it works");
                        failing = true;
                    }
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            if failing {
                tracing::info!("listening for changes again");
                failing = false;
            }
            if tx.send(Change::Resync).await.is_err() {
                return;
            }
            loop {
                let change = match listener.try_recv().await {
                    Ok(Some(n)) => match n.payload() {
                        "access_points" => Change::AccessPoints,
                        "revocations" => Change::Revocations,
                        _ => Change::Resync,
                    },
                    // The connection dropped and was re-established: anything sent in
                    // between is lost.
                    Ok(None) => Change::Resync,
                    Err(error) => {
                        if !pool.is_closed() {
                            tracing::warn!(%error, "change listener failed; reconnecting");
                        }
                        break;
                    }
                };
                if tx.send(change).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(retry).await;
        }
    }
}
