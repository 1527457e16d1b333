//! Invariants on what consumers made of the events: `purchases`
//! (svc-recommendation), `notifications` (svc-notification) and
//! `product-stock` (svc-product's copy of inventory's levels).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::PgPool;
use uuid::Uuid;

use super::facts::{Orders, Status};
use super::{Finding, Invariant};

#[derive(sqlx::FromRow)]
struct Purchase {
    order_id: Uuid,
    product_id: Uuid,
    user_id: Uuid,
    quantity: i32,
    refunded: bool,
}

/// svc-recommendation's `purchases` are the confirmed and refunded orders'
/// lines, one row per (order, product) with the summed quantity and the
/// order's user, refunded exactly when the order was; and no row for an
/// order that was not confirmed. The demo purchase history the service seeds
/// itself (`shopmesh_demo::demo_orders`, orders that never went through
/// svc-order) is left out by its order ids.
///
/// Guaranteed by svc-recommendation's consumer (`consumer.rs`, `store.rs`):
/// OrderConfirmed inserts the lines (ON CONFLICT DO NOTHING), OrderRefunded
/// marks them refunded (inserting them when OrderConfirmed has not arrived),
/// each with its inbox row in one transaction.
pub async fn purchases(
    recommendation: &PgPool,
    orders: &Orders,
    demo_orders: &HashSet<Uuid>,
) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<Purchase> = sqlx::query_as(
        "SELECT order_id, product_id, user_id, quantity, refunded_at IS NOT NULL AS refunded \
         FROM purchases",
    )
    .fetch_all(recommendation)
    .await?;
    let mut recorded: BTreeMap<Uuid, Vec<Purchase>> = BTreeMap::new();
    for row in rows {
        if demo_orders.contains(&row.order_id) && !orders.contains_key(&row.order_id) {
            continue;
        }
        recorded.entry(row.order_id).or_default().push(row);
    }
    let mut findings = Vec::new();
    let mut bought: Vec<_> = orders
        .values()
        .filter(|o| o.status.was_confirmed())
        .collect();
    bought.sort_by_key(|o| o.id);
    for order in bought {
        let refunded = order.status == Status::Refunded;
        let rows = recorded.remove(&order.id).unwrap_or_default();
        let mut found: BTreeMap<Uuid, &Purchase> =
            rows.iter().map(|row| (row.product_id, row)).collect();
        for (product_id, units) in order.units_by_product() {
            let subject = format!("{}, product {product_id}", order.subject());
            let expected = format!(
                "quantity {units}, user {}, {}",
                order.user_id,
                if refunded { "refunded" } else { "not refunded" }
            );
            let Some(row) = found.remove(&product_id) else {
                findings.push(Finding::new(
                    Invariant::Purchases,
                    subject,
                    expected,
                    "no purchase row",
                ));
                continue;
            };
            let mut wrong = Vec::new();
            if i64::from(row.quantity) != units {
                wrong.push(format!("quantity {}", row.quantity));
            }
            if row.user_id != order.user_id {
                wrong.push(format!("user {}", row.user_id));
            }
            if row.refunded != refunded {
                wrong.push(
                    if row.refunded {
                        "refunded"
                    } else {
                        "not refunded"
                    }
                    .to_owned(),
                );
            }
            if !wrong.is_empty() {
                findings.push(Finding::new(
                    Invariant::Purchases,
                    subject,
                    expected,
                    wrong.join(", "),
                ));
            }
        }
        for row in found.values() {
            findings.push(Finding::new(
                Invariant::Purchases,
                format!("{}, product {}", order.subject(), row.product_id),
                "no row: the product is not in the order",
                format!("quantity {}", row.quantity),
            ));
        }
    }
    // What is left is for orders that did not sell or that svc-order lacks.
    for (order_id, rows) in recorded {
        let status = orders
            .get(&order_id)
            .map_or("unknown to svc-order", |o| o.status.as_str());
        let lines: Vec<String> = rows
            .iter()
            .map(|row| format!("{}×{}", row.product_id, row.quantity))
            .collect();
        findings.push(Finding::new(
            Invariant::Purchases,
            format!("order {order_id} ({status})"),
            "no purchases",
            format!("{} rows: {}", rows.len(), lines.join(", ")),
        ));
    }
    Ok(findings)
}

/// Both channels: svc-notification writes a row for each, PENDING where the
/// shopper's preferences allow it and SKIPPED where they do not.
const CHANNELS: [&str; 2] = ["email", "sms"];

/// The order events svc-notification turns into notifications, by the
/// status they lead to (svc-order `store.rs`, `publish_status`): a refunded
/// order was confirmed first, so it has both.
fn order_events(status: Status) -> &'static [&'static str] {
    match status {
        Status::Confirmed => &["order_confirmed"],
        Status::Refunded => &["order_confirmed", "order_refunded"],
        Status::Failed => &["order_failed"],
        Status::Cancelled => &["order_cancelled"],
        Status::Pending | Status::StockReserved | Status::PaymentAuthorized => &[],
    }
}

#[derive(sqlx::FromRow)]
struct Notification {
    source_event_id: Uuid,
    channel: String,
    event_type: String,
    /// The first UUID in an email's body: every order template names the
    /// full order id there (svc-notification `templates.rs`); SMS texts only
    /// carry its first 8 characters.
    named_order: Option<Uuid>,
    /// A PaymentRefunded of part of a payment, which svc-notification also
    /// files as order_refunded (svc-order only ever refunds the whole total).
    partial_refund: bool,
}

