//! What svc-recommendation's tests share: a small shop of real services on
//! fresh databases (svc-inventory with the demo stock, svc-product with the
//! demo catalog, svc-recommendation reading both) behind the platform's
//! stand-in identity provider; purchases recorded the way the consumer
//! records them; an admin to train, change stock and delete products.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use prost::Message as _;
use shopmesh_demo::SeedProduct;
use shopmesh_events::{Event, EventEnvelope};
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::events::v1::{OrderConfirmed, OrderLine, OrderRefunded};
use shopmesh_proto::shop::recommendation::v1 as pb;
use shopmesh_proto::shop::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use shopmesh_testkit::{Service, Shop as Stack, SignedIn, TestIdentity, TestService};
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

pub use shopmesh_testkit::eventually;

pub type Client = RecommendationServiceClient<Channel>;

#[allow(unused_imports)] // for the tests; the example that shares this module does not use it
pub use shopmesh_testkit::NOWHERE;
/// A broker address nothing listens on, for tests that consume no events.
pub const NO_BROKER: &str = "127.0.0.1:9";

/// Settings every svc-recommendation under test gets unless a test says otherwise.
const DEFAULTS: &[(&str, &str)] = &[
    ("SEED_DEMO_ORDERS", "false"),
    ("RECOMMENDATION_CATALOG_REFRESH_SECONDS", "1"),
    ("RECOMMENDATION_MODEL_POLL_SECONDS", "1"),
    ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
];

pub struct Shop {
    /// svc-inventory and svc-product (whose own stock stream is not what
    /// recommendations read: it is idle), their identity provider and an admin.
    pub stack: Stack,
    pub recommendation: TestService,
}

impl Shop {
    /// Every service; svc-recommendation consumes no events.
    pub async fn start() -> Self {
        Self::start_with(&[("KAFKA_BROKERS", NO_BROKER)]).await
    }

    /// Every service, with `extra` on top of svc-recommendation's test settings.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let stack = Stack::with(&[Service::Inventory, Service::Product])
            .settings(Service::Product, &[("INVENTORY_GRPC_URL", NOWHERE)])
            .start()
            .await;
        let recommendation = spawn_recommendation(
            &stack.identity.auth_url,
            &stack[Service::Product].endpoint(),
            &stack[Service::Inventory].endpoint(),
            extra,
        )
        .await;
        // With no model persisted, the service trains one at start (from the
        // catalog alone here): tests begin once it serves it.
        model_served(&recommendation, &stack.admin).await;
        Self {
            stack,
            recommendation,
        }
    }

    /// Another svc-recommendation with the shop's settings and `extra` (e.g.
    /// the `DATABASE_URL` of the first, for a second replica or a restart).
    pub async fn another_recommendation(&self, extra: &[(&str, &str)]) -> TestService {
        spawn_recommendation(
            &self.stack.identity.auth_url,
            &self.stack[Service::Product].endpoint(),
            &self.stack[Service::Inventory].endpoint(),
            extra,
        )
        .await
    }

    pub fn identity(&self) -> &TestIdentity {
        &self.stack.identity
    }

    pub fn admin(&self) -> &SignedIn {
        &self.stack.admin
    }

    pub async fn client(&self) -> Client {
        client_of(&self.recommendation).await
    }

    pub async fn shopper(&self) -> SignedIn {
        self.stack.shopper().await
    }

    /// TrainModel as the admin.
    pub async fn train(&self) -> pb::ModelInfo {
        train_on(&self.recommendation, self.admin()).await
    }

    /// Orders `user` placed, recorded as the consumer records OrderConfirmed.
    pub async fn bought(&self, user: Uuid, orders: &[&[&SeedProduct]]) {
        for products in orders {
            record(&self.recommendation, &order_confirmed(user, products)).await;
        }
    }
}

pub async fn spawn_recommendation(
    auth: &str,
    product: &str,
    inventory: &str,
    extra: &[(&str, &str)],
) -> TestService {
    let group = format!("svc-recommendation-test-{}", Uuid::now_v7().simple());
    let mut settings = vec![
        ("AUTH_GRPC_URL", auth),
        ("PRODUCT_GRPC_URL", product),
        ("INVENTORY_GRPC_URL", inventory),
        ("RECOMMENDATION_CONSUMER_GROUP", group.as_str()),
    ];
    settings.extend_from_slice(DEFAULTS);
    settings.extend_from_slice(extra);
    TestService::spawn(
        &svc_recommendation::SPEC,
        &settings,
        svc_recommendation::build,
    )
    .await
    .expect("svc-recommendation starts")
}

pub async fn client_of(service: &TestService) -> Client {
    RecommendationServiceClient::new(service.channel().await.expect("connects"))
}

pub async fn train_on(service: &TestService, admin: &SignedIn) -> pb::ModelInfo {
    client_of(service)
        .await
        .train_model(admin.request(pb::TrainModelRequest {}))
        .await
        .expect("the model trains")
        .into_inner()
        .model
        .expect("a model")
}

/// The model `service` serves, once it serves one.
pub async fn model_served(service: &TestService, admin: &SignedIn) -> pb::ModelInfo {
    let client = client_of(service).await;
    eventually("a model is served", || {
        let mut client = client.clone();
        async move {
            let response = client
                .get_model_info(admin.request(pb::GetModelInfoRequest {}))
                .await
                .ok()?;
            response.into_inner().model
        }
    })
    .await
}

