//! PostgreSQL access for the catalog.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::catalog::{CategoryCount, Cursor, ListQuery, SortOrder};
use shopmesh_demo::Catalog;

/// A live product as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProductRecord {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub price_minor: i64,
    pub currency_code: String,
    pub attributes: Json<BTreeMap<String, String>>,
    pub image_urls: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PRODUCT_COLUMNS: &str = "id, sku, name, description, category_id, price_minor, \
     currency_code, attributes, image_urls, created_at, updated_at";

#[derive(Clone, Debug)]
pub struct Store {
    db: PgPool,
}

impl Store {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    #[tracing::instrument(skip(self))]
    pub async fn product(&self, id: Uuid) -> sqlx::Result<Option<ProductRecord>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.db)
        .await
    }

    #[tracing::instrument(skip(self, ids), fields(count = ids.len()))]
    pub async fn products(&self, ids: &[Uuid]) -> sqlx::Result<Vec<ProductRecord>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ANY($1) AND deleted_at IS NULL"
        )))
        .bind(ids)
        .fetch_all(&self.db)
        .await
    }

    pub async fn category_exists(&self, id: Uuid) -> sqlx::Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM categories WHERE id = $1)")
            .bind(id)
            .fetch_one(&self.db)
            .await
    }

    /// One page of `query`, plus one extra row when there is a next page.
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, query: &ListQuery) -> sqlx::Result<Vec<ProductRecord>> {
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("");
        if let Some(category) = query.category_id {
            // The category and every category below it.
            sql.push("WITH RECURSIVE tree AS (SELECT id FROM categories WHERE id = ")
                .push_bind(category)
                .push(
                    " UNION ALL SELECT c.id FROM categories c JOIN tree t ON c.parent_id = t.id) ",
                );
        }
        sql.push(format_args!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE deleted_at IS NULL"
        ));
        if query.category_id.is_some() {
            sql.push(" AND category_id IN (SELECT id FROM tree)");
        }
        if let Some(min) = query.min_price_minor {
            sql.push(" AND price_minor >= ").push_bind(min);
        }
        if let Some(max) = query.max_price_minor {
            sql.push(" AND price_minor <= ").push_bind(max);
        }
        if let Some((key, id)) = query.after {
            match query.order {
                SortOrder::Newest => sql
                    .push(" AND (created_at, id) < (")
                    .push_bind(DateTime::<Utc>::from_timestamp_micros(key).unwrap_or_default())
                    .push(", ")
                    .push_bind(id)
                    .push(")"),
                SortOrder::PriceAsc => sql
                    .push(" AND (price_minor, id) > (")
                    .push_bind(key)
                    .push(", ")
                    .push_bind(id)
                    .push(")"),
                SortOrder::PriceDesc => sql
                    .push(" AND (price_minor, id) < (")
                    .push_bind(key)
                    .push(", ")
                    .push_bind(id)
                    .push(")"),
            };
        }
        sql.push(match query.order {
            SortOrder::Newest => " ORDER BY created_at DESC, id DESC",
            SortOrder::PriceAsc => " ORDER BY price_minor ASC, id ASC",
            SortOrder::PriceDesc => " ORDER BY price_minor DESC, id DESC",
        });
        sql.push(" LIMIT ")
            .push_bind(i64::from(query.page_size) + 1);
        sql.build_query_as().fetch_all(&self.db).await
    }

    /// Every category with the number of live products filed directly under it.
    pub async fn category_counts(&self) -> sqlx::Result<Vec<CategoryCount>> {
        let rows: Vec<(Uuid, Option<Uuid>, String, String, i64)> = sqlx::query_as(
            "SELECT c.id, c.parent_id, c.slug, c.name, count(p.id) \
             FROM categories c LEFT JOIN products p ON p.category_id = c.id AND p.deleted_at IS NULL \
             GROUP BY c.id",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, parent_id, slug, name, direct_products)| CategoryCount {
                    id,
                    parent_id,
                    slug,
                    name,
                    direct_products,
                },
            )
            .collect())
    }
}

/// The cursor that continues after `product` in `order`.
pub fn cursor_after(product: &ProductRecord, order: SortOrder) -> Cursor {
    let key = match order {
        SortOrder::Newest => product.created_at.timestamp_micros(),
        SortOrder::PriceAsc | SortOrder::PriceDesc => product.price_minor,
    };
    (key, product.id)
}

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
    tracing::info!(
        categories = catalog.categories.len(),
        products = products.len(),
        "seeded the demo catalog"
    );
    Ok(())
}
