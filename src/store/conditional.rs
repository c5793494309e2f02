//! Conditional writes of access points for the admin API: each is one statement that succeeds
//! only if the row is still the one the caller read — same version *and* incarnation, so a
//! deleted and re-created row never passes for the old one (optimistic concurrency,
//! `If-Match`). A `None`/`false` result means someone else changed the row in between.

use super::access_points::new_incarnation;
use super::{Store, StoreError};
use crate::policy::AccessPointSpec;

fn document(spec: &AccessPointSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
        name: spec.name.clone(),
        source,
    })
}

impl Store {
    /// Creates `spec` unless its name exists; returns the new version (1) and its fresh
    /// incarnation, or `None` when an access point of that name already exists.
    pub async fn insert_access_point(
        &self,
        spec: &AccessPointSpec,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let doc = document(spec)?;
        let incarnation = new_incarnation();
        let version: Option<i64> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO access_points (name, spec, incarnation) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                )
                .bind(&spec.name)
                .bind(&doc)
                .bind(&incarnation)
                .fetch_optional(pool)
                .await?
            }
            Store::Postgres(pool) => sqlx::query_scalar(
                "INSERT INTO access_points (name, spec, incarnation) VALUES ($1, $2::jsonb, $3) \
                     ON CONFLICT (name) DO NOTHING RETURNING version",
            )
            .bind(&spec.name)
            .bind(&doc)
            .bind(&incarnation)
            .fetch_optional(pool)
            .await?,
        };
        Ok(version.map(|v| (v, incarnation)))
    }

    /// Replaces the access point named `spec.name` if it is still at version `expected` of
    /// incarnation `incarnation`; returns the new version, or `None` when it changed or
    /// disappeared meanwhile.
    pub async fn replace_access_point(
        &self,
        spec: &AccessPointSpec,
        expected: i64,
        incarnation: &str,
    ) -> Result<Option<i64>, StoreError> {
        let doc = document(spec)?;
        let version = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "UPDATE access_points SET spec = ?, version = version + 1, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE name = ? AND version = ? AND incarnation = ? RETURNING version",
                )
                .bind(&doc)
                .bind(&spec.name)
                .bind(expected)
                .bind(incarnation)
                .fetch_optional(pool)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar(
                    "UPDATE access_points SET spec = $1::jsonb, version = version + 1, \
                     updated_at = now() WHERE name = $2 AND version = $3 AND incarnation = $4 \
                     RETURNING version",
                )
                .bind(&doc)
                .bind(&spec.name)
                .bind(expected)
                .bind(incarnation)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(version)
    }

    /// Deletes the access point if it is still at version `expected` of `incarnation`.
    pub async fn delete_access_point_at(
        &self,
        name: &str,
        expected: i64,
        incarnation: &str,
    ) -> Result<bool, StoreError> {
        let n = match self {
            Store::Sqlite(pool) => sqlx::query(
                "DELETE FROM access_points WHERE name = ? AND version = ? AND incarnation = ?",
            )
            .bind(name)
            .bind(expected)
            .bind(incarnation)
            .execute(pool)
            .await?
            .rows_affected(),
            Store::Postgres(pool) => sqlx::query(
                "DELETE FROM access_points WHERE name = $1 AND version = $2 AND incarnation = $3",
            )
            .bind(name)
            .bind(expected)
            .bind(incarnation)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(n > 0)
    }
}
