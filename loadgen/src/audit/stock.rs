//! Invariants about stock: `stock-reserved` and `stock-log` in svc-inventory's
//! database alone, `reservations` and `stock-sold` against svc-order's orders.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgPool;
use uuid::Uuid;

use super::facts::Orders;
use super::{Finding, Invariant};

/// Per SKU, `stock.reserved` is the units of the reservations still live
/// (status 'reserved').
///
/// Guaranteed by svc-inventory: every reservation change moves the lines'
/// units in and out of `reserved` in the transaction that changes the
/// reservation's status, under the row locks (`reservations.rs`, `close`).
pub async fn stock_reserved(inventory: &PgPool) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT s.sku, s.reserved, COALESCE(held.units, 0) \
         FROM stock s \
         LEFT JOIN ( \
             SELECT l.sku, sum(l.quantity)::int8 AS units \
             FROM reservation_lines l JOIN reservations r USING (order_id) \
             WHERE r.status = 'reserved' \
             GROUP BY l.sku \
         ) held USING (sku) \
         WHERE s.reserved <> COALESCE(held.units, 0) \
         ORDER BY s.sku",
    )
    .fetch_all(inventory)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sku, reserved, held)| {
            Finding::new(
                Invariant::StockReserved,
                format!("sku {sku}"),
                format!("reserved {held} (live reservations)"),
                format!("reserved {reserved}"),
            )
        })
        .collect())
}

/// Per SKU, `stock.on_hand` and `stock.reserved` are the `*_after` levels of
/// its newest `stock_changes` row and the sums of all its deltas: no change
/// unlogged, none logged without being made.
///
/// Guaranteed by svc-inventory's ledger (`store/ledger.rs`): every level change is
/// one guarded UPDATE with its audit rows in the same statement, and the
/// seed and SetStock of a new SKU log the initial level (`store/mod.rs`).
pub async fn stock_log(inventory: &PgPool) -> anyhow::Result<Vec<Finding>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        sku: String,
        on_hand: i64,
        reserved: i64,
        on_hand_after: Option<i64>,
        reserved_after: Option<i64>,
        on_hand_sum: Option<i64>,
        reserved_sum: Option<i64>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.sku, s.on_hand, s.reserved, \
                newest.on_hand_after, newest.reserved_after, \
                total.on_hand_sum, total.reserved_sum \
         FROM stock s \
         LEFT JOIN LATERAL ( \
             SELECT on_hand_after, reserved_after FROM stock_changes c \
             WHERE c.sku = s.sku ORDER BY c.seq DESC LIMIT 1 \
         ) newest ON true \
         LEFT JOIN ( \
             SELECT sku, sum(on_hand_delta)::int8 AS on_hand_sum, \
                    sum(reserved_delta)::int8 AS reserved_sum \
             FROM stock_changes GROUP BY sku \
         ) total USING (sku) \
         WHERE newest.on_hand_after IS DISTINCT FROM s.on_hand \
            OR newest.reserved_after IS DISTINCT FROM s.reserved \
            OR total.on_hand_sum IS DISTINCT FROM s.on_hand \
            OR total.reserved_sum IS DISTINCT FROM s.reserved \
         ORDER BY s.sku",
    )
    .fetch_all(inventory)
    .await?;
    let level = |on_hand: Option<i64>, reserved: Option<i64>| match (on_hand, reserved) {
        (Some(on_hand), Some(reserved)) => format!("{on_hand}/{reserved}"),
        _ => "no log".to_owned(),
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            Finding::new(
                Invariant::StockLog,
                format!("sku {}", row.sku),
                format!("on hand/reserved {}/{}", row.on_hand, row.reserved),
                format!(
                    "newest change {}, sum of changes {}",
                    level(row.on_hand_after, row.reserved_after),
                    level(row.on_hand_sum, row.reserved_sum)
                ),
            )
        })
        .collect())
}

/// A reservation as svc-inventory keeps it.
struct Reservation {
    status: String,
    units: BTreeMap<String, i64>,
}

async fn reservations_of(inventory: &PgPool) -> anyhow::Result<HashMap<Uuid, Reservation>> {
    let rows: Vec<(Uuid, String, Option<String>, Option<i32>)> = sqlx::query_as(
        "SELECT r.order_id, r.status, l.sku, l.quantity \
         FROM reservations r LEFT JOIN reservation_lines l USING (order_id)",
    )
    .fetch_all(inventory)
    .await?;
    let mut reservations: HashMap<Uuid, Reservation> = HashMap::new();
    for (order_id, status, sku, quantity) in rows {
        let reservation = reservations.entry(order_id).or_insert_with(|| Reservation {
            status,
            units: BTreeMap::new(),
        });
        if let (Some(sku), Some(quantity)) = (sku, quantity) {
            *reservation.units.entry(sku).or_default() += i64::from(quantity);
        }
    }
    Ok(reservations)
}

