//! Carts against real svc-product, svc-inventory, Redis and PostgreSQL: the
//! item methods, current prices and availability on every read, validation,
//! "mine", the idle TTL of anonymous carts, and dependencies that are down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use fred::prelude::KeysInterface;
use shopmesh_proto::shop::cart::v1::{
    Availability, CartLineProblemCode, CheckoutRequest, ClearCartRequest, RemoveCartItemRequest,
    UpdateCartItemRequest,
};
use support::{
    NOWHERE, Shop, add, cart_of, client_of, error_reason, get, line, metric, new_cart, quantities,
    redis, stocked_products, violated_fields,
};
use tonic::Code;

fn update(cart_id: &str, sku: &str, quantity: i32) -> UpdateCartItemRequest {
    UpdateCartItemRequest {
        cart_id: cart_id.into(),
        sku: sku.into(),
        quantity,
    }
}

fn remove(cart_id: &str, sku: &str) -> RemoveCartItemRequest {
    RemoveCartItemRequest {
        cart_id: cart_id.into(),
        sku: sku.into(),
    }
}

#[tokio::test]
async fn items_are_added_grown_changed_removed_and_cleared() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let (lamp, desk) = (&products[0], &products[1]);

    let created = cart_of(
        client
            .create_cart(shopmesh_proto::shop::cart::v1::CreateCartRequest {})
            .await,
    );
    assert!(
        uuid::Uuid::parse_str(&created.id)
            .unwrap()
            .get_version_num()
            == 7
    );
    assert!(created.lines.is_empty() && created.user_id.is_empty());
    assert!(created.expire_time.is_some(), "an anonymous cart expires");
    let id = created.id;

    let cart = cart_of(client.add_cart_item(add(&id, lamp, 2)).await);
    let l = line(&cart, &lamp.sku);
    assert_eq!(l.product_id, lamp.id.to_string());
    assert_eq!(l.name, lamp.name);
    assert_eq!(
        l.unit_price.as_ref().unwrap().amount_minor,
        lamp.price_minor
    );
    assert_eq!(
        l.line_total.as_ref().unwrap().amount_minor,
        2 * lamp.price_minor
    );
    assert_eq!(
        l.image_url,
        lamp.image_urls.first().cloned().unwrap_or_default()
    );
    assert_eq!(l.availability(), Availability::InStock);
    assert_eq!(l.available_quantity, lamp.initial_stock);
    assert!(l.problems.is_empty() && l.add_time.is_some());
    assert!(cart.ready_for_checkout);

    // The same SKU grows its line; another SKU is a second line, after it.
    client.add_cart_item(add(&id, lamp, 3)).await.unwrap();
    let cart = cart_of(client.add_cart_item(add(&id, desk, 1)).await);
    assert_eq!(
        quantities(&cart),
        [(lamp.sku.clone(), 5), (desk.sku.clone(), 1)]
    );
    assert_eq!(cart.item_count, 6);
    let subtotal = cart.subtotal.as_ref().unwrap();
    assert_eq!(
        subtotal.amount_minor,
        5 * lamp.price_minor + desk.price_minor
    );
    assert_eq!(subtotal.currency_code, lamp.currency_code);

    // A read shows the same.
    let read = cart_of(client.get_cart(get(&id)).await);
    assert_eq!(quantities(&read), quantities(&cart));

    let cart = cart_of(client.update_cart_item(update(&id, &lamp.sku, 7)).await);
    assert_eq!(line(&cart, &lamp.sku).quantity, 7);
    let cart = cart_of(client.update_cart_item(update(&id, &lamp.sku, 0)).await);
    assert_eq!(quantities(&cart), [(desk.sku.clone(), 1)]);
    let missing = client
        .update_cart_item(update(&id, &lamp.sku, 1))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_reason(&missing), "CART_LINE_NOT_FOUND");

    let cart = cart_of(client.remove_cart_item(remove(&id, &desk.sku)).await);
    assert!(cart.lines.is_empty());
    // Idempotent.
    let cart = cart_of(client.remove_cart_item(remove(&id, &desk.sku)).await);
    assert!(cart.lines.is_empty());

    client.add_cart_item(add(&id, lamp, 1)).await.unwrap();
    client.add_cart_item(add(&id, desk, 1)).await.unwrap();
    let cleared = cart_of(
        client
            .clear_cart(ClearCartRequest {
                cart_id: id.clone(),
            })
            .await,
    );
    assert!(cleared.lines.is_empty());
    assert_eq!(cleared.item_count, 0);
    assert!(
        !cleared.ready_for_checkout,
        "an empty cart cannot be checked out"
    );
    assert_eq!(cleared.id, id, "a cleared cart is still there");
    assert!(cart_of(client.get_cart(get(&id)).await).lines.is_empty());
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let id = new_cart(&mut client).await;

    for quantity in [0, 100, -1] {
        let err = client
            .add_cart_item(add(&id, &products[0], quantity))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{quantity}");
        assert_eq!(violated_fields(&err), ["quantity"], "{quantity}");
    }
    // 1..99 per line, also when a line grows.
    client
        .add_cart_item(add(&id, &products[0], 98))
        .await
        .unwrap();
    let err = client
        .add_cart_item(add(&id, &products[0], 2))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["quantity"]);
    let described = String::from_utf8_lossy(err.details()).into_owned();
    assert!(described.contains("would hold 100 units"), "{err:?}");
    let cart = cart_of(client.add_cart_item(add(&id, &products[0], 1)).await);
    assert_eq!(line(&cart, &products[0].sku).quantity, 99);
    let err = client
        .update_cart_item(update(&id, &products[0].sku, 100))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["quantity"]);

    let err = client
        .add_cart_item(shopmesh_proto::shop::cart::v1::AddCartItemRequest {
            cart_id: id.clone(),
            product_id: "lamp".into(),
            quantity: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["product_id"]);

    let unknown = uuid::Uuid::now_v7().to_string();
    let err = client
        .add_cart_item(shopmesh_proto::shop::cart::v1::AddCartItemRequest {
            cart_id: id.clone(),
            product_id: unknown,
            quantity: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(error_reason(&err), "PRODUCT_NOT_FOUND");

    let err = client
        .get_cart(get(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(error_reason(&err), "CART_NOT_FOUND");
    let err = client
        .add_cart_item(add(&uuid::Uuid::now_v7().to_string(), &products[0], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = client.get_cart(get("not-a-cart")).await.unwrap_err();
    assert_eq!(violated_fields(&err), ["cart_id"]);
    let err = client.get_cart(get("")).await.unwrap_err();
    assert_eq!(violated_fields(&err), ["cart_id"]);
    let err = client
        .remove_cart_item(remove(&id, "has space"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["sku"]);

    // "mine" needs a valid token; a bad one counts as none.
    let err = client.get_cart(get("mine")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_cart(shopmesh_testkit::with_bearer(get("mine"), "not.a.token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .add_cart_item(add("mine", &products[0], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Checkout names every missing field (tests/checkout.rs has the rest).
    let ada = shop.shopper().await;
    let err = client
        .checkout(ada.request(CheckoutRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["idempotency_key", "shipping_address_id", "payment_method"]
    );
}

#[tokio::test]
async fn a_cart_holds_at_most_100_lines() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = shopmesh_demo::demo_catalog().products;
    let id = new_cart(&mut client).await;
    for product in &products[..100] {
        client.add_cart_item(add(&id, product, 1)).await.unwrap();
    }
    let err = client
        .add_cart_item(add(&id, &products[100], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(error_reason(&err), "CART_FULL");
    // A line already there still grows.
    let cart = cart_of(client.add_cart_item(add(&id, &products[0], 1)).await);
    assert_eq!(cart.lines.len(), 100);
    assert_eq!(cart.lines[0].quantity, 2);
    let skus: Vec<_> = cart.lines.iter().map(|l| l.sku.clone()).collect();
    let expected: Vec<_> = products[..100].iter().map(|p| p.sku.clone()).collect();
    assert_eq!(skus, expected, "lines in the order they were added");
}

#[tokio::test]
async fn reads_show_current_prices_deletions_and_stock() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let (repriced, deleted, short) = (&products[0], &products[1], &products[2]);
    let id = new_cart(&mut client).await;
    client.add_cart_item(add(&id, repriced, 2)).await.unwrap();
    client.add_cart_item(add(&id, deleted, 1)).await.unwrap();
    client.add_cart_item(add(&id, short, 5)).await.unwrap();

    let new_price = repriced.price_minor + 250;
    shop.set_price(&repriced.id.to_string(), new_price).await;
    shop.stack.delete_product(&deleted.id.to_string()).await;
    shop.stack.set_stock(&short.sku, 2).await;

    let cart = cart_of(client.get_cart(get(&id)).await);
    let l = line(&cart, &repriced.sku);
    assert_eq!(l.unit_price.as_ref().unwrap().amount_minor, new_price);
    assert_eq!(l.line_total.as_ref().unwrap().amount_minor, 2 * new_price);
    assert_eq!(l.problems.len(), 1);
    assert_eq!(l.problems[0].code(), CartLineProblemCode::PriceChanged);
    assert!(
        l.problems[0].message.contains("changed"),
        "{:?}",
        l.problems
    );
    assert_eq!(l.availability(), Availability::InStock);

    let gone = line(&cart, &deleted.sku);
    assert_eq!(gone.availability(), Availability::Discontinued);
    assert_eq!(
        gone.problems[0].code(),
        CartLineProblemCode::ProductUnavailable
    );
    assert_eq!(gone.name, deleted.name, "the name it was added with");
    assert!(gone.unit_price.is_none());

    let few = line(&cart, &short.sku);
    assert_eq!(few.availability(), Availability::InsufficientStock);
    assert_eq!(few.available_quantity, 2);
    assert_eq!(
        few.problems[0].code(),
        CartLineProblemCode::InsufficientStock
    );
    assert_eq!(few.problems[0].message, "Only 2 left in stock");

    assert_eq!(
        cart.subtotal.as_ref().unwrap().amount_minor,
        2 * new_price + 5 * short.price_minor,
        "discontinued lines have no price"
    );
    assert!(!cart.ready_for_checkout);

    // Fixing the blocking problems makes the cart ready; the price change only informs.
    client
        .remove_cart_item(remove(&id, &deleted.sku))
        .await
        .unwrap();
    let cart = cart_of(client.update_cart_item(update(&id, &short.sku, 2)).await);
    assert!(cart.ready_for_checkout, "{cart:?}");

    shop.stack.set_stock(&short.sku, 0).await;
    let cart = cart_of(client.get_cart(get(&id)).await);
    let out = line(&cart, &short.sku);
    assert_eq!(out.availability(), Availability::OutOfStock);
    assert_eq!(out.problems[0].code(), CartLineProblemCode::OutOfStock);
    assert!(!cart.ready_for_checkout);

    // Deleted products cannot be added.
    let err = client
        .add_cart_item(add(&id, deleted, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn mine_is_the_signed_in_shoppers_own_cart_without_a_ttl() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let (ada, bob) = (shop.shopper().await, shop.shopper().await);

    let first = cart_of(client.get_cart(ada.request(get("mine"))).await);
    assert_eq!(first.user_id, ada.id.to_string());
    assert!(first.lines.is_empty() && first.expire_time.is_none());
    let cart = cart_of(
        client
            .add_cart_item(ada.request(add("mine", &products[0], 3)))
            .await,
    );
    assert_eq!(cart.id, first.id, "created once, then the same cart");
    assert_eq!(quantities(&cart), [(products[0].sku.clone(), 3)]);
    let bobs = cart_of(client.get_cart(bob.request(get("mine"))).await);
    assert!(bobs.lines.is_empty());
    assert_ne!(bobs.id, cart.id);
    // The user cart's id is not an anonymous cart id.
    let err = client.get_cart(get(&cart.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let redis = redis().await;
    let ttl: i64 = redis.ttl(format!("cart:user:{}", ada.id)).await.unwrap();
    assert_eq!(ttl, -1, "a user's cart never expires");
}

#[tokio::test]
async fn anonymous_carts_expire_when_idle_and_changes_push_the_expiry_back() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let redis = redis().await;
    let week = 7 * 24 * 3600;

    let id = new_cart(&mut client).await;
    let key = format!("cart:{id}");
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((week - 5..=week).contains(&ttl), "{ttl}");

    // Time passes (as if), a read does not count as a change, an add does.
    let _: bool = redis.expire(&key, 1000, None).await.unwrap();
    client.get_cart(get(&id)).await.unwrap();
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!(ttl <= 1000, "{ttl}");
    let cart = cart_of(client.add_cart_item(add(&id, &products[0], 1)).await);
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((week - 5..=week).contains(&ttl), "{ttl}");
    let expire = cart.expire_time.unwrap().seconds;
    let updated = cart.update_time.unwrap().seconds;
    assert!((expire - updated - week).abs() <= 5, "{expire} {updated}");

    let _: bool = redis.expire(&key, 1000, None).await.unwrap();
    client
        .update_cart_item(update(&id, &products[0].sku, 4))
        .await
        .unwrap();
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!(ttl > 1000, "{ttl}");

    // A short idle lifetime, really waited out.
    let quick = shop.another_cart(&[("CART_IDLE_TTL_SECONDS", "1")]).await;
    let mut quick = client_of(&quick).await;
    let id = new_cart(&mut quick).await;
    quick
        .add_cart_item(add(&id, &products[0], 1))
        .await
        .unwrap();
    quick.get_cart(get(&id)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = quick.get_cart(get(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = quick
        .add_cart_item(add(&id, &products[0], 1))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "an expired cart is not recreated"
    );
}

#[tokio::test]
async fn a_dependency_that_is_down_is_unavailable_and_changes_nothing() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let id = new_cart(&mut client).await;
    client
        .add_cart_item(add(&id, &products[0], 2))
        .await
        .unwrap();
    let before = quantities(&cart_of(client.get_cart(get(&id)).await));

    for down in ["PRODUCT_GRPC_URL", "INVENTORY_GRPC_URL"] {
        let broken = shop.another_cart(&[(down, NOWHERE)]).await;
        let mut broken = client_of(&broken).await;

        // It starts, and what needs neither dependency works.
        let empty = new_cart(&mut broken).await;
        assert!(cart_of(broken.get_cart(get(&empty)).await).lines.is_empty());

        let err = broken.get_cart(get(&id)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{down}: {err:?}");
        assert!(err.message().contains("try again"), "{err:?}");
        for (what, err) in [
            (
                "add a new line",
                broken.add_cart_item(add(&id, &products[1], 1)).await,
            ),
            (
                "grow a line",
                broken.add_cart_item(add(&id, &products[0], 1)).await,
            ),
        ] {
            assert_eq!(err.unwrap_err().code(), Code::Unavailable, "{down}: {what}");
        }
        let err = broken
            .update_cart_item(update(&id, &products[0].sku, 9))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{down}");
        let err = broken
            .remove_cart_item(remove(&id, &products[0].sku))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{down}");

        let after = cart_of(client.get_cart(get(&id)).await);
        assert_eq!(quantities(&after), before, "{down}: nothing changed");
        let dependency = if down == "PRODUCT_GRPC_URL" {
            "svc-product"
        } else {
            "svc-inventory"
        };
        let failures = metric(
            shop.cart(),
            "cart_dependency_errors_total",
            &[("dependency", dependency)],
        )
        .await;
        assert!(failures >= 5.0, "{dependency}: {failures}");
    }
}
