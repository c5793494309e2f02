//! The `access_points` table: the admin API's JSON document per name, with a version that
//! increments on every change and an incarnation drawn at random when the name is created, so
//! that `"<version>-<incarnation>"` (the ETag) never repeats for a name across delete and
//! re-create.

use sqlx::Row;

use super::{Store, StoreError};
use crate::policy::AccessPointSpec;

/// A row as stored. The spec is parsed but not validated here: the catalog decides what to do
/// with a stored spec that no longer validates.
#[derive(Debug, Clone)]
pub struct StoredAccessPoint {
    pub spec: AccessPointSpec,
    pub version: i64,
    pub incarnation: String,
}

impl StoredAccessPoint {
    /// The strong entity tag, quotes included.
    pub fn etag(&self) -> String {
        etag(self.version, &self.incarnation)
    }
}

/// `"<version>-<incarnation>"`.
pub fn etag(version: i64, incarnation: &str) -> String {
    format!("\"{version}-{incarnation}\"")
}

/// A fresh incarnation for a newly created access point: 64 random bits, hex.
pub(super) fn new_incarnation() -> String {
    let id = uuid::Uuid::new_v4();
    hex::encode(&id.as_bytes()[8..16])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

impl Store {
    pub async fn list_access_points(&self) -> Result<Vec<StoredAccessPoint>, StoreError> {
        let rows: Vec<(String, String, i64, String)> = match self {
            Store::Sqlite(pool) => sqlx::query(
                "SELECT name, spec, version, incarnation FROM access_points ORDER BY name",
            )
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
            Store::Postgres(pool) => sqlx::query(
                "SELECT name, spec::text, version, incarnation FROM access_points ORDER BY name",
            )
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
        };
        // A row that no longer parses is skipped, not fatal: the others keep being served.
        Ok(rows
            .into_iter()
            .filter_map(|(name, spec, version, incarnation)| match serde_json::from_str(&spec) {
                Ok(spec) => Some(StoredAccessPoint { spec, version, incarnation }),
                Err(error) => {
                    tracing::error!(access_point = %name, %error, "stored access point does not parse; not served");
                    None
                }
            })
            .collect())
    }

    pub async fn get_access_point(
        &self,
        name: &str,
    ) -> Result<Option<StoredAccessPoint>, StoreError> {
        let row: Option<(String, i64, String)> = match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT spec, version, incarnation FROM access_points WHERE name = ?")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
            }
            Store::Postgres(pool) => sqlx::query(
                "SELECT spec::text, version, incarnation FROM access_points WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))),
        };
        row.map(|(spec, version, incarnation)| {
            let spec = serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
                name: name.to_string(),
                source,
            })?;
            Ok(StoredAccessPoint {
                spec,
                version,
                incarnation,
            })
        })
        .transpose()
    }

    /// Inserts or replaces `spec` under its name in one statement (safe when several
    /// instances apply the same file at startup); an identical document is left alone so
    /// `presignd apply` is idempotent and does not bump versions.
    pub async fn upsert_access_point(&self, spec: &AccessPointSpec) -> Result<Upsert, StoreError> {
        let doc = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            name: spec.name.clone(),
            source,
        })?;
        let version: Option<i64> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO access_points (name, spec, incarnation) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                     version = access_points.version + 1, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE access_points.spec IS NOT excluded.spec \
                     RETURNING version",
                )
                .bind(&spec.name)
                .bind(&doc)
                .bind(new_incarnation())
                .fetch_optional(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO access_points (name, spec, incarnation) \
                     VALUES ($1, $2::jsonb, $3) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                     version = access_points.version + 1, updated_at = now() \
                     WHERE access_points.spec IS DISTINCT FROM excluded.spec \
                     RETURNING version",
                )
                .bind(&spec.name)
                .bind(&doc)
                .bind(new_incarnation())
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(match version {
            None => Upsert::Unchanged,
            Some(1) => Upsert::Created,
            Some(_) => Upsert::Updated,
        })
    }

    pub async fn delete_access_point(&self, name: &str) -> Result<bool, StoreError> {
        let done = match self {
            Store::Sqlite(pool) => sqlx::query("DELETE FROM access_points WHERE name = ?")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected(),
            Store::Postgres(pool) => sqlx::query("DELETE FROM access_points WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done > 0)
    }
}
