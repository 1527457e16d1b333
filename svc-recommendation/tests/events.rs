//! Purchases from `shop.order.events` through the real broker: each order
//! counts once however often it is delivered, and a refund takes it out of
//! training while the shopper still counts as having bought it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use shopmesh_testkit::{TestService, produce_event, skip_to_end};
use support::*;
use uuid::Uuid;

/// Purchase rows matching `filter` (a SQL condition on `$1`, the id given).
async fn rows(service: &TestService, filter: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM purchases WHERE {filter}"
    )))
    .bind(id)
    .fetch_one(service.db())
    .await
    .unwrap()
}

/// A shop whose svc-recommendation consumes the broker from now on.
async fn consuming_shop() -> Shop {
    let group = format!("svc-recommendation-test-{}", Uuid::now_v7().simple());
    skip_to_end(&group, svc_recommendation::consumer::TOPICS).await;
    Shop::start_with(&[("RECOMMENDATION_CONSUMER_GROUP", group.as_str())]).await
}

#[tokio::test]
async fn a_redelivered_order_counts_once() {
    let shop = consuming_shop().await;
    let stocked = stocked_products();
    let (a, b) = (&stocked[0], &stocked[1]);
    let shopper = shop.shopper().await;
    let confirmed = order_confirmed(shopper.id, &[a, b]);
    // The same event twice (a redelivery), and the same order under another
    // event id (a replay): two lines in all.
    let mut replayed = confirmed.clone();
    replayed.event_id = Uuid::now_v7().to_string();
    for envelope in [&confirmed, &confirmed, &replayed] {
        produce_event(ORDER_TOPIC, envelope).await;
    }
    // Other tests (and services) share the topic: look at this shopper only.
    let rec = &shop.recommendation;
    let user = shopper.id;
    eventually("the order is recorded", || async {
        (rows(rec, "user_id = $1", user).await == 2).then_some(())
    })
    .await;
    // A later order goes through too: nothing is stuck behind the duplicates.
    let later = order_confirmed(user, &[a]);
    produce_event(ORDER_TOPIC, &later).await;
    eventually("the next order is recorded", || async {
        (rows(rec, "user_id = $1", user).await == 3).then_some(())
    })
    .await;
    let inbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])")
            .bind(
                [&confirmed, &replayed, &later]
                    .map(|e| Uuid::parse_str(&e.event_id).unwrap())
                    .to_vec(),
            )
            .fetch_one(rec.db())
            .await
            .unwrap();
    assert_eq!(inbox, 3, "three distinct events, each applied once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(rec, "user_id = $1", user).await, 3);
    let order = Uuid::parse_str(&confirmed.aggregate_id).unwrap();
    assert_eq!(rows(rec, "order_id = $1", order).await, 2);
}

#[tokio::test]
async fn a_refund_leaves_training_but_still_counts_as_bought() {
    let shop = consuming_shop().await;
    let stocked = stocked_products();
    let (a, b) = (&stocked[0], &stocked[1]);
    let shopper = shop.shopper().await;
    let confirmed = order_confirmed(shopper.id, &[a]);
    produce_event(ORDER_TOPIC, &confirmed).await;
    produce_event(ORDER_TOPIC, &order_refunded(&confirmed)).await;
    produce_event(ORDER_TOPIC, &order_confirmed(Uuid::now_v7(), &[b])).await;
    let rec = &shop.recommendation;
    let order = Uuid::parse_str(&confirmed.aggregate_id).unwrap();
    eventually("the refund is recorded", || async {
        (rows(rec, "order_id = $1 AND refunded_at IS NOT NULL", order).await == 1).then_some(())
    })
    .await;
    // Training reads only lines without a refund.
    assert_eq!(
        rows(rec, "order_id = $1 AND refunded_at IS NULL", order).await,
        0
    );
    shop.train().await;
    let picks = for_me_settled(&shop.client().await, &shopper, 50).await;
    assert!(!ids(&picks.recommendations).contains(&a.id.to_string()));
    assert!(ids(&picks.recommendations).contains(&b.id.to_string()));
}

pub const ORDER_TOPIC: &str = svc_recommendation::consumer::ORDER_TOPIC;
