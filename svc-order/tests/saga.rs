#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The saga when things go wrong or change their mind: a payment service
//! that is down (retried, then given up at the deadline with the stock
//! released), a restart between reservation and authorization (resumed by
//! the next process), cancellation before and after confirmation, and
//! WatchOrder following an order to the end.

mod support;

use std::time::Duration;

use shopmesh_proto::shop::order::v1::{
    CancelOrderRequest, Order, OrderStatus, WatchOrderRequest, WatchOrderResponse,
};
use shopmesh_proto::shop::payment::v1::PaymentStatus;
use shopmesh_testkit::SignedIn;
use support::{APPROVED, DECLINED, Shop, checkout, hurried, statuses, stocked_products};
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(30);

/// Places an order while payment is down (the gate is closed): the call
/// answers before its deadline with the order STOCK_RESERVED, the saga retrying.
async fn stuck_order(shop: &Shop, user: &SignedIn, key: &str, quantity: i32) -> Order {
    let product = &stocked_products(5)[0];
    let order = shop
        .place(hurried(
            checkout(key, user, &[(product, quantity)], APPROVED),
            Duration::from_secs(2),
        ))
        .await;
    assert_eq!(
        order.status(),
        OrderStatus::StockReserved,
        "{}",
        order.status_reason
    );
    order
}

async fn next(stream: &mut tonic::Streaming<WatchOrderResponse>) -> Option<WatchOrderResponse> {
    tokio::time::timeout(SETTLE, stream.message())
        .await
        .expect("a message in time")
        .unwrap()
}

async fn cancel(
    shop: &Shop,
    user: &SignedIn,
    id: &str,
    reason: &str,
) -> Result<Order, tonic::Status> {
    shop.orders()
        .await
        .cancel_order(user.request(CancelOrderRequest {
            id: id.into(),
            reason: reason.into(),
        }))
        .await
        .map(|r| r.into_inner().order.unwrap())
}

#[tokio::test]
async fn a_saga_interrupted_between_reservation_and_authorization_resumes_in_the_next_process() {
    let mut shop = Shop::start_with(true, &[]).await;
    let user = shop.shopper().await;
    let sku = stocked_products(5)[0].sku.clone();
    let before = shop.stock(&sku).await;
    let order = stuck_order(&shop, &user, "resume", 2).await;
    assert_eq!(shop.stock(&sku).await.reserved, before.reserved + 2);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM order_sagas")
        .fetch_one(shop.order().db())
        .await
        .unwrap();
    assert!(attempts >= 1, "authorization was tried and failed");

    // The process goes away mid-saga; a new one on the same database reaches
    // the real payment service (the gate stays closed).
    let payment_url = shop.payment().endpoint();
    shop.restart_order(&payment_url).await;

    let done = shop
        .wait_for(&user, &order.id, SETTLE, |o| {
            o.status() == OrderStatus::Confirmed
        })
        .await;
    assert_eq!(done.id, order.id);
    let after = shop.stock(&sku).await;
    assert_eq!(after.on_hand, before.on_hand - 2);
    assert_eq!(after.reserved, before.reserved);
    let payments = shop.payments(&user, &order.id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Captured);
    assert_eq!(
        statuses(&shop.history(&user, &order.id).await),
        [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorized,
            OrderStatus::Confirmed
        ]
    );
}

#[tokio::test]
async fn a_payment_service_down_past_the_saga_timeout_fails_the_order_and_releases_stock() {
    let shop = Shop::start_with(true, &[("ORDER_SAGA_TIMEOUT_SECONDS", "3")]).await;
    let user = shop.shopper().await;
    let sku = stocked_products(5)[0].sku.clone();
    let before = shop.stock(&sku).await;
    let order = stuck_order(&shop, &user, "timeout", 1).await;

    let failed = shop
        .wait_for(&user, &order.id, SETTLE, |o| {
            o.status() == OrderStatus::Failed
        })
        .await;
    assert_eq!(
        failed.status_reason,
        "the payment service did not answer in time"
    );
    let after = shop.stock(&sku).await;
    assert_eq!(
        (after.on_hand, after.reserved),
        (before.on_hand, before.reserved)
    );
    assert_eq!(
        shop.reservation_status(&order.id).await.as_deref(),
        Some("released")
    );
    assert!(shop.payments(&user, &order.id).await.is_empty());
    assert_eq!(
        statuses(&shop.history(&user, &order.id).await),
        [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::Failed
        ]
    );
    let err = cancel(&shop, &user, &order.id, "too late")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a FAILED order stays FAILED"
    );
}

