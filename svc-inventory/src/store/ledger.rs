//! The stock ledger: the one way on hand and reserved change. Rows are locked in
//! SKU order, changed by one guarded UPDATE, and every change is written to the
//! audit log in the same transaction (whose commit also announces the new
//! levels, see the `stock_announce` trigger).

use std::collections::BTreeMap;

use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use crate::error::InventoryError;
use crate::stock::{ChangeKind, StockLevel};

/// Who changed the stock and why, for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    pub kind: ChangeKind,
    pub reason: &'a str,
    /// The admin's user id, or the calling service's name.
    pub actor: &'a str,
}

/// One change of one SKU's levels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// The order, for reservation changes.
    pub order_id: Option<Uuid>,
}

/// One audit row, levels after the change included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub sku: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub on_hand_after: i64,
    pub reserved_after: i64,
    pub order_id: Option<Uuid>,
}

/// Locks the stock rows of `skus` until the transaction ends, in SKU order:
/// every transaction that locks several rows takes them in the same order, so
/// two of them can never wait for each other in a cycle (a deadlock).
/// SKUs without a row are absent from the result.
pub async fn lock(
    conn: &mut PgConnection,
    skus: &[String],
) -> sqlx::Result<BTreeMap<String, StockLevel>> {
    let rows: Vec<StockLevel> = sqlx::query_as(
        "SELECT sku, on_hand, reserved, version, updated_at FROM stock \
         WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.sku.clone(), row)).collect())
}

/// The audit rows for `deltas` applied in turn to the `locked` levels.
/// The error names a SKU that is not locked.
pub fn entries(
    locked: &BTreeMap<String, StockLevel>,
    deltas: &[Delta],
) -> Result<Vec<Entry>, String> {
    let mut running: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut entries = Vec::with_capacity(deltas.len());
    for delta in deltas {
        let level = locked.get(&delta.sku).ok_or_else(|| delta.sku.clone())?;
        let after = running
            .entry(delta.sku.as_str())
            .or_insert((level.on_hand, level.reserved));
        after.0 += delta.on_hand;
        after.1 += delta.reserved;
        entries.push(Entry {
            id: Uuid::now_v7(),
            sku: delta.sku.clone(),
            on_hand_delta: delta.on_hand,
            reserved_delta: delta.reserved,
            on_hand_after: after.0,
            reserved_after: after.1,
            order_id: delta.order_id,
        });
    }
    Ok(entries)
}

/// Applies `deltas` to rows this transaction has `lock`ed and records them.
///
/// The caller has checked its own rule (enough available, not below reserved);
/// the UPDATE guards the invariant again (`reserved >= 0`, `on_hand >= reserved`)
/// and the table's CHECK constraints guard it a third time.
/// Returns the new levels by SKU and the audit row ids, in `deltas` order.
pub async fn apply(
    conn: &mut PgConnection,
    locked: &BTreeMap<String, StockLevel>,
    deltas: &[Delta],
    cause: Cause<'_>,
) -> Result<Applied, InventoryError> {
    let entries = entries(locked, deltas).map_err(InventoryError::LostUpdate)?;
    // One row per SKU with the sum of its deltas.
    let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for delta in deltas {
        let total = totals.entry(delta.sku.as_str()).or_default();
        total.0 += delta.on_hand;
        total.1 += delta.reserved;
    }
    // The audit rows go in with the UPDATE, one round trip while the rows are
    // locked. Should the guard hold a row back, the caller gets `LostUpdate` and
    // rolls the whole transaction back, audit rows included.
    //
    // `updated_at` is the time of the change under the row lock, never earlier
    // than the last one: per SKU it grows in commit order, so a consumer of
    // WatchStock may keep the level with the newest `update_time` (svc-product
    // does). `now()`, the transaction's start, would not be ordered that way.
    let sql = format!(
        "WITH changed AS ( \
             UPDATE stock s SET on_hand = s.on_hand + d.on_hand, \
                    reserved = s.reserved + d.reserved, \
                    version = s.version + 1, \
                    updated_at = greatest(clock_timestamp(), s.updated_at + interval '1 microsecond') \
             FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS d(sku, on_hand, reserved) \
             WHERE s.sku = d.sku \
               AND s.reserved + d.reserved >= 0 \
               AND s.on_hand + d.on_hand >= s.reserved + d.reserved \
             RETURNING s.sku, s.on_hand, s.reserved, s.version, s.updated_at \
         ), audit AS ({}) \
         SELECT sku, on_hand, reserved, version, updated_at FROM changed",
        audit_insert(4)
    );
    let arguments = (|| {
        let mut arguments = PgArguments::default();
        arguments.add(totals.keys().collect::<Vec<_>>())?;
        arguments.add(totals.values().map(|t| t.0).collect::<Vec<_>>())?;
        arguments.add(totals.values().map(|t| t.1).collect::<Vec<_>>())?;
        add_audit_arguments(&mut arguments, &entries, cause)?;
        Ok(arguments)
    })()
    .map_err(sqlx::Error::Encode)?;
    let updated: Vec<StockLevel> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
        .fetch_all(&mut *conn)
        .await?;
    let updated: BTreeMap<String, StockLevel> = updated
        .into_iter()
        .map(|level| (level.sku.clone(), level))
        .collect();
    if let Some(missed) = totals.keys().find(|sku| !updated.contains_key(**sku)) {
        return Err(InventoryError::LostUpdate((*missed).to_owned()));
    }
    Ok(Applied {
        levels: updated,
        change_ids: entries.iter().map(|e| e.id).collect(),
    })
}

/// What [`apply`] did.
#[derive(Clone, Debug)]
pub struct Applied {
    pub levels: BTreeMap<String, StockLevel>,
    pub change_ids: Vec<Uuid>,
}

/// Writes audit rows for changes already made.
pub async fn record(
    conn: &mut PgConnection,
    entries: &[Entry],
    cause: Cause<'_>,
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let arguments = (|| {
        let mut arguments = PgArguments::default();
        add_audit_arguments(&mut arguments, entries, cause)?;
        Ok(arguments)
    })()
    .map_err(sqlx::Error::Encode)?;
    sqlx::query_with(sqlx::AssertSqlSafe(audit_insert(1)), arguments)
        .execute(conn)
        .await?;
    Ok(())
}

/// The INSERT of audit rows, its parameters numbered from `first` on, in the
/// order [`add_audit_arguments`] adds them.
fn audit_insert(first: usize) -> String {
    let [
        kind,
        reason,
        actor,
        id,
        sku,
        on_hand_delta,
        reserved_delta,
        on_hand_after,
        reserved_after,
        order_id,
    ] = std::array::from_fn(|i| format!("${}", first + i));
    format!(
        "INSERT INTO stock_changes (id, sku, kind, on_hand_delta, reserved_delta, on_hand_after, \
                                    reserved_after, reason, actor, order_id) \
         SELECT id, sku, {kind}, on_hand_delta, reserved_delta, on_hand_after, reserved_after, \
                {reason}, {actor}, order_id \
         FROM UNNEST({id}::uuid[], {sku}::text[], {on_hand_delta}::int8[], {reserved_delta}::int8[], \
                     {on_hand_after}::int8[], {reserved_after}::int8[], {order_id}::uuid[]) \
              AS e(id, sku, on_hand_delta, reserved_delta, on_hand_after, reserved_after, order_id)"
    )
}

fn add_audit_arguments(
    arguments: &mut PgArguments,
    entries: &[Entry],
    cause: Cause<'_>,
) -> Result<(), BoxDynError> {
    arguments.add(cause.kind.as_str())?;
    arguments.add(cause.reason)?;
    arguments.add(cause.actor)?;
    arguments.add(entries.iter().map(|e| e.id).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.sku.as_str()).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.on_hand_delta).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.reserved_delta).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.on_hand_after).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.reserved_after).collect::<Vec<_>>())?;
    arguments.add(entries.iter().map(|e| e.order_id).collect::<Vec<_>>())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(sku: &str, on_hand: i64, reserved: i64) -> (String, StockLevel) {
        (
            sku.to_owned(),
            StockLevel {
                sku: sku.to_owned(),
                on_hand,
                reserved,
                version: 1,
                updated_at: chrono::Utc::now(),
            },
        )
    }

    fn delta(sku: &str, on_hand: i64, reserved: i64) -> Delta {
        Delta {
            sku: sku.to_owned(),
            on_hand,
            reserved,
            order_id: None,
        }
    }

    #[test]
    fn audit_rows_carry_the_running_levels() {
        let locked = BTreeMap::from([level("A", 10, 2), level("B", 5, 0)]);
        // Two reservations expiring in one sweep, both holding A.
        let rows = entries(
            &locked,
            &[delta("A", 0, -1), delta("B", 0, -3), delta("A", 0, -1)],
        )
        .unwrap();
        let after: Vec<_> = rows
            .iter()
            .map(|e| (e.sku.as_str(), e.on_hand_after, e.reserved_after))
            .collect();
        assert_eq!(after, [("A", 10, 1), ("B", 5, -3), ("A", 10, 0)]);
    }

    #[test]
    fn a_sku_that_was_not_locked_is_named() {
        let locked = BTreeMap::from([level("A", 1, 0)]);
        assert_eq!(
            entries(&locked, &[delta("Z", 1, 0)]).unwrap_err(),
            "Z".to_owned()
        );
    }
}
