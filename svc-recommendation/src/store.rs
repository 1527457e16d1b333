//! PostgreSQL, every SQL statement of the service: the purchases the models
//! learn from, the shoppers' histories read at request time, the persisted
//! models and the advisory locks around training and seeding.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::StoreError;

/// `NOTIFY` channel announcing a newly persisted model (payload: its seq).
pub const MODEL_CHANNEL: &str = "recommendation_model";
/// Models kept in the table: the current one and a few to roll back to.
const MODELS_KEPT: i64 = 3;
/// Advisory lock held while a replica trains (session level, one connection).
pub const TRAINING_LOCK: i64 = 0x5245_434F_5452_4149; // "RECOTRAI"
/// Advisory lock taken while seeding the demo history (transaction level).
const SEED_LOCK: i64 = 0x5245_434F_5345_4544; // "RECOSEED"

/// One product line of an order, as the recommender keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// An order's lines with everything the tables need.
#[derive(Clone, Debug)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub at: DateTime<Utc>,
    /// One entry per product (quantities of repeated products summed).
    pub lines: Vec<PurchaseLine>,
}

/// A product the shopper bought, newest purchase last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bought {
    pub product_id: Uuid,
    /// Every order of it was refunded.
    pub refunded: bool,
}

/// A training row: one non-refunded order line.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TrainingLine {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub product_id: Uuid,
}

/// A persisted model.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredModel {
    pub seq: i64,
    pub version: String,
    pub format: i32,
    pub snapshot: Vec<u8>,
}

#[derive(Clone)]
pub struct Store {
    db: PgPool,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db
    }

    /// The products `user_id` bought, each once, ordered by their latest purchase.
    #[tracing::instrument(skip(self))]
    pub async fn history(&self, user_id: Uuid) -> Result<Vec<Bought>, StoreError> {
        let rows: Vec<(Uuid, bool)> = sqlx::query_as(
            "SELECT product_id, bool_and(refunded_at IS NOT NULL) \
             FROM purchases WHERE user_id = $1 \
             GROUP BY product_id ORDER BY max(purchased_at), product_id",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, refunded)| Bought {
                product_id,
                refunded,
            })
            .collect())
    }

    /// Every order line that counts for training, per shopper in purchase order.
    pub async fn training_lines(&self) -> Result<Vec<TrainingLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT order_id, user_id, product_id FROM purchases WHERE refunded_at IS NULL \
             ORDER BY user_id, purchased_at, order_id, product_id",
        )
        .fetch_all(&self.db)
        .await?)
    }

    /// Seeds `orders` when the purchase table is empty; true when it did.
    /// Replicas starting together seed once (advisory lock, then the check).
    pub async fn seed_if_empty(&self, orders: &[OrderRecord]) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEED_LOCK)
            .execute(&mut *tx)
            .await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM purchases)")
            .fetch_one(&mut *tx)
            .await?;
        if any {
            return Ok(false);
        }
        for order in orders {
            insert_lines(&mut tx, order, None).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The newest persisted model's seq and when it was trained.
    pub async fn newest_model(&self) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, trained_at FROM models ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.db)
                .await?,
        )
    }

    /// The newest persisted model newer than `after`.
    pub async fn model_after(&self, after: i64) -> Result<Option<StoredModel>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, version, format, snapshot FROM models WHERE seq > $1 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(after)
        .fetch_optional(&self.db)
        .await?)
    }
}

/// Records a confirmed order's lines; a line already recorded (a redelivery,
/// or the order's refund seen first) stays as it is. Returns the lines added.
pub async fn record_confirmed(
    conn: &mut PgConnection,
    order: &OrderRecord,
) -> Result<u64, StoreError> {
    insert_lines(conn, order, None).await
}

/// Marks a refunded order's lines; an order not seen confirmed is recorded
/// refunded from the refund's own lines. Returns the lines changed or added.
pub async fn record_refunded(
    conn: &mut PgConnection,
    order: &OrderRecord,
) -> Result<u64, StoreError> {
    let marked = sqlx::query(
        "UPDATE purchases SET refunded_at = $2 WHERE order_id = $1 AND refunded_at IS NULL",
    )
    .bind(order.order_id)
    .bind(order.at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let added = insert_lines(conn, order, Some(order.at)).await?;
    Ok(marked + added)
}

async fn insert_lines(
    conn: &mut PgConnection,
    order: &OrderRecord,
    refunded_at: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    if order.lines.is_empty() {
        return Ok(0);
    }
    let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity).collect();
    Ok(sqlx::query(
        "INSERT INTO purchases (order_id, product_id, user_id, quantity, purchased_at, refunded_at) \
         SELECT $1, product_id, $2, quantity, $3, $4 \
         FROM UNNEST($5::uuid[], $6::int4[]) AS t(product_id, quantity) \
         ON CONFLICT (order_id, product_id) DO NOTHING",
    )
    .bind(order.order_id)
    .bind(order.user_id)
    .bind(order.at)
    .bind(refunded_at)
    .bind(products)
    .bind(quantities)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Sums the quantities of repeated products and drops empty lines.
pub fn merge_lines(lines: impl IntoIterator<Item = PurchaseLine>) -> Vec<PurchaseLine> {
    let mut merged: Vec<PurchaseLine> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for line in lines.into_iter().filter(|l| l.quantity > 0) {
        match at.get(&line.product_id) {
            Some(&i) => merged[i].quantity = merged[i].quantity.saturating_add(line.quantity),
            None => {
                at.insert(line.product_id, merged.len());
                merged.push(line);
            }
        }
    }
    merged
}

/// The next model sequence number (on the training lock's connection).
pub async fn next_model_seq(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT nextval('model_seq')")
        .fetch_one(conn)
        .await?)
}

/// Persists a model, drops all but the newest few, and announces it (at commit).
pub async fn save_model(
    db: &PgPool,
    seq: i64,
    version: &str,
    format: i32,
    trained_at: DateTime<Utc>,
    snapshot: &[u8],
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO models (seq, version, format, trained_at, snapshot) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(version)
    .bind(format)
    .bind(trained_at)
    .bind(snapshot)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM models WHERE seq NOT IN (SELECT seq FROM models ORDER BY seq DESC LIMIT $1)",
    )
    .bind(MODELS_KEPT)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(MODEL_CHANNEL)
        .bind(seq.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Tries the training lock on `conn` (held until [`release_training_lock`]).
pub async fn try_training_lock(conn: &mut PgConnection) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(TRAINING_LOCK)
        .fetch_one(conn)
        .await?)
}

pub async fn release_training_lock(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TRAINING_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_products_are_merged_and_empty_lines_dropped() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let line = |product_id, quantity| PurchaseLine {
            product_id,
            quantity,
        };
        let merged = merge_lines([line(a, 1), line(b, 0), line(a, 2), line(b, 1)]);
        assert_eq!(merged, [line(a, 3), line(b, 1)]);
    }
}
