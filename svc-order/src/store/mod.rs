//! Every SQL statement of svc-order: orders here, sagas in [`sagas`], the
//! payment ledger in [`ledger`].
//!
//! Tables (migrations/…_orders_and_sagas.sql):
//! - `orders`: one row per order, unique per `(user_id, idempotency_key)`
//!   (constraint `orders_user_idempotency_key`, which settles concurrent
//!   duplicates), with the request fingerprint, status and reason, totals in
//!   minor units, the shipping address as JSON, and the card token and
//!   summary (never a card number).
//! - `order_lines`: the lines as priced from the catalog at creation.
//! - `order_status_history`: one row per status entered, written in the same
//!   transaction as the status change, which also `pg_notify`s
//!   `order_status` with the order id (WatchOrder, waiting RPCs).
//! - `order_sagas`: the saga of each order: phase, next step, the outcome
//!   compensation ends in, the cancel request, progress flags, tries of the
//!   current step, when to try next, the lease of the runner holding it, and
//!   the deadline of the forward steps.
//!
//! Tables of the payment ledger (migrations/…_payment_ledger.sql):
//! `order_payment_ledger` and `order_payment_mismatches` ([`ledger`]).

pub mod ledger;
mod sagas;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::OrderError;
use crate::events;
use crate::order::{Address, Order, OrderLine, OrderStatus, StatusChange};
use crate::saga::Entered;

pub use sagas::{CancelRequest, SagaJob};

/// The channel every status change is announced on (payload: the order id).
pub const CHANNEL: &str = "order_status";

#[derive(Clone)]
pub struct Store {
    db: PgPool,
}

/// A priced order about to be stored.
pub struct NewOrder<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: &'a str,
    pub fingerprint: &'a str,
    pub currency_code: &'a str,
    pub lines: &'a [OrderLine],
    pub address: &'a Address,
    pub card_token: &'a str,
    pub card_brand: &'a str,
    pub card_last4: &'a str,
    pub saga_timeout: Duration,
}

