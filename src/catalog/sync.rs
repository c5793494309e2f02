//! Keeping this instance's in-memory state (access points, revocations) in step with SQL, so
//! the hot path never reads the database and every replica sees a change within a second.
//!
//! - PostgreSQL: triggers `NOTIFY presignd_changes` on every change (`store::notify`); this
//!   task reloads the changed table as soon as the notification arrives (milliseconds after
//!   the commit), and everything whenever listening (re)starts.
//! - Every backend: a full reload every `access_points.reload_interval_ms`, the safety net for
//!   a lost notification and the only path on SQLite (one instance, which applies its own
//!   admin changes at once).
//! - The same tick purges revocations that can no longer matter.
//!
//! Reloads of one kind run one at a time (a lock held across read and swap), so a reload
//! that read the database earlier can never replace a newer result.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::auth::revocations::unix_now;
use crate::catalog;
use crate::state::AppState;
use crate::store::{Change, StoreError};

/// Loads the catalog from SQL and swaps it in.
pub async fn reload_catalog(state: &AppState) -> Result<(), StoreError> {
    let _one_at_a_time = state.catalog_reload_lock().lock().await;
    let catalog = catalog::load(state.store(), state.config()).await?;
    state.replace_catalog(catalog);
    Ok(())
}

/// Loads the live revocations from SQL and swaps them in.
pub async fn reload_revocations(state: &AppState) -> Result<(), StoreError> {
    state.revocations().reload(state.store()).await.map(|_| ())
}

async fn reload(state: &AppState, access_points: bool, revocations: bool) {
    if access_points && let Err(error) = reload_catalog(state).await {
        tracing::warn!(%error, "access point reload failed; keeping the last good set");
    }
    if revocations && let Err(error) = reload_revocations(state).await {
        tracing::warn!(%error, "revocation reload failed; keeping the last good set");
    }
}

/// Runs until aborted: change notifications (PostgreSQL) plus the periodic full reload.
pub async fn run(state: AppState, interval: Duration) {
    let (tx, mut rx) = mpsc::channel::<Change>(64);
    let watcher = {
        let store = state.store().clone();
        tokio::spawn(async move { store.watch_changes(tx, Duration::from_secs(1)).await })
    };
    // Aborting `run` must stop the watcher too.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _watcher = AbortOnDrop(watcher);

    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut notifications = true;
    loop {
        tokio::select! {
            change = rx.recv(), if notifications => {
                let Some(first) = change else {
                    // SQLite (or the pool closed): the periodic reload is all there is.
                    notifications = false;
                    continue;
                };
                // Fold a burst of notifications into one reload per table.
                let (mut aps, mut revs) = (false, false);
                let mut note = |c: Change| match c {
                    Change::AccessPoints => aps = true,
                    Change::Revocations => revs = true,
                    Change::Resync => (aps, revs) = (true, true),
                };
                note(first);
                while let Ok(c) = rx.try_recv() {
                    note(c);
                }
                reload(&state, aps, revs).await;
            }
            _ = tick.tick() => {
                reload(&state, true, true).await;
                match state.store().purge_revocations(unix_now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired revocations purged"),
                    Err(error) => tracing::warn!(%error, "purging expired revocations failed"),
                }
            }
        }
    }
}
