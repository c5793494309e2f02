//! Throwaway PostgreSQL databases on the server of `$PRESIGND_TEST_DATABASE_URL`, one per test
//! (or benchmark run). Shared by the tests (`common::app`) and the benchmarks (which include
//! this file by path: a bench cannot name the tests' `common` module).

pub fn postgres_admin_url() -> String {
    std::env::var("PRESIGND_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database `{prefix}_{uuid}` on the PostgreSQL server of `postgres_admin_url()`;
/// returns the admin URL and the name.
pub async fn create_postgres_database(prefix: &str) -> (String, String) {
    try_create_postgres_database(prefix)
        .await
        .unwrap_or_else(|e| panic!("{e} (run the tests through scripts/test)"))
}

/// [`create_postgres_database`], with the failure as a message.
pub async fn try_create_postgres_database(prefix: &str) -> Result<(String, String), String> {
    let admin_url = postgres_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .map_err(|e| format!("connect to PostgreSQL at {admin_url}: {e}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .map_err(|e| format!("create database {name}: {e}"))?;
    admin.close().await;
    Ok((admin_url, name))
}

/// Drops a database made by `create_postgres_database`, connections and all; best effort (the
/// test is over).
pub async fn drop_postgres_database(admin_url: &str, name: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..]
        .find('/')
        .map(|i| authority_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
