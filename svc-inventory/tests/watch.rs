//! WatchStock through the real service: the current levels first, then every
//! committed change, whichever RPC, replica or SQL session made it (PostgreSQL
//! LISTEN/NOTIFY carries it), and the latest level after a burst.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::future::join_all;
use shopmesh_proto::shop::inventory::v1::WatchStockResponse;
use shopmesh_proto::shop::inventory::v1::{Stock, WatchStockRequest};
use support::{Harness, InventoryClient, violated_fields};
use tonic::Code;
use tonic::codec::Streaming;
use uuid::Uuid;

async fn watch(client: &mut InventoryClient, skus: &[&str]) -> Streaming<WatchStockResponse> {
    client
        .watch_stock(WatchStockRequest {
            skus: skus.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next level on the stream; a test that waits 10 s for one has failed.
async fn next(stream: &mut Streaming<WatchStockResponse>) -> Stock {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a level within 10 s")
        .unwrap()
        .expect("the stream is open")
        .stock
        .unwrap()
}

/// `(sku, on_hand, reserved, available)`.
fn summary(stock: &Stock) -> (String, i64, i64, i64) {
    (
        stock.sku.clone(),
        stock.on_hand,
        stock.reserved,
        stock.available,
    )
}

fn level(sku: &str, on_hand: i64, reserved: i64) -> (String, i64, i64, i64) {
    (sku.to_owned(), on_hand, reserved, on_hand - reserved)
}

#[tokio::test]
async fn a_watch_starts_with_current_levels_then_sees_changes_made_through_other_calls() {
    let harness = Harness::start().await;
    harness.set_stock("W-A", 5).await;
    harness.set_stock("W-B", 7).await;
    harness.set_stock("W-OTHER", 1).await;
    let mut stream = watch(&mut harness.client(), &["W-B", "W-A", "W-LATER", "W-B"]).await;

    assert_eq!(summary(&next(&mut stream).await), level("W-B", 7, 0));
    assert_eq!(summary(&next(&mut stream).await), level("W-A", 5, 0));

    let order = Uuid::now_v7();
    harness.reserve(order, &[("W-A", 2)], None).await.unwrap();
    assert_eq!(summary(&next(&mut stream).await), level("W-A", 5, 2));
    harness.set_stock("W-OTHER", 9).await; // not watched
    harness.set_stock("W-LATER", 4).await; // created after the watch began
    assert_eq!(summary(&next(&mut stream).await), level("W-LATER", 4, 0));
    harness.adjust_stock("W-B", -1, "").await.unwrap();
    assert_eq!(summary(&next(&mut stream).await), level("W-B", 6, 0));
    harness.commit(order).await.unwrap();
    assert_eq!(summary(&next(&mut stream).await), level("W-A", 3, 0));
    harness.stop().await;
}

#[tokio::test]
async fn a_change_made_by_another_replica_or_session_reaches_the_watcher() {
    let harness = Harness::start().await;
    harness.set_stock("REPL-1", 10).await;
    let replica = harness.second_replica().await;

    // Watching on the first replica, changing through the second.
    let mut stream = watch(&mut harness.client(), &["REPL-1"]).await;
    assert_eq!(summary(&next(&mut stream).await), level("REPL-1", 10, 0));
    support::reserve(
        &mut replica.as_svc_order(),
        Uuid::now_v7(),
        &[("REPL-1", 4)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(summary(&next(&mut stream).await), level("REPL-1", 10, 4));

    // And the other way round.
    let mut on_replica = watch(&mut replica.client(), &["REPL-1"]).await;
    assert_eq!(
        summary(&next(&mut on_replica).await),
        level("REPL-1", 10, 4)
    );
    harness.adjust_stock("REPL-1", 5, "").await.unwrap();
    assert_eq!(
        summary(&next(&mut on_replica).await),
        level("REPL-1", 15, 4)
    );
    assert_eq!(summary(&next(&mut stream).await), level("REPL-1", 15, 4));

    // Any committed change of the table is announced, even one made in SQL;
    // a rolled-back one never is.
    let mut tx = harness.service.db().begin().await.unwrap();
    sqlx::query("UPDATE stock SET on_hand = 99, version = version + 1 WHERE sku = 'REPL-1'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    sqlx::query("UPDATE stock SET on_hand = 20, version = version + 1 WHERE sku = 'REPL-1'")
        .execute(harness.service.db())
        .await
        .unwrap();
    assert_eq!(summary(&next(&mut stream).await), level("REPL-1", 20, 4));
    assert_eq!(
        summary(&next(&mut on_replica).await),
        level("REPL-1", 20, 4)
    );
    replica.stop().await;
    harness.stop().await;
}

#[tokio::test]
async fn after_a_burst_the_watcher_holds_the_latest_level_and_never_goes_back_in_level_or_time() {
    let harness = Harness::start_with(&[("DB_MAX_CONNECTIONS", "8")]).await;
    harness.set_stock("BURST-1", 100).await;
    let mut stream = watch(&mut harness.client(), &["BURST-1"]).await;
    assert_eq!(next(&mut stream).await.reserved, 0);

    let reservations = (0..40).map(|_| {
        let mut client = harness.as_svc_order();
        tokio::spawn(async move {
            support::reserve(&mut client, Uuid::now_v7(), &[("BURST-1", 1)], None).await
        })
    });
    for reservation in join_all(reservations).await {
        reservation.unwrap().unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let stock = next(&mut stream).await;
        let time = stock.update_time.unwrap();
        seen.push((stock.reserved, (time.seconds, time.nanos)));
        if stock.reserved == 40 {
            break;
        }
    }
    // Levels only move forward, and so does their update_time: a consumer may
    // keep the newest by update_time (svc-product's copy does).
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "{seen:?}"
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_watch_names_one_to_a_hundred_skus() {
    let harness = Harness::start().await;
    let mut client = harness.client();
    for skus in [
        vec![],
        (0..101).map(|i| format!("S-{i}")).collect(),
        vec!["bad sku".to_owned()],
    ] {
        let status = client
            .watch_stock(WatchStockRequest { skus })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(violated_fields(&status)[0].starts_with("skus"));
    }
    harness.stop().await;
}
