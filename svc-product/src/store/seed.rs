//! The demo catalog, loaded once into an empty catalog.

use std::collections::BTreeMap;

use sqlx::PgPool;
use sqlx::types::Json;

use shopmesh_demo::Catalog;

/// Loads the demo catalog into an empty catalog, once, even with several replicas
/// starting together (an advisory lock serialises them; the loser sees rows).
pub async fn seed_if_empty(db: &PgPool, catalog: &Catalog) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('svc-product:seed'))")
        .execute(&mut *tx)
        .await?;
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM categories)")
        .fetch_one(&mut *tx)
        .await?;
    if !empty {
        return Ok(());
    }

    // Parents before children, so the foreign key holds row by row.
    let mut categories: Vec<_> = catalog.categories.iter().collect();
    categories.sort_by_key(|c| c.parent_id.is_some());
    for category in categories {
        sqlx::query("INSERT INTO categories (id, parent_id, slug, name) VALUES ($1, $2, $3, $4)")
            .bind(category.id)
            .bind(category.parent_id)
            .bind(&category.slug)
            .bind(&category.name)
            .execute(&mut *tx)
            .await?;
    }

    let products = &catalog.products;
    let attributes: Vec<Json<BTreeMap<&str, &str>>> = products
        .iter()
        .map(|p| {
            Json(
                p.attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            )
        })
        .collect();
    let images: Vec<Json<&[String]>> = products
        .iter()
        .map(|p| Json(p.image_urls.as_slice()))
        .collect();
    sqlx::query(
        "INSERT INTO products (id, sku, name, description, category_id, price_minor, currency_code, \
                               attributes, image_urls, created_at, updated_at) \
         SELECT id, sku, name, description, category_id, price_minor, currency_code, attributes, \
                ARRAY(SELECT jsonb_array_elements_text(images)), created_at, created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::int8[], \
                     $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[]) \
              AS t(id, sku, name, description, category_id, price_minor, currency_code, attributes, images, created_at)",
    )
    .bind(products.iter().map(|p| p.id).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.description.as_str()).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.category_id).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.price_minor).collect::<Vec<_>>())
    .bind(products.iter().map(|p| p.currency_code).collect::<Vec<_>>())
    .bind(attributes)
    .bind(images)
    .bind(products.iter().map(|p| p.created_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Statistics now, not whenever autovacuum gets to it, so the first searches
    // are planned with them.
    sqlx::query("ANALYZE categories, products")
        .execute(db)
        .await?;
    tracing::info!(
        categories = catalog.categories.len(),
        products = products.len(),
        "seeded the demo catalog"
    );
    Ok(())
}
