//! Where the tests' servers are (PostgreSQL, Redis, the broker), fresh
//! databases and ports, and `eventually`.

use std::future::Future;

/// The service credential every test service accepts.
pub const INTERNAL_TOKEN: &str = "test-internal-service-token";

/// Prefix of every database a test creates; `make test` drops leftovers.
pub const TEST_DATABASE_PREFIX: &str = "shopmesh_test_";

/// The PostgreSQL server tests run against (`TEST_DATABASE_URL`, any database on it).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis tests run against (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Kafka-protocol broker tests run against: `TEST_KAFKA_BROKERS`, which
/// `make test` always sets. Panics when unset, so Kafka tests fail loudly
/// instead of skipping; run them through `scripts/test.sh`, or start a broker
/// (`eval "$(scripts/infra.sh kafka)"`) and export `TEST_KAFKA_BROKERS=$KAFKA_BROKERS`.
pub fn kafka_brokers() -> String {
    match std::env::var("TEST_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => panic!(
            "TEST_KAFKA_BROKERS is not set: run `make test`, or start a broker with \
             `eval \"$(scripts/infra.sh kafka)\"` and export TEST_KAFKA_BROKERS=$KAFKA_BROKERS"
        ),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most 30 s;
/// panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A URL naming a brand-new, not yet existing database on the test server.
pub fn fresh_database_url() -> String {
    let server = server_url();
    let base = match server.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &server[..slash],
        _ => server.as_str(),
    };
    let query = server.find('?').map(|q| &server[q..]).unwrap_or_default();
    format!(
        "{base}/{TEST_DATABASE_PREFIX}{}{query}",
        uuid::Uuid::now_v7().simple()
    )
}

/// A local port nothing listens on at the moment of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free local port: {err}"))
}
