#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The checkout saga end to end against the real catalog, inventory and
//! payment services: confirmation, declines, shortages, idempotency per key
//! (sequential and concurrent), catalog pricing, and who may read an order.

mod support;

use std::time::Duration;

use futures::future::join_all;
use shopmesh_events::{EnvelopeExt as _, EventEnvelope};
use shopmesh_proto::shop::events::v1::{OrderConfirmed, OrderFailed, PaymentCaptured};
use shopmesh_proto::shop::order::v1::{ListMyOrdersRequest, OrderStatus};
use shopmesh_proto::shop::payment::v1::PaymentStatus;
use shopmesh_testkit::wait_for_events;
use support::{APPROVED, DECLINED, Shop, checkout, reason, statuses, stocked_products};
use tonic::Code;

#[tokio::test]
async fn an_approved_order_is_confirmed_stock_committed_and_payment_captured() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let products = stocked_products(20);
    let (a, b) = (&products[0], &products[1]);
    let before = (shop.stock(&a.sku).await, shop.stock(&b.sku).await);

    let order = shop
        .place(checkout("key-1", &user, &[(a, 2), (b, 1)], APPROVED))
        .await;

    assert_eq!(
        order.status(),
        OrderStatus::Confirmed,
        "{}",
        order.status_reason
    );
    assert_eq!(order.user_id, user.id.to_string());
    assert_eq!(order.idempotency_key, "key-1");
    // Prices are the catalog's, never the client's (it cannot even send one).
    assert_eq!(
        order.lines[0].unit_price.as_ref().unwrap().amount_minor,
        a.price_minor
    );
    assert_eq!(
        order.lines[0].line_total.as_ref().unwrap().amount_minor,
        a.price_minor * 2
    );
    assert_eq!(order.lines[0].name, a.name);
    let total = a.price_minor * 2 + b.price_minor;
    assert_eq!(order.total.as_ref().unwrap().amount_minor, total);
    assert_eq!(order.subtotal.as_ref().unwrap().amount_minor, total);
    assert_eq!(order.currency_code, a.currency_code);
    assert_eq!(order.shipping_address.as_ref().unwrap().city, "London");

    // Stock: sold, nothing left reserved.
    let after = (shop.stock(&a.sku).await, shop.stock(&b.sku).await);
    assert_eq!(after.0.on_hand, before.0.on_hand - 2);
    assert_eq!(after.1.on_hand, before.1.on_hand - 1);
    assert_eq!((after.0.reserved, after.1.reserved), (0, 0));
    assert_eq!(
        shop.reservation_status(&order.id).await.as_deref(),
        Some("committed")
    );

    // Payment: one, captured for the total.
    let payments = shop.payments(&user, &order.id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Captured);
    assert_eq!(payments[0].id, order.payment_id);
    assert_eq!(payments[0].captured.as_ref().unwrap().amount_minor, total);

    // History in order, with times that never go back.
    let history = shop.history(&user, &order.id).await;
    assert_eq!(
        statuses(&history),
        [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorized,
            OrderStatus::Confirmed
        ]
    );
    let times: Vec<_> = history
        .iter()
        .map(|c| {
            let t = c.change_time.unwrap();
            (t.seconds, t.nanos)
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // Events, through the outbox: the order's created then confirmed (keyed by
    // the order id, in order), the payment's authorized then captured.
    let events = wait_for_events(shopmesh_proto::topics::ORDER_EVENTS, &order.id, 2).await;
    assert_eq!(
        event_types(&events),
        [
            "shop.events.v1.OrderCreated",
            "shop.events.v1.OrderConfirmed"
        ]
    );
    let confirmed: OrderConfirmed = events[1].payload_as().unwrap();
    assert_eq!(confirmed.total.unwrap().amount_minor, total);
    let events =
        wait_for_events(shopmesh_proto::topics::PAYMENT_EVENTS, &order.payment_id, 2).await;
    assert_eq!(
        event_types(&events),
        [
            "shop.events.v1.PaymentAuthorized",
            "shop.events.v1.PaymentCaptured"
        ]
    );
    let captured: PaymentCaptured = events[1].payload_as().unwrap();
    assert_eq!(captured.order_id, order.id);
    assert_eq!(captured.amount.unwrap().amount_minor, total);

    // No card number anywhere in svc-order's database.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE card_token LIKE '%4242424242424242%' \
         OR shipping_address::text LIKE '%4242424242424242%'",
    )
    .fetch_one(shop.order().db())
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    let last4: String = sqlx::query_scalar("SELECT card_last4 FROM orders")
        .fetch_one(shop.order().db())
        .await
        .unwrap();
    assert_eq!(last4, "4242");
}

