//! Reservations: stock held for an order, all lines or none, until it is
//! committed, released or expired. Each operation is one transaction that locks
//! the reservation row first and the stock rows second (in SKU order), so
//! concurrent calls for one order serialise and no two transactions deadlock.
//! The rows are read and written through `store::reservations` and
//! `store::ledger`, inside the transaction begun here.

use std::collections::BTreeSet;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::{InventoryError, Shortfall};
use crate::stock::{
    ChangeKind, Reservation, ReservationStatus, ReserveCommand, SERVICE_ACTOR, same_lines,
};
use crate::store::ledger::{self, Cause, Delta};
use crate::store::reservations as rows;

/// How a ReserveStock call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Stock is now held for the order.
    New(Reservation),
    /// The order already had this reservation; nothing changed.
    Replayed(Reservation),
}

#[derive(Clone, Debug)]
pub struct Reservations {
    db: PgPool,
}

impl Reservations {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }

    /// Holds every line's units for the order, or none of them.
    #[tracing::instrument(
        skip(self, command),
        fields(order_id = %command.order_id, lines = command.lines.len())
    )]
    pub async fn reserve(
        &self,
        command: &ReserveCommand,
        actor: &str,
    ) -> Result<Reserved, InventoryError> {
        let mut tx = self.db.begin().await?;
        let result = reserve(&mut tx, command, actor).await;
        finish(tx, result).await
    }

    /// Gives the order's stock back; records a released reservation for an
    /// order that has none, so a late ReserveStock for it fails.
    #[tracing::instrument(skip(self, reason))]
    pub async fn release(
        &self,
        order_id: Uuid,
        reason: &str,
        actor: &str,
    ) -> Result<Reservation, InventoryError> {
        let mut tx = self.db.begin().await?;
        let result = release(&mut tx, order_id, reason, actor).await;
        finish(tx, result).await
    }

    /// Turns the held units into sold ones: on hand and reserved both drop.
    #[tracing::instrument(skip(self))]
    pub async fn commit(&self, order_id: Uuid, actor: &str) -> Result<Reservation, InventoryError> {
        let mut tx = self.db.begin().await?;
        let result = commit(&mut tx, order_id, actor).await;
        finish(tx, result).await
    }

    /// Expires up to `batch` live reservations whose time is up, skipping any
    /// another transaction holds (a commit in flight, another replica's sweep).
    /// Returns how many expired.
    #[tracing::instrument(skip(self))]
    pub async fn expire_overdue(&self, batch: i64) -> Result<usize, InventoryError> {
        let mut tx = self.db.begin().await?;
        let overdue = rows::lock_overdue(&mut tx, batch).await?;
        if overdue.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = overdue.iter().map(|r| r.order_id).collect();
        let mut lines = rows::lines_of(&mut tx, &ids).await?;
        let reservations = overdue
            .into_iter()
            .map(|row| {
                let lines = lines.remove(&row.order_id).unwrap_or_default();
                row.into_reservation(lines)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cause = Cause {
            kind: ChangeKind::Expire,
            reason: "reservation expired",
            actor: SERVICE_ACTOR,
        };
        let expired = close(&mut tx, reservations, ReservationStatus::Expired, cause).await?;
        tx.commit().await?;
        Ok(expired.len())
    }
}

/// Commits what an operation did, or rolls it back. A refusal because the
/// reservation is closed still commits: finding it closed may have been the
/// moment it expired, and that expiry must stick.
async fn finish<T>(
    tx: Transaction<'_, Postgres>,
    result: Result<T, InventoryError>,
) -> Result<T, InventoryError> {
    match &result {
        Ok(_) | Err(InventoryError::ReservationClosed { .. }) => tx.commit().await?,
        Err(_) => tx.rollback().await?,
    }
    result
}

async fn reserve(
    conn: &mut PgConnection,
    command: &ReserveCommand,
    actor: &str,
) -> Result<Reserved, InventoryError> {
    // Claiming the order id first makes a concurrent ReserveStock for the same
    // order wait here until this one commits or rolls back.
    let ttl_micros = i64::try_from(command.ttl.as_micros()).unwrap_or(i64::MAX);
    let claimed = rows::claim(conn, command.order_id, ttl_micros, actor).await?;
    let Some(claimed) = claimed else {
        let existing = locked_reservation(conn, command.order_id)
            .await?
            .ok_or(InventoryError::ReservationNotFound(command.order_id))?;
        let existing = expire_if_overdue(conn, existing).await?;
        return if same_lines(&existing.lines, &command.lines) {
            Ok(Reserved::Replayed(existing))
        } else if existing.status != ReservationStatus::Reserved {
            Err(InventoryError::ReservationClosed {
                order_id: existing.order_id,
                status: existing.status,
            })
        } else {
            Err(InventoryError::ReservationConflict(existing.order_id))
        };
    };

    let skus: Vec<String> = command.lines.iter().map(|l| l.sku.clone()).collect();
    let locked = ledger::lock(conn, &skus).await?;
    let unknown: Vec<String> = skus
        .iter()
        .filter(|sku| !locked.contains_key(*sku))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(InventoryError::UnknownSkus(unknown));
    }
    let short: Vec<Shortfall> = command
        .lines
        .iter()
        .filter_map(|line| {
            let available = locked.get(&line.sku)?.available();
            (available < i64::from(line.quantity)).then(|| Shortfall {
                sku: line.sku.clone(),
                requested: i64::from(line.quantity),
                available,
            })
        })
        .collect();
    if !short.is_empty() {
        return Err(InventoryError::InsufficientStock(short));
    }

    let deltas: Vec<Delta> = command
        .lines
        .iter()
        .map(|line| Delta {
            sku: line.sku.clone(),
            on_hand: 0,
            reserved: i64::from(line.quantity),
            order_id: Some(command.order_id),
        })
        .collect();
    let cause = Cause {
        kind: ChangeKind::Reserve,
        reason: "reserved for the order",
        actor,
    };
    ledger::apply(conn, &locked, &deltas, cause).await?;
    rows::insert_lines(conn, command.order_id, &command.lines).await?;
    Ok(Reserved::New(
        claimed.into_reservation(command.lines.clone())?,
    ))
}