#[tokio::test]
async fn cancelling_before_confirmation_stops_the_saga_and_releases_stock() {
    let shop = Shop::start_with(true, &[("ORDER_SAGA_MAX_BACKOFF_SECONDS", "1")]).await;
    let user = shop.shopper().await;
    let stranger = shop.shopper().await;
    let sku = stocked_products(5)[0].sku.clone();
    let before = shop.stock(&sku).await;
    let order = stuck_order(&shop, &user, "cancel-early", 1).await;

    let hidden = cancel(&shop, &stranger, &order.id, "not mine")
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    let cancelled = cancel(&shop, &user, &order.id, "changed my mind")
        .await
        .unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        cancelled.status_reason,
        "cancelled by customer: changed my mind"
    );
    let after = shop.stock(&sku).await;
    assert_eq!(
        (after.on_hand, after.reserved),
        (before.on_hand, before.reserved)
    );
    assert_eq!(
        shop.reservation_status(&order.id).await.as_deref(),
        Some("released")
    );
    assert_eq!(
        statuses(&shop.history(&user, &order.id).await),
        [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::Cancelled
        ]
    );

    // Payment comes back: the authorization whose outcome the saga never
    // learned is settled under its key and voided, and the order stays CANCELLED.
    shop.gate.open();
    let again = cancel(&shop, &user, &order.id, "twice").await.unwrap();
    assert_eq!(again.status(), OrderStatus::Cancelled);
    assert_eq!(
        again.status_reason,
        "cancelled by customer: changed my mind"
    );
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let phase: String = sqlx::query_scalar("SELECT phase FROM order_sagas")
            .fetch_one(shop.order().db())
            .await
            .unwrap();
        if phase == "done" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the saga settles");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let payments = shop.payments(&user, &order.id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status(), PaymentStatus::Voided);
    let order = shop.get(&user, &order.id).await.unwrap();
    assert_eq!(order.status(), OrderStatus::Cancelled);
    assert_eq!(order.payment_id, payments[0].id);
}

