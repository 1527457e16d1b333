//! Domain events over Kafka: nothing lost, nothing applied twice (docs/events.md).
//!
//! - Producers write the state change and the event in one transaction
//!   ([`enqueue`] into the `outbox` table); an [`OutboxRelay`] publishes the rows
//!   with an idempotent producer (`acks=all`) and marks them once acknowledged.
//! - Consumers ([`EventConsumer`]) run in named groups and apply each event with
//!   an [`EventHandler`] in one transaction with its `inbox` row, so a redelivered
//!   event changes nothing. A message that keeps failing goes to `<topic>.dlq`,
//!   from where [`replay_dead_letters`] (`svc-x replay-dlq <topic>`) sends it back.
//! - Every record value is an [`EventEnvelope`] built with [`Event::new`], keyed
//!   by the aggregate id, with the trace context copied into headers.
//!
//! A service that publishes or consumes names [`EVENTS`] in its
//! `ServiceSpec::extensions`: the runtime then checks the `KAFKA_*` settings
//! at start, creates the `outbox` and `inbox` tables after the service's own
//! migrations, and offers `svc-x replay-dlq`. The other services neither link
//! librdkafka nor have those tables.

mod consumer;
mod dlq;
mod envelope;
mod kafka;
mod outbox;
mod relay;
mod schema;
mod service;
mod settings;

pub use consumer::{EventConsumer, EventHandler, HandlerError};
pub use dlq::{ReplayReport, replay_dead_letters, replay_group};
pub use envelope::{EnvelopeError, EnvelopeExt, Event, TYPE_URL_PREFIX, set_producer_name};
pub use kafka::{DLQ_SUFFIX, dlq_topic, ensure_topics, header, header_str};
pub use outbox::{OutboxError, backlog, enqueue};
pub use relay::OutboxRelay;
pub use schema::{MIGRATIONS_TABLE, migrate};
pub use service::{publish, start_consumer, start_relay};
pub use settings::EventsSettings;
pub use shopmesh_proto::shop::events::v1::EventEnvelope;
pub use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;
use shopmesh_platform::app::Extension;
use shopmesh_platform::settings::{Env, SettingsError};
use sqlx::PgPool;

/// The events layer as a service's runtime extension (see the crate docs).
pub static EVENTS: Events = Events;

/// See [`EVENTS`].
#[derive(Debug)]
pub struct Events;

impl Extension for Events {
    fn name(&self) -> &'static str {
        "events"
    }

    fn check_settings(&self, service: &'static str, env: &Env) -> Result<(), SettingsError> {
        EventsSettings::from_env(env, service).map(drop)
    }

    fn init(&self, service: &'static str) {
        set_producer_name(service);
    }

    fn migrate<'a>(&'a self, db: &'a PgPool) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { Ok(migrate(db).await?) })
    }

    fn command<'a>(
        &'a self,
        service: &'static str,
        env: &'a Env,
        args: &'a [&'a str],
    ) -> Option<BoxFuture<'a, anyhow::Result<()>>> {
        let ["replay-dlq", topic, rest @ ..] = args else {
            return None;
        };
        if rest.len() > 1 {
            return None;
        }
        Some(Box::pin(async move {
            let settings = EventsSettings::from_env(env, service)?;
            let report = replay_dead_letters(&settings, topic, rest.first().copied()).await?;
            tracing::info!(
                service,
                topic,
                replayed = report.replayed,
                skipped = report.skipped,
                "dead letters replayed"
            );
            Ok(())
        }))
    }

    fn usage(&self) -> &'static str {
        "replay-dlq <topic> [<consumer group>]"
    }
}

/// A failure of the events machinery (not of a handler).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("dead-letter replay: {0}")]
    Replay(String),
}
