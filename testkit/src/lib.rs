//! Test support shared by every crate's tests: a fresh migrated database per
//! test on the real PostgreSQL server, the real service started on port 0 (or
//! its binary as an operator runs it), any set of services wired together (a
//! [`Shop`]), a stand-in svc-auth and its signed-in users, events on the real
//! broker, and latency summaries for benchmarks. Only ever a dev-dependency,
//! so no release binary carries it.
//!
//! Split by job; everything is re-exported here, so tests write
//! `shopmesh_testkit::TestService`.

// Test support: a setup that fails panics the test, as an assertion does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod broker;
pub mod env;
pub mod identity;
pub mod kafka;
pub mod service;
pub mod shop;

pub use bench::Latencies;
pub use broker::{TestBroker, tansu_binary};
pub use env::{
    INTERNAL_TOKEN, TEST_DATABASE_PREFIX, eventually, free_port, fresh_database_url, kafka_brokers,
    redis_url, server_url,
};
pub use identity::{
    SignedIn, TEST_ISSUER, TestIdentity, as_service, service_credentials, with_bearer,
};
pub use kafka::{
    Record, produce_event, produce_event_on, read_topic, skip_to_end, skip_to_end_on,
    wait_for_events,
};
pub use service::{
    TestService, assert_bad_setting_refused, error_reason, metric, refused_start, service_command,
    sigterm, wait_until_serving,
};
pub use shop::{NOWHERE, Service, Shop, ShopBuilder, borrowed, owned};