/// Each terminal order has exactly one notification per channel for each of
/// its events (OrderConfirmed; OrderFailed; OrderCancelled; OrderConfirmed
/// and OrderRefunded), whatever the shopper's preferences (a disabled
/// channel gets a SKIPPED row), and no other order notification: no order
/// event lost, none published or applied twice. A notification is mapped to
/// its order through its `source_event_id`: the event's outbox row in
/// svc-order's database (key = order id) while the relay keeps it (one hour
/// after publishing), else the order id in the email of the same event.
///
/// Guaranteed by svc-order publishing each status event once, in the
/// transaction that enters the status, and svc-notification's consumer
/// inserting the rows with its inbox row in one transaction, under
/// UNIQUE (source_event_id, channel) (`consumer.rs`).
pub async fn notifications(
    notification: &PgPool,
    order_db: &PgPool,
    orders: &Orders,
) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<Notification> = sqlx::query_as(
        "SELECT source_event_id, channel, event_type, \
                CASE WHEN channel = 'email' THEN substring(body FROM \
                    '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')::uuid \
                END AS named_order, \
                (channel = 'email' AND subject LIKE 'Partial refund%') AS partial_refund \
         FROM notifications \
         WHERE event_type IN ('order_confirmed', 'order_failed', 'order_cancelled', \
                              'order_refunded')",
    )
    .fetch_all(notification)
    .await?;
    let published: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT event_id, key FROM outbox WHERE topic = 'shop.order.events'")
            .fetch_all(order_db)
            .await?;
    let order_of_event: HashMap<Uuid, Uuid> = published
        .into_iter()
        .filter_map(|(event, key)| Some((event, Uuid::parse_str(&key).ok()?)))
        .collect();
    // Per source event: its order, and whether it is a partial refund.
    let mut events: HashMap<Uuid, (Option<Uuid>, bool)> = HashMap::new();
    for row in &rows {
        let event = events
            .entry(row.source_event_id)
            .or_insert((order_of_event.get(&row.source_event_id).copied(), false));
        event.0 = event.0.or(row.named_order);
        event.1 |= row.partial_refund;
    }
    let mut counts: BTreeMap<(Uuid, &str, &str), usize> = BTreeMap::new();
    let mut findings = Vec::new();
    for row in &rows {
        match events.get(&row.source_event_id) {
            Some((_, true)) => {}
            Some((Some(order_id), false)) => {
                *counts
                    .entry((*order_id, row.event_type.as_str(), row.channel.as_str()))
                    .or_default() += 1;
            }
            _ => findings.push(Finding::new(
                Invariant::Notifications,
                format!(
                    "{} {} notification of event {}",
                    row.event_type, row.channel, row.source_event_id
                ),
                "an order it is about",
                "none found (no outbox row, no order id in the email)",
            )),
        }
    }
    let mut settled: Vec<_> = orders.values().filter(|o| o.status.is_terminal()).collect();
    settled.sort_by_key(|o| o.id);
    for order in settled {
        for event_type in order_events(order.status) {
            for channel in CHANNELS {
                let found = counts
                    .remove(&(order.id, *event_type, channel))
                    .unwrap_or(0);
                if found != 1 {
                    findings.push(Finding::new(
                        Invariant::Notifications,
                        format!("{}, {event_type} by {channel}", order.subject()),
                        "1 notification",
                        format!("{found}"),
                    ));
                }
            }
        }
    }
    // What is left is about events an order should not have had.
    for ((order_id, event_type, channel), found) in counts {
        let status = match orders.get(&order_id) {
            Some(order) if !order.status.is_terminal() => continue,
            Some(order) => order.status.as_str(),
            None => "unknown to svc-order",
        };
        findings.push(Finding::new(
            Invariant::Notifications,
            format!("order {order_id} ({status}), {event_type} by {channel}"),
            "none",
            format!("{found}"),
        ));
    }
    Ok(findings)
}

/// svc-product's `stock_levels.available` is svc-inventory's on_hand −
/// reserved for every SKU of a live product; a SKU without a row counts as
/// sold out there, so it is only a finding when inventory has units.
///
/// Guaranteed by the stock follower (`inventory-client/src/lib.rs`):
/// WatchStock announces every committed change (the `stock_announce`
/// trigger), every (re)connect starts with the current level of each SKU,
/// and the newest level per SKU wins (`svc-product/src/store/stock.rs`).
pub async fn product_stock(product: &PgPool, inventory: &PgPool) -> anyhow::Result<Vec<Finding>> {
    let levels: Vec<(String, i64)> = sqlx::query_as("SELECT sku, on_hand - reserved FROM stock")
        .fetch_all(inventory)
        .await?;
    let available: HashMap<String, i64> = levels.into_iter().collect();
    let copies: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT DISTINCT p.sku, s.available \
         FROM products p LEFT JOIN stock_levels s USING (sku) \
         WHERE p.deleted_at IS NULL ORDER BY p.sku",
    )
    .fetch_all(product)
    .await?;
    Ok(copies
        .into_iter()
        .filter_map(|(sku, copy)| {
            let truth = available.get(&sku).copied();
            let (expected, found) = match (truth, copy) {
                (Some(truth), Some(copy)) if truth != copy => {
                    (format!("available {truth}"), format!("{copy}"))
                }
                (Some(truth), None) if truth != 0 => (
                    format!("available {truth}"),
                    "no stock_levels row".to_owned(),
                ),
                (None, Some(copy)) if copy != 0 => (
                    "nothing: inventory has no such SKU".to_owned(),
                    format!("available {copy}"),
                ),
                _ => return None,
            };
            Some(Finding::new(
                Invariant::ProductStock,
                format!("sku {sku}"),
                expected,
                found,
            ))
        })
        .collect())
}
