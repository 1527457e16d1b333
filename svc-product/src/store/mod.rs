//! PostgreSQL access for the catalog.

mod matching;
mod seed;
pub mod stock;
mod writes;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::catalog::{CategoryCount, Cursor, ListQuery, SortOrder};
use crate::error::CatalogError;
use crate::product::ProductDraft;
use crate::search::{
    FACET_VALUES_PER_KEY, Facets, PRICE_BUCKET_EDGES, SearchQuery, WORD_SIMILARITY_THRESHOLD,
    attribute_facets, price_buckets,
};

pub use seed::seed_if_empty;
pub use writes::Deletion;

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
    /// Bumped by every committed write; orders cached copies.
    pub version: i64,
}

impl ProductRecord {
    /// The writable fields, for an update to write over.
    pub fn draft(&self) -> ProductDraft {
        ProductDraft {
            sku: self.sku.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category_id: self.category_id,
            price_minor: self.price_minor,
            currency_code: self.currency_code.clone(),
            attributes: self.attributes.0.clone(),
            image_urls: self.image_urls.clone(),
        }
    }
}

/// A product of a listing or search page with the key it was sorted by.
#[derive(Debug, sqlx::FromRow)]
pub struct PageRow {
    #[sqlx(flatten)]
    pub product: ProductRecord,
    /// The relevance score (0 outside relevance order).
    pub score: i64,
}

/// `p.`-qualified columns of a [`ProductRecord`].
const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.category_id, p.price_minor, \
     p.currency_code, p.attributes, p.image_urls, p.created_at, p.updated_at, p.version";

#[derive(Clone, Debug)]
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

    #[tracing::instrument(skip(self))]
    pub async fn product(&self, id: Uuid) -> sqlx::Result<Option<ProductRecord>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = $1 AND p.deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.db)
        .await
    }

    #[tracing::instrument(skip(self, ids), fields(count = ids.len()))]
    pub async fn products(&self, ids: &[Uuid]) -> sqlx::Result<Vec<ProductRecord>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = ANY($1) AND p.deleted_at IS NULL"
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
    pub async fn list(&self, query: &ListQuery) -> sqlx::Result<Vec<PageRow>> {
        let mut sql = matching::page_sql(
            None,
            &query.filters(),
            query.order,
            query.after,
            query.page_size,
        );
        sql.build_query_as().fetch_all(&self.db).await
    }

    /// One page of a search (plus one extra row when there is a next page) and,
    /// when asked, the facets of everything it matches, from one snapshot.
    #[tracing::instrument(skip(self))]
    pub async fn search(
        &self,
        query: &SearchQuery,
        with_facets: bool,
    ) -> sqlx::Result<(Vec<PageRow>, Option<Facets>)> {
        // One round trip opens a read-only snapshot shared by the page and the
        // facets, and sets the typo tolerance of `%>` for this transaction only
        // (a constant of ours, never user input). Notices ("query contains only
        // stop words") are not worth a log line per search.
        let mut tx = self
            .db
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET LOCAL pg_trgm.word_similarity_threshold = {WORD_SIMILARITY_THRESHOLD}; \
                 SET LOCAL client_min_messages = warning"
            )))
            .await?;
        let text = query.text.as_ref();
        let page = matching::page_sql(
            text,
            &query.filters,
            query.order,
            query.after,
            query.page_size,
        )
        .build_query_as()
        .fetch_all(&mut *tx)
        .await?;
        let facets = match with_facets {
            true => Some(facets(&mut tx, text, &query.filters).await?),
            false => None,
        };
        tx.commit().await?;
        Ok((page, facets))
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

    /// The SKU of every live product, and the product: what the stock
    /// subscription follows, and how WatchCatalog names a SKU's product.
    pub async fn live_products(&self) -> sqlx::Result<HashMap<String, Uuid>> {
        let rows: Vec<(String, Uuid)> =
            sqlx::query_as("SELECT sku, id FROM products WHERE deleted_at IS NULL")
                .fetch_all(&self.db)
                .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn create(
        &self,
        id: Uuid,
        draft: &ProductDraft,
    ) -> Result<ProductRecord, CatalogError> {
        writes::create(&self.db, id, draft).await
    }

    /// Writes `draft` over the product if it is still at `version`; `None` when
    /// it has changed (or was deleted) since it was read.
    pub async fn update(
        &self,
        id: Uuid,
        version: i64,
        draft: &ProductDraft,
    ) -> Result<Option<ProductRecord>, CatalogError> {
        writes::update(&self.db, id, version, draft).await
    }

    pub async fn delete(&self, id: Uuid) -> Result<Deletion, CatalogError> {
        writes::delete(&self.db, id).await
    }
}

