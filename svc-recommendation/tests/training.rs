//! Training and the model's life: swapped under load without a failed
//! request, persisted so a restart serves it before any training, picked up
//! by other replicas, trained by one replica at a time, and only for admins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shopmesh_proto::shop::recommendation::v1 as pb;
use shopmesh_testkit::{Service, SignedIn};
use support::*;
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

/// A few orders so every list has something to say.
async fn some_orders(shop: &Shop) -> SignedIn {
    let stocked = stocked_products();
    let [a, b, c] = [0, 1, 2].map(|i| &stocked[i]);
    for _ in 0..3 {
        shop.bought(Uuid::now_v7(), &[&[a, b], &[c]]).await;
    }
    let shopper = shop.shopper().await;
    shop.bought(shopper.id, &[&[a]]).await;
    shopper
}

#[tokio::test]
async fn retraining_swaps_the_model_while_requests_keep_succeeding() {
    let shop = Shop::start().await;
    let shopper = some_orders(&shop).await;
    let first = shop.train().await;
    let client = shop.client().await;
    let product = &stocked_products()[0];
    together_settled(&client, bought_together(product, 10)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for n in 0..4 {
        let (client, stop, shopper) = (client.clone(), stop.clone(), shopper.clone());
        let product = product.clone();
        loops.push(tokio::spawn(async move {
            let (mut calls, mut versions) = (0usize, BTreeSet::new());
            let mut client = client;
            while !stop.load(Ordering::Relaxed) {
                let version = match n % 3 {
                    0 => {
                        let r = client.list_similar_products(similar(&product, 10)).await;
                        let r = r.expect("ListSimilarProducts during a swap").into_inner();
                        assert!(!r.recommendations.is_empty());
                        r.model_version
                    }
                    1 => {
                        let r = client
                            .list_frequently_bought_together(bought_together(&product, 10))
                            .await;
                        let r = r.expect("ListFrequentlyBoughtTogether during a swap");
                        let r = r.into_inner();
                        assert!(!r.recommendations.is_empty());
                        r.model_version
                    }
                    _ => {
                        let request = shopper.request(pb::RecommendForMeRequest { page_size: 5 });
                        let r = client.recommend_for_me(request).await;
                        let r = r.expect("RecommendForMe during a swap").into_inner();
                        assert!(!r.recommendations.is_empty());
                        r.model_version
                    }
                };
                versions.insert(version);
                calls += 1;
            }
            (calls, versions)
        }));
    }
    let second = shop.train().await;
    let third = shop.train().await;
    assert_ne!(first.version, second.version);
    assert_ne!(second.version, third.version);
    // Let the loops see the newest model for a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for result in futures::future::join_all(loops).await {
        let (calls, versions) = result.expect("no request failed");
        total += calls;
        seen.extend(versions);
    }
    assert!(total > 20, "only {total} calls during two trainings");
    let known: BTreeSet<String> = [&first, &second, &third]
        .iter()
        .map(|m| m.version.clone())
        .collect();
    assert!(seen.is_subset(&known), "{seen:?} vs {known:?}");
    assert!(seen.contains(&first.version), "{seen:?}");
    assert!(seen.contains(&third.version), "{seen:?}");
}

#[tokio::test]
async fn a_restarted_service_serves_the_persisted_model_before_any_training() {
    let shop = Shop::start().await;
    some_orders(&shop).await;
    let trained = shop.train().await;
    let product = stocked_products()[0].clone();
    let before = together_settled(&shop.client().await, bought_together(&product, 10)).await;
    let Shop {
        stack,
        recommendation,
    } = shop;
    let admin = &stack.admin;
    let url = recommendation.database_url.clone();
    recommendation.stop().await.unwrap();

    // svc-product down: the restarted service cannot train, it can only load.
    let restarted = spawn_recommendation(
        &stack.identity.auth_url,
        NOWHERE,
        &stack[Service::Inventory].endpoint(),
        &[("KAFKA_BROKERS", NO_BROKER), ("DATABASE_URL", url.as_str())],
    )
    .await;
    let mut client = client_of(&restarted).await;
    let info = client
        .get_model_info(admin.request(pb::GetModelInfoRequest {}))
        .await
        .expect("the persisted model is served at once")
        .into_inner()
        .model
        .unwrap();
    assert_eq!(info, trained);
    let after = together_settled(&client, bought_together(&product, 10)).await;
    assert_eq!(after, before);
    let err = client
        .train_model(admin.request(pb::TrainModelRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test]
async fn another_replica_picks_up_a_newer_model() {
    let shop = Shop::start().await;
    let url = shop.recommendation.database_url.clone();
    let replica = shop
        .another_recommendation(&[
            ("KAFKA_BROKERS", NO_BROKER),
            ("DATABASE_URL", url.as_str()),
            // No polling within the test: the announcement must do it.
            ("RECOMMENDATION_MODEL_POLL_SECONDS", "3600"),
        ])
        .await;
    let served = model_served(&replica, shop.admin()).await;
    some_orders(&shop).await;
    let newer = shop.train().await;
    assert_ne!(served.version, newer.version);
    let mut client = client_of(&replica).await;
    eventually("the replica serves the newer model", || {
        let request = shop.admin().request(pb::GetModelInfoRequest {});
        let mut client = client.clone();
        let newer = newer.clone();
        async move {
            let info = client
                .get_model_info(request)
                .await
                .ok()?
                .into_inner()
                .model?;
            (info == newer).then_some(())
        }
    })
    .await;
    let info = client
        .get_model_info(shop.admin().request(pb::GetModelInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.model.unwrap().order_count, 7);
}

#[tokio::test]
async fn concurrent_training_runs_one_and_aborts_the_others() {
    let shop = Shop::start().await;
    some_orders(&shop).await;
    let url = shop.recommendation.database_url.clone();
    let replica = shop
        .another_recommendation(&[("KAFKA_BROKERS", NO_BROKER), ("DATABASE_URL", url.as_str())])
        .await;
    model_served(&replica, shop.admin()).await;
    let (mine, theirs) = (shop.client().await, client_of(&replica).await);
    let calls = [mine.clone(), mine, theirs.clone(), theirs].map(|mut client| {
        let request = shop.admin().request(pb::TrainModelRequest {});
        async move { client.train_model(request).await }
    });
    let outcomes = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut aborted = 0;
    for outcome in outcomes {
        match outcome {
            Ok(response) => {
                assert!(response.into_inner().model.is_some());
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(
                    status.get_error_details().error_info().unwrap().reason,
                    "TRAINING_IN_PROGRESS"
                );
                aborted += 1;
            }
        }
    }
    assert!(ok >= 1, "one run trains");
    assert!(aborted >= 1, "the runs started alongside it are refused");
    // Once done, training is possible again.
    shop.train().await;
}

#[tokio::test]
async fn model_methods_are_for_admins_and_lists_for_everyone() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let shopper = shop.shopper().await;

    let err = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_model_info(shopper.request(pb::GetModelInfoRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .train_model(pb::TrainModelRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .train_model(shopper.request(pb::TrainModelRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .recommend_for_me(pb::RecommendForMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let info = client
        .get_model_info(shop.admin().request(pb::GetModelInfoRequest {}))
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert!(info.version.ends_with("#1"), "{}", info.version);
    assert!(info.train_time.is_some() && info.training_duration.is_some());
    // Public lists need no token.
    let product = &stocked_products()[0];
    similar_settled(&client, similar(product, 3)).await;
    client
        .list_frequently_bought_together(bought_together(product, 3))
        .await
        .unwrap();
}
