//! The order events on `shop.order.events` (key: the order id, aggregate
//! type "order"): the payloads, built from the order as the status change
//! left it, and [`publish`], with which `store/` writes them into the
//! platform's transactional outbox in the transaction of the status change.

use chrono::{DateTime, Utc};
use shopmesh_events::OutboxError;
use shopmesh_proto::shop::events::v1 as ev;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::order::{Order, money, timestamp};

/// The aggregate type of every order event.
pub const AGGREGATE_TYPE: &str = "order";
/// The topic every order event goes to.
pub const TOPIC: &str = shopmesh_proto::topics::ORDER_EVENTS;

/// Writes an order event into the outbox, in the caller's transaction.
pub async fn publish<M: prost::Name>(
    conn: &mut PgConnection,
    order_id: Uuid,
    payload: &M,
) -> Result<(), OutboxError> {
    shopmesh_events::publish(conn, TOPIC, AGGREGATE_TYPE, order_id.to_string(), payload).await?;
    Ok(())
}

fn lines(order: &Order) -> Vec<ev::OrderLine> {
    order
        .lines
        .iter()
        .map(|line| ev::OrderLine {
            product_id: line.product_id.to_string(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            quantity: line.quantity,
            unit_price: Some(money(&order.currency_code, line.unit_price_minor)),
            line_total: Some(money(&order.currency_code, line.line_total_minor())),
        })
        .collect()
}

/// What every order event says about the order.
struct Common {
    order_id: String,
    user_id: String,
    lines: Vec<ev::OrderLine>,
    subtotal: Option<shopmesh_proto::shop::common::v1::Money>,
    total: Option<shopmesh_proto::shop::common::v1::Money>,
}

fn common(order: &Order) -> Common {
    Common {
        order_id: order.id.to_string(),
        user_id: order.user_id.to_string(),
        lines: lines(order),
        subtotal: Some(money(&order.currency_code, order.subtotal_minor)),
        total: Some(money(&order.currency_code, order.total_minor)),
    }
}

fn payment_id(order: &Order) -> String {
    order
        .payment_id
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// The order was stored PENDING; its saga starts.
pub fn order_created(order: &Order) -> ev::OrderCreated {
    let Common {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
    } = common(order);
    ev::OrderCreated {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
        create_time: Some(timestamp(order.created_at)),
    }
}

/// Stock committed and payment captured.
pub fn order_confirmed(order: &Order, at: DateTime<Utc>) -> ev::OrderConfirmed {
    let Common {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
    } = common(order);
    ev::OrderConfirmed {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
        payment_id: payment_id(order),
        confirm_time: Some(timestamp(at)),
    }
}

/// Cancelled before confirmation by its owner or an admin (`cancelled_by`).
pub fn order_cancelled(order: &Order, cancelled_by: &str, at: DateTime<Utc>) -> ev::OrderCancelled {
    let Common {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
    } = common(order);
    ev::OrderCancelled {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
        reason: order.status_reason.clone(),
        cancelled_by: cancelled_by.to_owned(),
        cancel_time: Some(timestamp(at)),
    }
}

/// A step failed and the compensations ran; `failure_code` is the saga's
/// stable cause ("out_of_stock", "payment_declined", …).
pub fn order_failed(order: &Order, failure_code: &str, at: DateTime<Utc>) -> ev::OrderFailed {
    let Common {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
    } = common(order);
    ev::OrderFailed {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
        reason: order.status_reason.clone(),
        failure_code: failure_code.to_owned(),
        payment_id: payment_id(order),
        fail_time: Some(timestamp(at)),
    }
}

/// A confirmed order was cancelled and `refunded_minor` given back.
pub fn order_refunded(order: &Order, refunded_minor: i64, at: DateTime<Utc>) -> ev::OrderRefunded {
    let Common {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
    } = common(order);
    ev::OrderRefunded {
        order_id,
        user_id,
        lines,
        subtotal,
        total,
        refunded: Some(money(&order.currency_code, refunded_minor)),
        payment_id: payment_id(order),
        reason: order.status_reason.clone(),
        refund_time: Some(timestamp(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{Address, OrderLine, OrderStatus};

    fn order(status: OrderStatus, reason: &str) -> Order {
        let now = Utc::now();
        Order {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            idempotency_key: "k".into(),
            fingerprint: "f".into(),
            status,
            status_reason: reason.into(),
            currency_code: "USD".into(),
            subtotal_minor: 4500,
            total_minor: 4500,
            address: Address::default(),
            card_brand: "visa".into(),
            card_last4: "4242".into(),
            payment_id: Some(Uuid::now_v7()),
            lines: vec![
                OrderLine {
                    product_id: Uuid::now_v7(),
                    sku: "A".into(),
                    name: "Alpha".into(),
                    quantity: 2,
                    unit_price_minor: 1500,
                },
                OrderLine {
                    product_id: Uuid::now_v7(),
                    sku: "B".into(),
                    name: "Beta".into(),
                    quantity: 1,
                    unit_price_minor: 1500,
                },
            ],
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn created_carries_lines_and_totals() {
        let order = order(OrderStatus::Pending, "order placed");
        let event = order_created(&order);
        assert_eq!(event.order_id, order.id.to_string());
        assert_eq!(event.user_id, order.user_id.to_string());
        assert_eq!(event.lines.len(), 2);
        assert_eq!(
            event.lines[0].line_total.as_ref().unwrap().amount_minor,
            3000
        );
        assert_eq!(
            event.lines[0].unit_price.as_ref().unwrap().currency_code,
            "USD"
        );
        assert_eq!(event.total.unwrap().amount_minor, 4500);
        assert_eq!(
            event.create_time.unwrap().seconds,
            order.created_at.timestamp()
        );
    }

    #[test]
    fn confirmed_names_the_payment() {
        let order = order(OrderStatus::Confirmed, "payment captured");
        let at = Utc::now();
        let event = order_confirmed(&order, at);
        assert_eq!(event.payment_id, order.payment_id.unwrap().to_string());
        assert_eq!(event.confirm_time.unwrap().seconds, at.timestamp());
        assert_eq!(event.subtotal.unwrap().amount_minor, 4500);
    }

    #[test]
    fn cancelled_failed_and_refunded_carry_their_reasons() {
        let at = Utc::now();
        let cancelled = order(
            OrderStatus::Cancelled,
            "cancelled by customer: changed my mind",
        );
        let event = order_cancelled(&cancelled, "user-1", at);
        assert_eq!(event.reason, "cancelled by customer: changed my mind");
        assert_eq!(event.cancelled_by, "user-1");

        let failed = order(OrderStatus::Failed, "card declined: card_declined");
        let event = order_failed(&failed, "payment_declined", at);
        assert_eq!(event.failure_code, "payment_declined");
        assert_eq!(event.reason, "card declined: card_declined");
        assert_eq!(event.payment_id, failed.payment_id.unwrap().to_string());

        let refunded = order(OrderStatus::Refunded, "cancelled by admin");
        let event = order_refunded(&refunded, 4500, at);
        assert_eq!(event.refunded.unwrap().amount_minor, 4500);
        assert_eq!(event.reason, "cancelled by admin");
        assert_eq!(event.refund_time.unwrap().seconds, at.timestamp());
    }
}