/// The name of the database the pool is connected to (the default cache
/// prefix, so catalogs sharing a Redis stay apart).
pub async fn database_name(db: &PgPool) -> sqlx::Result<String> {
    sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(db)
        .await
}

/// Total, category roll-up, attribute values and price buckets of every product
/// `text` and `filters` match, in one statement.
async fn facets(
    conn: &mut sqlx::PgConnection,
    text: Option<&crate::search::TextQuery>,
    filters: &crate::catalog::Filters,
) -> sqlx::Result<Facets> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "WITH RECURSIVE matched AS MATERIALIZED (\
         SELECT p.id, p.category_id, p.price_minor, p.attributes",
    );
    matching::push_matching(&mut sql, text, filters);
    sql.push(
        "), \
         rollup (id, n) AS (\
             SELECT category_id, count(*) FROM matched GROUP BY category_id \
             UNION ALL \
             SELECT c.parent_id, r.n FROM rollup r JOIN categories c ON c.id = r.id \
             WHERE c.parent_id IS NOT NULL), \
         categories_found AS (\
             SELECT r.id, c.name, sum(r.n)::int8 AS n FROM rollup r JOIN categories c ON c.id = r.id \
             GROUP BY r.id, c.name), \
         attribute_values AS (\
             SELECT a.key, a.value, count(*) AS n \
             FROM matched m CROSS JOIN LATERAL jsonb_each_text(m.attributes) a \
             GROUP BY a.key, a.value), \
         ranked_values AS (\
             SELECT key, value, n, sum(n) OVER (PARTITION BY key) AS key_total, \
                    row_number() OVER (PARTITION BY key ORDER BY n DESC, value) AS place \
             FROM attribute_values) \
         SELECT \
           (SELECT count(*) FROM matched), \
           (SELECT coalesce(jsonb_agg(jsonb_build_array(id, name, n) ORDER BY n DESC, name, id), '[]') \
              FROM categories_found), \
           (SELECT coalesce(jsonb_agg(jsonb_build_array(key, value, n) \
                                      ORDER BY key_total DESC, key, n DESC, value), '[]') \
              FROM ranked_values WHERE place <= ",
    );
    sql.push_bind(FACET_VALUES_PER_KEY).push(
        "), \
           (SELECT coalesce(jsonb_agg(jsonb_build_array(bucket, n)), '[]') FROM (\
              SELECT width_bucket(price_minor, ",
    );
    sql.push_bind(PRICE_BUCKET_EDGES.to_vec())
        .push("::int8[]) AS bucket, count(*) AS n FROM matched GROUP BY 1) b)");

    type Row = (
        i64,
        Json<Vec<(Uuid, String, i64)>>,
        Json<Vec<(String, String, i64)>>,
        Json<Vec<(usize, i64)>>,
    );
    let (total, categories, attributes, prices): Row =
        sql.build_query_as().fetch_one(&mut *conn).await?;
    let prices: BTreeMap<usize, i64> = prices.0.into_iter().collect();
    Ok(Facets {
        total,
        categories: categories.0,
        attributes: attribute_facets(attributes.0),
        price_buckets: price_buckets(&prices),
    })
}

/// The cursor that continues after `row` in `order`.
pub fn cursor_after(row: &PageRow, order: SortOrder) -> Cursor {
    let product = &row.product;
    let key = match order {
        SortOrder::Newest => product.created_at.timestamp_micros(),
        SortOrder::PriceAsc | SortOrder::PriceDesc => product.price_minor,
        SortOrder::Relevance => row.score,
    };
    (key, product.id)
}
