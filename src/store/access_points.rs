//! The `access_points` table: the admin API's JSON document per name, with a version that
//! increments on every change.

use sqlx::Row;

use super::{Store, StoreError};
use crate::policy::AccessPointSpec;

/// A row as stored. The spec is parsed but not validated here: the catalog decides what to do
/// with a stored spec that no longer validates.
#[derive(Debug, Clone)]
pub struct StoredAccessPoint {
    pub spec: AccessPointSpec,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

impl Store {
    pub async fn list_access_points(&self) -> Result<Vec<StoredAccessPoint>, StoreError> {
        let rows: Vec<(String, String, i64)> = match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT name, spec, version FROM access_points ORDER BY name")
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT name, spec::text, version FROM access_points ORDER BY name")
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
        };
        rows.into_iter()
            .map(|(name, spec, version)| {
                let spec = serde_json::from_str(&spec)
                    .map_err(|source| StoreError::Corrupt { name, source })?;
                Ok(StoredAccessPoint { spec, version })
            })
            .collect()
    }

    pub async fn get_access_point(
        &self,
        name: &str,
    ) -> Result<Option<StoredAccessPoint>, StoreError> {
        let row: Option<(String, i64)> = match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT spec, version FROM access_points WHERE name = ?")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| (r.get(0), r.get(1)))
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT spec::text, version FROM access_points WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| (r.get(0), r.get(1)))
            }
        };
        row.map(|(spec, version)| {
            let spec = serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
                name: name.to_string(),
                source,
            })?;
            Ok(StoredAccessPoint { spec, version })
        })
        .transpose()
    }

    /// Inserts or replaces `spec` under its name; a byte-identical document is left alone so
    /// `presignd apply` is idempotent and does not bump versions.
    pub async fn upsert_access_point(&self, spec: &AccessPointSpec) -> Result<Upsert, StoreError> {
        let doc = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            name: spec.name.clone(),
            source,
        })?;
        match self.get_access_point(&spec.name).await? {
            Some(current) if &current.spec == spec => Ok(Upsert::Unchanged),
            Some(_) => {
                match self {
                    Store::Sqlite(pool) => {
                        sqlx::query(
                            "UPDATE access_points SET spec = ?, version = version + 1, \
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE name = ?",
                        )
                        .bind(&doc)
                        .bind(&spec.name)
                        .execute(pool)
                        .await?;
                    }
                    Store::Postgres(pool) => {
                        sqlx::query(
                            "UPDATE access_points SET spec = $1::jsonb, version = version + 1, \
                             updated_at = now() WHERE name = $2",
                        )
                        .bind(&doc)
                        .bind(&spec.name)
                        .execute(pool)
                        .await?;
                    }
                };
                Ok(Upsert::Updated)
            }
            None => {
                match self {
                    Store::Sqlite(pool) => {
                        sqlx::query("INSERT INTO access_points (name, spec) VALUES (?, ?)")
                            .bind(&spec.name)
                            .bind(&doc)
                            .execute(pool)
                            .await?;
                    }
                    Store::Postgres(pool) => {
                        sqlx::query(
                            "INSERT INTO access_points (name, spec) VALUES ($1, $2::jsonb)",
                        )
                        .bind(&spec.name)
                        .bind(&doc)
                        .execute(pool)
                        .await?;
                    }
                };
                Ok(Upsert::Created)
            }
        }
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
