//! From events to notifications: the handler run by the platform's consumer,
//! in one transaction with the inbox row. It renders the event's template and
//! inserts one row per channel — PENDING where the shopper's preferences allow
//! the channel, SKIPPED where they do not — and sends nothing itself: the
//! sender does, after commit, so a retried or redelivered event repeats no
//! email (the inbox and the unique (source event, channel) both stop it).

use shopmesh_events::{EnvelopeExt, EventEnvelope, EventHandler, HandlerError};
use shopmesh_proto::shop::events::v1::{
    OrderCancelled, OrderConfirmed, OrderFailed, OrderRefunded, PaymentRefunded, UserRegistered,
};
use shopmesh_proto::topics;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::{Channel, NewNotification};
use crate::store;
use crate::templates::{self, Rendered};

/// The topics consumed, in the consumer group named after the service.
pub const TOPICS: &[&str] = &[
    topics::ORDER_EVENTS,
    topics::PAYMENT_EVENTS,
    topics::AUTH_EVENTS,
];

pub struct NotificationHandler;

/// The recipient and rendered messages for an event, or `None` for an event
/// that notifies nobody.
fn render(envelope: &EventEnvelope) -> Result<Option<(String, Rendered)>, HandlerError> {
    let permanent = HandlerError::permanent;
    Ok(if envelope.is::<OrderConfirmed>() {
        let e: OrderConfirmed = envelope.payload_as().map_err(permanent)?;
        Some((e.user_id.clone(), templates::order_confirmed(&e)))
    } else if envelope.is::<OrderCancelled>() {
        let e: OrderCancelled = envelope.payload_as().map_err(permanent)?;
        Some((e.user_id.clone(), templates::order_cancelled(&e)))
    } else if envelope.is::<OrderFailed>() {
        let e: OrderFailed = envelope.payload_as().map_err(permanent)?;
        Some((e.user_id.clone(), templates::order_failed(&e)))
    } else if envelope.is::<OrderRefunded>() {
        let e: OrderRefunded = envelope.payload_as().map_err(permanent)?;
        Some((e.user_id.clone(), templates::order_refunded(&e)))
    } else if envelope.is::<PaymentRefunded>() {
        // A full refund comes with OrderRefunded, which says it already.
        let e: PaymentRefunded = envelope.payload_as().map_err(permanent)?;
        (!e.fully_refunded).then(|| (e.user_id.clone(), templates::payment_refunded(&e)))
    } else if envelope.is::<UserRegistered>() {
        let e: UserRegistered = envelope.payload_as().map_err(permanent)?;
        Some((e.user_id.clone(), templates::welcome(&e)))
    } else {
        None
    })
}

impl EventHandler for NotificationHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        let Some((user_id, rendered)) = render(envelope)? else {
            return Ok(());
        };
        let user_id = Uuid::parse_str(&user_id)
            .map_err(|_| HandlerError::permanent(anyhow::anyhow!("user_id {user_id:?}")))?;
        let source_event_id = envelope.event_uuid().map_err(HandlerError::permanent)?;
        let preference = store::preference(tx, user_id, rendered.event_type).await?;
        for channel in Channel::ALL {
            let (subject, body) = rendered.for_channel(channel);
            let skipped = (!preference.allows(channel)).then(|| {
                format!(
                    "{} disabled for {}",
                    channel.as_str(),
                    rendered.event_type.as_str()
                )
            });
            let new = NewNotification {
                user_id,
                channel,
                event_type: rendered.event_type,
                source_event_id,
                subject,
                body,
                skipped,
            };
            if store::insert(tx, &new).await? {
                metrics::counter!(
                    "notifications_created_total",
                    "event_type" => rendered.event_type.as_str(),
                    "channel" => channel.as_str(),
                    "status" => if new.skipped.is_some() { "skipped" } else { "pending" },
                )
                .increment(1);
            }
        }
        tracing::debug!(%user_id, event_type = rendered.event_type.as_str(), "notifications recorded");
        Ok(())
    }
}
