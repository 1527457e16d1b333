//! Redis through fred: one client (with its own reconnecting connection) per process.

use anyhow::Context as _;
use fred::prelude::*;

use crate::settings::RedisSettings;

/// Connects and waits until Redis answers, so a bad URL fails at start.
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Client> {
    let config =
        Config::from_url(settings.url.expose()).context("REDIS_URL is not a valid Redis URL")?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = std::time::Duration::from_secs(5);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()
        .context("cannot build the Redis client")?;
    client
        .init()
        .await
        .context("cannot reach Redis at REDIS_URL")?;
    Ok(client)
}
