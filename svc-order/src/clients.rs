//! The services svc-order calls, each with its service credential: the
//! catalog (pricing), inventory (reservations) and payment (tokenize,
//! authorize, capture, void, refund). Channels connect lazily, so svc-order
//! starts, and its sagas wait and retry, while a dependency is down; every
//! call carries a deadline.

use std::collections::HashMap;
use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::inventory::v1 as inventory;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::payment::v1 as payment;
use shopmesh_proto::shop::payment::v1::payment_service_client::PaymentServiceClient;
use shopmesh_proto::shop::product::v1::BatchGetProductsRequest;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::error::OrderError;
use crate::order::{CatalogProduct, Order};
use crate::settings::OrderSettings;

/// How long one call to a dependency may take (also sent as `grpc-timeout`).
/// Shorter than any saga lease, so a step never outlives its runner's lease.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Every dependency: connects on first use, so svc-order starts without them.
const DEPENDENCY: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(CALL_DEADLINE);
/// How long a reservation holds stock: past the saga's deadline, so a saga
/// that is still retrying never loses its stock.
const RESERVATION_MARGIN: Duration = Duration::from_secs(300);
const MAX_RESERVATION_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Clients {
    products: ProductServiceClient<Authenticated>,
    inventory: InventoryServiceClient<Authenticated>,
    payments: PaymentServiceClient<Authenticated>,
    reservation_ttl: Duration,
}

/// A tokenized payment method: what svc-order may keep.
#[derive(Clone, Debug)]
pub struct CardToken {
    pub token: String,
    pub brand: String,
    pub last4: String,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// Codes that say "not now" rather than "no": worth trying again.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
    )
}

fn unexpected(dependency: &'static str, status: Status) -> OrderError {
    if is_transient(status.code()) {
        OrderError::DependencyUnavailable(dependency)
    } else {
        OrderError::Dependency { dependency, status }
    }
}

