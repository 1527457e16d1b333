//! What svc-order's integration tests share: the real svc-product (demo
//! catalog), svc-inventory (demo stock), svc-payment (simulated card network)
//! and svc-order, each on its own fresh database, behind the platform's
//! stand-in identity provider; shoppers and an admin with valid tokens;
//! svc-cart's service credential for CreateOrder; and a payment service
//! stand-in that forwards to the real one but can refuse authorizations with
//! UNAVAILABLE, as a payment service that is down would.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use shopmesh_demo::SeedProduct;
use shopmesh_platform::clients::Authenticated;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::inventory::v1::{GetStockRequest, Stock};
use shopmesh_proto::shop::order::v1::order_service_client::OrderServiceClient;
use shopmesh_proto::shop::order::v1::{
    CreateOrderLine, CreateOrderRequest, GetOrderRequest, ListOrderStatusHistoryRequest, Order,
    OrderStatus, ShippingAddress, StatusChange,
};
use shopmesh_proto::shop::payment::v1::payment_service_client::PaymentServiceClient;
use shopmesh_proto::shop::payment::v1::payment_service_server::{
    PaymentService, PaymentServiceServer,
};
use shopmesh_proto::shop::payment::v1::{self as payment, ListOrderPaymentsRequest, Payment};
use shopmesh_testkit::{
    Service, Shop as Stack, SignedIn, TestIdentity, TestService, as_service, borrowed, owned,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub type InternalOrderClient = OrderServiceClient<Authenticated>;

pub const APPROVED: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";

pub struct Shop {
    /// svc-inventory, svc-product and svc-payment wired to each other, their
    /// identity provider and an admin. svc-order starts apart: it may reach
    /// payment through the gate, or run as a binary.
    pub stack: Stack,
    order: Option<TestService>,
    pub gate: PaymentGate,
    /// svc-order's consumer group (its payment ledger): this shop's own, so
    /// tests running at once do not share `shop.payment.events` partitions.
    pub consumer_group: String,
}

impl Shop {
    /// Every service, svc-order calling the real payment service.
    pub async fn start() -> Self {
        Self::start_with(false, &[]).await
    }

    /// Every service; with `gated`, svc-order reaches payment through the
    /// gate (closed: authorizations are UNAVAILABLE until it opens).
    pub async fn start_with(gated: bool, extra: &[(&str, &str)]) -> Self {
        let mut shop = Self::dependencies(&[]).await;
        shop.start_order(gated, extra).await;
        shop
    }

    /// Every service but svc-order (start it with [`Shop::start_order`], or
    /// run the binary with [`Shop::order_settings`]); `common` settings are
    /// given to each of them (e.g. `KAFKA_BROKERS`).
    pub async fn dependencies(common: &[(&str, &str)]) -> Self {
        let stack = Stack::with(&[Service::Inventory, Service::Product, Service::Payment])
            .common(common)
            .start()
            .await;
        let gate = PaymentGate::start(&stack[Service::Payment].endpoint()).await;
        Self {
            stack,
            order: None,
            gate,
            consumer_group: format!("svc-order-test-{}", Uuid::now_v7().simple()),
        }
    }

    /// The settings of an svc-order for this shop, calling payment at
    /// `payment_url`, with the test defaults (no database: each process
    /// names its own).
    pub fn order_settings(&self, payment_url: &str) -> Vec<(String, String)> {
        let mut settings = self.stack.wiring(Service::Order);
        settings.extend([
            ("PAYMENT_GRPC_URL".to_owned(), payment_url.to_owned()),
            (
                "ORDER_CONSUMER_GROUP".to_owned(),
                self.consumer_group.clone(),
            ),
        ]);
        settings
    }

    pub fn identity(&self) -> &TestIdentity {
        &self.stack.identity
    }

    pub fn admin(&self) -> &SignedIn {
        &self.stack.admin
    }

    pub fn payment(&self) -> &TestService {
        &self.stack[Service::Payment]
    }

    pub fn inventory(&self) -> &TestService {
        &self.stack[Service::Inventory]
    }

    /// Starts svc-order in this process; with `gated`, it reaches payment
    /// through the gate. `extra` settings go on top of the defaults.
    pub async fn start_order(&mut self, gated: bool, extra: &[(&str, &str)]) {
        let payment_url = if gated {
            self.gate.url.clone()
        } else {
            self.payment().endpoint()
        };
        let mut settings = self.order_settings(&payment_url);
        settings.extend(owned(extra));
        let order = TestService::spawn(&svc_order::SPEC, &borrowed(&settings), svc_order::build)
            .await
            .expect("svc-order starts");
        self.order = Some(order);
    }

    /// svc-order as it runs now.
    pub fn order(&self) -> &TestService {
        self.order.as_ref().expect("svc-order runs")
    }

    /// Stops svc-order (as SIGTERM would) and starts a new process on the
    /// same database, calling payment at `payment_url`.
    pub async fn restart_order(&mut self, payment_url: &str) {
        let old = self.order.take().expect("svc-order runs");
        let database_url = old.database_url.clone();
        old.stop().await.unwrap();
        self.order = Some(self.order_service_again(&database_url, payment_url).await);
    }

    async fn order_service_again(&self, database_url: &str, payment_url: &str) -> TestService {
        let mut settings = self.order_settings(payment_url);
        settings.push(("DATABASE_URL".to_owned(), database_url.to_owned()));
        TestService::spawn(&svc_order::SPEC, &borrowed(&settings), svc_order::build)
            .await
            .expect("svc-order starts again")
    }

    pub async fn shopper(&self) -> SignedIn {
        self.stack.shopper().await
    }

    /// svc-order as svc-cart calls it (CreateOrder is INTERNAL).
    pub async fn as_cart(&self) -> InternalOrderClient {
        as_cart(self.order()).await
    }

    /// Places an order as svc-cart does; the order as CreateOrder answers.
    pub async fn place(&self, request: impl tonic::IntoRequest<CreateOrderRequest>) -> Order {
        self.as_cart()
            .await
            .create_order(request)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
    }

    /// svc-order as a shopper's gateway calls it.
    pub async fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.order().channel().await.unwrap())
    }

    pub async fn stock(&self, sku: &str) -> Stock {
        InventoryServiceClient::new(self.inventory().channel().await.unwrap())
            .get_stock(GetStockRequest { sku: sku.into() })
            .await
            .unwrap()
            .into_inner()
            .stock
            .unwrap()
    }

    /// The reservation's status in svc-inventory's database, if any.
    pub async fn reservation_status(&self, order_id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
            .bind(Uuid::parse_str(order_id).unwrap())
            .fetch_optional(self.inventory().db())
            .await
            .unwrap()
    }

    /// The order's payments as its owner sees them.
    pub async fn payments(&self, user: &SignedIn, order_id: &str) -> Vec<Payment> {
        PaymentServiceClient::new(self.payment().channel().await.unwrap())
            .list_order_payments(user.request(ListOrderPaymentsRequest {
                order_id: order_id.into(),
                page_size: 100,
                page_token: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .payments
    }

    pub async fn get(&self, user: &SignedIn, id: &str) -> Result<Order, Status> {
        self.orders()
            .await
            .get_order(user.request(GetOrderRequest { id: id.into() }))
            .await
            .map(|r| r.into_inner().order.unwrap())
    }

    pub async fn history(&self, user: &SignedIn, id: &str) -> Vec<StatusChange> {
        self.orders()
            .await
            .list_order_status_history(user.request(ListOrderStatusHistoryRequest {
                id: id.into(),
                page_size: 100,
                page_token: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .changes
    }

    /// Polls the order until `done` says yes (at most `within`).
    pub async fn wait_for(
        &self,
        user: &SignedIn,
        id: &str,
        within: Duration,
        done: impl Fn(&Order) -> bool,
    ) -> Order {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let order = self.get(user, id).await.unwrap();
            if done(&order) {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} still {:?} ({}) after {within:?}",
                order.status(),
                order.status_reason
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn as_cart(order: &TestService) -> InternalOrderClient {
    let channel = order.channel().await.unwrap();
    OrderServiceClient::new(as_service(channel, "svc-cart"))
}

/// Demo products with at least `min_stock` units, in catalog order.
pub fn stocked_products(min_stock: i64) -> Vec<SeedProduct> {
    shopmesh_demo::demo_catalog()
        .products
        .into_iter()
        .filter(|p| p.initial_stock >= min_stock)
        .collect()
}

pub fn address() -> ShippingAddress {
    ShippingAddress {
        recipient: "Ada Lovelace".into(),
        line1: "12 Analytical Row".into(),
        line2: String::new(),
        city: "London".into(),
        region: String::new(),
        postal_code: "N1 9GU".into(),
        country_code: "GB".into(),
        phone: "+442071234567".into(),
    }
}

pub fn checkout(
    key: &str,
    user: &SignedIn,
    lines: &[(&SeedProduct, i32)],
    card: &str,
) -> CreateOrderRequest {
    CreateOrderRequest {
        idempotency_key: key.into(),
        user_id: user.id.to_string(),
        lines: lines
            .iter()
            .map(|(product, quantity)| CreateOrderLine {
                product_id: product.id.to_string(),
                sku: product.sku.clone(),
                quantity: *quantity,
            })
            .collect(),
        shipping_address: Some(address()),
        payment_method: Some(payment::PaymentMethod {
            method: Some(payment::payment_method::Method::TestCardNumber(card.into())),
        }),
    }
}

/// `message` with a short deadline, so CreateOrder answers before the saga settles.
pub fn hurried<T>(message: T, within: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(within);
    request
}

pub fn statuses(changes: &[StatusChange]) -> Vec<OrderStatus> {
    changes.iter().map(|c| c.status()).collect()
}

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_testkit::error_reason as reason;

/// A payment service in front of the real one: it forwards everything, but
/// answers AuthorizePayment with UNAVAILABLE while closed, and can swallow the
/// answers of authorizations it forwarded.
#[derive(Clone)]
pub struct PaymentGate {
    pub url: String,
    mode: Arc<AtomicU8>,
    /// Authorizations forwarded whose answer was swallowed, so far.
    swallowed: Arc<tokio::sync::watch::Sender<usize>>,
    real: PaymentServiceClient<Authenticated>,
}

const GATE_CLOSED: u8 = 0;
const GATE_OPEN: u8 = 1;
const GATE_SWALLOWING: u8 = 2;

impl PaymentGate {
    async fn start(real_url: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(real_url.to_owned())
            .unwrap()
            .connect_lazy();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            mode: Arc::new(AtomicU8::new(GATE_CLOSED)),
            swallowed: Arc::new(tokio::sync::watch::Sender::new(0)),
            real: PaymentServiceClient::new(as_service(channel, "svc-order")),
        };
        let service = PaymentServiceServer::new(gate.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        gate
    }

    pub fn open(&self) {
        self.mode.store(GATE_OPEN, Ordering::SeqCst);
    }

    /// Authorizations are UNAVAILABLE again (the initial state).
    pub fn close(&self) {
        self.mode.store(GATE_CLOSED, Ordering::SeqCst);
    }

    /// From now on an authorization is forwarded to the real service, which
    /// authorizes it, but its answer never comes back (the call hangs until
    /// the caller gives up or goes away), as when the network loses it.
    pub fn swallow_answers(&self) {
        self.mode.store(GATE_SWALLOWING, Ordering::SeqCst);
    }

    /// Waits until `count` authorizations have been made and their answers swallowed.
    pub async fn swallowed(&self, count: usize) {
        let mut seen = self.swallowed.subscribe();
        let _ = seen.wait_for(|n| *n >= count).await;
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentGate {
    async fn tokenize_payment_method(
        &self,
        request: Request<payment::TokenizePaymentMethodRequest>,
    ) -> Result<Response<payment::TokenizePaymentMethodResponse>, Status> {
        self.real
            .clone()
            .tokenize_payment_method(request.into_inner())
            .await
    }

    async fn authorize_payment(
        &self,
        request: Request<payment::AuthorizePaymentRequest>,
    ) -> Result<Response<payment::AuthorizePaymentResponse>, Status> {
        match self.mode.load(Ordering::SeqCst) {
            GATE_CLOSED => Err(Status::unavailable("payment service is down (test gate)")),
            GATE_SWALLOWING => {
                // A failure is passed on: only an answer is swallowed.
                self.real
                    .clone()
                    .authorize_payment(request.into_inner())
                    .await?;
                self.swallowed.send_modify(|n| *n += 1);
                std::future::pending().await
            }
            _ => {
                self.real
                    .clone()
                    .authorize_payment(request.into_inner())
                    .await
            }
        }
    }

    async fn capture_payment(
        &self,
        request: Request<payment::CapturePaymentRequest>,
    ) -> Result<Response<payment::CapturePaymentResponse>, Status> {
        self.real
            .clone()
            .capture_payment(request.into_inner())
            .await
    }

    async fn void_payment(
        &self,
        request: Request<payment::VoidPaymentRequest>,
    ) -> Result<Response<payment::VoidPaymentResponse>, Status> {
        self.real.clone().void_payment(request.into_inner()).await
    }

    async fn refund_payment(
        &self,
        request: Request<payment::RefundPaymentRequest>,
    ) -> Result<Response<payment::RefundPaymentResponse>, Status> {
        self.real.clone().refund_payment(request.into_inner()).await
    }
}