#[tokio::test]
async fn cancelling_a_confirmed_order_refunds_it_by_owner_or_admin() {
    let shop = Shop::start().await;
    let user = shop.shopper().await;
    let products = stocked_products(5);
    let mut confirmed = Vec::new();
    for (n, product) in products.iter().take(2).enumerate() {
        let order = shop
            .place(checkout(
                &format!("refund-{n}"),
                &user,
                &[(product, 1)],
                APPROVED,
            ))
            .await;
        assert_eq!(order.status(), OrderStatus::Confirmed);
        confirmed.push(order);
    }

    let refunded = cancel(&shop, &user, &confirmed[0].id, "").await.unwrap();
    assert_eq!(refunded.status(), OrderStatus::Refunded);
    assert_eq!(refunded.status_reason, "cancelled by customer");
    let by_admin = cancel(&shop, shop.admin(), &confirmed[1].id, "fraud check")
        .await
        .unwrap();
    assert_eq!(by_admin.status(), OrderStatus::Refunded);
    assert_eq!(by_admin.status_reason, "cancelled by admin: fraud check");

    for order in &confirmed {
        let payments = shop.payments(&user, &order.id).await;
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].status(), PaymentStatus::Refunded);
        assert_eq!(
            payments[0].refunded.as_ref().unwrap().amount_minor,
            order.total.as_ref().unwrap().amount_minor
        );
        assert_eq!(
            statuses(&shop.history(&user, &order.id).await),
            [
                OrderStatus::Pending,
                OrderStatus::StockReserved,
                OrderStatus::PaymentAuthorized,
                OrderStatus::Confirmed,
                OrderStatus::Refunded
            ]
        );
    }
    let again = cancel(&shop, &user, &confirmed[0].id, "again")
        .await
        .unwrap();
    assert_eq!(again.status(), OrderStatus::Refunded, "idempotent");
    assert_eq!(shop.payments(&user, &confirmed[0].id).await.len(), 1);

    let declined = shop
        .place(checkout("declined", &user, &[(&products[2], 1)], DECLINED))
        .await;
    let err = cancel(&shop, &user, &declined.id, "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn watch_order_follows_the_saga_to_its_end() {
    let shop = Shop::start_with(true, &[]).await;
    let user = shop.shopper().await;
    let stranger = shop.shopper().await;
    let order = stuck_order(&shop, &user, "watch", 1).await;

    let mut orders = shop.orders().await;
    let hidden = orders
        .watch_order(stranger.request(WatchOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    let mut stream = orders
        .watch_order(user.request(WatchOrderRequest {
            id: order.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await.unwrap();
    assert_eq!(first.order.unwrap().status(), OrderStatus::StockReserved);

    shop.gate.open();
    let mut seen = Vec::new();
    while let Some(message) = next(&mut stream).await {
        seen.push(message.order.unwrap().status());
    }
    assert_eq!(
        seen,
        [OrderStatus::PaymentAuthorized, OrderStatus::Confirmed],
        "every status after the first, then the stream ends"
    );

    // A settled order: its state, then the end.
    let mut again = orders
        .watch_order(user.request(WatchOrderRequest { id: order.id }))
        .await
        .unwrap()
        .into_inner();
    let only = next(&mut again).await.unwrap();
    assert_eq!(only.order.unwrap().status(), OrderStatus::Confirmed);
    assert!(next(&mut again).await.is_none());
}

#[tokio::test]
async fn a_saga_held_by_a_dead_runners_lease_is_taken_over_when_the_lease_runs_out() {
    let shop = Shop::start_with(true, &[]).await;
    let user = shop.shopper().await;
    let order = stuck_order(&shop, &user, "lease", 1).await;

    // Another replica claimed the saga and died: its lease has 5 s to run.
    sqlx::query(
        "UPDATE order_sagas SET lease_owner = $1, lease_until = now() + interval '5 seconds', \
         next_attempt_at = now()",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(shop.order().db())
    .await
    .unwrap();
    shop.gate.open();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = shop.get(&user, &order.id).await.unwrap();
    assert_eq!(
        held.status(),
        OrderStatus::StockReserved,
        "nobody runs a leased saga"
    );

    let done = shop
        .wait_for(&user, &order.id, SETTLE, |o| {
            o.status() == OrderStatus::Confirmed
        })
        .await;
    assert_eq!(shop.payments(&user, &done.id).await.len(), 1);
}

#[tokio::test]
async fn checkout_succeeds_with_the_broker_down_and_its_events_follow_when_it_returns() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut shop = Shop::start_with(false, &[("KAFKA_BROKERS", closed.as_str())]).await;
    let user = shop.shopper().await;
    let product = &stocked_products(5)[0];
    let order = shop
        .place(checkout("no-broker", &user, &[(product, 1)], APPROVED))
        .await;
    assert_eq!(
        order.status(),
        OrderStatus::Confirmed,
        "{}",
        order.status_reason
    );
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL AND key = $1")
            .bind(&order.id)
            .fetch_one(shop.order().db())
            .await
            .unwrap();
    assert_eq!(waiting, 2, "created and confirmed wait in the outbox");

    // The broker is back (for svc-order: a process that can reach it).
    let payment_url = shop.payment().endpoint();
    shop.restart_order(&payment_url).await;
    let events =
        shopmesh_testkit::wait_for_events(shopmesh_proto::topics::ORDER_EVENTS, &order.id, 2).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "shop.events.v1.OrderCreated",
            "shop.events.v1.OrderConfirmed"
        ]
    );
}
