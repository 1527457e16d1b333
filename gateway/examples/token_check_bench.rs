//! What token checking adds to a request: the gateway's `TokenVerifier` (EdDSA
//! signature, claims, and the session lookup in Redis) timed on its own.
//!
//!   cargo run --release -p gateway --example token_check_bench -- [iterations] [concurrency]
//!
//! Needs Redis at TEST_REDIS_URL (default redis://127.0.0.1:6379). Prints p50/p99
//! per check and checks per second. Not a test: figures depend on the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use shopmesh_platform::auth::{StaticKeySource, TokenVerifier};
use shopmesh_testkit::TestIdentity;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);

    let identity = TestIdentity::start().await.unwrap();
    let verifier = Arc::new(TokenVerifier::new(
        Arc::new(StaticKeySource::new(vec![identity.key.public_jwk()])),
        identity.sessions.clone(),
        "shopmesh",
        "shopmesh",
    ));
    let (_, _, token) = identity.sign_in(&[]).await.unwrap();
    let header = format!("Bearer {token}");
    verifier.verify_header(Some(&header)).await.unwrap(); // warm the key cache

    let started = Instant::now();
    let per_task = iterations / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (verifier, header) = (verifier.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                verifier.verify_header(Some(&header)).await.unwrap();
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "token checks: {} in {:.2?} with {concurrency} concurrent callers = {:.0}/s; p50 {:?}, p99 {:?}",
        samples.len(),
        elapsed,
        samples.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
}
