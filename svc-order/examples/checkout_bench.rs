//! Checkout throughput and latency on this machine, end to end through the
//! saga: svc-product, svc-inventory, svc-payment (simulated card network) and
//! svc-order run in-process on fresh databases (PostgreSQL, Redis and the
//! broker as for the tests: `TEST_DATABASE_URL`, `TEST_REDIS_URL`,
//! `TEST_KAFKA_BROKERS`). Concurrent clients place orders as svc-cart does
//! (CreateOrder, 1–3 lines of demo products, an approving test card); a
//! checkout counts when its order is CONFIRMED: priced, stock reserved,
//! payment authorized, stock committed, payment captured. CreateOrder waits for
//! the saga to settle, so its latency is the checkout's.
//!
//! Also measures event delivery: a consumer in its own group on
//! `shop.order.events` (the platform consumer, with its inbox) records, for
//! each OrderConfirmed of this run, the time from `occurred_at` (set in
//! svc-order's transaction) to the commit of the consumer's effect — the
//! outbox relay, the broker and the consumer together.
//!
//!   scripts/infra.sh postgres redis kafka   # or make test's servers
//!   cargo run --release -p svc-order --example checkout_bench
//!   BENCH_CLIENTS=16 BENCH_CHECKOUTS=2000 cargo run --release -p svc-order --example checkout_bench

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use shopmesh_events::{
    CancellationToken, EnvelopeExt, EventConsumer, EventEnvelope, EventHandler, EventsSettings,
    HandlerError,
};
use shopmesh_platform::settings::Env;
use shopmesh_proto::shop::events::v1::OrderConfirmed;
use shopmesh_proto::shop::order::v1::order_service_client::OrderServiceClient;
use shopmesh_proto::shop::order::v1::{
    CreateOrderLine, CreateOrderRequest, OrderStatus, ShippingAddress,
};
use shopmesh_proto::shop::payment::v1::{PaymentMethod, payment_method};
use shopmesh_testkit::{Latencies, TestIdentity, TestService, as_service, kafka_brokers};
use sqlx::PgConnection;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Records commit → consumer latency of this run's OrderConfirmed events.
struct Delivery {
    orders: Arc<Mutex<HashSet<String>>>,
    latencies: Arc<Mutex<Latencies>>,
}

