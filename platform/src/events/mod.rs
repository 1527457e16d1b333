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
