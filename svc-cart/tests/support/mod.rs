//! What svc-cart's integration tests share: a small shop of real services on
//! fresh databases (svc-inventory with the demo stock, svc-product with the
//! demo catalog, svc-cart in front of both), all trusting one stand-in
//! identity provider; an admin to change prices, products and stock; shoppers;
//! and a Redis client to look at the carts' keys.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use shopmesh_demo::SeedProduct;
use shopmesh_platform::settings::{RedisSettings, Secret};
use shopmesh_proto::shop::cart::v1::cart_service_client::CartServiceClient;
use shopmesh_proto::shop::cart::v1::{
    AddCartItemRequest, Cart, CartLine, CreateCartRequest, GetCartRequest,
};
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{Product, UpdateProductRequest};
use shopmesh_testkit::{
    Service, Shop as Stack, SignedIn, TestIdentity, TestService, borrowed, owned, redis_url,
};
use tonic::Status;
use tonic::transport::Channel;

#[allow(unused_imports)] // for the tests that use it; not every test binary does
pub use shopmesh_testkit::NOWHERE;

pub type CartClient = CartServiceClient<Channel>;

pub struct Shop {
    /// svc-inventory, svc-product and svc-cart, their identity provider and
    /// an admin. svc-product's own stock stream is not what the cart reads:
    /// it is idle.
    pub stack: Stack,
}

impl Shop {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The shop, with `cart_settings` on top of svc-cart's test settings.
    pub async fn start_with(cart_settings: &[(&str, &str)]) -> Self {
        let stack = Stack::with(&[Service::Inventory, Service::Product, Service::Cart])
            .settings(Service::Product, &[("INVENTORY_GRPC_URL", NOWHERE)])
            .settings(Service::Cart, cart_settings)
            .start()
            .await;
        Self { stack }
    }

    pub fn identity(&self) -> &TestIdentity {
        &self.stack.identity
    }

    pub fn cart(&self) -> &TestService {
        &self.stack[Service::Cart]
    }

    /// Another svc-cart on the same Redis, with `settings` on top of the
    /// shop's (e.g. a dependency that is down).
    pub async fn another_cart(&self, settings: &[(&str, &str)]) -> TestService {
        let mut all = self.stack.wiring(Service::Cart);
        all.extend(owned(settings));
        Service::Cart
            .spawn(&borrowed(&all))
            .await
            .expect("svc-cart starts")
    }

    pub async fn client(&self) -> CartClient {
        client_of(self.cart()).await
    }

    pub async fn shopper(&self) -> SignedIn {
        self.stack.shopper().await
    }

    /// An admin changes a product's price.
    pub async fn set_price(&self, product_id: &str, amount_minor: i64) {
        let channel = self.stack[Service::Product].channel().await.unwrap();
        let mut client = ProductServiceClient::new(channel);
        client
            .update_product(self.stack.admin.request(UpdateProductRequest {
                product: Some(Product {
                    id: product_id.to_owned(),
                    price: Some(Money {
                        currency_code: "USD".into(),
                        amount_minor,
                    }),
                    ..Product::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["price".into()],
                }),
            }))
            .await
            .expect("the admin changes the price");
    }
}

pub async fn client_of(service: &TestService) -> CartClient {
    CartServiceClient::new(service.channel().await.expect("connects"))
}

/// Demo products with plenty of stock (at least 100 units), in catalog order.
pub fn stocked_products() -> Vec<SeedProduct> {
    shopmesh_demo::demo_catalog()
        .products
        .into_iter()
        .filter(|p| p.initial_stock >= 100)
        .collect()
}

/// A new anonymous cart's id.
pub async fn new_cart(client: &mut CartClient) -> String {
    client
        .create_cart(CreateCartRequest {})
        .await
        .unwrap()
        .into_inner()
        .cart
        .unwrap()
        .id
}

pub fn add(cart_id: &str, product: &SeedProduct, quantity: i32) -> AddCartItemRequest {
    AddCartItemRequest {
        cart_id: cart_id.to_owned(),
        product_id: product.id.to_string(),
        quantity,
    }
}

pub fn get(cart_id: &str) -> GetCartRequest {
    GetCartRequest {
        cart_id: cart_id.to_owned(),
    }
}

/// The cart of a response, which every cart method returns.
pub fn cart_of<T: HasCart>(response: Result<tonic::Response<T>, Status>) -> Cart {
    response.expect("the call succeeds").into_inner().cart()
}

pub trait HasCart {
    fn cart(self) -> Cart;
}

macro_rules! has_cart {
    ($($response:ident),*) => {
        $(impl HasCart for shopmesh_proto::shop::cart::v1::$response {
            fn cart(self) -> Cart {
                self.cart.expect("a cart in the response")
            }
        })*
    };
}
has_cart!(
    CreateCartResponse,
    GetCartResponse,
    AddCartItemResponse,
    UpdateCartItemResponse,
    RemoveCartItemResponse,
    ClearCartResponse,
    MergeCartsResponse
);

/// `(sku, quantity)` of every line, in the cart's order.
pub fn quantities(cart: &Cart) -> Vec<(String, i32)> {
    cart.lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect()
}

pub fn line<'a>(cart: &'a Cart, sku: &str) -> &'a CartLine {
    cart.lines
        .iter()
        .find(|l| l.sku == sku)
        .unwrap_or_else(|| panic!("no line {sku} in {:?}", quantities(cart)))
}

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_platform::errors::violated_fields;

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_testkit::error_reason;

/// A Redis client on `url`, to look at keys directly.
pub async fn redis_at(url: &str) -> fred::prelude::Client {
    shopmesh_platform::redis::connect(&RedisSettings {
        url: Secret::new(url.to_owned()),
        command_timeout: std::time::Duration::from_secs(5),
    })
    .await
    .expect("redis connects")
}

/// A Redis client on the tests' shared Redis.
pub async fn redis() -> fred::prelude::Client {
    redis_at(&redis_url()).await
}

/// Polls `check` until it returns `Some`, for at most `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[allow(unused_imports)] // not every test file reads metrics
pub use shopmesh_testkit::metric;
