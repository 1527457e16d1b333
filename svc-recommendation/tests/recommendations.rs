//! What shoppers see: similar products, products bought together and their
//! own recommendations, from a model trained on the demo catalog (the real
//! svc-product) and fixture orders, filtered by the real svc-inventory's
//! stock and by the live catalog; and the errors the contract promises.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use shopmesh_demo::{EXACT_MATCH_NAME, SeedProduct};
use shopmesh_proto::shop::recommendation::v1 as pb;
use shopmesh_proto::shop::recommendation::v1::RecommendationReason;
use support::*;
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

fn reason_of(r: &pb::Recommendation) -> RecommendationReason {
    RecommendationReason::try_from(r.reason).unwrap()
}

#[tokio::test]
async fn similar_products_share_the_category_and_words_and_page_through() {
    let shop = Shop::start().await;
    let client = shop.client().await;
    let catalog = shopmesh_demo::demo_catalog();
    let headphones = catalog
        .products
        .iter()
        .find(|p| p.name == EXACT_MATCH_NAME)
        .unwrap();
    let info = shop.train().await;
    assert_eq!(info.product_count, 1200);
    assert_eq!(info.order_count, 0);

    let all = similar_settled(&client, similar(headphones, 50)).await;
    assert_eq!(all.model_version, info.version);
    assert_eq!(all.recommendations.len(), 50);
    assert!(all.next_page_token.is_empty(), "50 is the whole list");
    let stock: std::collections::HashMap<String, i64> = catalog
        .products
        .iter()
        .map(|p| (p.id.to_string(), p.initial_stock))
        .collect();
    for r in &all.recommendations {
        assert_ne!(r.product_id, headphones.id.to_string());
        assert_eq!(reason_of(r), RecommendationReason::Similar);
        assert_eq!(r.based_on_product_id, headphones.id.to_string());
        assert!(stock[&r.product_id] > 0, "sold out: {}", r.product_id);
    }
    let scores: Vec<f64> = all.recommendations.iter().map(|r| r.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The best ten: same leaf category, and names sharing its words.
    let names: std::collections::HashMap<String, &str> = catalog
        .products
        .iter()
        .map(|p| (p.id.to_string(), p.name.as_str()))
        .collect();
    for r in &all.recommendations[..10] {
        assert_eq!(slug_of(&r.product_id), "headphones");
        let name = names[&r.product_id];
        assert!(
            name.contains("Wireless") || name.contains("Auralis"),
            "{name} shares no word with {EXACT_MATCH_NAME}"
        );
    }

    // Pages of 4 walk the same list.
    let mut client = client.clone();
    let first = client
        .list_similar_products(similar(headphones, 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.recommendations.len(), 4);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_similar_products(pb::ListSimilarProductsRequest {
            page_token: first.next_page_token.clone(),
            ..similar(headphones, 4)
        })
        .await
        .unwrap()
        .into_inner();
    let walked: Vec<String> = ids(&first.recommendations)
        .into_iter()
        .chain(ids(&second.recommendations))
        .collect();
    assert_eq!(walked, ids(&all.recommendations[..8]));
    // A token is bound to its query.
    let err = client
        .list_frequently_bought_together(pb::ListFrequentlyBoughtTogetherRequest {
            page_token: first.next_page_token,
            ..bought_together(headphones, 4)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated(&err), ["page_token"]);
}

#[tokio::test]
async fn bad_requests_name_their_fields_and_unknown_products_are_not_found() {
    let shop = Shop::start().await;
    let mut client = shop.client().await;
    let product = &stocked_products()[0];
    for (request, fields) in [
        (
            pb::ListSimilarProductsRequest::default(),
            vec!["product_id"],
        ),
        (
            pb::ListSimilarProductsRequest {
                product_id: "not-a-uuid".into(),
                page_size: -1,
                page_token: "garbage".into(),
            },
            vec!["product_id", "page_size", "page_token"],
        ),
        (similar(product, -5), vec!["page_size"]),
    ] {
        let err = client.list_similar_products(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated(&err), fields);
    }
    let err = client
        .list_frequently_bought_together(pb::ListFrequentlyBoughtTogetherRequest {
            product_id: "42".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated(&err), ["product_id"]);
    let shopper = shop.shopper().await;
    let err = client
        .recommend_for_me(shopper.request(pb::RecommendForMeRequest { page_size: -1 }))
        .await
        .unwrap_err();
    assert_eq!(violated(&err), ["page_size"]);

    let stranger = Uuid::now_v7().to_string();
    for err in [
        client
            .list_similar_products(pb::ListSimilarProductsRequest {
                product_id: stranger.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        client
            .list_frequently_bought_together(pb::ListFrequentlyBoughtTogetherRequest {
                product_id: stranger.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(
            err.get_error_details().error_info().unwrap().reason,
            "PRODUCT_NOT_FOUND"
        );
    }
    // Too large a page is clamped, not refused.
    let page = similar_settled(&client, similar(product, 500)).await;
    assert!(page.recommendations.len() <= 50);
}

#[tokio::test]
async fn bought_together_reflects_co_purchases_and_falls_back_to_best_sellers() {
    let shop = Shop::start().await;
    let stocked = stocked_products();
    let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(|i| &stocked[i]);
    let never_sold = &stocked[40];
    let users: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    shop.bought(users[0], &[&[a, b]]).await;
    shop.bought(users[1], &[&[a, b]]).await;
    shop.bought(users[2], &[&[a, b, d]]).await;
    shop.bought(users[3], &[&[a, c]]).await;
    shop.bought(users[4], &[&[c, a]]).await;
    shop.bought(users[5], &[&[e, f], &[f, e]]).await;
    let info = shop.train().await;
    assert_eq!(info.order_count, 7);
    assert_eq!(info.user_count, 6);
    assert_eq!(info.interaction_count, 15);

    let client = shop.client().await;
    let with_a = together_settled(&client, bought_together(a, 10)).await;
    assert_eq!(with_a.model_version, info.version);
    // B is in 3 of A's 5 orders, C in 2; D only once (below the minimum support).
    assert_eq!(
        ids(&with_a.recommendations),
        [b.id.to_string(), c.id.to_string()]
    );
    for r in &with_a.recommendations {
        assert_eq!(reason_of(r), RecommendationReason::BoughtTogether);
        assert_eq!(r.based_on_product_id, a.id.to_string());
    }
    let with_e = together_settled(&client, bought_together(e, 10)).await;
    assert_eq!(ids(&with_e.recommendations), [f.id.to_string()]);

    // No co-purchases: the best sellers near it, never itself, as a fallback.
    let fallback = together_settled(&client, bought_together(never_sold, 10)).await;
    assert_eq!(
        fallback.model_version, "",
        "the popularity fallback has no version"
    );
    let sold: HashSet<String> = [a, b, c, d, e, f]
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    for r in &fallback.recommendations {
        assert_eq!(reason_of(r), RecommendationReason::Popular);
        assert!(r.based_on_product_id.is_empty());
        assert!(sold.contains(&r.product_id), "only what sold is popular");
    }
    assert_eq!(fallback.recommendations[0].product_id, a.id.to_string());
}

#[tokio::test]
async fn a_shoppers_recommendations_leave_out_purchases_and_unavailable_products() {
    let shop = Shop::start().await;
    let stocked = stocked_products();
    let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| &stocked[i]);
    // Shoppers who bought A also bought B (often) and C (less).
    for _ in 0..4 {
        shop.bought(Uuid::now_v7(), &[&[a, b]]).await;
    }
    for _ in 0..2 {
        shop.bought(Uuid::now_v7(), &[&[a], &[c, d]]).await;
    }
    let shopper = shop.shopper().await;
    shop.bought(shopper.id, &[&[a]]).await;
    let info = shop.train().await;

    let client = shop.client().await;
    let mine = for_me_settled(&client, &shopper, 10).await;
    assert_eq!(mine.model_version, info.version);
    let picked = ids(&mine.recommendations);
    assert!(
        !picked.contains(&a.id.to_string()),
        "never what they bought"
    );
    assert_eq!(picked[0], b.id.to_string(), "{picked:?}");
    assert_eq!(
        reason_of(&mine.recommendations[0]),
        RecommendationReason::AlsoBought
    );
    assert_eq!(
        mine.recommendations[0].based_on_product_id,
        a.id.to_string()
    );
    assert!(picked.contains(&c.id.to_string()));

    // A purchase made after training is left out at once.
    shop.bought(shopper.id, &[&[c]]).await;
    let mut client = client.clone();
    let now = client
        .recommend_for_me(shopper.request(pb::RecommendForMeRequest { page_size: 10 }))
        .await
        .unwrap()
        .into_inner();
    assert!(!ids(&now.recommendations).contains(&c.id.to_string()));

    // Sold out: gone once inventory says so.
    shop.stack.set_stock(&b.sku, 0).await;
    eventually("a sold-out product is no longer recommended", || {
        let mut client = client.clone();
        let request = shopper.request(pb::RecommendForMeRequest { page_size: 10 });
        async move {
            let response = client.recommend_for_me(request).await.ok()?.into_inner();
            (!ids(&response.recommendations).contains(&b.id.to_string())).then_some(())
        }
    })
    .await;
    // Deleted: gone from every list once the live catalog is re-read.
    shop.stack.delete_product(&d.id.to_string()).await;
    eventually("a deleted product is no longer recommended", || {
        let mut client = client.clone();
        let request = shopper.request(pb::RecommendForMeRequest { page_size: 10 });
        async move {
            let response = client.recommend_for_me(request).await.ok()?.into_inner();
            (!ids(&response.recommendations).contains(&d.id.to_string())).then_some(())
        }
    })
    .await;
    let err = client
        .list_similar_products(similar(d, 5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let with_c = client
        .list_frequently_bought_together(bought_together(c, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(!ids(&with_c.recommendations).contains(&d.id.to_string()));

    // A refunded purchase is still "already bought".
    let refunder = shop.shopper().await;
    let confirmed = order_confirmed(refunder.id, &[e]);
    record(&shop.recommendation, &confirmed).await;
    record(&shop.recommendation, &order_refunded(&confirmed)).await;
    let theirs = for_me_settled(&client, &refunder, 20).await;
    assert!(!ids(&theirs.recommendations).contains(&e.id.to_string()));

    // A newcomer gets the best sellers that are still available.
    let newcomer = shop.shopper().await;
    let popular = for_me_settled(&client, &newcomer, 10).await;
    assert_eq!(popular.model_version, "");
    let popular_ids = ids(&popular.recommendations);
    assert_eq!(popular_ids[0], a.id.to_string());
    for gone in [b, d] {
        assert!(!popular_ids.contains(&gone.id.to_string()));
    }
    assert!(
        popular
            .recommendations
            .iter()
            .all(|r| reason_of(r) == RecommendationReason::Popular)
    );
}

#[tokio::test]
async fn the_demo_history_is_seeded_once_and_trained_at_first_start() {
    let shop =
        Shop::start_with(&[("KAFKA_BROKERS", NO_BROKER), ("SEED_DEMO_ORDERS", "true")]).await;
    let demo = shopmesh_demo::demo_orders();
    let lines: usize = demo.iter().map(|o| o.lines.len()).sum();
    let info = model_served(&shop.recommendation, shop.admin()).await;
    assert_eq!(info.order_count, demo.len() as i64);
    assert_eq!(info.interaction_count, lines as i64);
    assert_eq!(info.user_count, 800);
    assert_eq!(purchase_rows(&shop.recommendation).await, lines as i64);

    // A second replica on the same database seeds nothing more.
    let url = shop.recommendation.database_url.clone();
    let replica = shop
        .another_recommendation(&[
            ("KAFKA_BROKERS", NO_BROKER),
            ("SEED_DEMO_ORDERS", "true"),
            ("DATABASE_URL", url.as_str()),
        ])
        .await;
    assert_eq!(purchase_rows(&replica).await, lines as i64);

    // A demo shopper who bought a laptop gets sensible, personal picks.
    let catalog = shopmesh_demo::demo_catalog();
    let laptops = catalog
        .categories
        .iter()
        .find(|c| c.slug == "laptops")
        .unwrap()
        .id;
    let is_laptop = |id: Uuid| {
        catalog
            .products
            .iter()
            .any(|p| p.id == id && p.category_id == laptops)
    };
    let buyer = demo
        .iter()
        .find(|o| o.lines.iter().any(|l| is_laptop(l.product_id)))
        .unwrap()
        .user_id;
    let bought: HashSet<String> = demo
        .iter()
        .filter(|o| o.user_id == buyer)
        .flat_map(|o| o.lines.iter().map(|l| l.product_id.to_string()))
        .collect();
    let user = shop.identity().signed_in_as(buyer, &[]).await.unwrap();
    let client = shop.client().await;
    let picks = for_me_settled(&client, &user, 10).await;
    assert_eq!(picks.model_version, info.version);
    assert_eq!(picks.recommendations.len(), 10);
    for r in &picks.recommendations {
        assert!(!bought.contains(&r.product_id));
    }
    assert!(
        picks
            .recommendations
            .iter()
            .any(|r| reason_of(r) != RecommendationReason::Popular),
        "a shopper with purchases gets more than best sellers"
    );
}

#[tokio::test]
async fn without_a_model_lists_are_empty_and_model_info_is_not_found() {
    let identity = shopmesh_testkit::TestIdentity::start().await.unwrap();
    // No catalog to train from: the service serves, without a model.
    let service = spawn_recommendation(
        &identity.auth_url,
        NOWHERE,
        NOWHERE,
        &[("KAFKA_BROKERS", NO_BROKER)],
    )
    .await;
    let mut client = client_of(&service).await;
    let admin = identity.signed_in(&["admin"]).await.unwrap();
    let err = client
        .get_model_info(admin.request(pb::GetModelInfoRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.get_error_details().error_info().unwrap().reason,
        "MODEL_NOT_FOUND"
    );
    let product: &SeedProduct = &stocked_products()[0];
    let similar = client
        .list_similar_products(similar(product, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(similar.recommendations.is_empty());
    assert_eq!(similar.model_version, "");
    let mine = client
        .recommend_for_me(admin.request(pb::RecommendForMeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.recommendations.is_empty());
    // Training needs the catalog: UNAVAILABLE while svc-product is down.
    let err = client
        .train_model(admin.request(pb::TrainModelRequest {}))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Unavailable | Code::Aborted),
        "{err:?}"
    );
}