/// How storing a new order ended.
pub enum Inserted {
    New(Order),
    /// Another call with the same key stored its order first.
    Existing(Order),
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    idempotency_key: String,
    request_fingerprint: String,
    status: String,
    status_reason: String,
    currency_code: String,
    subtotal_minor: i64,
    total_minor: i64,
    shipping_address: Json<Address>,
    card_brand: String,
    card_last4: String,
    payment_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str = "id, user_id, idempotency_key, request_fingerprint, status, \
     status_reason, currency_code, subtotal_minor, total_minor, shipping_address, card_brand, \
     card_last4, payment_id, created_at, updated_at";

impl OrderRow {
    fn into_order(self, lines: Vec<OrderLine>) -> Result<Order, OrderError> {
        let status = OrderStatus::parse(&self.status)
            .ok_or_else(|| OrderError::Corrupt(format!("order status {:?}", self.status)))?;
        Ok(Order {
            id: self.id,
            user_id: self.user_id,
            idempotency_key: self.idempotency_key,
            fingerprint: self.request_fingerprint,
            status,
            status_reason: self.status_reason,
            currency_code: self.currency_code,
            subtotal_minor: self.subtotal_minor,
            total_minor: self.total_minor,
            address: self.shipping_address.0,
            card_brand: self.card_brand,
            card_last4: self.card_last4,
            payment_id: self.payment_id,
            lines,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct LineRow {
    order_id: Uuid,
    product_id: Uuid,
    sku: String,
    name: String,
    quantity: i32,
    unit_price_minor: i64,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }

    /// The order a user placed under `key`, if any.
    pub async fn by_key(&self, user_id: Uuid, key: &str) -> Result<Option<Order>, OrderError> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2")
                .bind(user_id)
                .bind(key)
                .fetch_optional(&self.db)
                .await?;
        match id {
            Some(id) => self.order(id).await,
            None => Ok(None),
        }
    }

    /// Stores the order PENDING, its lines, its first history row and its
    /// saga in one transaction. A concurrent order under the same key makes
    /// the insert wait for it and then do nothing: that order is returned.
    #[tracing::instrument(skip_all, fields(order_id = %new.id, user_id = %new.user_id))]
    pub async fn insert(&self, new: &NewOrder<'_>) -> Result<Inserted, OrderError> {
        let subtotal: i64 = new.lines.iter().map(OrderLine::line_total_minor).sum();
        let mut tx = self.db.begin().await?;
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO orders (id, user_id, idempotency_key, request_fingerprint, status, \
             currency_code, subtotal_minor, total_minor, shipping_address, card_token, card_brand, \
             card_last4) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6, $7, $8, $9, $10) \
             ON CONFLICT ON CONSTRAINT orders_user_idempotency_key DO NOTHING RETURNING id",
        )
        .bind(new.id)
        .bind(new.user_id)
        .bind(new.idempotency_key)
        .bind(new.fingerprint)
        .bind(new.currency_code)
        .bind(subtotal)
        .bind(Json(new.address))
        .bind(new.card_token)
        .bind(new.card_brand)
        .bind(new.card_last4)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            tx.rollback().await?;
            return self
                .by_key(new.user_id, new.idempotency_key)
                .await?
                .map(Inserted::Existing)
                .ok_or_else(|| OrderError::Corrupt("the order of a taken key vanished".into()));
        }
        for (position, line) in new.lines.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_lines (order_id, position, product_id, sku, name, quantity, \
                 unit_price_minor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new.id)
            .bind(position as i32)
            .bind(line.product_id)
            .bind(&line.sku)
            .bind(&line.name)
            .bind(line.quantity)
            .bind(line.unit_price_minor)
            .execute(&mut *tx)
            .await?;
        }
        let timeout_micros = i64::try_from(new.saga_timeout.as_micros()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO order_sagas (order_id, phase, step, deadline) \
             VALUES ($1, 'forward', 'reserve_stock', now() + make_interval(secs => $2::float8 / 1e6))",
        )
        .bind(new.id)
        .bind(timeout_micros)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, new.id, OrderStatus::Pending, "order placed").await?;
        let created = load_order(&mut tx, new.id)
            .await?
            .ok_or(OrderError::NotFound(new.id))?;
        events::publish(&mut tx, new.id, &events::order_created(&created)).await?;
        tx.commit().await?;
        crate::metrics::order_entered(OrderStatus::Pending);
        let order = self
            .order(new.id)
            .await?
            .ok_or(OrderError::NotFound(new.id))?;
        Ok(Inserted::New(order))
    }

    pub async fn order(&self, id: Uuid) -> Result<Option<Order>, OrderError> {
        let mut conn = self.db.acquire().await?;
        load_order(&mut conn, id).await
    }

    /// A user's orders newest first, optionally only some statuses, after the
    /// cursor (an order id: ids are UUIDv7, so id order is creation order).
    pub async fn orders_of(
        &self,
        user_id: Uuid,
        statuses: &[OrderStatus],
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Order>, OrderError> {
        let statuses: Option<Vec<&str>> =
            (!statuses.is_empty()).then(|| statuses.iter().map(|s| s.as_str()).collect());
        let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 \
             AND ($2::text[] IS NULL OR status = ANY($2)) AND ($3::uuid IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        )))
        .bind(user_id)
        .bind(statuses)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut conn = self.db.acquire().await?;
        let mut lines = lines_of(&mut conn, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let order_lines = lines.remove(&row.id).unwrap_or_default();
                row.into_order(order_lines)
            })
            .collect()
    }

    /// Status changes of an order, oldest first, after `after` (a seq).
    pub async fn history(
        &self,
        order_id: Uuid,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StatusChange>, OrderError> {
        Ok(sqlx::query_as(
            "SELECT seq, status, reason, changed_at FROM order_status_history \
             WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(order_id)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }
}

/// Moves the order to a status: the row, its history, the announcement.
async fn set_status(
    conn: &mut PgConnection,
    order_id: Uuid,
    entered: &Entered,
) -> Result<(), OrderError> {
    sqlx::query(
        "UPDATE orders SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
    )
    .bind(order_id)
    .bind(entered.status.as_str())
    .bind(&entered.reason)
    .execute(&mut *conn)
    .await?;
    announce(conn, order_id, entered.status, &entered.reason).await?;
    Ok(())
}

/// The history row of a status entered and its NOTIFY (delivered on commit).
async fn announce(
    conn: &mut PgConnection,
    order_id: Uuid,
    status: OrderStatus,
    reason: &str,
) -> Result<(), OrderError> {
    sqlx::query("INSERT INTO order_status_history (order_id, status, reason) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(status.as_str())
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(order_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn load_order(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, OrderError> {
    let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let lines = lines_of(conn, &[id]).await?.remove(&id).unwrap_or_default();
    row.into_order(lines).map(Some)
}

async fn lines_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<OrderLine>>, OrderError> {
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT order_id, product_id, sku, name, quantity, unit_price_minor FROM order_lines \
         WHERE order_id = ANY($1) ORDER BY order_id, position",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut lines: HashMap<Uuid, Vec<OrderLine>> = HashMap::new();
    for row in rows {
        lines.entry(row.order_id).or_default().push(OrderLine {
            product_id: row.product_id,
            sku: row.sku,
            name: row.name,
            quantity: row.quantity,
            unit_price_minor: row.unit_price_minor,
        });
    }
    Ok(lines)
}
