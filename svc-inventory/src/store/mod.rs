//! Every SQL statement of svc-inventory. Here: stock levels (reads, the
//! admin's set and adjust), the audit log, and the demo seed. Every change of
//! a level goes through [`ledger`]; the reservation rows are in
//! [`reservations`], whose functions run in the transaction
//! `crate::reservations` begins.

pub mod ledger;
pub mod reservations;

use chrono::{DateTime, Utc};
use shopmesh_demo::Catalog;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::InventoryError;
use crate::stock::{ChangeKind, SERVICE_ACTOR, StockLevel};
use ledger::{Cause, Delta, Entry};

/// One row of the audit log as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ChangeRecord {
    pub id: Uuid,
    pub seq: i64,
    pub sku: String,
    pub kind: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
    pub on_hand_after: i64,
    pub reserved_after: i64,
    pub reason: String,
    pub actor: String,
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Store {
    db: PgPool,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    #[tracing::instrument(skip(self))]
    pub async fn stock(&self, sku: &str) -> sqlx::Result<Option<StockLevel>> {
        sqlx::query_as(
            "SELECT sku, on_hand, reserved, version, updated_at FROM stock WHERE sku = $1",
        )
        .bind(sku)
        .fetch_optional(&self.db)
        .await
    }

    /// The known ones of `skus`, in no particular order.
    #[tracing::instrument(skip(self, skus), fields(count = skus.len()))]
    pub async fn stocks(&self, skus: &[String]) -> sqlx::Result<Vec<StockLevel>> {
        sqlx::query_as(
            "SELECT sku, on_hand, reserved, version, updated_at FROM stock WHERE sku = ANY($1)",
        )
        .bind(skus)
        .fetch_all(&self.db)
        .await
    }

    /// Sets the on-hand count after a stocktake, creating the SKU when new.
    #[tracing::instrument(skip(self, reason))]
    pub async fn set_stock(
        &self,
        sku: &str,
        on_hand: i64,
        reason: &str,
        actor: &str,
    ) -> Result<StockLevel, InventoryError> {
        let cause = Cause {
            kind: ChangeKind::Set,
            reason,
            actor,
        };
        let skus = [sku.to_owned()];
        let mut tx = self.db.begin().await?;
        let mut locked = ledger::lock(&mut tx, &skus).await?;
        if locked.is_empty() {
            let created: Option<StockLevel> = sqlx::query_as(
                "INSERT INTO stock (sku, on_hand) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING \
                 RETURNING sku, on_hand, reserved, version, updated_at",
            )
            .bind(sku)
            .bind(on_hand)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(created) = created {
                let entry = Entry {
                    id: Uuid::now_v7(),
                    sku: sku.to_owned(),
                    on_hand_delta: on_hand,
                    reserved_delta: 0,
                    on_hand_after: on_hand,
                    reserved_after: 0,
                    order_id: None,
                };
                ledger::record(&mut tx, &[entry], cause).await?;
                tx.commit().await?;
                return Ok(created);
            }
            // A concurrent SetStock created it first (this insert waited for its
            // commit): from here on it is an existing SKU like any other.
            locked = ledger::lock(&mut tx, &skus).await?;
        }
        let current = locked
            .get(sku)
            .ok_or_else(|| InventoryError::LostUpdate(sku.to_owned()))?;
        if on_hand < current.reserved {
            return Err(InventoryError::BelowReserved {
                sku: sku.to_owned(),
                on_hand,
                reserved: current.reserved,
            });
        }
        let delta = Delta {
            sku: sku.to_owned(),
            on_hand: on_hand - current.on_hand,
            reserved: 0,
            order_id: None,
        };
        let mut applied = ledger::apply(&mut tx, &locked, &[delta], cause).await?;
        tx.commit().await?;
        applied
            .levels
            .remove(sku)
            .ok_or_else(|| InventoryError::LostUpdate(sku.to_owned()))
    }

    /// Adds `delta` to on hand, once per `idempotency_key` when one is given.
    #[tracing::instrument(skip(self, reason))]
    pub async fn adjust_stock(
        &self,
        sku: &str,
        delta: i64,
        reason: &str,
        actor: &str,
        idempotency_key: Option<&str>,
    ) -> Result<StockLevel, InventoryError> {
        let skus = [sku.to_owned()];
        let mut tx = self.db.begin().await?;
        // The row lock also serialises retries with the same key.
        let locked = ledger::lock(&mut tx, &skus).await?;
        let current = locked
            .get(sku)
            .cloned()
            .ok_or_else(|| InventoryError::UnknownSkus(vec![sku.to_owned()]))?;
        if let Some(key) = idempotency_key {
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT delta FROM stock_adjustments WHERE sku = $1 AND idempotency_key = $2",
            )
            .bind(sku)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(applied) = applied {
                if applied != delta {
                    tracing::warn!(
                        sku,
                        applied,
                        delta,
                        "idempotency key reused with another delta; the first one stands"
                    );
                }
                return Ok(current);
            }
        }
        let on_hand = current.on_hand + delta;
        if on_hand < current.reserved {
            return Err(InventoryError::BelowReserved {
                sku: sku.to_owned(),
                on_hand,
                reserved: current.reserved,
            });
        }
        let change = Delta {
            sku: sku.to_owned(),
            on_hand: delta,
            reserved: 0,
            order_id: None,
        };
        let cause = Cause {
            kind: ChangeKind::Adjust,
            reason,
            actor,
        };
        let mut applied = ledger::apply(&mut tx, &locked, &[change], cause).await?;
        if let (Some(key), Some(change_id)) = (idempotency_key, applied.change_ids.first()) {
            sqlx::query(
                "INSERT INTO stock_adjustments (sku, idempotency_key, delta, change_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(sku)
            .bind(key)
            .bind(delta)
            .bind(change_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        applied
            .levels
            .remove(sku)
            .ok_or_else(|| InventoryError::LostUpdate(sku.to_owned()))
    }

    /// Up to `limit` audit rows of `sku`, newest first, older than `before` (a `seq`).
    #[tracing::instrument(skip(self))]
    pub async fn changes(
        &self,
        sku: &str,
        before: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<Vec<ChangeRecord>> {
        sqlx::query_as(
            "SELECT id, seq, sku, kind, on_hand_delta, reserved_delta, on_hand_after, \
                    reserved_after, reason, actor, order_id, created_at \
             FROM stock_changes WHERE sku = $1 AND ($2::int8 IS NULL OR seq < $2) \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(sku)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await
    }
}

/// Loads the demo catalog's initial stock into an empty stock table, once, even
/// with several replicas starting together (an advisory lock serialises them;
/// the loser sees rows). Each SKU's first audit row says where its stock came from.
pub async fn seed_if_empty(db: &PgPool, catalog: &Catalog) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('svc-inventory:seed'))")
        .execute(&mut *tx)
        .await?;
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM stock)")
        .fetch_one(&mut *tx)
        .await?;
    if !empty {
        return Ok(());
    }
    let products = &catalog.products;
    sqlx::query("INSERT INTO stock (sku, on_hand) SELECT * FROM UNNEST($1::text[], $2::int8[])")
        .bind(products.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.initial_stock).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    let entries: Vec<Entry> = products
        .iter()
        .map(|p| Entry {
            id: Uuid::now_v7(),
            sku: p.sku.clone(),
            on_hand_delta: p.initial_stock,
            reserved_delta: 0,
            on_hand_after: p.initial_stock,
            reserved_after: 0,
            order_id: None,
        })
        .collect();
    let cause = Cause {
        kind: ChangeKind::Set,
        reason: "demo catalog seed",
        actor: SERVICE_ACTOR,
    };
    ledger::record(&mut tx, &entries, cause).await?;
    tx.commit().await?;
    tracing::info!(skus = products.len(), "seeded the demo stock");
    Ok(())
}
