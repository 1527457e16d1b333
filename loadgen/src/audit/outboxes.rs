//! Invariant `outboxes`: every service database's outbox is drained.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::databases::Databases;
use super::{Finding, Invariant};

#[derive(sqlx::FromRow)]
struct Backlog {
    count: i64,
    id: i64,
    event_id: Uuid,
    topic: String,
    key: String,
    created_at: DateTime<Utc>,
    attempts: i32,
    last_error: Option<String>,
}

/// In every database with an `outbox` table (the shopmesh-events migration;
/// svc-auth, svc-order, svc-payment and svc-notification publish), no row
/// is left with `published_at` NULL. One finding per database, naming its
/// oldest unpublished row.
///
/// Guaranteed by the events relay (`events/src/relay.rs`):
/// it publishes rows in id order and retries a failed one with backoff,
/// so once the broker is back every row gets out.
pub async fn outboxes_drained(dbs: &Databases) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for (name, db) in dbs.all() {
        let has_outbox: bool = sqlx::query_scalar("SELECT to_regclass('outbox') IS NOT NULL")
            .fetch_one(db)
            .await?;
        if !has_outbox {
            continue;
        }
        let oldest: Option<Backlog> = sqlx::query_as(
            "SELECT count(*) OVER () AS count, id, event_id, topic, key, created_at, \
                    attempts, last_error \
             FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(db)
        .await?;
        if let Some(row) = oldest {
            let error = row
                .last_error
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default();
            findings.push(Finding::new(
                Invariant::Outboxes,
                format!("{name}.outbox"),
                "every row published",
                format!(
                    "{} unpublished, oldest id {} (event {}, {} key {}, created {}, {} attempts{error})",
                    row.count,
                    row.id,
                    row.event_id,
                    row.topic,
                    row.key,
                    row.created_at.format("%H:%M:%S"),
                    row.attempts
                ),
            ));
        }
    }
    Ok(findings)
}
