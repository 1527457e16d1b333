#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Kafka broker going away in the middle of checkouts. svc-order and
//! svc-payment publish through their transactional outboxes to a private
//! tansu broker of this test (the shared one other tests use is never
//! touched), which keeps its data across a restart as Kafka does; the broker
//! is killed, checkouts go on and are CONFIRMED while their events wait in the
//! outboxes, and once the broker is back every event of every order is on it
//! exactly once, in order per key, and svc-order's own consumer (its payment
//! ledger) follows on from where it was.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use shopmesh_events as events;
use shopmesh_proto::shop::order::v1::{Order, OrderStatus};
use shopmesh_testkit::{Record, SignedIn, TestBroker, read_topic};
use sqlx::PgPool;
use support::{APPROVED, Shop, checkout, stocked_products};
use uuid::Uuid;

const ORDER_TOPIC: &str = shopmesh_proto::topics::ORDER_EVENTS;
const PAYMENT_TOPIC: &str = shopmesh_proto::topics::PAYMENT_EVENTS;
/// Generous: the broker's delivery timeout alone is 30 s, and the machine
/// running the tests may be slow and busy.
const SETTLE: Duration = Duration::from_secs(180);

/// Rows of `db`'s outbox not published yet.
async fn unpublished(db: &PgPool) -> i64 {
    let mut conn = db.acquire().await.unwrap();
    events::backlog(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|(_, count)| count)
        .sum()
}

/// Unpublished outbox rows of `db` whose key is one of `keys`.
async fn unpublished_of(db: &PgPool, keys: &[String]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL AND key = ANY($1)")
        .bind(keys)
        .fetch_one(db)
        .await
        .unwrap()
}

/// The event ids the outbox of `db` holds for `key`, in outbox (publishing) order.
async fn outbox_events(db: &PgPool, key: &str) -> Vec<String> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM outbox WHERE key = $1 ORDER BY id")
            .bind(key)
            .fetch_all(db)
            .await
            .unwrap();
    ids.iter().map(Uuid::to_string).collect()
}

/// Waits until every outbox row of the order and payment services is published.
async fn drained(shop: &Shop, what: &str) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let left = unpublished(shop.order().db()).await + unpublished(shop.payment().db()).await;
        if left == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut errors = Vec::new();
            for db in [shop.order().db(), shop.payment().db()] {
                let rows: Vec<(String, i32, Option<String>)> = sqlx::query_as(
                    "SELECT topic, attempts, last_error FROM outbox \
                     WHERE published_at IS NULL ORDER BY id",
                )
                .fetch_all(db)
                .await
                .unwrap();
                errors.extend(rows);
            }
            panic!("{what}: {left} outbox rows still unpublished: {errors:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The event ids on `topic` of the broker for `key`, in the order they were appended.
fn events_of(records: &[Record], key: &str) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r.key() == key)
        .map(|r| {
            let envelope = r.envelope().expect("every record is an event envelope");
            assert_eq!(r.header("event_id"), Some(envelope.event_id.as_str()));
            (envelope.event_id, envelope.event_type)
        })
        .collect()
}

/// Checks that each order's events (on `ORDER_TOPIC`, keyed by order id) and
/// its payment's (on `PAYMENT_TOPIC`, keyed by payment id) are on the broker
/// exactly as in the outboxes: each once, in outbox order.
fn assert_published_once_in_order(
    orders: &[Order],
    order_records: &[Record],
    payment_records: &[Record],
    expected: &[(Vec<String>, Vec<String>)],
) {
    for (order, (order_events, payment_events)) in orders.iter().zip(expected) {
        let on_broker = events_of(order_records, &order.id);
        let ids: Vec<&str> = on_broker.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, *order_events, "order {} events", order.id);
        let types: Vec<&str> = on_broker.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "shop.events.v1.OrderCreated",
                "shop.events.v1.OrderConfirmed"
            ]
        );
        let on_broker = events_of(payment_records, &order.payment_id);
        let ids: Vec<&str> = on_broker.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, *payment_events, "payment {} events", order.payment_id);
        let types: Vec<&str> = on_broker.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "shop.events.v1.PaymentAuthorized",
                "shop.events.v1.PaymentCaptured"
            ]
        );
    }
    let mut seen = HashSet::new();
    for record in order_records.iter().chain(payment_records) {
        let id = record.envelope().unwrap().event_id;
        assert!(seen.insert(id.clone()), "event {id} is on the broker twice");
    }
}

