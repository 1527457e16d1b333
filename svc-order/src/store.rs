//! Orders and sagas in PostgreSQL.
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
//! A runner claims due sagas with `FOR UPDATE SKIP LOCKED` and a lease; every
//! step's result is recorded by [`Store::record`], which locks the saga row,
//! checks the lease is still this runner's, and applies the transition to the
//! row as it is now (a cancel request may have arrived during the step).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::events;
use crate::order::{Address, Order, OrderError, OrderLine, OrderStatus, StatusChange};
use crate::saga::{Entered, Phase, SagaState, Step};

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

/// A saga as its runner sees it: state, the order, and the card token.
#[derive(Clone, Debug)]
pub struct SagaJob {
    pub state: SagaState,
    pub order: Order,
    pub card_token: String,
    pub deadline: DateTime<Utc>,
}

/// What CancelOrder found.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelRequest {
    /// The saga will stop, compensate or refund.
    Accepted,
    /// Already CANCELLED or REFUNDED.
    AlreadyDone,
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

#[derive(sqlx::FromRow)]
struct SagaRow {
    order_id: Uuid,
    phase: String,
    step: String,
    outcome: Option<String>,
    outcome_reason: String,
    failure_code: String,
    cancel_requested: bool,
    cancel_reason: String,
    authorize_started: bool,
    stock_committed: bool,
    deadline: DateTime<Utc>,
    payment_id: Option<Uuid>,
    order_status: String,
}

const SAGA_COLUMNS: &str = "s.order_id, s.phase, s.step, s.outcome, s.outcome_reason, \
     s.failure_code, s.cancel_requested, s.cancel_reason, s.authorize_started, s.stock_committed, \
     s.deadline, o.payment_id, o.status AS order_status";

impl SagaRow {
    fn state(&self) -> Result<SagaState, OrderError> {
        let corrupt =
            |what: &str| OrderError::Corrupt(format!("saga of {}: {what}", self.order_id));
        Ok(SagaState {
            order_id: self.order_id,
            phase: Phase::parse(&self.phase).ok_or_else(|| corrupt("phase"))?,
            step: Step::parse(&self.step).ok_or_else(|| corrupt("step"))?,
            outcome: match &self.outcome {
                Some(raw) => Some(OrderStatus::parse(raw).ok_or_else(|| corrupt("outcome"))?),
                None => None,
            },
            outcome_reason: self.outcome_reason.clone(),
            failure_code: self.failure_code.clone(),
            cancel_requested: self.cancel_requested,
            cancel_reason: self.cancel_reason.clone(),
            authorize_started: self.authorize_started,
            stock_committed: self.stock_committed,
            payment_id: self.payment_id,
        })
    }
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
        publish(&mut tx, new.id, &events::order_created(&created)).await?;
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

