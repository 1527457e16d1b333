//! The counts printed after the checks: what the books add up to.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;
use uuid::Uuid;

use super::databases::Databases;
use super::facts::{self, Status};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub orders_by_status: BTreeMap<&'static str, usize>,
    /// Σ total of the confirmed orders, per currency, in minor units.
    pub confirmed_total_minor: BTreeMap<String, i64>,
    /// Σ captured − refunded over every payment, per currency.
    pub net_captured_minor: BTreeMap<String, i64>,
    pub payments: usize,
    /// Orders that failed after their stock was committed (a refused
    /// capture): their units stay sold, by svc-order's design.
    pub failed_after_commit: usize,
    pub skus: i64,
    pub units_on_hand: i64,
    /// −Σ on_hand_delta of the commits.
    pub units_sold: i64,
    /// Rows in each database's outbox (published rows stay for the relay's
    /// retention, an hour by default).
    pub outbox_rows: BTreeMap<String, i64>,
    pub purchases: i64,
    pub demo_purchases: i64,
    pub notifications: i64,
}

pub async fn summarize(dbs: &Databases, demo_orders: &HashSet<Uuid>) -> anyhow::Result<Summary> {
    let orders = facts::orders(&dbs.order).await?;
    let payments = facts::payments(&dbs.payment).await?;
    let mut summary = Summary {
        payments: payments.len(),
        ..Summary::default()
    };
    for order in orders.values() {
        *summary
            .orders_by_status
            .entry(order.status.as_str())
            .or_default() += 1;
        if order.status == Status::Confirmed {
            *summary
                .confirmed_total_minor
                .entry(order.currency.clone())
                .or_default() += order.total_minor;
        }
        if order.status == Status::Failed && order.stock_committed {
            summary.failed_after_commit += 1;
        }
    }
    for payment in &payments {
        *summary
            .net_captured_minor
            .entry(payment.currency_code.clone())
            .or_default() += payment.net_minor();
    }
    (summary.skus, summary.units_on_hand) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT count(*), COALESCE(sum(on_hand), 0)::int8 FROM stock",
    )
    .fetch_one(&dbs.inventory)
    .await?;
    summary.units_sold = sqlx::query_scalar(
        "SELECT COALESCE(-sum(on_hand_delta), 0)::int8 FROM stock_changes WHERE kind = 'commit'",
    )
    .fetch_one(&dbs.inventory)
    .await?;
    for (name, db) in dbs.all() {
        let has_outbox: bool = sqlx::query_scalar("SELECT to_regclass('outbox') IS NOT NULL")
            .fetch_one(db)
            .await?;
        if has_outbox {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(db)
                .await?;
            summary.outbox_rows.insert(name, rows);
        }
    }
    let demo: Vec<Uuid> = demo_orders.iter().copied().collect();
    (summary.purchases, summary.demo_purchases) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT count(*) FILTER (WHERE NOT order_id = ANY($1)), \
                count(*) FILTER (WHERE order_id = ANY($1)) \
         FROM purchases",
    )
    .bind(&demo)
    .fetch_one(&dbs.recommendation)
    .await?;
    summary.notifications = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&dbs.notification)
        .await?;
    Ok(summary)
}

fn money(amounts: &BTreeMap<String, i64>) -> String {
    if amounts.is_empty() {
        return "0".to_owned();
    }
    amounts
        .iter()
        .map(|(currency, minor)| format!("{currency} {minor}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

impl Summary {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let orders: usize = self.orders_by_status.values().sum();
        let statuses: Vec<String> = self
            .orders_by_status
            .iter()
            .map(|(status, n)| format!("{status} {n}"))
            .collect();
        let _ = writeln!(out, "  orders         {orders} ({})", statuses.join(", "));
        let _ = writeln!(
            out,
            "  money          Σ confirmed totals {}, Σ net captured {} (minor units, {})",
            money(&self.confirmed_total_minor),
            money(&self.net_captured_minor),
            super::counted(self.payments as u64, "payment")
        );
        if self.failed_after_commit > 0 {
            let _ = writeln!(
                out,
                "                 {} orders failed after their stock was committed (units stay sold)",
                self.failed_after_commit
            );
        }
        let _ = writeln!(
            out,
            "  stock          {} skus, {} units on hand, {} sold",
            self.skus, self.units_on_hand, self.units_sold
        );
        let events: i64 = self.outbox_rows.values().sum();
        let per_database: Vec<String> = self
            .outbox_rows
            .iter()
            .filter(|(_, rows)| **rows > 0)
            .map(|(name, rows)| format!("{name} {rows}"))
            .collect();
        let _ = writeln!(
            out,
            "  events         {events} outbox rows ({})",
            per_database.join(", ")
        );
        let _ = writeln!(
            out,
            "  purchases      {} (and {} of the demo seed)",
            self.purchases, self.demo_purchases
        );
        let _ = writeln!(out, "  notifications  {}", self.notifications);
        out
    }
}
