#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Checkout from the cart against the real services: svc-product,
//! svc-inventory, svc-payment (the simulated card network) and svc-order (the
//! saga) as svc-order's own tests start them (their support module, shared
//! rather than copied), plus svc-user (the address book) and svc-cart, each on
//! its own fresh database. Optionally svc-order reaches payment through a gate
//! that refuses authorizations until opened, so an order stays under way.

#[path = "../../svc-order/tests/support/mod.rs"]
mod order_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::KeysInterface;
use shopmesh_demo::SeedProduct;
use shopmesh_proto::shop::cart::v1::{AddCartItemRequest, Cart, CheckoutRequest, GetCartRequest};
use shopmesh_proto::shop::order::v1::{Order, OrderStatus};
use shopmesh_proto::shop::payment::v1::PaymentMethod;
use shopmesh_proto::shop::payment::v1::payment_method::Method;
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use shopmesh_proto::shop::user::v1::{Address, CreateAddressRequest, CreateProfileRequest};
use shopmesh_testkit::{Service, SignedIn, TestService, as_service, borrowed};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use order_support::{APPROVED, DECLINED};
use support::{CartClient, client_of, quantities, stocked_products};

struct Shop {
    /// svc-product, svc-inventory, svc-payment (and its gate), svc-order.
    base: order_support::Shop,
    user: TestService,
    cart: TestService,
}

impl Shop {
    /// Every service; with `gated`, svc-order reaches payment through the
    /// (closed) gate and answers CreateOrder after a second at most.
    async fn start(gated: bool) -> Self {
        let extra: &[(&str, &str)] = if gated {
            &[
                ("ORDER_SAGA_MAX_BACKOFF_SECONDS", "1"),
                ("ORDER_RESPONSE_WAIT_SECONDS", "1"),
            ]
        } else {
            &[]
        };
        let base = order_support::Shop::start_with(gated, extra).await;
        let user = Service::User
            .spawn(&borrowed(&base.stack.wiring(Service::User)))
            .await
            .expect("svc-user starts");
        let mut settings = base.stack.wiring(Service::Cart);
        settings.extend([
            ("USER_GRPC_URL".to_owned(), user.endpoint()),
            ("ORDER_GRPC_URL".to_owned(), base.order().endpoint()),
        ]);
        let cart = Service::Cart
            .spawn(&borrowed(&settings))
            .await
            .expect("svc-cart starts");
        Self { base, user, cart }
    }

    async fn carts(&self) -> CartClient {
        client_of(&self.cart).await
    }

    /// A signed-in shopper with a profile and one address in their book.
    async fn shopper(&self) -> (SignedIn, Address) {
        let shopper = self.base.shopper().await;
        let channel = self.user.channel().await.unwrap();
        UserServiceClient::new(as_service(channel.clone(), "svc-auth"))
            .create_profile(CreateProfileRequest {
                user_id: shopper.id.to_string(),
                email: format!("{}@example.com", shopper.id.simple()),
                display_name: "Ada".into(),
            })
            .await
            .unwrap();
        let address = UserServiceClient::new(channel)
            .create_address(shopper.request(CreateAddressRequest {
                address: Some(Address {
                    label: "Home".into(),
                    recipient: "Ada Lovelace".into(),
                    line1: "12 St James's Square".into(),
                    city: "London".into(),
                    country_code: "GB".into(),
                    ..Default::default()
                }),
            }))
            .await
            .unwrap()
            .into_inner()
            .address
            .unwrap();
        (shopper, address)
    }

    async fn add(&self, shopper: &SignedIn, product: &SeedProduct, quantity: i32) -> Cart {
        self.carts()
            .await
            .add_cart_item(shopper.request(AddCartItemRequest {
                cart_id: "mine".into(),
                product_id: product.id.to_string(),
                quantity,
            }))
            .await
            .unwrap()
            .into_inner()
            .cart
            .unwrap()
    }

