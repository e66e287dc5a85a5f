//! Database pool set-up, database creation, and the mapping of constraint violations.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr, Statement};

use crate::config::Settings;
use crate::error::{Error, Result};

/// Opens the pool. Acquire and connect time-outs are short so a request never hangs on a dead database.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(settings.database_url.clone());
    let scan = crate::knowledge::repo::session_settings(settings.kb_ef_search);
    opts.max_connections(settings.db_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        // Session settings sent in the startup packet, so no query pays a round trip for them.
        .map_sqlx_postgres_opts(move |o| o.options(scan.clone()));
    Ok(Database::connect(opts).await?)
}

/// Splits `postgres://…/name?x` into (`postgres://…/postgres?x`, `name`).
pub fn split_database_url(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, name) =
        base.rsplit_once('/').ok_or_else(|| Error::Config("DATABASE_URL has no database name".into()))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(Error::Config("DATABASE_URL database name must be [A-Za-z0-9_-]".into()));
    }
    let admin = match query {
        Some(q) => format!("{server}/postgres?{q}"),
        None => format!("{server}/postgres"),
    };
    Ok((admin, name.to_string()))
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database(url: &str) -> Result<()> {
    let (admin_url, name) = split_database_url(url)?;
    let admin = Database::connect(admin_url).await?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.clone().into()],
        ))
        .await?
        .is_some();
    if !exists {
        // The name was checked to be [A-Za-z0-9_-] above.
        if let Err(e) = admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await {
            // Another process may have created it concurrently.
            if unique_constraint(&e).is_none() && !e.to_string().contains("already exists") {
                return Err(e.into());
            }
        }
    }
    admin.close().await?;
    Ok(())
}

/// The name of the unique constraint (or unique index) a statement violated, if that is what failed.
pub fn unique_constraint(err: &DbErr) -> Option<String> {
    let db_err = match err {
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => e.as_database_error()?,
        _ => return None,
    };
    if db_err.code().as_deref() == Some("23505") {
        Some(db_err.constraint().unwrap_or_default().to_string())
    } else {
        None
    }
}

/// True when the error means the database could not be reached (not a bad query): no connection,
/// or the server ending the session — SQLSTATE class 08 (connection exception) and 57P01–57P03
/// (`terminating connection due to administrator command` when it shuts down or restarts, crash
/// shutdown, `the database system is starting up / shutting down`).
pub fn is_connection_error(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            SqlxError::Io(_) | SqlxError::PoolTimedOut | SqlxError::PoolClosed | SqlxError::Tls(_) => true,
            SqlxError::Database(db) => db.code().is_some_and(|c| is_unavailable_state(&c)),
            _ => false,
        },
        _ => false,
    }
}

/// SQLSTATEs of a server that is going away or not accepting sessions (see [`is_connection_error`]).
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// A row offset PostgreSQL can take: bound parameters are signed 64-bit, and the SQL layer panics on
/// a larger `u64`, so a page number from a client (`?skip=10000000000000000000`) is capped here.
pub fn offset(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_ending_sessions_is_unavailable_not_a_bad_query() {
        for code in ["57P01", "57P02", "57P03", "08006", "08003"] {
            assert!(is_unavailable_state(code), "{code}");
        }
        for code in ["23505", "42P01", "57014", "40001"] {
            assert!(!is_unavailable_state(code), "{code}");
        }
    }

    #[test]
    fn splits_database_urls() {
        let (admin, name) = split_database_url("postgres://u@h:5432/corredor?sslmode=disable").unwrap();
        assert_eq!(admin, "postgres://u@h:5432/postgres?sslmode=disable");
        assert_eq!(name, "corredor");
        assert!(split_database_url("postgres://u@h:5432/bad;name").is_err());
    }
}
