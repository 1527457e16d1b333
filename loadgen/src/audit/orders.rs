//! Invariant `orders-terminal`, in svc-order's database alone.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Finding, Invariant};

#[derive(sqlx::FromRow)]
struct Unsettled {
    id: Uuid,
    status: String,
    phase: Option<String>,
    step: Option<String>,
    attempts: Option<i32>,
    last_error: Option<String>,
}

/// Every order is terminal (confirmed, failed, cancelled or refunded) and its
/// saga has nothing left to do (phase 'done').
///
/// Guaranteed by svc-order: `store.rs` inserts the order and its saga in one
/// transaction; the runner (`runner.rs`) drives every saga with a phase other
/// than 'done' until it is (forward steps give up at the saga's deadline and
/// compensate, capture and the compensations retry until they get through),
/// and a saga reaches 'done' only in a terminal status (`saga.rs`).
pub async fn orders_terminal(db: &PgPool) -> anyhow::Result<Vec<Finding>> {
    let rows: Vec<Unsettled> = sqlx::query_as(
        "SELECT o.id, o.status, s.phase, s.step, s.attempts, s.last_error \
         FROM orders o LEFT JOIN order_sagas s ON s.order_id = o.id \
         WHERE o.status NOT IN ('confirmed', 'failed', 'cancelled', 'refunded') \
            OR s.phase IS DISTINCT FROM 'done' \
         ORDER BY o.id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let Unsettled {
                id,
                status,
                phase,
                step,
                attempts,
                last_error,
            } = row;
            let saga = match (phase, step) {
                (Some(phase), Some(step)) => {
                    let mut saga = format!("saga {phase} at {step}");
                    if let Some(attempts) = attempts.filter(|&a| a > 0) {
                        saga.push_str(&format!(" after {attempts} tries"));
                    }
                    if let Some(error) = last_error.filter(|e| !e.is_empty()) {
                        saga.push_str(&format!(", last error: {error}"));
                    }
                    saga
                }
                _ => "no saga".to_owned(),
            };
            Finding::new(
                Invariant::OrdersTerminal,
                format!("order {id}"),
                "a terminal status and saga phase done",
                format!("status {status}, {saga}"),
            )
        })
        .collect())
}