impl EventHandler for Delivery {
    async fn handle(
        &self,
        _: &mut PgConnection,
        envelope: &EventEnvelope,
    ) -> Result<(), HandlerError> {
        if !envelope.is::<OrderConfirmed>() {
            return Ok(());
        }
        let event: OrderConfirmed = envelope.payload_as().map_err(HandlerError::permanent)?;
        if !self.orders.lock().unwrap().contains(&event.order_id) {
            return Ok(());
        }
        let occurred = envelope
            .occurred_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(SystemTime::now);
        let latency = SystemTime::now()
            .duration_since(occurred)
            .unwrap_or_default();
        self.latencies.lock().unwrap().record(latency);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = setting("BENCH_CLIENTS", 16).max(1);
    let total = setting("BENCH_CHECKOUTS", 1_000).max(1);
    let shoppers = setting("BENCH_SHOPPERS", 50).max(1);

    let identity = TestIdentity::start().await?;
    let auth = identity.auth_url.clone();
    let inventory = TestService::spawn(
        &svc_inventory::SPEC,
        &[
            ("AUTH_GRPC_URL", auth.as_str()),
            ("RESERVATION_SWEEP_SECONDS", "3600"),
        ],
        svc_inventory::build,
    )
    .await?;
    // Plenty of every SKU: this measures the happy path, not shortages.
    sqlx::query("UPDATE stock SET on_hand = 1000000000")
        .execute(inventory.db())
        .await?;
    let inventory_url = inventory.endpoint();
    let product = TestService::spawn(
        &svc_product::SPEC,
        &[
            ("AUTH_GRPC_URL", auth.as_str()),
            ("INVENTORY_GRPC_URL", inventory_url.as_str()),
        ],
        svc_product::build,
    )
    .await?;
    let payment = TestService::spawn(
        &svc_payment::SPEC,
        &[("AUTH_GRPC_URL", auth.as_str())],
        svc_payment::build,
    )
    .await?;
    let (product_url, payment_url) = (product.endpoint(), payment.endpoint());
    let group = format!("svc-order-bench-{}", uuid::Uuid::now_v7().simple());
    let order = TestService::spawn(
        &svc_order::SPEC,
        &[
            ("AUTH_GRPC_URL", auth.as_str()),
            ("PRODUCT_GRPC_URL", product_url.as_str()),
            ("INVENTORY_GRPC_URL", inventory_url.as_str()),
            ("PAYMENT_GRPC_URL", payment_url.as_str()),
            ("ORDER_CONSUMER_GROUP", group.as_str()),
        ],
        svc_order::build,
    )
    .await?;

    // The delivery probe: its own group; it only counts this run's orders.
    let orders = Arc::new(Mutex::new(HashSet::new()));
    let latencies = Arc::new(Mutex::new(Latencies::new()));
    let settings = EventsSettings::from_env(
        &Env::process().with("KAFKA_BROKERS", kafka_brokers()),
        "checkout-bench",
    )?;
    let probe_group = format!("checkout-bench-{}", uuid::Uuid::now_v7().simple());
    let stop_probe = CancellationToken::new();
    let probe = EventConsumer::new(
        order.db().clone(),
        &settings,
        &probe_group,
        &[svc_order::events::TOPIC],
        Delivery {
            orders: orders.clone(),
            latencies: latencies.clone(),
        },
    )
    .spawn(stop_probe.clone());

    let catalog = shopmesh_demo::demo_catalog().products;
    let users: Vec<String> = (0..shoppers)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    println!(
        "svc-order checkout_bench: {clients} clients, {total} checkouts, {shoppers} shoppers, \
         {} products",
        catalog.len()
    );
    let catalog = Arc::new(catalog);
    let users = Arc::new(users);
    run(
        &order,
        &catalog,
        &users,
        &orders,
        clients,
        total / 10,
        false,
    )
    .await?;
    // Until the probe has joined its group, read the topic's history (a new
    // group starts at the earliest offset) and seen the warm-up's
    // confirmations: the figures below are steady state.
    let warm = orders.lock().unwrap().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.lock().unwrap().count() < warm && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    orders.lock().unwrap().clear();
    latencies.lock().unwrap().clear();
    run(&order, &catalog, &users, &orders, clients, total, true).await?;

    // Wait for the confirmations to reach the probe.
    let expected = orders.lock().unwrap().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.lock().unwrap().count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = latencies.lock().unwrap().clone();
    println!(
        "   event delivery (OrderConfirmed, commit → consumer committed): {} of {expected} \
         events  {:.1}",
        delivered.count(),
        delivered.summary(&[0.50, 0.99, 1.0]),
    );
    stop_probe.cancel();
    let _ = probe.await;
    drop(identity);
    Ok(())
}

async fn run(
    order: &TestService,
    catalog: &Arc<Vec<shopmesh_demo::SeedProduct>>,
    users: &Arc<Vec<String>>,
    orders: &Arc<Mutex<HashSet<String>>>,
    clients: usize,
    total: usize,
    report: bool,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(clients);
    for worker in 0..clients {
        let mut client = OrderServiceClient::new(as_service(order.channel().await?, "svc-cart"));
        let (next, catalog, users, orders) =
            (next.clone(), catalog.clone(), users.clone(), orders.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let mut failures = 0_usize;
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (worker as u64 + 1);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let lines = 1 + (xorshift(&mut seed) % 3) as usize;
                let first = xorshift(&mut seed) as usize % catalog.len();
                let request = CreateOrderRequest {
                    idempotency_key: uuid::Uuid::now_v7().simple().to_string(),
                    user_id: users[n % users.len()].clone(),
                    lines: (0..lines)
                        .map(|i| {
                            let p = &catalog[(first + i * 7919) % catalog.len()];
                            CreateOrderLine {
                                product_id: p.id.to_string(),
                                sku: p.sku.clone(),
                                quantity: 1,
                            }
                        })
                        .collect(),
                    shipping_address: Some(address()),
                    payment_method: Some(PaymentMethod {
                        method: Some(payment_method::Method::TestCardNumber(
                            "4242424242424242".into(),
                        )),
                    }),
                };
                let sent = Instant::now();
                match client.create_order(request).await {
                    Ok(response) => match response.into_inner().order {
                        Some(o) if o.status() == OrderStatus::Confirmed => {
                            latencies.record(sent.elapsed());
                            orders.lock().unwrap().insert(o.id);
                        }
                        _ => failures += 1,
                    },
                    Err(_) => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Latencies::new();
    let mut failures = 0;
    for worker in workers {
        let (mine, failed) = worker.await?;
        latencies.merge(&mine);
        failures += failed;
    }
    let elapsed = started.elapsed();
    if report {
        println!(
            "   checkouts to CONFIRMED: {:.0}/s  {:.1}  not confirmed {failures}",
            latencies.count() as f64 / elapsed.as_secs_f64(),
            latencies.summary(&[0.50, 0.99, 1.0]),
        );
    }
    Ok(())
}

fn address() -> ShippingAddress {
    ShippingAddress {
        recipient: "Bench Shopper".into(),
        line1: "1 Load Street".into(),
        city: "Leeds".into(),
        postal_code: "LS1 1AA".into(),
        country_code: "GB".into(),
        ..Default::default()
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
