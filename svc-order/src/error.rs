//! The order service's errors and their one conversion to gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use uuid::Uuid;

/// Why an order could not be priced (FAILED_PRECONDITION for the caller).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PricingError {
    #[error("product {0} does not exist")]
    UnknownProduct(Uuid),
    #[error("product {product_id} has SKU {actual}, not {given}")]
    SkuMismatch {
        product_id: Uuid,
        given: String,
        actual: String,
    },
    #[error("the products are priced in more than one currency")]
    MixedCurrencies,
}

/// The errors of the order service; turned into gRPC statuses here only.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(Uuid),
    #[error("idempotency key {0:?} was already used for an order with other lines or address")]
    KeyReused(String),
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error("a failed order cannot be cancelled")]
    CancelFailed,
    #[error("{0} is unavailable, try again")]
    DependencyUnavailable(&'static str),
    #[error("the payment method was refused: {0}")]
    PaymentMethod(String),
    #[error("{dependency} answered unexpectedly: {status}")]
    Dependency {
        dependency: &'static str,
        status: tonic::Status,
    },
    #[error("stored order is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] shopmesh_events::OutboxError),
}

/// How a watch ends other than by the order settling or the client leaving.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the order was deleted")]
    Gone,
    #[error(transparent)]
    Store(#[from] OrderError),
}

impl From<OrderError> for Status {
    fn from(err: OrderError) -> Self {
        let message = err.to_string();
        match err {
            OrderError::NotFound(id) => {
                errors::not_found(ErrorReason::OrderNotFound, &id.to_string())
            }
            OrderError::KeyReused(_) => errors::domain_error(
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyReused,
                message,
            ),
            OrderError::Pricing(pricing) => {
                let reason = match pricing {
                    PricingError::UnknownProduct(_) => ErrorReason::ProductNotFound,
                    PricingError::SkuMismatch { .. } => ErrorReason::SkuMismatch,
                    PricingError::MixedCurrencies => ErrorReason::MixedCurrencies,
                };
                errors::domain_error(Code::FailedPrecondition, reason, message)
            }
            OrderError::CancelFailed => {
                errors::domain_error(Code::FailedPrecondition, ErrorReason::OrderFailed, message)
            }
            OrderError::DependencyUnavailable(_) => errors::domain_error(
                Code::Unavailable,
                ErrorReason::DependencyUnavailable,
                message,
            ),
            OrderError::PaymentMethod(reason) => errors::invalid_field("payment_method", &reason),
            OrderError::Dependency { .. }
            | OrderError::Corrupt(_)
            | OrderError::Database(_)
            | OrderError::Outbox(_) => errors::internal(err),
        }
    }
}

impl From<WatchEnd> for Status {
    fn from(end: WatchEnd) -> Self {
        match end {
            WatchEnd::ShuttingDown => {
                Status::unavailable("the server is shutting down: watch again to reconnect")
            }
            WatchEnd::Gone => Status::not_found("the order is gone"),
            WatchEnd::Store(err) => err.into(),
        }
    }
}
