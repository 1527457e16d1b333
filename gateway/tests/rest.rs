//! The REST edge end to end: the real svc-product on PostgreSQL behind the
//! gateway's router, called through `Router::oneshot` and over a socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;
use support::{Reply, stack};

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn products_page_through_the_gateway() {
    let stack = stack().await;
    let first = stack.get("/v1/products?page_size=20").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.content_type, "application/json");
    assert_eq!(ids(&first).len(), 20);
    let token = first.body["nextPageToken"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    // proto3 JSON: int64 money as a string, lowerCamelCase names.
    assert!(first.body["products"][0]["price"]["amountMinor"].is_string());

    let second = stack
        .get(&format!("/v1/products?page_size=20&page_token={token}"))
        .await;
    assert_eq!(ids(&second).len(), 20);
    assert!(
        ids(&second).iter().all(|id| !ids(&first).contains(id)),
        "pages overlap"
    );

    let one = stack.get(&format!("/v1/products/{}", ids(&first)[0])).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        one.body["id"], first.body["products"][0]["id"],
        "response_body unwraps the product"
    );
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn a_parent_category_filter_returns_subcategory_products() {
    let stack = stack().await;
    let tree = stack.get("/v1/categories").await;
    let parent = tree.body["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| !c["children"].as_array().unwrap().is_empty())
        .unwrap();
    let children: Vec<&str> = parent["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let reply = stack
        .get(&format!(
            "/v1/products?page_size=100&categoryId={}",
            parent["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let products = reply.body["products"].as_array().unwrap();
    assert!(!products.is_empty());
    assert!(
        products
            .iter()
            .all(|p| children.contains(&p["categoryId"].as_str().unwrap()))
    );
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn errors_are_problem_documents_naming_fields() {
    let stack = stack().await;
    let unknown = stack
        .get(&format!("/v1/products/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.content_type, "application/problem+json");
    assert_eq!(unknown.body["code"], "PRODUCT_NOT_FOUND");
    assert_eq!(unknown.body["status"], 404);
    assert_eq!(unknown.body["request_id"], unknown.request_id.as_str());

    for (uri, field) in [
        ("/v1/products?page_size=-1", "page_size"),
        ("/v1/products?page_token=not-a-token", "page_token"),
        ("/v1/products?page_size=twenty", "page_size"),
        ("/v1/products?order_by=CHEAPEST", "order_by"),
        ("/v1/products?colour=red", "colour"),
    ] {
        let reply = stack.get(uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!(reply.body["code"], "INVALID_ARGUMENT");
        assert_eq!(
            reply.body["violations"][0]["field"], field,
            "{uri}: {}",
            reply.body
        );
    }

    let route = stack.get("/v2/nowhere").await;
    assert_eq!(
        (route.status, route.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ROUTE_NOT_FOUND"))
    );
    let verb = stack
        .send(Request::put("/v1/products/x").body(Body::empty()).unwrap())
        .await;
    assert_eq!(verb.status, StatusCode::METHOD_NOT_ALLOWED);
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn signed_in_routes_refuse_without_a_token() {
    let stack = stack().await;
    let me = stack.get("/v1/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.body["code"], "UNAUTHENTICATED");
    let admin = stack
        .send(
            Request::post("/v1/products")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(admin.status, StatusCode::UNAUTHORIZED);
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_upstream_is_a_503_without_internals() {
    let stack = stack().await;
    let reply = stack.get("/v1/stock/EL-HEAD-0001").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["code"], "UNAVAILABLE");
    assert!(
        !reply.body.to_string().contains("127.0.0.1"),
        "{}",
        reply.body
    );

    let ready = stack.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["upstreams"]["product"], "SERVING");
    assert_eq!(ready.body["upstreams"]["inventory"], "NOT_SERVING");
    assert_eq!(stack.get("/healthz").await.status, StatusCode::OK);
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let stack = stack().await;
    let big = format!(r#"{{"email":"{}"}}"#, "x".repeat(4096));
    let reply = stack
        .send(
            Request::post("/v1/auth:register")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["code"], "BODY_TOO_LARGE");
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_kept_and_requests_counted() {
    let stack = stack().await;
    let reply = stack
        .send(
            Request::get("/v1/categories")
                .header("x-request-id", "test-req-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.request_id, "test-req-42");
    let minted = stack.get("/v1/categories").await;
    assert_eq!(
        minted.request_id.len(),
        36,
        "a UUID is minted when the client sends none"
    );

    let metrics = shopmesh_platform::metrics::handle().render();
    assert!(
        metrics.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/v1/categories\"")
            && l.contains("status=\"200\"")),
        "{metrics}"
    );
    stack.product.stop().await.unwrap();
}

#[tokio::test]
async fn openapi_is_served_over_a_real_socket() {
    let stack = stack().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, stack.router.clone()).into_future());

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "{}",
        &raw[..raw.len().min(200)]
    );
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let doc: Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/products"]["get"].is_object());
    assert!(doc["paths"]["/v1/products/{id}"]["get"].is_object());
    server.abort();
    stack.product.stop().await.unwrap();
}