#[tokio::test]
async fn a_declined_card_fails_the_order_releases_stock_and_captures_nothing() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    let before = shop.stock(&product.sku).await;

    let order = shop
        .place(checkout("decline", &user, &[(product, 3)], DECLINED))
        .await;

    assert_eq!(order.status(), OrderStatus::Failed);
    assert_eq!(order.status_reason, "card declined: card_declined");
    let after = shop.stock(&product.sku).await;
    assert_eq!((after.on_hand, after.reserved), (before.on_hand, 0));
    assert_eq!(
        shop.reservation_status(&order.id).await.as_deref(),
        Some("released")
    );
    let payments = shop.payments(&user, &order.id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Failed);
    assert_eq!(
        payments[0].captured.as_ref().map_or(0, |m| m.amount_minor),
        0
    );
    assert_eq!(
        statuses(&shop.history(&user, &order.id).await),
        [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::Failed
        ]
    );
    let events = wait_for_events(shopmesh_proto::topics::ORDER_EVENTS, &order.id, 2).await;
    assert_eq!(
        event_types(&events),
        ["shop.events.v1.OrderCreated", "shop.events.v1.OrderFailed"]
    );
    let failed: OrderFailed = events[1].payload_as().unwrap();
    assert_eq!(failed.failure_code, "payment_declined");
    let events = wait_for_events(shopmesh_proto::topics::PAYMENT_EVENTS, &payments[0].id, 1).await;
    assert_eq!(event_types(&events), ["shop.events.v1.PaymentFailed"]);
}

fn event_types(events: &[EventEnvelope]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[tokio::test]
async fn too_little_stock_fails_with_a_reason_and_authorizes_nothing() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    shop.stack.set_stock(&product.sku, 1).await;

    let order = shop
        .place(checkout("short", &user, &[(product, 2)], APPROVED))
        .await;

    assert_eq!(order.status(), OrderStatus::Failed);
    assert_eq!(
        order.status_reason,
        format!("out of stock: {}", product.sku)
    );
    assert!(order.payment_id.is_empty());
    assert!(shop.payments(&user, &order.id).await.is_empty());
    let stock = shop.stock(&product.sku).await;
    assert_eq!((stock.on_hand, stock.reserved), (1, 0));
    assert_eq!(
        statuses(&shop.history(&user, &order.id).await),
        [OrderStatus::Pending, OrderStatus::Failed]
    );
}

#[tokio::test]
async fn one_key_makes_one_order_and_one_payment_sequentially_and_concurrently() {
    let shop = Shop::start_with(false, &[("DB_MAX_CONNECTIONS", "12")]).await;
    let user = shop.shopper().await;
    let product = &stocked_products(30)[0];
    let before = shop.stock(&product.sku).await;

    let client = shop.as_cart().await;
    let first = shop
        .place(checkout("again", &user, &[(product, 1)], APPROVED))
        .await;
    let second = shop
        .place(checkout(
            "again",
            &user,
            &[(product, 1)],
            "5555555555554444",
        ))
        .await;
    assert_eq!(first.id, second.id, "another card is the same order");
    assert_eq!(second.status(), OrderStatus::Confirmed);

    let calls = (0..10).map(|_| {
        let mut client = client.clone();
        let request = checkout("together", &user, &[(product, 1)], APPROVED);
        tokio::spawn(async move { client.create_order(request).await })
    });
    let orders: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().into_inner().order.unwrap())
        .collect();
    let id = &orders[0].id;
    assert!(
        orders.iter().all(|o| &o.id == id),
        "one order for ten calls"
    );
    shop.wait_for(&user, id, Duration::from_secs(30), |o| {
        o.status() == OrderStatus::Confirmed
    })
    .await;

    for order_id in [&first.id, id] {
        let payments = shop.payments(&user, order_id).await;
        assert_eq!(payments.len(), 1, "one payment for {order_id}");
        assert_eq!(payments[0].status(), PaymentStatus::Captured);
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.order().db())
        .await
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(shop.stock(&product.sku).await.on_hand, before.on_hand - 2);
}

