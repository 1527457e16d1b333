//! What the cross-database checks compare against, read once per check:
//! svc-order's orders (status, saga, lines) and svc-payment's payments.

use std::collections::{BTreeMap, HashMap};

use anyhow::anyhow;
use sqlx::PgPool;
use uuid::Uuid;

/// An order's status (svc-order `order.rs`, the `orders.status` CHECK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pending,
    StockReserved,
    PaymentAuthorized,
    Confirmed,
    Cancelled,
    Failed,
    Refunded,
}

impl Status {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::StockReserved,
        Self::PaymentAuthorized,
        Self::Confirmed,
        Self::Cancelled,
        Self::Failed,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::StockReserved => "stock_reserved",
            Self::PaymentAuthorized => "payment_authorized",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Cancelled | Self::Failed | Self::Refunded
        )
    }

    /// OrderConfirmed was published: a refunded order was confirmed first
    /// (svc-order `saga.rs`: a refund only follows a capture).
    pub fn was_confirmed(self) -> bool {
        matches!(self, Self::Confirmed | Self::Refunded)
    }
}

#[derive(Clone, Debug)]
pub struct Line {
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i64,
}

#[derive(Clone, Debug)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: Status,
    pub currency: String,
    pub total_minor: i64,
    /// `order_sagas.stock_committed`: the saga's commit_stock step succeeded.
    pub stock_committed: bool,
    pub lines: Vec<Line>,
}

impl Order {
    /// Whether the order's units left the shelves: its saga's commit_stock
    /// succeeded. Confirmed and refunded orders did (a refund gives the
    /// money back, not the stock: svc-order's refund path makes no inventory
    /// call). So did an order that FAILED after the commit: past that point a
    /// refused capture voids the payment and "the committed stock stays
    /// sold" (svc-order `saga.rs`).
    pub fn sold_stock(&self) -> bool {
        self.status.was_confirmed() || self.stock_committed
    }

    /// Units per SKU (svc-order refuses a product twice in one order, but
    /// summing costs nothing).
    pub fn units_by_sku(&self) -> BTreeMap<&str, i64> {
        let mut units = BTreeMap::new();
        for line in &self.lines {
            *units.entry(line.sku.as_str()).or_default() += line.quantity;
        }
        units
    }

    pub fn units_by_product(&self) -> BTreeMap<Uuid, i64> {
        let mut units = BTreeMap::new();
        for line in &self.lines {
            *units.entry(line.product_id).or_default() += line.quantity;
        }
        units
    }

    /// "order <id> (<status>)", how findings name it.
    pub fn subject(&self) -> String {
        format!("order {} ({})", self.id, self.status.as_str())
    }
}

pub type Orders = HashMap<Uuid, Order>;

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: String,
    currency_code: String,
    total_minor: i64,
    stock_committed: Option<bool>,
}

/// Every order with its saga's stock flag and its lines, from one snapshot.
pub async fn orders(db: &PgPool) -> anyhow::Result<Orders> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<OrderRow> = sqlx::query_as(
        "SELECT o.id, o.user_id, o.status, o.currency_code, o.total_minor, s.stock_committed \
         FROM orders o LEFT JOIN order_sagas s ON s.order_id = o.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut orders = Orders::with_capacity(rows.len());
    for row in rows {
        let status = Status::parse(&row.status)
            .ok_or_else(|| anyhow!("order {} has an unknown status {:?}", row.id, row.status))?;
        orders.insert(
            row.id,
            Order {
                id: row.id,
                user_id: row.user_id,
                status,
                currency: row.currency_code,
                total_minor: row.total_minor,
                stock_committed: row.stock_committed.unwrap_or(false),
                lines: Vec::new(),
            },
        );
    }
    let lines: Vec<(Uuid, Uuid, String, i32)> = sqlx::query_as(
        "SELECT order_id, product_id, sku, quantity FROM order_lines ORDER BY order_id, position",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (order_id, product_id, sku, quantity) in lines {
        // A line's order is in the same snapshot (foreign key).
        if let Some(order) = orders.get_mut(&order_id) {
            order.lines.push(Line {
                product_id,
                sku,
                quantity: i64::from(quantity),
            });
        }
    }
    Ok(orders)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub status: String,
    pub currency_code: String,
    pub amount_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

impl Payment {
    /// Money kept: captured less refunded.
    pub fn net_minor(&self) -> i64 {
        self.captured_minor - self.refunded_minor
    }

    /// The payment was authorized at some point (svc-payment `payments.rs`:
    /// capture, void and refund all start from AUTHORIZED).
    pub fn was_authorized(&self) -> bool {
        matches!(
            self.status.as_str(),
            "authorized" | "captured" | "voided" | "partially_refunded" | "refunded"
        )
    }

    /// Still waiting for the provider, or authorized and neither captured
    /// nor voided: money on hold that nobody will release.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "authorized")
    }
}

/// Every payment.
pub async fn payments(db: &PgPool) -> anyhow::Result<Vec<Payment>> {
    Ok(sqlx::query_as(
        "SELECT id, order_id, status, currency_code, amount_minor, captured_minor, refunded_minor \
         FROM payments ORDER BY id",
    )
    .fetch_all(db)
    .await?)
}
