//! Purchase signals from svc-order's events, applied by the platform's
//! consumer in one transaction with the inbox row: OrderConfirmed records the
//! order's lines, OrderRefunded marks them refunded. The inbox stops a
//! redelivered event, and the (order, product) key stops the same order
//! arriving under another event, so no purchase counts twice.

use chrono::{DateTime, Utc};
use shopmesh_events::{EnvelopeExt, EventEnvelope, EventHandler, HandlerError};
use shopmesh_proto::shop::events::v1::{OrderConfirmed, OrderLine, OrderRefunded};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::{self, OrderRecord, PurchaseLine};

pub const ORDER_TOPIC: &str = shopmesh_proto::topics::ORDER_EVENTS;
/// The topics consumed.
pub const TOPICS: &[&str] = &[ORDER_TOPIC];

/// Turns order events into purchase rows.
pub struct PurchaseRecorder;

impl EventHandler for PurchaseRecorder {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        apply(tx, envelope).await
    }
}

/// Applies one event (anything but OrderConfirmed and OrderRefunded is
/// ignored); what the consumer runs inside its transaction.
pub async fn apply(tx: &mut PgConnection, envelope: &EventEnvelope) -> Result<(), HandlerError> {
    let permanent = HandlerError::permanent;
    let occurred = envelope
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32));
    if envelope.is::<OrderConfirmed>() {
        let e: OrderConfirmed = envelope.payload_as().map_err(permanent)?;
        let order = record(&e.order_id, &e.user_id, &e.lines, e.confirm_time, occurred)?;
        let added = store::record_confirmed(tx, &order).await?;
        count("confirmed", added);
        tracing::debug!(order_id = %order.order_id, lines = added, "purchase recorded");
    } else if envelope.is::<OrderRefunded>() {
        let e: OrderRefunded = envelope.payload_as().map_err(permanent)?;
        let order = record(&e.order_id, &e.user_id, &e.lines, e.refund_time, occurred)?;
        let changed = store::record_refunded(tx, &order).await?;
        count("refunded", changed);
        tracing::debug!(order_id = %order.order_id, lines = changed, "refund recorded");
    }
    Ok(())
}

fn count(event: &'static str, lines: u64) {
    metrics::counter!("recommendation_purchase_lines_total", "event" => event).increment(lines);
}

/// The order as the tables keep it. A bad order or user id cannot be fixed by
/// retrying (permanent: straight to the DLQ); a line with a bad product id or
/// quantity is skipped, the rest of the order still counts.
fn record(
    order_id: &str,
    user_id: &str,
    lines: &[OrderLine],
    at: Option<prost_types::Timestamp>,
    occurred: Option<DateTime<Utc>>,
) -> Result<OrderRecord, HandlerError> {
    let uuid = |field: &str, value: &str| {
        Uuid::parse_str(value).map_err(|_| {
            HandlerError::permanent(anyhow::anyhow!("{field} {value:?} is not a UUID"))
        })
    };
    let at = at
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .or(occurred)
        .unwrap_or_else(Utc::now);
    let parsed = lines.iter().filter_map(|line| {
        let product_id = Uuid::parse_str(&line.product_id).ok();
        if product_id.is_none() || line.quantity <= 0 {
            tracing::warn!(
                order_id,
                product_id = line.product_id,
                quantity = line.quantity,
                "order line skipped"
            );
        }
        product_id.map(|product_id| PurchaseLine {
            product_id,
            quantity: line.quantity,
        })
    });
    Ok(OrderRecord {
        order_id: uuid("order_id", order_id)?,
        user_id: uuid("user_id", user_id)?,
        at,
        lines: store::merge_lines(parsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product_id: &str, quantity: i32) -> OrderLine {
        OrderLine {
            product_id: product_id.to_owned(),
            quantity,
            ..Default::default()
        }
    }

    #[test]
    fn bad_lines_are_skipped_and_bad_ids_refused() {
        let (order, user, product) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = [
            line(&product.to_string(), 1),
            line("not-a-uuid", 1),
            line(&product.to_string(), 2),
            line(&Uuid::now_v7().to_string(), 0),
        ];
        let at = prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        };
        let record = record(
            &order.to_string(),
            &user.to_string(),
            &lines,
            Some(at),
            None,
        )
        .unwrap();
        assert_eq!(record.order_id, order);
        assert_eq!(record.at.timestamp(), 1_767_225_600);
        assert_eq!(
            record.lines,
            [PurchaseLine {
                product_id: product,
                quantity: 3
            }]
        );
        assert!(super::record("x", &user.to_string(), &lines, None, None).is_err());
        assert!(super::record(&order.to_string(), "", &lines, None, None).is_err());
    }
}
