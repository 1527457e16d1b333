//! The catalog's domain errors and their one conversion to gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("product {0} not found")]
    ProductNotFound(Uuid),
    /// Another live product has this SKU (unique index `products_sku_key`).
    #[error("SKU {0} is already used by another product")]
    SkuTaken(String),
    /// The category does not exist (foreign key `products_category_id_fkey`).
    #[error("category {0} does not exist")]
    UnknownCategory(Uuid),
    /// The product changed between the read and the write of an update, every
    /// time the update was tried.
    #[error("product {0} is being changed concurrently")]
    Contended(Uuid),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// The unique index that keeps one live product per SKU.
pub const SKU_CONSTRAINT: &str = "products_sku_key";
/// The foreign key from a product to its category.
pub const CATEGORY_CONSTRAINT: &str = "products_category_id_fkey";

impl CatalogError {
    /// Maps a failed product write by the constraint it broke, never by its message.
    pub fn from_write(err: sqlx::Error, sku: &str, category_id: Uuid) -> Self {
        let constraint = match &err {
            sqlx::Error::Database(db) => db.constraint(),
            _ => None,
        };
        match constraint {
            Some(SKU_CONSTRAINT) => Self::SkuTaken(sku.to_owned()),
            Some(CATEGORY_CONSTRAINT) => Self::UnknownCategory(category_id),
            _ => Self::Database(err),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::ProductNotFound(id) => {
                errors::not_found(ErrorReason::ProductNotFound, &id.to_string())
            }
            CatalogError::SkuTaken(ref sku) => errors::domain_error(
                Code::AlreadyExists,
                ErrorReason::SkuTaken,
                format!("SKU {sku} is already used by another product"),
            ),
            CatalogError::UnknownCategory(_) => {
                errors::invalid_field("product.category_id", "no such category")
            }
            CatalogError::Contended(id) => errors::domain_error(
                Code::Aborted,
                ErrorReason::ConcurrentUpdate,
                format!("product {id} changed while it was being updated; try again"),
            ),
            CatalogError::Database(err) => errors::internal(err),
        }
    }
}