fn describe(units: &BTreeMap<impl AsRef<str>, i64>) -> String {
    if units.is_empty() {
        return "no lines".to_owned();
    }
    units
        .iter()
        .map(|(sku, n)| format!("{}×{n}", sku.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per order: one that sold its stock (see [`super::facts::Order::sold_stock`])
/// has a 'committed' reservation whose lines are its order lines; a terminal
/// one that did not has none committed (failed/cancelled before commit:
/// released, expired, or no reservation at all); no terminal order still
/// holds stock ('reserved'), and no reservation holds or took stock for an
/// order svc-order does not have. Orders still in flight are left to
/// `orders-terminal`.
///
/// Guaranteed by the saga (svc-order `saga.rs`): commit_stock follows a
/// successful authorization, compensation before commit releases the
/// reservation (a ReleaseStock of a never-reserved order leaves a released
/// marker, so a late ReserveStock fails), and svc-inventory's sweeper expires
/// any live reservation past its TTL.
pub async fn reservations(inventory: &PgPool, orders: &Orders) -> anyhow::Result<Vec<Finding>> {
    let reservations = reservations_of(inventory).await?;
    let mut findings = Vec::new();
    let mut settled: Vec<_> = orders.values().filter(|o| o.status.is_terminal()).collect();
    settled.sort_by_key(|o| o.id);
    for order in settled {
        let reservation = reservations.get(&order.id);
        let status = reservation.map_or("none", |r| r.status.as_str());
        if order.sold_stock() {
            let lines = order.units_by_sku();
            let matches = reservation.is_some_and(|r| {
                r.status == "committed"
                    && r.units.len() == lines.len()
                    && lines.iter().all(|(sku, n)| r.units.get(*sku) == Some(n))
            });
            if !matches {
                findings.push(Finding::new(
                    Invariant::Reservations,
                    order.subject(),
                    format!("committed: {}", describe(&lines)),
                    match reservation {
                        Some(r) => format!("{status}: {}", describe(&r.units)),
                        None => "no reservation".to_owned(),
                    },
                ));
            }
        } else if matches!(status, "committed" | "reserved") {
            let what = if status == "committed" {
                "stock taken for an order that did not sell (saga never saw the commit)"
            } else {
                "stock still held"
            };
            findings.push(Finding::new(
                Invariant::Reservations,
                order.subject(),
                "no reservation, or released or expired",
                format!(
                    "{status}: {} ({what})",
                    describe(&reservation.map(|r| r.units.clone()).unwrap_or_default())
                ),
            ));
        }
    }
    let mut unknown: Vec<_> = reservations
        .iter()
        .filter(|(id, r)| {
            !orders.contains_key(*id) && matches!(r.status.as_str(), "committed" | "reserved")
        })
        .collect();
    unknown.sort_by_key(|(id, _)| **id);
    findings.extend(unknown.into_iter().map(|(order_id, r)| {
        Finding::new(
            Invariant::Reservations,
            format!("reservation of order {order_id}"),
            "an order svc-order knows",
            format!("no such order ({}: {})", r.status, describe(&r.units)),
        )
    }));
    Ok(findings)
}

/// Per SKU, the units taken off the shelves by commits (−Σ on_hand_delta of
/// kind 'commit' in `stock_changes`) are the units of the orders that sold
/// their stock: nothing sold twice, nothing sold for an order that did not.
///
/// Guaranteed by svc-inventory's commit (`reservations.rs`): a reservation
/// commits once ('reserved' → 'committed' under its row lock, a repeated
/// CommitReservation finds it committed and changes nothing).
pub async fn stock_sold(inventory: &PgPool, orders: &Orders) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sku, -sum(on_hand_delta)::int8 FROM stock_changes \
         WHERE kind = 'commit' GROUP BY sku",
    )
    .fetch_all(inventory)
    .await?;
    let committed: BTreeMap<String, i64> = rows.into_iter().collect();
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    for order in orders.values().filter(|o| o.sold_stock()) {
        for (sku, units) in order.units_by_sku() {
            *sold.entry(sku).or_default() += units;
        }
    }
    let mut skus: Vec<&str> = committed.keys().map(String::as_str).collect();
    skus.extend(sold.keys().copied());
    skus.sort_unstable();
    skus.dedup();
    Ok(skus
        .into_iter()
        .filter_map(|sku| {
            let taken = committed.get(sku).copied().unwrap_or(0);
            let expected = sold.get(sku).copied().unwrap_or(0);
            (taken != expected).then(|| {
                Finding::new(
                    Invariant::StockSold,
                    format!("sku {sku}"),
                    format!("{expected} units committed (sold orders)"),
                    format!("{taken} committed"),
                )
            })
        })
        .collect())
}
