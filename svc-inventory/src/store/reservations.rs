//! The reservation rows and their lines. Every function runs in the caller's
//! transaction (`crate::reservations` decides what to do with them), so a
//! reservation row locked here stays locked until that transaction ends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::InventoryError;
use crate::stock::{Line, Reservation, ReservationStatus};

/// A reservation row as read, and whether its time is up.
#[derive(sqlx::FromRow)]
pub struct ReservationRow {
    pub order_id: Uuid,
    status: String,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// A live reservation whose expiry has passed (false for rows just written).
    pub overdue: bool,
}

impl ReservationRow {
    pub fn into_reservation(self, lines: Vec<Line>) -> Result<Reservation, InventoryError> {
        let status = ReservationStatus::parse(&self.status).ok_or_else(|| {
            InventoryError::Database(sqlx::Error::Decode(
                format!("unknown reservation status {:?}", self.status).into(),
            ))
        })?;
        Ok(Reservation {
            order_id: self.order_id,
            status,
            lines,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Claims `order_id` with a live reservation expiring `ttl_micros` from now;
/// `None` when the order has a reservation already (a concurrent claim waits
/// here until the one that got in first commits or rolls back).
pub async fn claim(
    conn: &mut PgConnection,
    order_id: Uuid,
    ttl_micros: i64,
    actor: &str,
) -> sqlx::Result<Option<ReservationRow>> {
    sqlx::query_as(
        "INSERT INTO reservations (order_id, status, expires_at, actor) \
         VALUES ($1, 'reserved', now() + $2 * interval '1 microsecond', $3) \
         ON CONFLICT (order_id) DO NOTHING \
         RETURNING order_id, status, expires_at, created_at, updated_at, false AS overdue",
    )
    .bind(order_id)
    .bind(ttl_micros)
    .bind(actor)
    .fetch_optional(&mut *conn)
    .await
}

/// Records a released reservation without lines for an order that has none;
/// `None` when it has one.
pub async fn claim_released(
    conn: &mut PgConnection,
    order_id: Uuid,
    actor: &str,
) -> sqlx::Result<Option<ReservationRow>> {
    sqlx::query_as(
        "INSERT INTO reservations (order_id, status, expires_at, actor) \
         VALUES ($1, 'released', now(), $2) \
         ON CONFLICT (order_id) DO NOTHING \
         RETURNING order_id, status, expires_at, created_at, updated_at, false AS overdue",
    )
    .bind(order_id)
    .bind(actor)
    .fetch_optional(&mut *conn)
    .await
}

/// The order's reservation row, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, order_id: Uuid) -> sqlx::Result<Option<ReservationRow>> {
    sqlx::query_as(
        "SELECT order_id, status, expires_at, created_at, updated_at, \
                (status = 'reserved' AND expires_at <= now()) AS overdue \
         FROM reservations WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
}

/// Up to `batch` live reservations whose time is up, oldest expiry first,
/// locked; rows another transaction holds are skipped.
pub async fn lock_overdue(
    conn: &mut PgConnection,
    batch: i64,
) -> sqlx::Result<Vec<ReservationRow>> {
    sqlx::query_as(
        "SELECT order_id, status, expires_at, created_at, updated_at, true AS overdue \
         FROM reservations WHERE status = 'reserved' AND expires_at <= now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *conn)
    .await
}

/// Writes the order's lines, keeping the order they were asked in.
pub async fn insert_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &[Line],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reservation_lines (order_id, sku, quantity, position) \
         SELECT $1, sku, quantity, position \
         FROM UNNEST($2::text[], $3::int4[]) WITH ORDINALITY AS l(sku, quantity, position)",
    )
    .bind(order_id)
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the live ones of `order_ids` to `to`; the new `updated_at` of each
/// row it changed.
pub async fn set_status(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
    to: ReservationStatus,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar(
        "UPDATE reservations SET status = $2, updated_at = now() \
         WHERE order_id = ANY($1) AND status = 'reserved' RETURNING updated_at",
    )
    .bind(order_ids)
    .bind(to.as_str())
    .fetch_all(&mut *conn)
    .await
}

/// The lines of `orders`, each in the order it was asked for.
pub async fn lines_of(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Vec<Line>>> {
    let rows: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT order_id, sku, quantity FROM reservation_lines \
         WHERE order_id = ANY($1) ORDER BY order_id, position",
    )
    .bind(orders)
    .fetch_all(conn)
    .await?;
    let mut lines: HashMap<Uuid, Vec<Line>> = HashMap::new();
    for (order_id, sku, quantity) in rows {
        lines
            .entry(order_id)
            .or_default()
            .push(Line { sku, quantity });
    }
    Ok(lines)
}