/// Applies `envelope` to the service's database as its consumer would
/// (without the broker and the inbox).
pub async fn record(service: &TestService, envelope: &EventEnvelope) {
    let mut tx = service.db().begin().await.unwrap();
    svc_recommendation::consumer::apply(&mut tx, envelope)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "USD".to_owned(),
        amount_minor: minor,
    })
}

fn lines(products: &[&SeedProduct]) -> Vec<OrderLine> {
    products
        .iter()
        .map(|p| OrderLine {
            product_id: p.id.to_string(),
            sku: p.sku.clone(),
            name: p.name.clone(),
            quantity: 1,
            unit_price: usd(p.price_minor),
            line_total: usd(p.price_minor),
        })
        .collect()
}

/// An OrderConfirmed for `user` buying one of each of `products`, as svc-order publishes it.
pub fn order_confirmed(user: Uuid, products: &[&SeedProduct]) -> EventEnvelope {
    let order_id = Uuid::now_v7().to_string();
    let total: i64 = products.iter().map(|p| p.price_minor).sum();
    let payload = OrderConfirmed {
        order_id: order_id.clone(),
        user_id: user.to_string(),
        lines: lines(products),
        subtotal: usd(total),
        total: usd(total),
        payment_id: Uuid::now_v7().to_string(),
        confirm_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    Event::new(&payload, "order", order_id).into_envelope()
}

/// The OrderRefunded of a confirmed order's envelope.
pub fn order_refunded(confirmed: &EventEnvelope) -> EventEnvelope {
    let order = OrderConfirmed::decode(
        confirmed
            .payload
            .as_ref()
            .map(|p| p.value.as_slice())
            .unwrap_or_default(),
    )
    .unwrap();
    let payload = OrderRefunded {
        order_id: order.order_id.clone(),
        user_id: order.user_id,
        lines: order.lines,
        subtotal: order.subtotal,
        total: order.total.clone(),
        refunded: order.total,
        payment_id: order.payment_id,
        reason: "changed my mind".to_owned(),
        refund_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    Event::new(&payload, "order", order.order_id).into_envelope()
}

/// Demo products with plenty of stock (at least 100 units), in catalog order.
pub fn stocked_products() -> Vec<SeedProduct> {
    shopmesh_demo::demo_catalog()
        .products
        .into_iter()
        .filter(|p| p.initial_stock >= 100)
        .collect()
}

/// The demo category (slug) of a product id.
pub fn slug_of(product_id: &str) -> String {
    let catalog = shopmesh_demo::demo_catalog();
    let category = catalog
        .products
        .iter()
        .find(|p| p.id.to_string() == product_id)
        .map(|p| p.category_id);
    catalog
        .categories
        .iter()
        .find(|c| Some(c.id) == category)
        .map(|c| c.slug.clone())
        .unwrap_or_default()
}

pub fn ids(recommendations: &[pb::Recommendation]) -> Vec<String> {
    recommendations
        .iter()
        .map(|r| r.product_id.clone())
        .collect()
}

pub fn similar(product: &SeedProduct, page_size: i32) -> pb::ListSimilarProductsRequest {
    pb::ListSimilarProductsRequest {
        product_id: product.id.to_string(),
        page_size,
        page_token: String::new(),
    }
}

pub fn bought_together(
    product: &SeedProduct,
    page_size: i32,
) -> pb::ListFrequentlyBoughtTogetherRequest {
    pb::ListFrequentlyBoughtTogetherRequest {
        product_id: product.id.to_string(),
        page_size,
        page_token: String::new(),
    }
}

/// What `call` answers once it answers the same non-empty list twice in a
/// row, 300 ms apart: stock levels arrive from svc-inventory shortly after
/// start (and after each change), and lists depend on them.
pub async fn settled<T, F, Fut>(what: &str, mut call: F) -> T
where
    T: PartialEq,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last: Option<T> = None;
    loop {
        let current = call().await;
        if let Some(current) = current {
            if last.as_ref() == Some(&current) {
                return current;
            }
            last = Some(current);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// The fields an INVALID_ARGUMENT names.
pub fn violated(status: &Status) -> Vec<String> {
    shopmesh_platform::errors::violated_fields(status)
}

pub async fn purchase_rows(service: &TestService) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM purchases")
        .fetch_one(service.db())
        .await
        .unwrap()
}

/// ListSimilarProducts once it settles on a non-empty list.
pub async fn similar_settled(
    client: &Client,
    request: pb::ListSimilarProductsRequest,
) -> pb::ListSimilarProductsResponse {
    settled("similar products", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move {
            let response = client.list_similar_products(request).await.ok()?;
            Some(response.into_inner()).filter(|r| !r.recommendations.is_empty())
        }
    })
    .await
}

/// ListFrequentlyBoughtTogether once it settles on a non-empty list.
pub async fn together_settled(
    client: &Client,
    request: pb::ListFrequentlyBoughtTogetherRequest,
) -> pb::ListFrequentlyBoughtTogetherResponse {
    settled("products bought together", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move {
            let response = client.list_frequently_bought_together(request).await.ok()?;
            Some(response.into_inner()).filter(|r| !r.recommendations.is_empty())
        }
    })
    .await
}

/// RecommendForMe for `user` once it settles on a non-empty list.
pub async fn for_me_settled(
    client: &Client,
    user: &SignedIn,
    page_size: i32,
) -> pb::RecommendForMeResponse {
    settled("recommendations for a shopper", || {
        let mut client = client.clone();
        let request = user.request(pb::RecommendForMeRequest { page_size });
        async move {
            let response = client.recommend_for_me(request).await.ok()?;
            Some(response.into_inner()).filter(|r| !r.recommendations.is_empty())
        }
    })
    .await
}
