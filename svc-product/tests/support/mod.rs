//! What the svc-product integration tests (and the search benchmark) share:
//! starting the real service on a fresh database, signing in, walking pages,
//! demo stock and reading metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{
    GetProductRequest, ListProductsRequest, Product, SearchProductsRequest, SearchProductsResponse,
    UpdateProductRequest,
};
use shopmesh_testkit::{TestIdentity, TestService};
use tonic::transport::Channel;

pub type Client = ProductServiceClient<Channel>;

/// Nothing listens here, so no test sees a real inventory by accident.
pub use shopmesh_testkit::NOWHERE as NO_INVENTORY;

/// The service with the demo catalog, and a client.
pub async fn start() -> (TestService, Client) {
    start_with(&[]).await
}

/// The service with extra settings on top of the test defaults.
pub async fn start_with(extra: &[(&str, &str)]) -> (TestService, Client) {
    let mut settings = vec![("INVENTORY_GRPC_URL", NO_INVENTORY)];
    settings.extend_from_slice(extra);
    let service = TestService::spawn(&svc_product::SPEC, &settings, svc_product::build)
        .await
        .expect("svc-product starts");
    let client = ProductServiceClient::new(service.channel().await.expect("connects"));
    (service, client)
}

/// The service trusting a test identity provider, so admin calls can be made.
pub async fn start_with_identity(extra: &[(&str, &str)]) -> (TestService, Client, TestIdentity) {
    let identity = TestIdentity::start().await.expect("identity starts");
    let mut settings = vec![("AUTH_GRPC_URL", identity.auth_url.as_str())];
    settings.extend_from_slice(extra);
    let (service, client) = start_with(&settings).await;
    (service, client, identity)
}

/// A token for a new signed-in user with `roles`.
pub async fn token(identity: &TestIdentity, roles: &[&str]) -> String {
    identity.sign_in(roles).await.expect("signs in").2
}

/// `message` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    shopmesh_testkit::with_bearer(message, token)
}

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_platform::errors::violated_fields;

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_testkit::error_reason;

/// One search call.
pub async fn search(client: &mut Client, request: SearchProductsRequest) -> SearchProductsResponse {
    client
        .search_products(request)
        .await
        .expect("search")
        .into_inner()
}

/// Every product a search matches, page by page, and its first response.
pub async fn search_all(
    client: &mut Client,
    request: SearchProductsRequest,
) -> (Vec<Product>, SearchProductsResponse) {
    let first = search(client, request.clone()).await;
    let mut products = first.products.clone();
    let mut token = first.next_page_token.clone();
    while !token.is_empty() {
        let page = search(
            client,
            SearchProductsRequest {
                page_token: token,
                ..request.clone()
            },
        )
        .await;
        products.extend(page.products);
        token = page.next_page_token;
    }
    (products, first)
}

/// Every product a listing returns, page by page.
pub async fn list_all(client: &mut Client, request: ListProductsRequest) -> Vec<Product> {
    let mut products = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_products(ListProductsRequest {
                page_token: token,
                ..request.clone()
            })
            .await
            .expect("list")
            .into_inner();
        products.extend(page.products);
        if page.next_page_token.is_empty() {
            return products;
        }
        token = page.next_page_token;
    }
}

pub fn ids(products: &[Product]) -> Vec<String> {
    products.iter().map(|p| p.id.clone()).collect()
}

/// Availability as inventory would report it for the demo catalog (its
/// initial stock), written straight into `stock_levels`.
pub async fn stock_like_the_demo(db: &sqlx::PgPool) {
    let catalog = shopmesh_demo::demo_catalog();
    sqlx::query(
        "INSERT INTO stock_levels (sku, available, updated_at) \
         SELECT sku, available, now() FROM UNNEST($1::text[], $2::int8[]) AS t(sku, available)",
    )
    .bind(
        catalog
            .products
            .iter()
            .map(|p| p.sku.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        catalog
            .products
            .iter()
            .map(|p| p.initial_stock)
            .collect::<Vec<_>>(),
    )
    .execute(db)
    .await
    .unwrap();
}

/// A bare HTTP/1.1 GET, to read `/metrics` without another HTTP client dependency.
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

/// The value of the `cache_requests_total` counter for `cache` and `result`
/// (0 before the first count).
pub async fn cache_count(service: &TestService, cache: &str, result: &str) -> f64 {
    let metrics = http_get(&format!("http://{}/metrics", service.metrics_addr)).await;
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("cache_requests_total{")
                && line.contains(&format!("cache=\"{cache}\""))
                && line.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it holds, for at most `seconds`.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// GetProduct of `id`.
pub async fn get(client: &mut Client, id: &str) -> Result<Product, tonic::Status> {
    client
        .get_product(GetProductRequest { id: id.into() })
        .await
        .map(|r| r.into_inner().product.unwrap())
}

/// An admin update of the product's price alone; the product as updated.
pub async fn set_price(client: &mut Client, admin: &str, id: &str, amount_minor: i64) -> Product {
    client
        .update_product(authorized(
            UpdateProductRequest {
                product: Some(Product {
                    id: id.into(),
                    price: Some(Money {
                        currency_code: "USD".into(),
                        amount_minor,
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["price".into()],
                }),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

pub fn price(product: &Product) -> i64 {
    product.price.as_ref().unwrap().amount_minor
}

/// The id and name of the demo product whose name a search matches exactly.
pub async fn exact_match_product(db: &sqlx::PgPool) -> (String, String) {
    let (id, name): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, name FROM products WHERE name = $1")
            .bind(shopmesh_demo::EXACT_MATCH_NAME)
            .fetch_one(db)
            .await
            .unwrap();
    (id.to_string(), name)
}
