//! Admin writes: create, update (guarded by the version that was read), soft delete.

use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use super::ProductRecord;
use crate::error::CatalogError;
use crate::product::ProductDraft;

/// Unqualified columns of a [`ProductRecord`], for `RETURNING`.
const RETURNED: &str = "id, sku, name, description, category_id, price_minor, currency_code, \
     attributes, image_urls, created_at, updated_at, version";

/// What a DeleteProduct did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The product was live and is now deleted at this version.
    Deleted { version: i64 },
    /// It had been deleted before: nothing changed.
    AlreadyDeleted,
}

#[tracing::instrument(skip(db, draft), fields(sku = %draft.sku))]
pub async fn create(
    db: &PgPool,
    id: Uuid,
    draft: &ProductDraft,
) -> Result<ProductRecord, CatalogError> {
    let insert = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO products (id, sku, name, description, category_id, price_minor, \
                               currency_code, attributes, image_urls) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {RETURNED}"
    )));
    bind_draft(insert.bind(id), draft)
        .fetch_one(db)
        .await
        .map_err(|err| CatalogError::from_write(err, &draft.sku, draft.category_id))
}

#[tracing::instrument(skip(db, draft))]
pub async fn update(
    db: &PgPool,
    id: Uuid,
    version: i64,
    draft: &ProductDraft,
) -> Result<Option<ProductRecord>, CatalogError> {
    let update = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET sku = $3, name = $4, description = $5, category_id = $6, \
                price_minor = $7, currency_code = $8, attributes = $9, image_urls = $10, \
                updated_at = greatest(now(), updated_at), version = version + 1 \
         WHERE id = $1 AND version = $2 AND deleted_at IS NULL RETURNING {RETURNED}"
    )));
    bind_draft(update.bind(id).bind(version), draft)
        .fetch_optional(db)
        .await
        .map_err(|err| CatalogError::from_write(err, &draft.sku, draft.category_id))
}

/// Binds the writable fields in column order: sku, name, description,
/// category_id, price_minor, currency_code, attributes, image_urls.
fn bind_draft<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    draft: &'q ProductDraft,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(&draft.sku)
        .bind(&draft.name)
        .bind(&draft.description)
        .bind(draft.category_id)
        .bind(draft.price_minor)
        .bind(&draft.currency_code)
        .bind(Json(&draft.attributes))
        .bind(&draft.image_urls)
}

/// Soft delete: the row stays (orders may name it), reads stop seeing it, and
/// its SKU is free for a new product.
#[tracing::instrument(skip(db))]
pub async fn delete(db: &PgPool, id: Uuid) -> Result<Deletion, CatalogError> {
    let deleted: Option<i64> = sqlx::query_scalar(
        "UPDATE products SET deleted_at = now(), updated_at = greatest(now(), updated_at), \
                version = version + 1 \
         WHERE id = $1 AND deleted_at IS NULL RETURNING version",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    if let Some(version) = deleted {
        return Ok(Deletion::Deleted { version });
    }
    let existed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await?;
    if existed {
        Ok(Deletion::AlreadyDeleted)
    } else {
        Err(CatalogError::ProductNotFound(id))
    }
}
