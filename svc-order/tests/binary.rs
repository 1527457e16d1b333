#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `svc-order` binary, as an operator runs it: a bad setting of its
//! own stops it naming the variable, and SIGTERM ends open WatchOrder streams
//! at once (so they do not hold the drain open), lets go of the sagas it
//! runs, and exits cleanly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use shopmesh_proto::shop::order::v1::order_service_client::OrderServiceClient;
use shopmesh_proto::shop::order::v1::{OrderStatus, WatchOrderRequest};
use shopmesh_testkit::{
    NOWHERE, TestIdentity, assert_bad_setting_refused, free_port, fresh_database_url,
    service_command, sigterm, wait_until_serving,
};
use tonic::Code;
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-order");
/// Longer than the test waits: an exit before it proves the streams ended early.
const DRAIN_SECONDS: u64 = 60;
fn service(port: u16, database_url: &str) -> tokio::process::Command {
    let mut command = service_command(BINARY, port);
    command
        .env("DATABASE_URL", database_url)
        .env("SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS.to_string())
        .env("PRODUCT_GRPC_URL", NOWHERE)
        .env("INVENTORY_GRPC_URL", NOWHERE)
        .env("PAYMENT_GRPC_URL", NOWHERE)
        .env(
            "ORDER_CONSUMER_GROUP",
            format!("svc-order-test-{}", Uuid::now_v7().simple()),
        );
    command
}

#[test]
fn a_bad_order_setting_stops_the_binary_naming_the_variable() {
    for (name, value) in [
        ("ORDER_SAGA_TIMEOUT_SECONDS", "0"),
        ("ORDER_SAGA_LEASE_SECONDS", "3"),
        ("PAYMENT_GRPC_URL", "payments:50057"),
    ] {
        assert_bad_setting_refused(BINARY, &[], (name, value));
    }
}

#[tokio::test]
async fn sigterm_ends_open_watches_lets_go_of_sagas_and_exits_zero() {
    let identity = TestIdentity::start().await.unwrap();
    let user = identity.signed_in(&[]).await.unwrap();
    let port = free_port();
    let database_url = fresh_database_url();
    let mut child = service(port, &database_url)
        .env("AUTH_GRPC_URL", &identity.auth_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = wait_until_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))
        .await
        .expect("svc-order became SERVING");

    // An order in flight, as a crash of another replica could leave it: its
    // saga is due and this process picks it up (and retries, nothing answers).
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let order_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO orders (id, user_id, idempotency_key, request_fingerprint, status, \
         currency_code, subtotal_minor, total_minor, shipping_address, card_token, card_brand, \
         card_last4) VALUES ($1, $2, 'k', 'f', 'pending', 'USD', 100, 100, '{}', 'tok', 'visa', '4242')",
    )
    .bind(order_id)
    .bind(user.id)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_sagas (order_id, phase, step, deadline) \
         VALUES ($1, 'forward', 'reserve_stock', now() + interval '1 hour')",
    )
    .bind(order_id)
    .execute(&db)
    .await
    .unwrap();

    let mut stream = OrderServiceClient::new(channel)
        .watch_order(user.request(WatchOrderRequest {
            id: order_id.to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().order.unwrap();
    assert_eq!(first.status(), OrderStatus::Pending);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM order_sagas")
            .fetch_one(&db)
            .await
            .unwrap();
        if attempts > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the runner picked up the saga");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = Instant::now();
    sigterm(&child);
    let end = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("the watch ends after SIGTERM")
        .unwrap_err();
    assert_eq!(
        end.code(),
        Code::Unavailable,
        "clients are told to reconnect"
    );
    assert!(end.message().contains("shutting down"), "{end:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits well before the drain bound")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(DRAIN_SECONDS));

    let lease: Option<Uuid> = sqlx::query_scalar("SELECT lease_owner FROM order_sagas")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(lease, None, "the saga is free for the next process");
}
