//! Events wiring for a service: the outbox relay and consumers started on its
//! [`Context`], and one call to write an event into the outbox.
//!
//! Topics are created (with their `.dlq` topics) before the relay or a consumer
//! starts, retried with backoff while the broker is away: a service starts and
//! serves with the broker down, its outbox keeps every event, and publishing
//! begins once the broker answers.

use std::time::Duration;

use sqlx::PgConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    Event, EventConsumer, EventHandler, EventsSettings, OutboxError, OutboxRelay, enqueue,
    ensure_topics,
};
use shopmesh_platform::Context;
use shopmesh_platform::backoff::Backoff;

const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// Writes an event with `payload` about the aggregate `aggregate_type`/`aggregate_id`
/// to `topic`, inside the caller's transaction (pass `&mut *tx`), after the
/// statement that changed the aggregate.
pub async fn publish<M: prost::Name>(
    conn: &mut PgConnection,
    topic: &str,
    aggregate_type: &str,
    aggregate_id: impl Into<String>,
    payload: &M,
) -> Result<(), OutboxError> {
    let event = Event::new(payload, aggregate_type, aggregate_id);
    enqueue(conn, topic, event.envelope()).await
}

/// Starts publishing the service's outbox to `topics` (which it creates if
/// missing) until the service shuts down. Fails for bad `KAFKA_*` settings or
/// a service without a database.
pub fn start_relay(ctx: &Context, topics: &[&str]) -> anyhow::Result<JoinHandle<()>> {
    let settings = EventsSettings::from_env(&ctx.env, ctx.name)?;
    let relay = OutboxRelay::new(ctx.database()?, &settings);
    let shutdown = ctx.shutdown.clone();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    Ok(tokio::spawn(async move {
        if topics_ready(&settings, &topics, &shutdown).await
            && let Err(err) = relay.run(shutdown).await
        {
            tracing::error!(error = %err, "outbox relay stopped");
        }
    }))
}

/// Starts a consumer in `group` over `topics` (created if missing) with
/// `handler`, until the service shuts down. `configure` adjusts the consumer
/// (attempts, backoff) before it runs. Fails like [`start_relay`].
pub fn start_consumer<H: EventHandler>(
    ctx: &Context,
    group: &str,
    topics: &[&str],
    handler: H,
    configure: impl FnOnce(EventConsumer<H>) -> EventConsumer<H>,
) -> anyhow::Result<JoinHandle<()>> {
    let settings = EventsSettings::from_env(&ctx.env, ctx.name)?;
    let consumer = configure(EventConsumer::new(
        ctx.database()?,
        &settings,
        group,
        topics,
        handler,
    ));
    let shutdown = ctx.shutdown.clone();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let group = group.to_owned();
    Ok(tokio::spawn(async move {
        if topics_ready(&settings, &topics, &shutdown).await
            && let Err(err) = consumer.run(shutdown).await
        {
            tracing::error!(error = %err, %group, "event consumer stopped");
        }
    }))
}

/// Creates `topics`, retrying with capped backoff; false when shutdown came first.
async fn topics_ready(
    settings: &EventsSettings,
    topics: &[String],
    shutdown: &CancellationToken,
) -> bool {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut failures = 0;
    let mut warned = false;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return false,
            attempt = ensure_topics(settings, &names) => attempt,
        };
        match attempt {
            Ok(()) => return true,
            Err(err) => {
                failures += 1;
                if !warned {
                    tracing::warn!(error = %err, topics = ?names, "cannot create topics yet; retrying while the broker is away");
                    warned = true;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(RETRY.jittered(failures)) => {}
        }
    }
}
