//! What svc-inventory refuses (and its database failures), and the one place
//! inventory errors become gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::stock::ReservationStatus;

/// A line that cannot be reserved: less available than asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

/// What the inventory rules refuse, and database failures.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("unknown SKU {}", .0.join(", "))]
    UnknownSkus(Vec<String>),
    #[error("not enough stock of {}", .0.iter().map(|s| s.sku.as_str()).collect::<Vec<_>>().join(", "))]
    InsufficientStock(Vec<Shortfall>),
    #[error("order {0} has no reservation")]
    ReservationNotFound(Uuid),
    #[error("the reservation of order {order_id} is {}", .status.as_str())]
    ReservationClosed {
        order_id: Uuid,
        status: ReservationStatus,
    },
    #[error("order {0} already has a reservation with other lines")]
    ReservationConflict(Uuid),
    #[error("on hand of {sku} would be {on_hand}, below the {reserved} units reserved")]
    BelowReserved {
        sku: String,
        on_hand: i64,
        reserved: i64,
    },
    /// A guarded update found a row in a state the checks before it ruled out:
    /// a bug, never a caller's fault.
    #[error("stock of {0} changed under a lock")]
    LostUpdate(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How a WatchStock stream ends other than by the client leaving.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("cannot read the current levels")]
    Snapshot(#[source] sqlx::Error),
}

impl From<InventoryError> for Status {
    fn from(err: InventoryError) -> Self {
        let message = err.to_string();
        match err {
            InventoryError::UnknownSkus(_) => {
                errors::domain_error(Code::NotFound, ErrorReason::SkuNotFound, message)
            }
            InventoryError::InsufficientStock(shortfalls) => {
                let mut details = errors::error_info(ErrorReason::InsufficientStock);
                for short in shortfalls {
                    details.add_precondition_failure_violation(
                        "INSUFFICIENT_STOCK",
                        short.sku,
                        format!(
                            "asked for {}, {} available",
                            short.requested, short.available
                        ),
                    );
                }
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            InventoryError::ReservationNotFound(order_id) => {
                errors::not_found(ErrorReason::ReservationNotFound, &order_id.to_string())
            }
            InventoryError::ReservationClosed { status, .. } => {
                let reason = match status {
                    ReservationStatus::Committed => ErrorReason::ReservationCommitted,
                    ReservationStatus::Released => ErrorReason::ReservationReleased,
                    ReservationStatus::Expired => ErrorReason::ReservationExpired,
                    ReservationStatus::Reserved => ErrorReason::ReservationReserved,
                };
                errors::domain_error(Code::FailedPrecondition, reason, message)
            }
            InventoryError::ReservationConflict(_) => errors::domain_error(
                Code::AlreadyExists,
                ErrorReason::ReservationConflict,
                message,
            ),
            InventoryError::BelowReserved { .. } => errors::domain_error(
                Code::FailedPrecondition,
                ErrorReason::BelowReserved,
                message,
            ),
            InventoryError::LostUpdate(_) | InventoryError::Database(_) => errors::internal(err),
        }
    }
}

impl From<WatchEnd> for Status {
    fn from(end: WatchEnd) -> Self {
        match end {
            WatchEnd::ShuttingDown => {
                Status::unavailable("the server is shutting down: watch again to reconnect")
            }
            WatchEnd::Snapshot(_) => errors::internal(end),
        }
    }
}
