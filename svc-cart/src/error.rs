//! The cart's domain errors and their one conversion to gRPC statuses.

use shopmesh_platform::errors::{self, ErrorReason};
use shopmesh_platform::redis::BoundedError;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::cart::{MAX_LINES, MAX_QUANTITY};

/// A service the cart calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Product,
    Inventory,
    /// Shipping addresses, at checkout.
    User,
    /// CreateOrder, at checkout.
    Order,
}

impl Dependency {
    /// The binary's name, as in logs and the `dependency` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Product => "svc-product",
            Self::Inventory => "svc-inventory",
            Self::User => "svc-user",
            Self::Order => "svc-order",
        }
    }

    /// What the shopper is told when the dependency cannot be reached.
    fn unavailable(self) -> &'static str {
        match self {
            Self::Product => "the catalog cannot be checked right now; try again shortly",
            Self::Inventory => "stock levels cannot be checked right now; try again shortly",
            Self::User => "the address book cannot be read right now; try again shortly",
            Self::Order => {
                "orders cannot be placed right now; try again shortly with the same \
                 idempotency_key"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// An anonymous cart that never existed or expired.
    #[error("cart {0} not found")]
    CartNotFound(String),
    #[error("SKU {0} is not in the cart")]
    LineNotFound(String),
    /// Unknown to the catalog, or deleted from it.
    #[error("product {0} not found")]
    ProductNotFound(String),
    /// The change would take the cart beyond [`MAX_LINES`] lines.
    #[error("the cart would hold {lines} lines")]
    CartFull { lines: i64 },
    /// The change would take a line beyond [`MAX_QUANTITY`] units.
    #[error("the line for SKU {sku} would hold {units} units")]
    TooManyUnits { sku: String, units: i64 },
    /// A dependency that could not be reached in time.
    #[error("{} is unavailable: {}", .0.name(), .1.message())]
    Unavailable(Dependency, Status),
    /// A dependency that answered with an error the cart did not expect.
    #[error("{} failed: {:?} {}", .0.name(), .1.code(), .1.message())]
    DependencyFailed(Dependency, Status),
    #[error("cart storage: {0}")]
    Storage(#[from] BoundedError),
    #[error("cart {key} holds unreadable data: {reason}")]
    Corrupt { key: String, reason: String },
    /// Checkout of a cart without lines.
    #[error("the cart is empty")]
    EmptyCart,
    /// Checkout of a cart whose lines cannot be bought as they stand:
    /// `(SKU, what is wrong)` per line.
    #[error("{} cart lines cannot be checked out", .0.len())]
    NotReady(Vec<(String, String)>),
    /// A shipping address that is not in the caller's address book.
    #[error("address {0} not found")]
    AddressNotFound(String),
    /// A repeated idempotency key with another shipping address.
    #[error("idempotency key {0:?} was used for another checkout")]
    KeyReused(String),
    /// CreateOrder said no (ALREADY_EXISTS, FAILED_PRECONDITION,
    /// INVALID_ARGUMENT): its status, passed on as it is.
    #[error("svc-order refused the order: {:?} {}", .0.code(), .0.message())]
    OrderRefused(Status),
}

impl CartError {
    /// Names the SKU in a line's refusal (the scripts answer without it).
    pub fn for_sku(self, sku: &str) -> Self {
        match self {
            Self::LineNotFound(_) => Self::LineNotFound(sku.to_owned()),
            Self::TooManyUnits { units, .. } => Self::TooManyUnits {
                sku: sku.to_owned(),
                units,
            },
            other => other,
        }
    }
}

impl From<CartError> for Status {
    fn from(err: CartError) -> Self {
        match err {
            CartError::CartNotFound(id) => errors::not_found(ErrorReason::CartNotFound, &id),
            CartError::LineNotFound(sku) => errors::domain_error(
                Code::NotFound,
                ErrorReason::CartLineNotFound,
                format!("SKU {sku} is not in the cart"),
            ),
            CartError::ProductNotFound(id) => errors::not_found(ErrorReason::ProductNotFound, &id),
            CartError::CartFull { lines } => errors::domain_error(
                Code::ResourceExhausted,
                ErrorReason::CartFull,
                format!(
                    "a cart holds at most {MAX_LINES} lines; this would make {lines}: \
                     remove a line first"
                ),
            ),
            CartError::TooManyUnits { sku, units } => errors::invalid_field(
                "quantity",
                &format!(
                    "the line for SKU {sku} would hold {units} units; \
                     a line holds 1 to {MAX_QUANTITY}"
                ),
            ),
            CartError::Unavailable(dependency, status) => {
                tracing::warn!(
                    dependency = dependency.name(),
                    code = ?status.code(),
                    message = status.message(),
                    "dependency unavailable"
                );
                Status::unavailable(dependency.unavailable())
            }
            err @ CartError::DependencyFailed(..) => errors::internal(err),
            CartError::Storage(err) => {
                tracing::warn!(error = %err, "cart storage unavailable");
                Status::unavailable("carts are unavailable right now; try again shortly")
            }
            err @ CartError::Corrupt { .. } => errors::internal(err),
            CartError::EmptyCart => not_ready(
                ErrorReason::CartEmpty,
                "the cart is empty: add something before checking out".to_owned(),
                &[],
            ),
            CartError::NotReady(lines) => not_ready(
                ErrorReason::CartNotReady,
                format!(
                    "the cart cannot be checked out: {}",
                    lines
                        .iter()
                        .map(|(sku, problem)| format!("{sku}: {problem}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                &lines,
            ),
            CartError::AddressNotFound(id) => errors::not_found(ErrorReason::AddressNotFound, &id),
            err @ CartError::KeyReused(_) => errors::domain_error(
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyReused,
                err.to_string(),
            ),
            CartError::OrderRefused(status) => status,
        }
    }
}

/// FAILED_PRECONDITION for a cart that cannot be checked out: an ErrorInfo
/// `reason`, and a PreconditionFailure violation per line naming its SKU.
fn not_ready(reason: ErrorReason, message: String, lines: &[(String, String)]) -> Status {
    let mut details = errors::error_info(reason);
    for (sku, problem) in lines {
        details.add_precondition_failure_violation("CART_LINE", sku, problem);
    }
    Status::with_error_details(Code::FailedPrecondition, message, details)
}
