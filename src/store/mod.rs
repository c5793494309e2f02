//! SQL storage: SQLite (the embedded default) or PostgreSQL (for many instances). The two
//! backends differ only in SQL dialect, so one enum with a match per query is clearer than a
//! trait.

/// Runs one statement returning rows of type `$row` on either backend (`fetch_optional`,
/// `fetch_all`, …), its `?` placeholders renumbered `$n` for PostgreSQL.
macro_rules! fetch_rows {
    ($store:expr, $row:ty, $sql:expr, $method:ident, [$($bind:expr),* $(,)?]) => {{
        let sql: String = $sql;
        match $store {
            $crate::store::Store::Sqlite(pool) => {
                sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe(sql))
                    $(.bind($bind))*
                    .$method(pool)
                    .await?
            }
            $crate::store::Store::Postgres(pool) => {
                sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe($crate::store::numbered(&sql)))
                    $(.bind($bind))*
                    .$method(pool)
                    .await?
            }
        }
    }};
}

mod access_points;
pub(crate) mod checkpoint;
mod conditional;
mod grants;
mod issuances;
mod notify;
pub mod outbox;
mod revocations;
mod uploads;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use access_points::{StoredAccessPoint, Upsert, etag};
pub use grants::{Redemption, StoredGrant};
pub use issuances::{IssuanceKind, IssuanceState, StoredIssuance, reservation};
pub use notify::{CHANGES_CHANNEL, Change};
pub use revocations::{RevocationKind, StoredRevocation};
pub use uploads::{StoredUpload, UploadClaim, UploadOwner};
pub use webhooks::{NewDelivery, StoredDelivery};

/// The same statement for both backends: SQLite takes `?`, PostgreSQL `$n` (one per `?`).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the SQLite directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored access point {name} is not valid JSON: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
}

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let acquire = Duration::from_secs(5);
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Checkpoints run off the commit path (`checkpoint::run`), not inside the
                // commit that fills the WAL.
                .pragma("wal_autocheckpoint", "0")
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let file = opts.get_filename();
            if let Some(dir) = file.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire)
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire)
                .connect(url)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}