impl Clients {
    pub fn connect(
        settings: &OrderSettings,
        credentials: ServiceCredentials,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            products: ProductServiceClient::new(
                DEPENDENCY.authenticated(&settings.product_url, credentials.clone())?,
            ),
            inventory: InventoryServiceClient::new(
                DEPENDENCY.authenticated(&settings.inventory_url, credentials.clone())?,
            ),
            payments: PaymentServiceClient::new(
                DEPENDENCY.authenticated(&settings.payment_url, credentials)?,
            ),
            reservation_ttl: (settings.saga_timeout + RESERVATION_MARGIN).min(MAX_RESERVATION_TTL),
        })
    }

    /// The live products among `ids` (at most 100, the order's line limit).
    pub async fn catalog(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, CatalogProduct>, OrderError> {
        let response = self
            .products
            .clone()
            .batch_get_products(request(BatchGetProductsRequest {
                ids: ids.iter().map(Uuid::to_string).collect(),
            }))
            .await
            .map_err(|status| unexpected("svc-product", status))?
            .into_inner();
        Ok(response
            .products
            .into_iter()
            .filter_map(|product| {
                let id = Uuid::parse_str(&product.id).ok()?;
                let price = product.price?;
                Some((
                    id,
                    CatalogProduct {
                        sku: product.sku,
                        name: product.name,
                        price_minor: price.amount_minor,
                        currency_code: price.currency_code,
                    },
                ))
            })
            .collect())
    }

    /// Exchanges the payment method for a card token before anything is stored.
    pub async fn tokenize(&self, method: payment::PaymentMethod) -> Result<CardToken, OrderError> {
        let response = self
            .payments
            .clone()
            .tokenize_payment_method(request(payment::TokenizePaymentMethodRequest {
                payment_method: Some(method),
            }))
            .await
            .map_err(|status| match status.code() {
                Code::InvalidArgument => OrderError::PaymentMethod(status.message().to_owned()),
                _ => unexpected("svc-payment", status),
            })?
            .into_inner();
        let card = response.card.unwrap_or_default();
        Ok(CardToken {
            token: response.card_token,
            brand: card.brand,
            last4: card.last4,
        })
    }

    pub async fn reserve_stock(&self, order: &Order) -> Result<inventory::Reservation, Status> {
        let ttl = prost_types::Duration {
            seconds: self.reservation_ttl.as_secs() as i64,
            nanos: 0,
        };
        let response = self
            .inventory
            .clone()
            .reserve_stock(request(inventory::ReserveStockRequest {
                order_id: order.id.to_string(),
                lines: order
                    .lines
                    .iter()
                    .map(|line| inventory::ReservationLine {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
                ttl: Some(ttl),
            }))
            .await?;
        reservation(response.into_inner().reservation)
    }

    pub async fn commit_stock(&self, order_id: Uuid) -> Result<inventory::Reservation, Status> {
        let response = self
            .inventory
            .clone()
            .commit_reservation(request(inventory::CommitReservationRequest {
                order_id: order_id.to_string(),
            }))
            .await?;
        reservation(response.into_inner().reservation)
    }

    pub async fn release_stock(
        &self,
        order_id: Uuid,
        reason: &str,
    ) -> Result<inventory::Reservation, Status> {
        let response = self
            .inventory
            .clone()
            .release_reservation(request(inventory::ReleaseReservationRequest {
                order_id: order_id.to_string(),
                reason: truncate(reason, 500),
            }))
            .await?;
        reservation(response.into_inner().reservation)
    }

    /// Authorizes the order's total under a key derived from the order, so a
    /// repeat (after a crash, or to settle an unknown outcome) finds the same
    /// payment.
    pub async fn authorize(
        &self,
        order: &Order,
        card_token: &str,
    ) -> Result<payment::Payment, Status> {
        let response = self
            .payments
            .clone()
            .authorize_payment(request(payment::AuthorizePaymentRequest {
                idempotency_key: payment_key(order.id, "authorize"),
                order_id: order.id.to_string(),
                user_id: order.user_id.to_string(),
                amount: Some(crate::order::money(&order.currency_code, order.total_minor)),
                payment_method: Some(payment::PaymentMethod {
                    method: Some(payment::payment_method::Method::CardToken(
                        card_token.to_owned(),
                    )),
                }),
            }))
            .await?;
        payment_of(response.into_inner().payment)
    }

    pub async fn capture(
        &self,
        order_id: Uuid,
        payment_id: Uuid,
    ) -> Result<payment::Payment, Status> {
        let response = self
            .payments
            .clone()
            .capture_payment(request(payment::CapturePaymentRequest {
                idempotency_key: payment_key(order_id, "capture"),
                payment_id: payment_id.to_string(),
            }))
            .await?;
        payment_of(response.into_inner().payment)
    }

    pub async fn void(
        &self,
        order_id: Uuid,
        payment_id: Uuid,
        reason: &str,
    ) -> Result<payment::Payment, Status> {
        let response = self
            .payments
            .clone()
            .void_payment(request(payment::VoidPaymentRequest {
                idempotency_key: payment_key(order_id, "void"),
                payment_id: payment_id.to_string(),
                reason: truncate(reason, 500),
            }))
            .await?;
        payment_of(response.into_inner().payment)
    }

    /// Refunds everything captured and not yet refunded.
    pub async fn refund(
        &self,
        order_id: Uuid,
        payment_id: Uuid,
        reason: &str,
    ) -> Result<payment::Payment, Status> {
        let response = self
            .payments
            .clone()
            .refund_payment(request(payment::RefundPaymentRequest {
                idempotency_key: payment_key(order_id, "refund"),
                payment_id: payment_id.to_string(),
                amount: None,
                reason: truncate(reason, 500),
            }))
            .await?;
        payment_of(response.into_inner().payment)
    }
}

/// The idempotency key of one payment operation of one order.
pub fn payment_key(order_id: Uuid, operation: &str) -> String {
    format!("order-{order_id}-{operation}")
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn reservation(
    reservation: Option<inventory::Reservation>,
) -> Result<inventory::Reservation, Status> {
    reservation.ok_or_else(|| Status::internal("svc-inventory answered without a reservation"))
}

fn payment_of(payment: Option<payment::Payment>) -> Result<payment::Payment, Status> {
    payment.ok_or_else(|| Status::internal("svc-payment answered without a payment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_keys_are_per_order_and_operation_and_fit_the_limit() {
        let id = Uuid::now_v7();
        assert_ne!(payment_key(id, "authorize"), payment_key(id, "capture"));
        assert!(payment_key(id, "authorize").len() <= 128);
    }

    #[test]
    fn only_not_now_codes_are_retried() {
        assert!(is_transient(Code::Unavailable));
        assert!(is_transient(Code::DeadlineExceeded));
        assert!(!is_transient(Code::FailedPrecondition));
        assert!(!is_transient(Code::InvalidArgument));
    }
}
