//! Writing events into the transactional outbox, in the producer's own
//! transaction, for the [`OutboxRelay`](crate::OutboxRelay) to publish.

use prost::Message as _;
use shopmesh_proto::shop::events::v1::EventEnvelope;
use sqlx::PgConnection;

use crate::envelope::{EnvelopeError, EnvelopeExt as _};

/// The channel the relay listens on; `enqueue` notifies it (delivered at commit).
pub(crate) const NOTIFY_CHANNEL: &str = "shopmesh_outbox";

/// Why an event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("invalid envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("envelope has no aggregate_id (the record key)")]
    MissingKey,
    #[error("outbox write failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Writes `envelope` for `topic` into the outbox. Call it inside the
/// transaction of the state change the event describes (pass `&mut *tx`), after
/// the statement that changes (and so locks) the aggregate: the event is then
/// published if and only if the transaction commits, and in the aggregate's order.
pub async fn enqueue(
    conn: &mut PgConnection,
    topic: &str,
    envelope: &EventEnvelope,
) -> Result<(), OutboxError> {
    let event_id = envelope.event_uuid()?;
    if envelope.aggregate_id.is_empty() {
        return Err(OutboxError::MissingKey);
    }
    if envelope.payload.is_none() {
        return Err(EnvelopeError::MissingPayload.into());
    }
    sqlx::query("INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, $2, $3, $4)")
        .bind(event_id)
        .bind(topic)
        .bind(&envelope.aggregate_id)
        .bind(envelope.encode_to_vec())
        .execute(&mut *conn)
        .await?;
    // Wakes the relay right after commit instead of at its next poll.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Unpublished rows in the outbox (what `outbox_backlog` reports), by topic.
pub async fn backlog(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT topic, count(*) FROM outbox WHERE published_at IS NULL GROUP BY topic ORDER BY topic",
    )
    .fetch_all(conn)
    .await
}