    /// Claims up to `limit` due sagas nobody holds, for `lease`.
    pub async fn claim_due(
        &self,
        owner: Uuid,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Uuid>, OrderError> {
        Ok(sqlx::query_scalar(
            "UPDATE order_sagas SET lease_owner = $1, \
             lease_until = now() + make_interval(secs => $2) \
             WHERE order_id IN (SELECT order_id FROM order_sagas \
                 WHERE phase <> 'done' AND next_attempt_at <= now() \
                 AND (lease_owner IS NULL OR lease_until < now()) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING order_id",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    /// The saga `owner` holds, with its order; `None` once the lease is lost.
    pub async fn job(&self, order_id: Uuid, owner: Uuid) -> Result<Option<SagaJob>, OrderError> {
        let mut conn = self.db.acquire().await?;
        let row: Option<SagaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM order_sagas s JOIN orders o ON o.id = s.order_id \
             WHERE s.order_id = $1 AND s.lease_owner = $2"
        )))
        .bind(order_id)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let order = load_order(&mut conn, order_id)
            .await?
            .ok_or(OrderError::NotFound(order_id))?;
        let card_token: String = sqlx::query_scalar("SELECT card_token FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
        Ok(Some(SagaJob {
            state: row.state()?,
            order,
            card_token,
            deadline: row.deadline,
        }))
    }

    /// Applies `transition` to the saga as it is now (locked), writes the
    /// status it enters with its history row and announcement, and renews
    /// the lease; all in one transaction. `false` when the lease was lost.
    pub async fn record(
        &self,
        owner: Uuid,
        order_id: Uuid,
        lease: Duration,
        transition: impl FnOnce(&mut SagaState) -> Option<Entered>,
    ) -> Result<bool, OrderError> {
        let mut tx = self.db.begin().await?;
        let Some(row) = locked_saga(&mut tx, order_id, Some(owner)).await? else {
            return Ok(false);
        };
        let mut state = row.state()?;
        let before = state.clone();
        let entered = transition(&mut state);
        if state.payment_id != before.payment_id {
            sqlx::query("UPDATE orders SET payment_id = $2, updated_at = now() WHERE id = $1")
                .bind(order_id)
                .bind(state.payment_id)
                .execute(&mut *tx)
                .await?;
        }
        let step_changed = (state.phase, state.step) != (before.phase, before.step);
        write_saga(&mut tx, &state, step_changed).await?;
        sqlx::query(
            "UPDATE order_sagas SET \
             lease_until = CASE WHEN phase = 'done' THEN NULL \
                 ELSE now() + make_interval(secs => $2) END, \
             lease_owner = CASE WHEN phase = 'done' THEN NULL ELSE lease_owner END \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(lease.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        if let Some(entered) = &entered {
            set_status(&mut tx, order_id, entered).await?;
            publish_status(&mut tx, order_id, &state, entered.status).await?;
        }
        tx.commit().await?;
        if let Some(entered) = entered {
            crate::metrics::order_entered(entered.status);
        }
        Ok(true)
    }

    /// Schedules another try of the current step after `wait` (not past the
    /// deadline for a forward step that has one) and lets go of the saga.
    pub async fn retry_later(
        &self,
        owner: Uuid,
        order_id: Uuid,
        wait: Duration,
        error: &str,
    ) -> Result<(), OrderError> {
        sqlx::query(
            "UPDATE order_sagas SET attempts = attempts + 1, last_error = $3, \
             next_attempt_at = CASE WHEN phase = 'forward' \
                 AND step IN ('reserve_stock', 'authorize_payment') \
                 THEN least(now() + make_interval(secs => $4), deadline) \
                 ELSE now() + make_interval(secs => $4) END, \
             lease_owner = NULL, lease_until = NULL, updated_at = now() \
             WHERE order_id = $1 AND lease_owner = $2",
        )
        .bind(order_id)
        .bind(owner)
        .bind(error)
        .bind(wait.as_secs_f64())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Tries of the current step so far.
    pub async fn attempts(&self, order_id: Uuid) -> Result<i32, OrderError> {
        Ok(
            sqlx::query_scalar("SELECT attempts FROM order_sagas WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&self.db)
                .await?,
        )
    }

    /// Lets go of a saga without changing it (the runner is stopping).
    pub async fn release(&self, owner: Uuid, order_id: Uuid) -> Result<(), OrderError> {
        sqlx::query(
            "UPDATE order_sagas SET lease_owner = NULL, lease_until = NULL \
             WHERE order_id = $1 AND lease_owner = $2",
        )
        .bind(order_id)
        .bind(owner)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Records a cancellation: the runner stops the saga (or refunds a
    /// CONFIRMED order) the next time it looks, which is now.
    pub async fn request_cancel(
        &self,
        order_id: Uuid,
        reason: &str,
        cancelled_by: &str,
    ) -> Result<CancelRequest, OrderError> {
        let mut tx = self.db.begin().await?;
        let row = locked_saga(&mut tx, order_id, None)
            .await?
            .ok_or(OrderError::NotFound(order_id))?;
        let status = OrderStatus::parse(&row.order_status)
            .ok_or_else(|| OrderError::Corrupt(format!("order status {:?}", row.order_status)))?;
        match status {
            OrderStatus::Failed => return Err(OrderError::CancelFailed),
            OrderStatus::Cancelled | OrderStatus::Refunded => {
                tx.commit().await?;
                return Ok(CancelRequest::AlreadyDone);
            }
            _ => {}
        }
        let mut state = row.state()?;
        if state.cancel_requested || state.phase == Phase::Compensating {
            tx.commit().await?;
            return Ok(CancelRequest::Accepted);
        }
        state.cancel_requested = true;
        state.cancel_reason = reason.to_owned();
        if status == OrderStatus::Confirmed && state.phase == Phase::Done {
            state.compensate(OrderStatus::Refunded, "", reason);
        }
        sqlx::query(
            "UPDATE order_sagas SET cancel_requested = true, cancel_reason = $2, \
             cancelled_by = $3, next_attempt_at = now() WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(reason)
        .bind(cancelled_by)
        .execute(&mut *tx)
        .await?;
        write_saga(&mut tx, &state, true).await?;
        tx.commit().await?;
        Ok(CancelRequest::Accepted)
    }
}

async fn locked_saga(
    conn: &mut PgConnection,
    order_id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<SagaRow>, OrderError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SAGA_COLUMNS} FROM order_sagas s JOIN orders o ON o.id = s.order_id \
         WHERE s.order_id = $1 AND ($2::uuid IS NULL OR s.lease_owner = $2) FOR UPDATE OF s"
    )))
    .bind(order_id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Writes the state; a new step starts with no tries and is due at once.
async fn write_saga(
    conn: &mut PgConnection,
    state: &SagaState,
    step_changed: bool,
) -> Result<(), OrderError> {
    sqlx::query(
        "UPDATE order_sagas SET phase = $2, step = $3, outcome = $4, outcome_reason = $5, \
         failure_code = $6, authorize_started = $7, stock_committed = $8, \
         attempts = CASE WHEN $9 THEN 0 ELSE attempts END, \
         next_attempt_at = CASE WHEN $9 THEN now() ELSE next_attempt_at END, \
         last_error = CASE WHEN $9 THEN '' ELSE last_error END, updated_at = now() \
         WHERE order_id = $1",
    )
    .bind(state.order_id)
    .bind(state.phase.as_str())
    .bind(state.step.as_str())
    .bind(state.outcome.map(OrderStatus::as_str))
    .bind(&state.outcome_reason)
    .bind(&state.failure_code)
    .bind(state.authorize_started)
    .bind(state.stock_committed)
    .bind(step_changed)
    .execute(&mut *conn)
    .await?;
    Ok(())
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

/// Writes an order event into the outbox, in the caller's transaction.
async fn publish<M: prost::Name>(
    conn: &mut PgConnection,
    order_id: Uuid,
    payload: &M,
) -> Result<(), OrderError> {
    shopmesh_events::publish(
        conn,
        events::TOPIC,
        events::AGGREGATE_TYPE,
        order_id.to_string(),
        payload,
    )
    .await?;
    Ok(())
}

/// The event of an order entering `status` (none for the in-between ones),
/// built from the order as this transaction left it.
async fn publish_status(
    conn: &mut PgConnection,
    order_id: Uuid,
    state: &SagaState,
    status: OrderStatus,
) -> Result<(), OrderError> {
    if matches!(
        status,
        OrderStatus::Pending | OrderStatus::StockReserved | OrderStatus::PaymentAuthorized
    ) {
        return Ok(());
    }
    let order = load_order(conn, order_id)
        .await?
        .ok_or(OrderError::NotFound(order_id))?;
    let now = Utc::now();
    match status {
        OrderStatus::Confirmed => {
            publish(conn, order_id, &events::order_confirmed(&order, now)).await
        }
        OrderStatus::Failed => {
            let event = events::order_failed(&order, &state.failure_code, now);
            publish(conn, order_id, &event).await
        }
        OrderStatus::Cancelled => {
            let cancelled_by: String =
                sqlx::query_scalar("SELECT cancelled_by FROM order_sagas WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_one(&mut *conn)
                    .await?;
            let event = events::order_cancelled(&order, &cancelled_by, now);
            publish(conn, order_id, &event).await
        }
        // A refund is always of everything captured: the total.
        OrderStatus::Refunded => {
            let event = events::order_refunded(&order, order.total_minor, now);
            publish(conn, order_id, &event).await
        }
        OrderStatus::Pending | OrderStatus::StockReserved | OrderStatus::PaymentAuthorized => {
            Ok(())
        }
    }
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