    async fn cart_of(&self, shopper: &SignedIn) -> Cart {
        self.carts()
            .await
            .get_cart(shopper.request(GetCartRequest {
                cart_id: "mine".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .cart
            .unwrap()
    }

    async fn checkout(
        &self,
        shopper: &SignedIn,
        key: &str,
        address_id: &str,
        card: &str,
    ) -> Result<Order, Status> {
        self.carts()
            .await
            .checkout(shopper.request(checkout_request(key, address_id, card)))
            .await
            .map(|r| r.into_inner().order.unwrap())
    }

    /// How many orders svc-order's database holds for the shopper.
    async fn orders_in_db(&self, shopper: &SignedIn) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1")
            .bind(shopper.id)
            .fetch_one(self.base.order().db())
            .await
            .unwrap()
    }

    /// Polls the order (as its owner) until it is `status`.
    async fn wait_for(&self, shopper: &SignedIn, id: &str, status: OrderStatus) -> Order {
        let within = Duration::from_secs(60);
        self.base
            .wait_for(shopper, id, within, |o| o.status() == status)
            .await
    }
}

fn checkout_request(key: &str, address_id: &str, card: &str) -> CheckoutRequest {
    CheckoutRequest {
        idempotency_key: key.into(),
        shipping_address_id: address_id.into(),
        payment_method: Some(PaymentMethod {
            method: Some(Method::TestCardNumber(card.into())),
        }),
    }
}

fn new_key() -> String {
    Uuid::now_v7().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_checkout_empties_the_cart_and_a_repeat_returns_the_same_order() {
    let shop = Shop::start(false).await;
    let (ada, home) = shop.shopper().await;
    let products = stocked_products();
    let (lamp, mug) = (&products[0], &products[1]);
    let on_hand = shop.base.stock(&lamp.sku).await.on_hand;
    shop.add(&ada, lamp, 2).await;
    shop.add(&ada, mug, 1).await;

    let key = new_key();
    let order = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(
        order.status(),
        OrderStatus::Confirmed,
        "{}",
        order.status_reason
    );
    assert_eq!(order.user_id, ada.id.to_string());
    let ordered: Vec<_> = order
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    assert_eq!(ordered, [(lamp.sku.clone(), 2), (mug.sku.clone(), 1)]);
    let shipping = order.shipping_address.clone().unwrap();
    assert_eq!(
        (shipping.recipient.as_str(), shipping.city.as_str()),
        ("Ada Lovelace", "London")
    );
    assert!(shop.cart_of(&ada).await.lines.is_empty());
    let stock = shop.base.stock(&lamp.sku).await;
    assert_eq!((stock.on_hand, stock.reserved), (on_hand - 2, 0));

    // The same key again, on the emptied cart: the same order, nothing more.
    let again = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.status()),
        (order.id.as_str(), OrderStatus::Confirmed)
    );
    // And after the cart changed: still the same order, and the new line is
    // not taken out for an order that was already emptied from the cart.
    shop.add(&ada, lamp, 1).await;
    let third = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(third.id, order.id);
    assert_eq!(
        quantities(&shop.cart_of(&ada).await),
        [(lamp.sku.clone(), 1)]
    );
    assert_eq!(shop.orders_in_db(&ada).await, 1);
    assert_eq!(shop.base.stock(&lamp.sku).await.on_hand, on_hand - 2);

    // The same key with another address is another checkout: refused.
    let err = shop
        .checkout(&ada, &key, &Uuid::now_v7().to_string(), APPROVED)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_fails_the_order_and_keeps_the_cart() {
    let shop = Shop::start(false).await;
    let (ada, home) = shop.shopper().await;
    let lamp = &stocked_products()[0];
    let on_hand = shop.base.stock(&lamp.sku).await.on_hand;
    shop.add(&ada, lamp, 3).await;

    let order = shop
        .checkout(&ada, &new_key(), &home.id, DECLINED)
        .await
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Failed);
    assert!(!order.status_reason.is_empty());
    assert_eq!(
        quantities(&shop.cart_of(&ada).await),
        [(lamp.sku.clone(), 3)]
    );
    let stock = shop.base.stock(&lamp.sku).await;
    assert_eq!((stock.on_hand, stock.reserved), (on_hand, 0));

    // A new key with a good card goes through.
    let order = shop
        .checkout(&ada, &new_key(), &home.id, APPROVED)
        .await
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Confirmed);
    assert!(shop.cart_of(&ada).await.lines.is_empty());

