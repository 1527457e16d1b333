#![allow(clippy::unwrap_used, clippy::expect_used)]
//! svc-recommendation through the REST routes its `google.api.http`
//! annotations declare: product lists are public, the shopper's own list needs
//! a token, the model's info and training are for admins and answer with the
//! model itself (`response_body: "model"`).

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use shopmesh_testkit::TestService;
use support::{Reply, Stack};
use uuid::Uuid;

async fn as_user(stack: &Stack, request: http::request::Builder, token: &str, body: &str) -> Reply {
    stack
        .send(
            request
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn recommendation_routes_reach_the_service() {
    let stack = support::stack().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("http://{closed}");
    let product_url = stack.product.endpoint();
    let recommendation = TestService::spawn(
        &svc_recommendation::SPEC,
        &[
            ("AUTH_GRPC_URL", stack.identity.auth_url.as_str()),
            ("PRODUCT_GRPC_URL", product_url.as_str()),
            // No stock followed: every product counts as sold out.
            ("INVENTORY_GRPC_URL", nowhere.as_str()),
            ("KAFKA_BROKERS", &closed.to_string()),
            ("SEED_DEMO_ORDERS", "false"),
        ],
        svc_recommendation::build,
    )
    .await
    .unwrap();
    let router = support::gateway(
        &stack.identity,
        &[
            ("PRODUCT", product_url.clone()),
            ("RECOMMENDATION", recommendation.endpoint()),
        ],
    );
    let stack = Stack { router, ..stack };
    let admin = stack.identity.sign_in(&["admin"]).await.unwrap().2;
    let shopper = stack.identity.sign_in(&[]).await.unwrap().2;

    // The model trained at start (from the catalog alone), as the model itself.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let model = loop {
        let reply = as_user(
            &stack,
            Request::get("/v1/recommendations/model"),
            &admin,
            "",
        )
        .await;
        if reply.status == StatusCode::OK {
            break reply.body;
        }
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        assert!(tokio::time::Instant::now() < deadline, "no model trained");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        model["version"].as_str().unwrap().ends_with("#1"),
        "{model}"
    );
    assert_eq!(model["productCount"], "1200");
    let trained = as_user(
        &stack,
        Request::post("/v1/recommendations/model:train"),
        &admin,
        "{}",
    )
    .await;
    assert_eq!(trained.status, StatusCode::OK, "{}", trained.body);
    assert!(trained.body["version"].as_str().unwrap().ends_with("#2"));
    let refused = as_user(
        &stack,
        Request::get("/v1/recommendations/model"),
        &shopper,
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mine = stack.get("/v1/me/recommendations").await;
    assert_eq!(mine.status, StatusCode::UNAUTHORIZED);
    let mine = as_user(
        &stack,
        Request::get("/v1/me/recommendations?page_size=5"),
        &shopper,
        "",
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);

    let product = &shopmesh_demo::demo_catalog().products[0];
    for list in ["similar", "bought-together"] {
        let reply = stack
            .get(&format!("/v1/products/{}/{list}?page_size=3", product.id))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{list}: {}", reply.body);
        assert!(reply.body.is_object());
    }
    let bad = stack.get("/v1/products/not-a-uuid/similar").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["violations"][0]["field"], "product_id");
    let missing = stack
        .get(&format!("/v1/products/{}/bought-together", Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(missing.body["code"], "PRODUCT_NOT_FOUND");
}
