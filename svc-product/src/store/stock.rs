//! The local copy of available stock per SKU, fed by svc-inventory's WatchStock.

use chrono::{DateTime, Utc};
use shopmesh_inventory_client::StockLevel;
use sqlx::PgPool;

/// Every stored level, as last reported.
pub async fn stored_levels(db: &PgPool) -> sqlx::Result<Vec<StockLevel>> {
    let rows: Vec<(String, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT sku, available, updated_at FROM stock_levels")
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(sku, available, updated_at)| StockLevel {
            sku,
            available,
            updated_at,
        })
        .collect())
}

/// Stores reported levels, the newest report per SKU winning (a report older
/// than the stored one changes nothing). Returns how many SKUs went from in
/// stock to sold out or back, which is what the in-stock filter can see.
#[tracing::instrument(skip(db, levels), fields(count = levels.len()))]
pub async fn apply_levels(db: &PgPool, levels: &[StockLevel]) -> sqlx::Result<i64> {
    if levels.is_empty() {
        return Ok(0);
    }
    sqlx::query_scalar(
        "WITH incoming AS (\
             SELECT DISTINCT ON (sku) sku, greatest(available, 0) AS available, updated_at \
             FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[]) AS t(sku, available, updated_at) \
             ORDER BY sku, updated_at DESC), \
         before AS (\
             SELECT s.sku, s.available > 0 AS in_stock FROM stock_levels s JOIN incoming USING (sku)), \
         written AS (\
             INSERT INTO stock_levels (sku, available, updated_at) \
             SELECT sku, available, updated_at FROM incoming \
             ON CONFLICT (sku) DO UPDATE \
                SET available = EXCLUDED.available, updated_at = EXCLUDED.updated_at, \
                    received_at = now() \
                WHERE stock_levels.updated_at <= EXCLUDED.updated_at \
             RETURNING sku, available > 0 AS in_stock) \
         SELECT count(*) FROM written w LEFT JOIN before b USING (sku) \
         WHERE w.in_stock <> coalesce(b.in_stock, false)",
    )
    .bind(levels.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>())
    .bind(levels.iter().map(|l| l.available).collect::<Vec<_>>())
    .bind(levels.iter().map(|l| l.updated_at).collect::<Vec<_>>())
    .fetch_one(db)
    .await
}

/// Forgets levels of SKUs no live product has (deleted products, changed
/// SKUs), so a SKU reused later starts from inventory's snapshot, not from an
/// old level.
pub async fn forget_unlisted(db: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM stock_levels s WHERE NOT EXISTS \
         (SELECT 1 FROM products p WHERE p.sku = s.sku AND p.deleted_at IS NULL)",
    )
    .execute(db)
    .await?
    .rows_affected())
}
