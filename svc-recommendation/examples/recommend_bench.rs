//! Latency of svc-recommendation's read methods, end to end over gRPC.
//!
//! Starts svc-inventory, svc-product and svc-recommendation in-process on
//! fresh databases (demo catalog, demo stock, demo purchase history), waits
//! for the first model, then has N clients call each method for T seconds:
//! RecommendForMe for demo shoppers (a token each), ListSimilarProducts and
//! ListFrequentlyBoughtTogether for demo products. Prints calls per second and
//! latency percentiles.
//!
//!     cargo run --release -p svc-recommendation --example recommend_bench -- [clients] [seconds]
//!
//! Defaults: 1 and 8 clients, 5 seconds per run. `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL` pick the servers (as for the tests). Not a test: it
//! asserts nothing beyond every call succeeding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use shopmesh_proto::shop::recommendation::v1 as pb;
use shopmesh_testkit::{Latencies, SignedIn};
use support::{Client, NO_BROKER, Shop, bought_together, similar};
use uuid::Uuid;

#[derive(Clone, Copy)]
enum Method {
    /// A signed-in call that does nothing else: the token check's share.
    TokenOnly,
    ForMe,
    Similar,
    Together,
}

async fn call(
    client: &mut Client,
    method: Method,
    n: usize,
    users: &[SignedIn],
    products: &[shopmesh_demo::SeedProduct],
) {
    let product = &products[n % products.len()];
    match method {
        Method::TokenOnly => {
            let user = &users[n % users.len()];
            // PERMISSION_DENIED for a shopper, after the token and session are checked.
            let _ = client
                .get_model_info(user.request(pb::GetModelInfoRequest {}))
                .await;
        }
        Method::ForMe => {
            let user = &users[n % users.len()];
            client
                .recommend_for_me(user.request(pb::RecommendForMeRequest { page_size: 10 }))
                .await
                .unwrap();
        }
        Method::Similar => {
            client
                .list_similar_products(similar(product, 10))
                .await
                .unwrap();
        }
        Method::Together => {
            client
                .list_frequently_bought_together(bought_together(product, 10))
                .await
                .unwrap();
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let client_counts = match args.first() {
        Some(&n) => vec![n],
        None => vec![1, 8],
    };
    let seconds = args.get(1).copied().unwrap_or(5) as u64;
    let shop =
        Shop::start_with(&[("KAFKA_BROKERS", NO_BROKER), ("SEED_DEMO_ORDERS", "true")]).await;
    // Demo shoppers, signed in.
    let mut shoppers: Vec<Uuid> = shopmesh_demo::demo_orders()
        .iter()
        .map(|o| o.user_id)
        .collect();
    shoppers.sort();
    shoppers.dedup();
    let mut users = Vec::new();
    for &id in shoppers.iter().take(200) {
        users.push(shop.identity().signed_in_as(id, &[]).await.unwrap());
    }
    let products = shopmesh_demo::demo_catalog().products;
    let client = shop.client().await;
    // Stock levels arrive shortly after start.
    support::similar_settled(&client, similar(&products[0], 10)).await;

    println!("| method | clients | calls/s | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, method) in [
        ("(token check only)", Method::TokenOnly),
        ("RecommendForMe", Method::ForMe),
        ("ListSimilarProducts", Method::Similar),
        ("ListFrequentlyBoughtTogether", Method::Together),
    ] {
        for &clients in &client_counts {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (mut client, users, products) =
                    (client.clone(), users.clone(), products.clone());
                tasks.push(tokio::spawn(async move {
                    let mut times = Latencies::new();
                    let mut n = c * 7919;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        call(&mut client, method, n, &users, &products).await;
                        times.record(started.elapsed());
                        n += 1;
                    }
                    times
                }));
            }
            let mut times = Latencies::new();
            for task in tasks {
                times.merge(&task.await.unwrap());
            }
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {name} | {clients} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
                times.count() as f64 / seconds as f64,
                ms(times.percentile(0.5)),
                ms(times.percentile(0.9)),
                ms(times.percentile(0.99)),
                ms(times.max()),
            );
        }
    }
}
