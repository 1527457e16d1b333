//! svc-recommendation's errors that reach the API, and their one conversion
//! to gRPC statuses. The helpers' own errors stay beside them and never reach
//! a caller directly: a catalog read (`catalog.rs`) refuses a training as
//! [`TrainError::Catalog`] and otherwise makes a list fall back to best
//! sellers; an unreadable snapshot (`snapshot.rs`, `algo`) is logged and a new
//! model trained.

use shopmesh_platform::errors::{self, ErrorReason, domain_error};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::catalog::CatalogError;

/// What a request asks for that is not there.
#[derive(Debug, thiserror::Error)]
pub enum RecommendationError {
    /// Neither the model, the live catalog nor svc-product knows it.
    #[error("product {0} not found")]
    ProductNotFound(Uuid),
    #[error("no model has been trained yet")]
    NoModel,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("a training run is already going")]
    Busy,
    #[error("the catalog cannot be read: {0}")]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("training stopped: {0}")]
    Aborted(String),
}

impl From<sqlx::Error> for TrainError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

impl From<RecommendationError> for Status {
    fn from(err: RecommendationError) -> Self {
        match err {
            RecommendationError::ProductNotFound(id) => {
                errors::not_found(ErrorReason::ProductNotFound, &id.to_string())
            }
            RecommendationError::NoModel => domain_error(
                Code::NotFound,
                ErrorReason::ModelNotFound,
                "no model has been trained yet",
            ),
        }
    }
}

/// The one place store errors become statuses.
impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        errors::internal(err)
    }
}

impl From<TrainError> for Status {
    fn from(err: TrainError) -> Self {
        match err {
            TrainError::Busy => domain_error(
                Code::Aborted,
                ErrorReason::TrainingInProgress,
                "a training run is already going; retry later",
            ),
            TrainError::Catalog(err) => {
                tracing::warn!(error = %err, "training refused: no catalog");
                domain_error(
                    Code::Unavailable,
                    ErrorReason::CatalogUnavailable,
                    "the catalog cannot be read now; retry later",
                )
            }
            other => errors::internal(other),
        }
    }
}
