//! What svc-notification publishes: `NotificationSent` on
//! `shop.notification.events` (key: the notification id, aggregate type
//! "notification"), written to the outbox in the transaction that marks the
//! notification SENT (`store.rs`).

use chrono::{DateTime, Utc};
use shopmesh_events::OutboxError;
use shopmesh_proto::shop::events::v1 as ev;
use sqlx::PgConnection;

use crate::model::{Channel, Notification, timestamp};

/// The topic NotificationSent goes to.
pub const TOPIC: &str = shopmesh_proto::topics::NOTIFICATION_EVENTS;
/// The aggregate type of every notification event.
pub const AGGREGATE_TYPE: &str = "notification";

/// The event for `notification`, accepted by its provider at `sent_at`.
pub fn notification_sent(
    notification: &Notification,
    sent_at: DateTime<Utc>,
) -> ev::NotificationSent {
    let channel = match notification.channel {
        Channel::Email => ev::NotificationChannel::Email,
        Channel::Sms => ev::NotificationChannel::Sms,
    };
    ev::NotificationSent {
        notification_id: notification.id.to_string(),
        user_id: notification.user_id.to_string(),
        channel: channel as i32,
        notification_type: notification.event_type.as_str().to_owned(),
        source_event_id: notification.source_event_id.to_string(),
        sent_time: Some(timestamp(sent_at)),
    }
}

/// Writes NotificationSent to the outbox on `conn` (the settling transaction).
pub async fn publish_sent(
    conn: &mut PgConnection,
    notification: &Notification,
    sent_at: DateTime<Utc>,
) -> Result<(), OutboxError> {
    shopmesh_events::publish(
        conn,
        TOPIC,
        AGGREGATE_TYPE,
        notification.id.to_string(),
        &notification_sent(notification, sent_at),
    )
    .await
}
