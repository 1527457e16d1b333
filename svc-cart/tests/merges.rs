//! Concurrent changes to one cart all count, and merging an anonymous cart
//! into the signed-in shopper's cart on login: summed quantities capped at 99,
//! the anonymous cart gone, a repeat harmless, a racing add never lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::future::join_all;
use shopmesh_proto::shop::cart::v1::MergeCartsRequest;
use support::{Shop, add, cart_of, get, line, metric, new_cart, quantities, stocked_products};
use tonic::Code;

fn merge(anonymous_cart_id: &str) -> MergeCartsRequest {
    MergeCartsRequest {
        anonymous_cart_id: anonymous_cart_id.to_owned(),
    }
}

#[tokio::test]
async fn concurrent_adds_all_count() {
    let shop = Shop::start().await;
    let client = shop.client().await;
    let products = stocked_products();
    let id = new_cart(&mut client.clone()).await;

    let same_sku = (0..20).map(|_| {
        let mut client = client.clone();
        let request = add(&id, &products[0], 1);
        async move { client.add_cart_item(request).await }
    });
    for result in join_all(same_sku).await {
        result.unwrap();
    }
    let cart = cart_of(client.clone().get_cart(get(&id)).await);
    assert_eq!(quantities(&cart), [(products[0].sku.clone(), 20)]);

    let different = products[1..13].iter().map(|product| {
        let mut client = client.clone();
        let request = add(&id, product, 2);
        async move { client.add_cart_item(request).await }
    });
    for result in join_all(different).await {
        result.unwrap();
    }
    let cart = cart_of(client.clone().get_cart(get(&id)).await);
    assert_eq!(cart.lines.len(), 13);
    for product in &products[1..13] {
        assert_eq!(line(&cart, &product.sku).quantity, 2);
    }
    assert_eq!(cart.item_count, 20 + 12 * 2);
}

#[tokio::test]
async fn merging_sums_quantities_deletes_the_anonymous_cart_and_is_idempotent() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let products = stocked_products();
    let (both, both_capped, only_mine, only_anonymous) =
        (&products[0], &products[1], &products[2], &products[3]);
    let ada = shop.shopper().await;

    let anonymous = new_cart(&mut client).await;
    client
        .add_cart_item(add(&anonymous, both, 2))
        .await
        .unwrap();
    client
        .add_cart_item(add(&anonymous, only_anonymous, 4))
        .await
        .unwrap();
    client
        .add_cart_item(add(&anonymous, both_capped, 60))
        .await
        .unwrap();
    for (product, quantity) in [(only_mine, 1), (both, 3), (both_capped, 50)] {
        client
            .add_cart_item(ada.request(add("mine", product, quantity)))
            .await
            .unwrap();
    }

    let merged = cart_of(client.merge_carts(ada.request(merge(&anonymous))).await);
    assert_eq!(merged.user_id, ada.id.to_string());
    assert_eq!(
        quantities(&merged),
        [
            (only_mine.sku.clone(), 1),
            (both.sku.clone(), 5),
            (both_capped.sku.clone(), 99),
            (only_anonymous.sku.clone(), 4),
        ],
        "the user's lines first, then the new ones in the order they were added"
    );
    let err = client.get_cart(get(&anonymous)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the anonymous cart is gone");

    // A retried merge (the cart no longer exists) leaves the user's cart as it is.
    let noop = [("op", "merge"), ("result", "unchanged")];
    let noops_before = metric(shop.cart(), "cart_operations_total", &noop).await;
    let again = cart_of(client.merge_carts(ada.request(merge(&anonymous))).await);
    assert_eq!(quantities(&again), quantities(&merged));
    assert_eq!(again.update_time, merged.update_time);
    let noops = metric(shop.cart(), "cart_operations_total", &noop).await;
    assert!(
        noops > noops_before,
        "counted as a merge that changed nothing"
    );
    let mine = cart_of(client.get_cart(ada.request(get("mine"))).await);
    assert_eq!(quantities(&mine), quantities(&merged));

    // Merging needs a signed-in caller and an anonymous cart id.
    let err = client.merge_carts(merge(&anonymous)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .merge_carts(ada.request(merge("mine")))
        .await
        .unwrap_err();
    assert_eq!(
        shopmesh_platform::errors::violated_fields(&err),
        ["anonymous_cart_id"]
    );
}

#[tokio::test]
async fn a_merge_racing_adds_loses_nothing() {
    let shop = Shop::start().await;
    let client = shop.client().await;
    let products = stocked_products();
    let ada = shop.shopper().await;
    let anonymous = new_cart(&mut client.clone()).await;
    for product in &products[..5] {
        client
            .clone()
            .add_cart_item(add(&anonymous, product, 1))
            .await
            .unwrap();
    }
    client
        .clone()
        .get_cart(ada.request(get("mine")))
        .await
        .unwrap();

    let adds = (0..10).map(|_| {
        let mut client = client.clone();
        let request = ada.request(add("mine", &products[5], 1));
        async move { client.add_cart_item(request).await.map(|_| ()) }
    });
    let merging = {
        let mut client = client.clone();
        let request = ada.request(merge(&anonymous));
        async move { client.merge_carts(request).await.map(|_| ()) }
    };
    let (adds, merged) = tokio::join!(join_all(adds), merging);
    merged.unwrap();
    for result in adds {
        result.unwrap();
    }
    let mine = cart_of(client.clone().get_cart(ada.request(get("mine"))).await);
    assert_eq!(mine.lines.len(), 6, "{:?}", quantities(&mine));
    assert_eq!(line(&mine, &products[5].sku).quantity, 10);
    for product in &products[..5] {
        assert_eq!(line(&mine, &product.sku).quantity, 1);
    }
}
