//! Conditional writes of access points for the admin API: each is one statement that succeeds
//! only if the row is still at the version the caller read (optimistic concurrency, `If-Match`).
//! A `None`/`false` result means someone else changed the row in between.

use super::{Store, StoreError};
use crate::policy::AccessPointSpec;

fn document(spec: &AccessPointSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
        name: spec.name.clone(),
        source,
    })
}

impl Store {
    /// Creates `spec` unless its name exists; returns the new version (1), or `None` when an
    /// access point of that name already exists.
    pub async fn insert_access_point(
        &self,
        spec: &AccessPointSpec,
    ) -> Result<Option<i64>, StoreError> {
        let doc = document(spec)?;
        let version = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO access_points (name, spec) VALUES (?, ?) \
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                )
                .bind(&spec.name)
                .bind(&doc)
                .fetch_optional(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO access_points (name, spec) VALUES ($1, $2::jsonb) \
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                )
                .bind(&spec.name)
                .bind(&doc)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(version)
    }

    /// Replaces the access point named `spec.name` if it is still at version `expected`;
    /// returns the new version, or `None` when it changed or disappeared meanwhile.
    pub async fn replace_access_point(
        &self,
        spec: &AccessPointSpec,
        expected: i64,
    ) -> Result<Option<i64>, StoreError> {
        let doc = document(spec)?;
        let version = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "UPDATE access_points SET spec = ?, version = version + 1, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE name = ? AND version = ? RETURNING version",
                )
                .bind(&doc)
                .bind(&spec.name)
                .bind(expected)
                .fetch_optional(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "UPDATE access_points SET spec = $1::jsonb, version = version + 1, \
                     updated_at = now() WHERE name = $2 AND version = $3 RETURNING version",
                )
                .bind(&doc)
                .bind(&spec.name)
                .bind(expected)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(version)
    }

    /// Deletes the access point if it is still at version `expected`.
    pub async fn delete_access_point_at(
        &self,
        name: &str,
        expected: i64,
    ) -> Result<bool, StoreError> {
        let n = match self {
            Store::Sqlite(pool) => {
                sqlx::query("DELETE FROM access_points WHERE name = ? AND version = ?")
                    .bind(name)
                    .bind(expected)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Store::Postgres(pool) => {
                sqlx::query("DELETE FROM access_points WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(expected)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(n > 0)
    }
}
