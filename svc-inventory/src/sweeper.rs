//! The reservation sweeper: a background task that expires live reservations
//! whose time is up, giving their stock back. Replicas sweep side by side:
//! `FOR UPDATE SKIP LOCKED` hands each overdue reservation to one of them.

use std::time::Duration;

use crate::error::InventoryError;
use crate::reservations::Reservations;

/// Reservations expired per transaction.
pub const BATCH: i64 = 500;

/// Expires every overdue reservation, batch by batch; returns how many.
pub async fn sweep(reservations: &Reservations) -> Result<usize, InventoryError> {
    let mut total = 0;
    loop {
        let expired = reservations.expire_overdue(BATCH).await?;
        total += expired;
        if expired < BATCH as usize {
            return Ok(total);
        }
    }
}

/// Sweeps every `every` until the service's pool closes.
pub fn spawn(reservations: Reservations, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if reservations.is_closed() {
                return;
            }
            match sweep(&reservations).await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired overdue reservations"),
                Err(InventoryError::Database(sqlx::Error::PoolClosed)) => return,
                Err(err) => tracing::warn!(error = format!("{err:#}"), "reservation sweep failed"),
            }
        }
    })
}
