//! The gateway's admission control: beyond its in-flight limit a request is
//! refused at once with 503 problem+json `OVERLOADED` and `Retry-After`, and a
//! service's own refusal reaches the client the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use shopmesh_testkit::TestIdentity;
use tower::ServiceExt as _;

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_get_503_with_retry_after() {
    let identity = TestIdentity::start().await.unwrap();
    // svc-product that accepts connections and never answers: a call to it
    // stays in flight until the gateway's timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let router = support::gateway_with(
        &identity,
        &[("PRODUCT", silent_url)],
        &[
            ("OVERLOAD_MAX_IN_FLIGHT", "1"),
            ("OVERLOAD_LAG_TARGET_MS", "0"),
            ("REQUEST_TIMEOUT_SECONDS", "3"),
        ],
    );
    let product = "/v1/products/0190a8f0-0000-7000-8000-000000000001";
    let stuck = tokio::spawn(
        router
            .clone()
            .oneshot(Request::get(product).body(Body::empty()).unwrap()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stuck.is_finished(), "the first request is still in flight");

    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        router.clone().oneshot(
            Request::get("/healthz")
                .header("x-request-id", "shed-1")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await
    .expect("a refusal does not wait")
    .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let headers = refused.headers().clone();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["content-type"], "application/problem+json");
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["code"], "OVERLOADED");
    assert_eq!(body["status"], 503);
    assert_eq!(body["request_id"], "shed-1");

    // The stuck call ends at the gateway's timeout and frees its place.
    let timed_out = stuck.await.unwrap().unwrap();
    assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);
    let served = router
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}
