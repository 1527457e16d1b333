//! PostgreSQL: one pool per service, on the service's own database, created if
//! missing, migrated at start (the service's migrations; then its extensions',
//! `app::connect_and_migrate`);
//! and LISTEN relays for change announcements made with `pg_notify`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::backoff::Backoff;
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
    Ok(pool)
}

/// LISTENs on `channel` and hands each notification's payload to `deliver`,
/// or `None` when notifications may have been missed (the connection dropped
/// and was re-established: readers should look again), until the pool closes.
/// Returns once the first LISTEN is in place, so anything committed after the
/// call is delivered. Holds one pooled connection for good.
pub async fn relay_notifications<F>(
    db: &PgPool,
    channel: &'static str,
    deliver: F,
) -> sqlx::Result<tokio::task::JoinHandle<()>>
where
    F: Fn(Option<&str>) + Send + 'static,
{
    async fn listen(db: &PgPool, channel: &str) -> sqlx::Result<PgListener> {
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }
    const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut listener = listen(db, channel).await?;
    let db = db.clone();
    Ok(tokio::spawn(async move {
        let mut failures = 0;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    failures = 0;
                    deliver(Some(notification.payload()));
                }
                Ok(None) => {
                    tracing::warn!(channel, "LISTEN connection was lost; readers look again");
                    deliver(None);
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => {
                    tracing::warn!(channel, error = %err, "LISTEN failed; reconnecting");
                    loop {
                        failures += 1;
                        tokio::time::sleep(RECONNECT.jittered(failures)).await;
                        match listen(&db, channel).await {
                            Ok(fresh) => {
                                listener = fresh;
                                deliver(None);
                                break;
                            }
                            Err(sqlx::Error::PoolClosed) => return,
                            Err(err) => {
                                tracing::warn!(channel, error = %err, "LISTEN reconnect failed");
                            }
                        }
                    }
                }
            }
        }
    }))
}

/// What a [`ChangeFeed`] tells one subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// One change, as its notification's payload said.
    Changed(T),
    /// Changes may have been missed: the LISTEN connection was re-established,
    /// a payload was unreadable, or this subscriber fell more than the feed's
    /// capacity behind. Read the current state again.
    Resync,
    /// The process is shutting down: end the stream.
    Closing,
}

/// One LISTEN channel fanned out to every stream of the process that follows
/// it (order watches, stock watches, notification feeds): one database
/// connection for them all, whatever their number. Clones share the feed.
///
/// A subscriber reads the state itself and takes a change only as a hint of
/// what to read next, so a [`Change::Resync`] (re-read everything it follows)
/// loses nothing; subscribing before the first read means a change committed
/// in between is seen twice rather than never.
#[derive(Clone, Debug)]
pub struct ChangeFeed<T> {
    /// `None`: resync.
    changes: tokio::sync::broadcast::Sender<Option<T>>,
    closing: tokio_util::sync::CancellationToken,
}

impl<T: Clone + Send + 'static> ChangeFeed<T> {
    /// LISTENs on `channel` (see [`relay_notifications`]) and relays each
    /// payload, read by `parse` (`None`: unreadable, a resync), to the
    /// subscribers; at most `capacity` changes wait for a slow one. Returns
    /// once LISTEN is in place. Subscribers are told [`Change::Closing`] once
    /// `closing` is cancelled.
    pub async fn listen<P>(
        db: &PgPool,
        channel: &'static str,
        capacity: usize,
        parse: P,
        closing: tokio_util::sync::CancellationToken,
    ) -> sqlx::Result<Self>
    where
        P: Fn(&str) -> Option<T> + Send + 'static,
    {
        let feed = Self::detached(capacity, closing);
        let changes = feed.changes.clone();
        relay_notifications(db, channel, move |payload| {
            // Nobody subscribed is fine.
            let _ = changes.send(payload.and_then(&parse));
        })
        .await?;
        Ok(feed)
    }

    /// A feed nothing relays into, for tests that [`ChangeFeed::send`] themselves.
    pub fn detached(capacity: usize, closing: tokio_util::sync::CancellationToken) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(capacity);
        Self { changes, closing }
    }

    /// Tells every subscriber `change` (`None`: resync), as the relay does.
    pub fn send(&self, change: Option<T>) {
        let _ = self.changes.send(change);
    }

    /// Follows the changes from now on.
    pub fn subscribe(&self) -> Subscription<T> {
        Subscription {
            changes: self.changes.subscribe(),
            closing: self.closing.clone(),
        }
    }
}

/// One subscriber of a [`ChangeFeed`].
#[derive(Debug)]
pub struct Subscription<T> {
    changes: tokio::sync::broadcast::Receiver<Option<T>>,
    closing: tokio_util::sync::CancellationToken,
}

impl<T: Clone> Subscription<T> {
    /// The next change; [`Change::Closing`] from shutdown on.
    pub async fn next(&mut self) -> Change<T> {
        use tokio::sync::broadcast::error::RecvError;
        tokio::select! {
            biased;
            () = self.closing.cancelled() => Change::Closing,
            received = self.changes.recv() => match received {
                Ok(Some(change)) => Change::Changed(change),
                Ok(None) | Err(RecvError::Lagged(_)) => Change::Resync,
                // Every sender gone: nothing more will come before shutdown.
                Err(RecvError::Closed) => {
                    self.closing.cancelled().await;
                    Change::Closing
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_feed_tells_changes_resyncs_lag_and_closing() {
        let closing = tokio_util::sync::CancellationToken::new();
        let feed = ChangeFeed::detached(2, closing.clone());
        let mut early = feed.subscribe();
        let mut slow = feed.subscribe();
        feed.send(Some(1));
        feed.send(None);
        assert_eq!(early.next().await, Change::Changed(1));
        assert_eq!(early.next().await, Change::Resync);
        feed.send(Some(2));
        // `slow` missed the first of three with room for two.
        assert_eq!(slow.next().await, Change::Resync);
        assert_eq!(slow.next().await, Change::Resync);
        assert_eq!(slow.next().await, Change::Changed(2));
        closing.cancel();
        feed.send(Some(3));
        assert_eq!(early.next().await, Change::Closing);
        assert_eq!(feed.subscribe().next().await, Change::Closing);
    }
}
