//! What Checkout asks other services: the shipping address from svc-user
//! (`GetUserAddress`) and the order from svc-order (`CreateOrder`), both with
//! the cart's service credential.
//!
//! How a checkout goes (the handler is `CartApi::checkout`):
//! 1. The attempt recorded for the idempotency key, if any, is replayed: its
//!    lines and address go to CreateOrder again, which answers with the same
//!    order (idempotent per user and key), whatever the cart holds by now.
//!    This is why a retry after a confirmed checkout, which emptied the cart,
//!    still gets its order rather than "empty cart".
//! 2. Otherwise the cart must be ready (`ready_for_checkout` of the view every
//!    read shows), the address is resolved, and the attempt (lines, address)
//!    is recorded under the key before CreateOrder is called; of two
//!    concurrent first attempts with one key, the first recorded wins and
//!    both send it.
//! 3. A CONFIRMED order takes what it bought out of the cart, once per order
//!    (`Carts::checked_out`). An order still under way is returned as it is
//!    and the cart kept; the next Checkout with the same key that finds it
//!    confirmed empties the cart then.

use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::order::v1::order_service_client::OrderServiceClient;
use shopmesh_proto::shop::order::v1::{CreateOrderRequest, Order, OrderStatus, ShippingAddress};
use shopmesh_proto::shop::payment::v1::PaymentMethod;
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use shopmesh_proto::shop::user::v1::{Address, GetUserAddressRequest};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::catalog::failed;
use crate::error::{CartError, Dependency};
use crate::settings::CartSettings;

/// How long reading an address may take.
const ADDRESS_DEADLINE: Duration = Duration::from_secs(2);
/// How long CreateOrder may take: it answers when the saga settles, or a
/// little before this deadline with the order as it then stands.
const ORDER_DEADLINE: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const USER_SERVICE: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(ADDRESS_DEADLINE);
const ORDER_SERVICE: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(ORDER_DEADLINE);

/// A checkout attempt, recorded under its idempotency key before CreateOrder
/// is first called: a repeat sends the same request again (CreateOrder is
/// idempotent per user and key), whatever the cart or the address book holds
/// by then.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckoutAttempt {
    /// The address id the attempt named (a repeat naming another is refused).
    pub shipping_address_id: String,
    /// CreateOrder as first sent: lines from the cart, the resolved address;
    /// never the payment method, which is not stored.
    pub order: CreateOrderRequest,
}

/// Clients of svc-user and svc-order.
#[derive(Clone)]
pub struct Ordering {
    users: UserServiceClient<Authenticated>,
    orders: OrderServiceClient<Authenticated>,
}

impl Ordering {
    pub fn connect(
        settings: &CartSettings,
        credentials: ServiceCredentials,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            users: UserServiceClient::new(
                USER_SERVICE.authenticated(&settings.user_url, credentials.clone())?,
            ),
            orders: OrderServiceClient::new(
                ORDER_SERVICE.authenticated(&settings.order_url, credentials)?,
            ),
        })
    }

    /// `user`'s address `address_id`, as an order's shipping address;
    /// AddressNotFound unless it is in the user's book.
    pub async fn address(
        &self,
        user: Uuid,
        address_id: &str,
    ) -> Result<ShippingAddress, CartError> {
        let mut request = tonic::Request::new(GetUserAddressRequest {
            user_id: user.to_string(),
            address_id: address_id.to_owned(),
        });
        request.set_timeout(ADDRESS_DEADLINE);
        match self.users.clone().get_user_address(request).await {
            Ok(response) => match response.into_inner().address {
                Some(address) => Ok(resolved(address)),
                None => Err(CartError::DependencyFailed(
                    Dependency::User,
                    Status::internal("GetUserAddress answered without an address"),
                )),
            },
            Err(status) if status.code() == Code::NotFound => {
                Err(CartError::AddressNotFound(address_id.to_owned()))
            }
            Err(status) => Err(failed(Dependency::User, status)),
        }
    }

    /// CreateOrder for `attempt`, paid with `payment_method`: the order as
    /// svc-order answers with it.
    pub async fn create_order(
        &self,
        attempt: &CheckoutAttempt,
        payment_method: PaymentMethod,
    ) -> Result<Order, CartError> {
        let mut request = tonic::Request::new(CreateOrderRequest {
            payment_method: Some(payment_method),
            ..attempt.order.clone()
        });
        request.set_timeout(ORDER_DEADLINE);
        match self.orders.clone().create_order(request).await {
            Ok(response) => response.into_inner().order.ok_or_else(|| {
                CartError::DependencyFailed(
                    Dependency::Order,
                    Status::internal("CreateOrder answered without an order"),
                )
            }),
            Err(status) => match status.code() {
                Code::AlreadyExists | Code::FailedPrecondition | Code::InvalidArgument => {
                    Err(CartError::OrderRefused(status))
                }
                _ => Err(failed(Dependency::Order, status)),
            },
        }
    }
}

/// Whether `order` was confirmed, so what it bought leaves the cart. A
/// refunded order was confirmed first.
pub fn was_confirmed(order: &Order) -> bool {
    matches!(
        order.status(),
        OrderStatus::Confirmed | OrderStatus::Refunded
    )
}

fn resolved(address: Address) -> ShippingAddress {
    ShippingAddress {
        recipient: address.recipient,
        line1: address.line1,
        line2: address.line2,
        city: address.city,
        region: address.region,
        postal_code: address.postal_code,
        country_code: address.country_code,
        phone: address.phone,
    }
}
