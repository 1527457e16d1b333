//! Redis through fred: one client (with its own reconnecting connection) per process.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use fred::prelude::*;

use crate::overload::LogThrottle;
use crate::settings::RedisSettings;

/// Connects and waits until Redis answers, so a bad URL fails at start. Every
/// command is bounded by `REDIS_COMMAND_TIMEOUT_MS`; lost connections and
/// reconnections are logged (errors at most once a second).
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Client> {
    let config =
        Config::from_url(settings.url.expose()).context("REDIS_URL is not a valid Redis URL")?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
        })
        // Commands queued while reconnecting wait at most this, too.
        .with_performance_config(|p| p.default_command_timeout = settings.command_timeout)
        // Capped at 500 ms: a Sentinel failover completes in 2–3 s, and a 5 s cap
        // left the first retry after it at 3.1 s (measured gap 3.5–3.9 s).
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 500, 2))
        .build()
        .context("cannot build the Redis client")?;
    client
        .init()
        .await
        .context("cannot reach Redis at REDIS_URL")?;
    log_connection_events(&client);
    Ok(client)
}

/// Logs what happens to the connection: errors (a lost connection, a failed
/// reconnect, a failover in progress) at WARN, throttled, and each successful
/// reconnection at INFO. The listeners end when the client is dropped.
fn log_connection_events(client: &Client) {
    static ERRORS: LogThrottle = LogThrottle::new();
    client.on_error(|(error, server)| async move {
        if let Some(count) = ERRORS.ready() {
            let server = server.map(|s| s.to_string()).unwrap_or_default();
            tracing::warn!(%error, %server, count, "redis connection error");
        }
        Ok(())
    });
    client.on_reconnect(|server| async move {
        tracing::info!(%server, "redis connected again");
        Ok(())
    });
}

/// Why a bounded Redis call gave up.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    #[error("redis is not connected")]
    Disconnected,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Runs one command unless Redis is known to be down, for at most `timeout`, so a
/// cache in front of PostgreSQL can fall back instead of stalling a request. A
/// command cut off here may still run later: callers keep that harmless (version
/// checks, generation keys).
pub async fn bounded<T>(
    client: &Client,
    timeout: Duration,
    command: impl Future<Output = Result<T, fred::error::Error>>,
) -> Result<T, BoundedError> {
    if !client.is_connected() {
        return Err(BoundedError::Disconnected);
    }
    match tokio::time::timeout(timeout, command).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BoundedError::Timeout(timeout)),
    }
}
