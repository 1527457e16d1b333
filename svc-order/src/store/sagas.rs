//! The sagas in PostgreSQL (`order_sagas`, with the order they drive).
//!
//! A runner claims due sagas with `FOR UPDATE SKIP LOCKED` and a lease; every
//! step's result is recorded by [`Store::record`], which locks the saga row,
//! checks the lease is still this runner's, and applies the transition to the
//! row as it is now (a cancel request may have arrived during the step).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Store, load_order, set_status};
use crate::error::OrderError;
use crate::events;
use crate::order::{Order, OrderStatus};
use crate::saga::{Entered, Phase, SagaState, Step};

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
            events::publish(conn, order_id, &events::order_confirmed(&order, now)).await?;
        }
        OrderStatus::Failed => {
            let event = events::order_failed(&order, &state.failure_code, now);
            events::publish(conn, order_id, &event).await?;
        }
        OrderStatus::Cancelled => {
            let cancelled_by: String =
                sqlx::query_scalar("SELECT cancelled_by FROM order_sagas WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_one(&mut *conn)
                    .await?;
            let event = events::order_cancelled(&order, &cancelled_by, now);
            events::publish(conn, order_id, &event).await?;
        }
        // A refund is always of everything captured: the total.
        OrderStatus::Refunded => {
            let event = events::order_refunded(&order, order.total_minor, now);
            events::publish(conn, order_id, &event).await?;
        }
        OrderStatus::Pending | OrderStatus::StockReserved | OrderStatus::PaymentAuthorized => {}
    }
    Ok(())
}
