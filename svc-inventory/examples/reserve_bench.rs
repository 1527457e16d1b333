//! Reservation throughput and latency of svc-inventory on this machine: starts the
//! service in-process on a fresh database (PostgreSQL and Redis as for the tests:
//! `TEST_DATABASE_URL`, `TEST_REDIS_URL`), stocks SKUs, and lets concurrent gRPC
//! clients reserve, each over its own connection. Prints reservations per second
//! and p50/p99 latency for two mixes: orders spread over many SKUs, and every
//! order on one hot SKU (the worst case: all of them queue on one row lock).
//!
//!   cargo run --release -p svc-inventory --example reserve_bench
//!   BENCH_CLIENTS=64 BENCH_RESERVATIONS=20000 BENCH_SKUS=1000 BENCH_LINES=3 \
//!   BENCH_DB_CONNECTIONS=16 cargo run --release -p svc-inventory --example reserve_bench

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::inventory::v1::{ReservationLine, ReserveStockRequest};
use shopmesh_testkit::{TestService, as_service};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = setting("BENCH_CLIENTS", 32).max(1);
    let total = setting("BENCH_RESERVATIONS", 10_000).max(1);
    let skus = setting("BENCH_SKUS", 1_000).max(1);
    let lines = setting("BENCH_LINES", 3).clamp(1, skus.min(100));
    let connections = setting("BENCH_DB_CONNECTIONS", 16).to_string();

    let service = TestService::spawn(
        &svc_inventory::SPEC,
        &[
            ("SEED_DEMO_STOCK", "false"),
            ("DB_MAX_CONNECTIONS", connections.as_str()),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "60"),
            ("RESERVATION_SWEEP_SECONDS", "3600"),
        ],
        svc_inventory::build,
    )
    .await?;
    // Enough stock that no reservation falls short: this measures the happy path.
    sqlx::query(
        "INSERT INTO stock (sku, on_hand) \
         SELECT 'BENCH-' || n, 1000000000 FROM generate_series(0, $1 - 1) AS n",
    )
    .bind(skus as i64)
    .execute(service.db())
    .await?;
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(service.channel().await?);
    }
    println!(
        "svc-inventory reserve_bench: {clients} clients, {total} reservations per mix, \
         {skus} SKUs, DB pool {connections}"
    );

    run(&channels, total / 10, skus, lines, "warm-up", false).await;
    run(
        &channels,
        total,
        skus,
        lines,
        &format!("spread, {lines} lines"),
        true,
    )
    .await;
    run(&channels, total, 1, 1, "one hot SKU, 1 line", true).await;
    service.stop().await?;
    Ok(())
}

async fn run(
    channels: &[tonic::transport::Channel],
    total: usize,
    skus: usize,
    lines: usize,
    label: &str,
    report: bool,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = channels
        .iter()
        .enumerate()
        .map(|(worker, channel)| {
            let mut client = InventoryServiceClient::new(as_service(channel.clone(), "svc-order"));
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0_usize;
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (worker as u64 + 1);
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let first = random(&mut seed) as usize % skus;
                    let request = ReserveStockRequest {
                        order_id: uuid::Uuid::now_v7().to_string(),
                        lines: (0..lines)
                            .map(|i| ReservationLine {
                                sku: format!("BENCH-{}", (first + i * 7919) % skus),
                                quantity: 1,
                            })
                            .collect(),
                        ttl: None,
                    };
                    let sent = Instant::now();
                    match client.reserve_stock(request).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(_) => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut failures = 0;
    for worker in workers {
        let (mine, failed) = worker.await.unwrap();
        latencies.extend(mine);
        failures += failed;
    }
    let elapsed = started.elapsed();
    if !report {
        return;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label:>22}: {:>7.0} reservations/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  failed {failures}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// xorshift64: a cheap, dependency-free spread of SKUs.
fn random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