#[tokio::test]
async fn a_key_reused_with_other_content_is_already_exists() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let products = stocked_products(5);
    let mut client = shop.as_cart().await;
    client
        .create_order(checkout("mine", &user, &[(&products[0], 1)], APPROVED))
        .await
        .unwrap();

    let other_lines = client
        .create_order(checkout("mine", &user, &[(&products[1], 1)], APPROVED))
        .await
        .unwrap_err();
    assert_eq!(other_lines.code(), Code::AlreadyExists);
    assert_eq!(reason(&other_lines), "IDEMPOTENCY_KEY_REUSED");
    let mut moved = checkout("mine", &user, &[(&products[0], 1)], APPROVED);
    moved.shipping_address.as_mut().unwrap().city = "Paris".into();
    assert_eq!(
        client.create_order(moved).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // The same key of another user is another order.
    let other = shop.shopper().await;
    let theirs = shop
        .place(checkout("mine", &other, &[(&products[1], 1)], APPROVED))
        .await;
    assert_eq!(theirs.user_id, other.id.to_string());
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_stored() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    let mut client = shop.as_cart().await;

    let mut wrong_sku = checkout("k1", &user, &[(product, 1)], APPROVED);
    wrong_sku.lines[0].sku = "NOT-ITS-SKU".into();
    let err = client.create_order(wrong_sku).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "SKU_MISMATCH")
    );

    let mut unknown = checkout("k2", &user, &[(product, 1)], APPROVED);
    unknown.lines[0].product_id = uuid::Uuid::now_v7().to_string();
    let err = client.create_order(unknown).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "PRODUCT_NOT_FOUND")
    );

    let err = client
        .create_order(checkout("k3", &user, &[(product, 100)], APPROVED))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(support_fields(&err), ["lines[0].quantity"]);

    let err = client
        .create_order(checkout("k4", &user, &[(product, 1)], "1234123412341234"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(support_fields(&err), ["payment_method"]);

    // Without the service credential, CreateOrder is not for anyone.
    let err = shop
        .orders()
        .await
        .create_order(checkout("k5", &user, &[(product, 1)], APPROVED))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.order().db())
        .await
        .unwrap();
    assert_eq!(count, 0);
}

fn support_fields(status: &tonic::Status) -> Vec<String> {
    shopmesh_platform::errors::violated_fields(status)
}

#[tokio::test]
async fn only_the_owner_and_admins_see_an_order_and_lists_page_newest_first() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let stranger = shop.shopper().await;
    let products = stocked_products(10);
    let mut ids = Vec::new();
    for (n, card) in [APPROVED, DECLINED, APPROVED].into_iter().enumerate() {
        let order = shop
            .place(checkout(
                &format!("o{n}"),
                &user,
                &[(&products[n], 1)],
                card,
            ))
            .await;
        ids.push(order.id);
    }

    assert_eq!(shop.get(&user, &ids[0]).await.unwrap().id, ids[0]);
    assert_eq!(shop.get(shop.admin(), &ids[0]).await.unwrap().id, ids[0]);
    let hidden = shop.get(&stranger, &ids[0]).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let unknown = shop
        .get(&user, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut orders = shop.orders().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = orders
            .list_my_orders(user.request(ListMyOrdersRequest {
                page_size: 2,
                page_token: token,
                statuses: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.orders.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let failed = orders
        .list_my_orders(user.request(ListMyOrdersRequest {
            page_size: 0,
            page_token: String::new(),
            statuses: vec![OrderStatus::Failed as i32],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.orders.len(), 1);
    assert_eq!(failed.orders[0].id, ids[1]);

    let theirs = orders
        .list_my_orders(stranger.request(ListMyOrdersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.orders.is_empty());
}
