//! PostgreSQL: one pool per service, on the service's own database, created if
//! missing, migrated at start (the service's migrations, then the events tables).

use std::str::FromStr;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::settings::DatabaseSettings;

/// SQLSTATE for "database already exists": another replica won the race.
const DUPLICATE_DATABASE: &str = "42P04";

/// Creates the database named in `url` if it does not exist yet, connecting to the
/// server's `postgres` maintenance database to do so.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let name = options
        .get_database()
        .filter(|name| !name.is_empty())
        .context("DATABASE_URL must name the service's database in its path")?
        .to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("cannot reach PostgreSQL at DATABASE_URL")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            Err(sqlx::Error::Database(err))
                if err.code().as_deref() == Some(DUPLICATE_DATABASE) => {}
            Err(err) => return Err(err).context(format!("cannot create database {name}")),
        }
    }
    admin.close().await?;
    Ok(())
}

/// Connects the pool (creating the database first if needed) and applies migrations.
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    ensure_database(settings.url.expose()).await?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect(settings.url.expose())
        .await
        .context("cannot connect to the service database")?;
    // sqlx takes an advisory lock, so replicas starting together migrate once.
    migrator
        .run(&pool)
        .await
        .context("database migration failed")?;
    // The outbox and inbox every service has (tracked in their own table).
    crate::events::migrate(&pool)
        .await
        .context("events (outbox/inbox) migration failed")?;
    Ok(pool)
}