async fn release(
    conn: &mut PgConnection,
    order_id: Uuid,
    reason: &str,
    actor: &str,
) -> Result<Reservation, InventoryError> {
    // An order that never reserved gets a released reservation without lines.
    let marker = rows::claim_released(conn, order_id, actor).await?;
    if let Some(marker) = marker {
        return marker.into_reservation(Vec::new());
    }
    let existing = locked_reservation(conn, order_id)
        .await?
        .ok_or(InventoryError::ReservationNotFound(order_id))?;
    let existing = expire_if_overdue(conn, existing).await?;
    match existing.status {
        ReservationStatus::Released | ReservationStatus::Expired => Ok(existing),
        ReservationStatus::Committed => Err(InventoryError::ReservationClosed {
            order_id,
            status: existing.status,
        }),
        ReservationStatus::Reserved => {
            let reason = if reason.trim().is_empty() {
                "reservation released"
            } else {
                reason
            };
            let cause = Cause {
                kind: ChangeKind::Release,
                reason,
                actor,
            };
            only(close(conn, vec![existing], ReservationStatus::Released, cause).await?)
        }
    }
}

async fn commit(
    conn: &mut PgConnection,
    order_id: Uuid,
    actor: &str,
) -> Result<Reservation, InventoryError> {
    let existing = locked_reservation(conn, order_id)
        .await?
        .ok_or(InventoryError::ReservationNotFound(order_id))?;
    let existing = expire_if_overdue(conn, existing).await?;
    match existing.status {
        ReservationStatus::Committed => Ok(existing),
        ReservationStatus::Released | ReservationStatus::Expired => {
            Err(InventoryError::ReservationClosed {
                order_id,
                status: existing.status,
            })
        }
        ReservationStatus::Reserved => {
            let cause = Cause {
                kind: ChangeKind::Commit,
                reason: "order committed",
                actor,
            };
            only(close(conn, vec![existing], ReservationStatus::Committed, cause).await?)
        }
    }
}

/// A reservation row locked for this transaction, and whether its time is up.
struct Locked {
    reservation: Reservation,
    overdue: bool,
}

async fn locked_reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Locked>, InventoryError> {
    let Some(row) = rows::lock(conn, order_id).await? else {
        return Ok(None);
    };
    let lines = rows::lines_of(conn, &[order_id])
        .await?
        .remove(&order_id)
        .unwrap_or_default();
    let overdue = row.overdue;
    Ok(Some(Locked {
        reservation: row.into_reservation(lines)?,
        overdue,
    }))
}

/// A live reservation whose time is up expires the moment anyone touches it,
/// so an order never commits stock the sweeper was about to give back.
async fn expire_if_overdue(
    conn: &mut PgConnection,
    locked: Locked,
) -> Result<Reservation, InventoryError> {
    if !locked.overdue {
        return Ok(locked.reservation);
    }
    let cause = Cause {
        kind: ChangeKind::Expire,
        reason: "reservation expired",
        actor: SERVICE_ACTOR,
    };
    only(
        close(
            conn,
            vec![locked.reservation],
            ReservationStatus::Expired,
            cause,
        )
        .await?,
    )
}

/// Moves live reservations to a terminal state, giving their units back (or,
/// for a commit, taking them off the books).
async fn close(
    conn: &mut PgConnection,
    mut reservations: Vec<Reservation>,
    to: ReservationStatus,
    cause: Cause<'_>,
) -> Result<Vec<Reservation>, InventoryError> {
    let sold = to == ReservationStatus::Committed;
    let deltas: Vec<Delta> = reservations
        .iter()
        .flat_map(|r| {
            r.lines.iter().map(|line| Delta {
                sku: line.sku.clone(),
                on_hand: if sold { -i64::from(line.quantity) } else { 0 },
                reserved: -i64::from(line.quantity),
                order_id: Some(r.order_id),
            })
        })
        .collect();
    if !deltas.is_empty() {
        let skus: Vec<String> = deltas
            .iter()
            .map(|d| d.sku.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let locked = ledger::lock(conn, &skus).await?;
        ledger::apply(conn, &locked, &deltas, cause).await?;
    }
    let ids: Vec<Uuid> = reservations.iter().map(|r| r.order_id).collect();
    let updated = rows::set_status(conn, &ids, to).await?;
    // The rows are locked by this transaction: every one of them is still live.
    let (Some(updated_at), true) = (updated.first(), updated.len() == ids.len()) else {
        return Err(InventoryError::LostUpdate("reservation".to_owned()));
    };
    for reservation in &mut reservations {
        reservation.status = to;
        reservation.updated_at = *updated_at;
    }
    Ok(reservations)
}

fn only(mut reservations: Vec<Reservation>) -> Result<Reservation, InventoryError> {
    reservations
        .pop()
        .ok_or_else(|| InventoryError::LostUpdate("reservation".to_owned()))
}
