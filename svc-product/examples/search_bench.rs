//! Search throughput and latency of svc-product, measured end to end over gRPC.
//!
//! Starts the service in-process against a fresh, seeded database on the local
//! PostgreSQL (and Redis), then runs a fixed mix of demo searches from N
//! concurrent clients, once with the Redis cache on and once with it off, and
//! prints queries per second and latency percentiles for each.
//!
//! Each is run twice: on the platform's server as `main` builds it, and on a
//! bare tonic server with TCP_NODELAY on accepted connections. The platform's
//! server accepts from its own listener without TCP_NODELAY, so a response
//! written in more than one segment waits for the client's delayed ACK (about
//! 40 ms on Linux); the bare server shows what search itself costs.
//!
//!     cargo run --release -p svc-product --example search_bench -- [clients] [seconds]
//!
//! Defaults: 16 clients, 10 seconds per run. `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL` pick the servers (as for the tests). Not a test: it asserts
//! nothing beyond every call succeeding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::stock_like_the_demo;

use shopmesh_platform::app::{ServiceSettings, prepare};
use shopmesh_platform::settings::Env;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{SearchOrder, SearchProductsRequest};
use shopmesh_testkit::{Latencies, TestService};
use sqlx::PgPool;
use tonic::transport::server::TcpIncoming;

/// The mix every client cycles through: search-as-you-type prefixes, typos,
/// exact names, multi-word text, filters, sorts and a second page.
fn mix(
    electronics: &str,
    second_page: &SearchProductsRequest,
) -> Vec<(&'static str, SearchProductsRequest)> {
    let text = |q: &str| SearchProductsRequest {
        query: q.into(),
        ..Default::default()
    };
    vec![
        ("exact name", text(shopmesh_demo::EXACT_MATCH_NAME)),
        ("typo", text("wireles headphnes")),
        ("prefix", text("headph")),
        ("prefix, short", text("esp")),
        ("two words", text("espresso machine")),
        ("description word", text("bluetooth")),
        ("typo 2", text("bluetoth speker")),
        (
            "text + category",
            SearchProductsRequest {
                category_id: electronics.into(),
                ..text("wireless")
            },
        ),
        (
            "text + attributes",
            SearchProductsRequest {
                attributes: vec!["colour=Black".into(), "colour=White".into()],
                ..text("shoes")
            },
        ),
        (
            "browse, price range, in stock",
            SearchProductsRequest {
                min_price_minor: 2_000,
                max_price_minor: 10_000,
                in_stock_only: true,
                ..Default::default()
            },
        ),
        (
            "browse by price",
            SearchProductsRequest {
                order_by: SearchOrder::PriceAsc as i32,
                ..Default::default()
            },
        ),
        ("second page", second_page.clone()),
    ]
}

struct Run {
    elapsed: Duration,
    latencies: Latencies,
    /// Per query of the mix: its name and latencies.
    by_query: Vec<(&'static str, Latencies)>,
}

async fn connect(endpoint: &str) -> ProductServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    ProductServiceClient::new(channel)
}

async fn run(endpoint: &str, db: &PgPool, clients: usize, seconds: u64) -> Run {
    let electronics: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM categories WHERE slug = 'electronics'")
            .fetch_one(db)
            .await
            .unwrap();
    let mut client = connect(endpoint).await;
    let first = SearchProductsRequest {
        query: "wireless".into(),
        ..Default::default()
    };
    let token = client
        .search_products(first.clone())
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let second_page = SearchProductsRequest {
        page_token: token,
        ..first
    };
    let mix = mix(&electronics.to_string(), &second_page);

    // Warm-up: every query once (fills caches, loads pg_trgm in connections).
    for _ in 0..3 {
        for (_, request) in &mix {
            client.search_products(request.clone()).await.unwrap();
        }
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in 0..clients {
        let mut client = connect(endpoint).await;
        let mix = mix.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = id;
            while Instant::now() < deadline {
                let (name, request) = &mix[next % mix.len()];
                let call = Instant::now();
                client
                    .search_products(request.clone())
                    .await
                    .unwrap_or_else(|status| panic!("{name}: {status:?}"));
                latencies.push((next % mix.len(), call.elapsed()));
                next += 1;
            }
            latencies
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let mut by_query: Vec<(&'static str, Latencies)> = mix
        .iter()
        .map(|(name, _)| (*name, Latencies::new()))
        .collect();
    for (query, latency) in &samples {
        by_query[*query].1.record(*latency);
    }
    Run {
        elapsed,
        latencies: samples.into_iter().map(|(_, l)| l).collect(),
        by_query,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(16, |a| a.parse().expect("clients"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("seconds"));
    let mix_size = mix("", &SearchProductsRequest::default()).len();
    println!(
        "svc-product search bench: {clients} clients, {seconds} s per run, {mix_size} queries in the mix, \
         demo catalog of 1200 products, DB pool of 10"
    );

    for (label, ttl) in [("cache on ", "300"), ("cache off", "0")] {
        let settings = [
            ("PRODUCT_CACHE_TTL_SECONDS", ttl),
            ("DB_MAX_CONNECTIONS", "10"),
            ("INVENTORY_GRPC_URL", "http://127.0.0.1:9"),
        ];
        // As `main` serves it: the platform's server and layers.
        let service = TestService::spawn(&svc_product::SPEC, &settings, svc_product::build)
            .await
            .expect("svc-product starts");
        stock_like_the_demo(service.db()).await;
        report(
            &format!("{label}, platform server"),
            run(&service.endpoint(), service.db(), clients, seconds).await,
        );
        service.stop().await.unwrap();

        // The same service on a bare server with TCP_NODELAY.
        let (endpoint, db) = bare_server(&settings).await;
        stock_like_the_demo(&db).await;
        let mut result = run(&endpoint, &db, clients, seconds).await;
        let by_query = std::mem::take(&mut result.by_query);
        report(&format!("{label}, bare server   "), result);
        for (name, latencies) in by_query.iter().filter(|(_, l)| !l.is_empty()) {
            println!("    {name:<32} {:>6.2}", latencies.summary(&[0.50, 0.99]));
        }
    }
}

fn report(label: &str, result: Run) {
    let calls = result.latencies.count();
    println!(
        "{label}: {:>6.0} searches/s  {:>6.2}  ({calls} calls)",
        calls as f64 / result.elapsed.as_secs_f64(),
        result.latencies.summary(&[0.50, 0.90, 0.99, 1.0]),
    );
}

/// svc-product on a fresh database, hosted by a bare tonic server whose
/// accepted connections have TCP_NODELAY. Returns its URL and a pool.
async fn bare_server(extra: &[(&str, &str)]) -> (String, PgPool) {
    let database_url = shopmesh_testkit::fresh_database_url();
    let mut env = Env::from_pairs([
        ("DATABASE_URL", database_url.as_str()),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("REDIS_URL", shopmesh_testkit::redis_url().as_str()),
        ("INTERNAL_SERVICE_TOKEN", shopmesh_testkit::INTERNAL_TOKEN),
    ]);
    for (name, value) in extra {
        env = env.with(name, *value);
    }
    let settings = ServiceSettings::from_env(&svc_product::SPEC, &env).unwrap();
    let ctx = prepare(&svc_product::SPEC, env, settings).await.unwrap();
    let service = svc_product::product_service(&ctx).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (endpoint, ctx.database().unwrap())
}