/// What the outboxes hold for each order: (order events, payment events).
async fn expected_events(shop: &Shop, orders: &[Order]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut expected = Vec::new();
    for order in orders {
        expected.push((
            outbox_events(shop.order().db(), &order.id).await,
            outbox_events(shop.payment().db(), &order.payment_id).await,
        ));
    }
    expected
}

async fn confirmed_checkouts(
    shop: &Shop,
    user: &SignedIn,
    prefix: &str,
    count: usize,
) -> Vec<Order> {
    let products = stocked_products(10);
    let mut orders = Vec::new();
    for n in 0..count {
        let order = shop
            .place(checkout(
                &format!("{prefix}-{n}"),
                user,
                &[(&products[n % products.len()], 1)],
                APPROVED,
            ))
            .await;
        assert_eq!(
            order.status(),
            OrderStatus::Confirmed,
            "{}",
            order.status_reason
        );
        orders.push(order);
    }
    orders
}

/// Waits until svc-order's payment ledger (its consumer of the payment
/// events) shows each order's payment captured.
async fn captured_in_ledger(shop: &Shop, orders: &[Order], what: &str) {
    let payments: Vec<Uuid> = orders
        .iter()
        .map(|o| o.payment_id.parse().unwrap())
        .collect();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let captured: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM order_payment_ledger \
             WHERE payment_id = ANY($1) AND captured_minor > 0",
        )
        .bind(&payments)
        .fetch_one(shop.order().db())
        .await
        .unwrap();
        if captured == payments.len() as i64 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {captured} of {} payments captured in svc-order's ledger",
            payments.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn checkouts_confirm_with_the_broker_down_and_every_event_follows_once_in_order() {
    let mut broker = TestBroker::start().await.expect("a private broker starts");
    let brokers = broker.brokers();
    let on_broker = [("KAFKA_BROKERS", brokers.as_str())];
    let mut shop = Shop::dependencies(&on_broker).await;
    shop.start_order(false, &on_broker).await;
    let user = shop.shopper().await;

    // Broker up: checkouts confirmed, their events published.
    let up = confirmed_checkouts(&shop, &user, "up", 2).await;
    drained(&shop, "events of the checkouts made with the broker up").await;
    let expected_up = expected_events(&shop, &up).await;
    assert_published_once_in_order(
        &up,
        &read_topic(&brokers, ORDER_TOPIC).await.unwrap(),
        &read_topic(&brokers, PAYMENT_TOPIC).await.unwrap(),
        &expected_up,
    );
    captured_in_ledger(&shop, &up, "payments made with the broker up").await;

    // The broker dies (SIGKILL). Checkouts go on and are confirmed; their
    // events wait in the outboxes.
    broker.stop().await;
    let down = confirmed_checkouts(&shop, &user, "down", 3).await;
    let order_keys: Vec<String> = down.iter().map(|o| o.id.clone()).collect();
    let payment_keys: Vec<String> = down.iter().map(|o| o.payment_id.clone()).collect();
    assert_eq!(
        unpublished_of(shop.order().db(), &order_keys).await,
        6,
        "OrderCreated and OrderConfirmed of each order wait in the outbox"
    );
    assert_eq!(
        unpublished_of(shop.payment().db(), &payment_keys).await,
        6,
        "PaymentAuthorized and PaymentCaptured of each payment wait in the outbox"
    );
    assert!(unpublished(shop.order().db()).await >= 6, "outbox backlog");

    // The broker is back on the same address with what it had: its topics
    // (the services create topics only at their start), records, consumer
    // offsets and producer state, as a Kafka broker would be.
    broker.restart().await.expect("the broker starts again");
    drained(&shop, "events of the checkouts made with the broker down").await;

    // Every event of every order, those from before the outage included, is
    // on the broker exactly once and in order per key: nothing the broker had
    // acknowledged was sent again, nothing that waited was lost.
    let order_records = read_topic(&brokers, ORDER_TOPIC).await.unwrap();
    let payment_records = read_topic(&brokers, PAYMENT_TOPIC).await.unwrap();
    let all: Vec<Order> = up.iter().chain(&down).cloned().collect();
    let expected_all = [expected_up, expected_events(&shop, &down).await].concat();
    assert_published_once_in_order(&all, &order_records, &payment_records, &expected_all);
    assert_eq!(order_records.len(), 10, "2 events of each of the 5 orders");
    assert_eq!(
        payment_records.len(),
        10,
        "2 events of each of the 5 payments"
    );

    // svc-order's consumer came back to the restarted broker and read on.
    captured_in_ledger(&shop, &down, "payments made with the broker down").await;
}