    // A card number the network does not know: INVALID_ARGUMENT, cart kept.
    shop.add(&ada, lamp, 1).await;
    let err = shop
        .checkout(&ada, &new_key(), &home.id, "1234123412341234")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        quantities(&shop.cart_of(&ada).await),
        [(lamp.sku.clone(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_with_one_key_place_one_order() {
    let shop = Arc::new(Shop::start(false).await);
    let (ada, home) = shop.shopper().await;
    let ada = Arc::new(ada);
    let lamp = &stocked_products()[0];
    let on_hand = shop.base.stock(&lamp.sku).await.on_hand;
    shop.add(&ada, lamp, 2).await;

    let key = new_key();
    let attempts = (0..5).map(|_| {
        let (shop, ada, key, home) = (shop.clone(), ada.clone(), key.clone(), home.id.clone());
        tokio::spawn(async move { shop.checkout(&ada, &key, &home, APPROVED).await })
    });
    let orders: Vec<Order> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert!(orders.iter().all(|o| o.id == orders[0].id), "{orders:?}");
    let order = shop
        .wait_for(&ada, &orders[0].id, OrderStatus::Confirmed)
        .await;
    assert_eq!(shop.orders_in_db(&ada).await, 1);
    // Whichever answer saw it confirmed emptied the cart, once.
    let again = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(again.id, order.id);
    assert!(shop.cart_of(&ada).await.lines.is_empty());
    assert_eq!(shop.base.stock(&lamp.sku).await.on_hand, on_hand - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carts_that_cannot_be_bought_and_bad_requests_are_refused() {
    let shop = Shop::start(false).await;
    let (ada, home) = shop.shopper().await;
    let (bob, bobs_home) = shop.shopper().await;
    let products = stocked_products();
    let (lamp, mug) = (&products[0], &products[1]);

    // An empty cart.
    let err = shop
        .checkout(&ada, &new_key(), &home.id, APPROVED)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(&err), "CART_EMPTY");

    // A line out of stock: named in the PreconditionFailure.
    shop.add(&ada, lamp, 1).await;
    shop.add(&ada, mug, 2).await;
    shop.base.stack.set_stock(&mug.sku, 0).await;
    let err = shop
        .checkout(&ada, &new_key(), &home.id, APPROVED)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(&err), "CART_NOT_READY");
    let details = err.get_error_details();
    let subjects: Vec<_> = details
        .precondition_failure()
        .expect("PreconditionFailure details")
        .violations
        .iter()
        .map(|v| v.subject.clone())
        .collect();
    assert_eq!(subjects, [mug.sku.as_str()]);
    shop.base.stack.set_stock(&mug.sku, 100).await;

    // Someone else's address, and one nobody has.
    for address_id in [bobs_home.id.clone(), Uuid::now_v7().to_string()] {
        let err = shop
            .checkout(&ada, &new_key(), &address_id, APPROVED)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{address_id}: {err:?}");
    }
    assert_eq!(shop.orders_in_db(&ada).await, 0);
    assert_eq!(shop.cart_of(&ada).await.lines.len(), 2);

    // Bad fields, each named.
    let mut carts = shop.carts().await;
    let err = carts
        .checkout(ada.request(CheckoutRequest {
            idempotency_key: "x".repeat(129),
            shipping_address_id: "home".into(),
            payment_method: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        support::violated_fields(&err),
        ["idempotency_key", "shipping_address_id", "payment_method"]
    );
    // Signed out: no "mine" to check out.
    let err = carts
        .checkout(checkout_request(&new_key(), &home.id, APPROVED))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Bob's own checkout is unaffected by Ada's.
    shop.add(&bob, lamp, 1).await;
    let order = shop
        .checkout(&bob, &new_key(), &bobs_home.id, APPROVED)
        .await
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_still_under_way_keeps_the_cart_and_a_retry_takes_out_only_what_was_ordered() {
    let shop = Shop::start(true).await;
    let (ada, home) = shop.shopper().await;
    let products = stocked_products();
    let (lamp, mug, pen) = (&products[0], &products[1], &products[2]);
    shop.add(&ada, lamp, 2).await;
    shop.add(&ada, mug, 1).await;

    // Payment is down: CreateOrder answers after its wait, the order under way.
    let key = new_key();
    let order = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert!(
        !matches!(
            order.status(),
            OrderStatus::Confirmed | OrderStatus::Failed | OrderStatus::Cancelled
        ),
        "{:?}",
        order.status()
    );
    assert_eq!(shop.cart_of(&ada).await.lines.len(), 2);

    // Meanwhile the shopper adds a line and one more lamp.
    shop.add(&ada, pen, 1).await;
    shop.add(&ada, lamp, 1).await;
    shop.base.gate.open();
    shop.wait_for(&ada, &order.id, OrderStatus::Confirmed).await;

    // The retry with the key sees it confirmed and takes out what it bought.
    let again = shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.status()),
        (order.id.as_str(), OrderStatus::Confirmed)
    );
    let left = quantities(&shop.cart_of(&ada).await);
    assert_eq!(left, [(lamp.sku.clone(), 1), (pen.sku.clone(), 1)]);
    // Once only: another retry leaves the cart as it is.
    shop.checkout(&ada, &key, &home.id, APPROVED).await.unwrap();
    assert_eq!(quantities(&shop.cart_of(&ada).await), left);

    // The attempts live beside the cart, not in it, and expire.
    let ttl: i64 = support::redis()
        .await
        .ttl(format!("checkouts:user:{}", ada.id))
        .await
        .unwrap();
    assert!(ttl > 0, "{ttl}");
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}
